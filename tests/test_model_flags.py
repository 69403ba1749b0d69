"""model_flags.json: merged on resume, compared, copied."""

import json
import os
import shutil

import pytest

import model_flags

SAVED = {"format": model_flags.FORMAT, "model": "MoeModel", "frame_features": False,
         "feature_names": "mean_rgb,mean_audio",
         "feature_sizes": "1024,128", "num_classes": 3862, "max_frames": 300,
         "label_loss": "CrossEntropyLoss",
         "settings": {"moe_num_mixtures": 3, "compact_layers": "moe"}}
DESCRIPTION = model_flags.Description(**{k: v for k, v in SAVED.items() if k != "format"})


def described(**changes):
    settings = dict(SAVED["settings"], circulant_expansion="blocks")  # a setting added since
    settings.update({k: v for k, v in changes.items() if k not in SAVED})
    return {**SAVED, **{k: v for k, v in changes.items() if k in SAVED}, "settings": settings}


def test_flags_not_given_come_from_the_saved_file():
    from_flags = described(moe_num_mixtures=2, num_classes=50)  # defaults, not given
    assert model_flags.merge(SAVED, from_flags, given=set()) == DESCRIPTION  # nothing added


def test_given_flags_must_agree():
    same = described(moe_num_mixtures=3)
    assert model_flags.merge(SAVED, same, given={"moe_num_mixtures", "model"}) == DESCRIPTION
    with pytest.raises(ValueError, match=r"differ from model_flags.json \(moe_num_mixtures\); "
                                         "leave them out"):
        model_flags.merge(SAVED, described(moe_num_mixtures=2), given={"moe_num_mixtures"})
    with pytest.raises(ValueError, match=r"\(circulant_expansion\)"):  # absent = the old form
        model_flags.merge(SAVED, described(), given={"circulant_expansion"})


def test_another_model_is_named_alone():
    other = {**described(model="LogisticModel"), "settings": {"l2_penalty": 1e-8}}
    with pytest.raises(ValueError, match=r"\(model\);"):
        model_flags.merge(SAVED, other, given={"model"})


def test_measured_settings_are_compared_without_a_flag():
    with pytest.raises(ValueError, match=r"\(memory_videos\)"):
        model_flags.merge({**SAVED, "settings": {"memory_videos": 10}},
                          {**SAVED, "settings": {"memory_videos": 12}}, given=set(),
                          measured=("memory_videos",))


def test_write_read_copy(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model_flags.write(str(tmp_path / "a"), SAVED)
    model_flags.copy(str(tmp_path / "a"), str(tmp_path / "b"))
    assert model_flags.read(str(tmp_path / "b")) == DESCRIPTION
    assert model_flags.read(str(tmp_path / "b")).as_dict() == SAVED  # what the file holds
    with pytest.raises(ValueError, match="no model_flags.json in"):
        model_flags.read(str(tmp_path))


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("name, settings, forms, weights", [
    # format 1, the circulant options absent: its circulant layers were of the first form
    ("model_flags_format1_moe.json", {"circulant_diagonal_side": "output",
                                      "circulant_expansion": "pad",
                                      "compact_layers": "moe,gating"},
     # gates 1152 -> 150 and experts 1152 -> 100 (+ bias) at n = 1152; gating 50 -> 50, its BN
     {("output", "pad")}, 2 * 1152 + (2 * 1152 + 100) + 2 * 50 + 4 * 50),
    # format 1 with the options present, and low_rank of BottleneckModel's first meaning
    ("model_flags_format1_bottleneck.json", {"circulant_expansion": "blocks", "low_rank": 9,
                                             "classifier_rank": 9},
     {("input", "blocks")}, (1152 + 50) * 9 + 50 + 2 * 2 * 50 + 4 * 50),
    # format 2: low_rank made the classifier low rank too (classifier_rank since), here beside
    # a gating of rank 9: classifier (1152 + 50) * 9 + 50, gating (50 + 50) * 9 and its BN
    ("model_flags_format2_bottleneck.json", {"low_rank": 9, "classifier_rank": 9},
     set(), (1152 + 50) * 9 + 50 + (50 + 50) * 9 + 4 * 50),
])
def test_every_earlier_format_reads_as_it_was_trained(tmp_path, name, settings, forms, weights):
    import checkpoints
    import circulant_ops
    import model_utils

    shutil.copy(os.path.join(FIXTURES, name), tmp_path / model_flags.FILE)
    description = model_flags.read(str(tmp_path))
    assert isinstance(description, model_flags.Description)
    assert {k: description.settings[k] for k in settings} == settings
    model = checkpoints.build_model(description, checkpoints.make_reader(description))
    circulant = [layer for layer in model_utils.all_layers(model)
                 if isinstance(layer, circulant_ops.DiagonalCirculant)]
    assert {(la.diagonal_side, la.expansion) for la in circulant} == forms
    assert model.count_params() == weights
    model_flags.write(str(tmp_path), description)  # read again, the same description
    assert model_flags.read(str(tmp_path)) == description


def test_a_newer_format_is_one_line(tmp_path):
    newer = {**SAVED, "format": model_flags.FORMAT + 1}
    (tmp_path / model_flags.FILE).write_text(json.dumps(newer))
    with pytest.raises(ValueError, match="newer than this project reads .*update yt8m"):
        model_flags.read(str(tmp_path))


def test_classifier_rank_takes_low_rank_unless_given():
    """BottleneckModel's classifier rank: --low_rank's older second meaning where it is not
    given (so every older command line builds the same model), its own where it is."""
    def classifier_weights(**settings):
        import checkpoints

        description = model_flags.describe("BottleneckModel", num_classes=50, bottleneck_size=0,
                                           **settings)
        model = checkpoints.build_model(description, checkpoints.make_reader(description))
        return description.settings["classifier_rank"], model.count_params()

    assert classifier_weights() == (0, 1152 * 50 + 50)
    assert classifier_weights(low_rank=9) == (9, (1152 + 50) * 9 + 50)
    assert classifier_weights(classifier_rank=9) == (9, (1152 + 50) * 9 + 50)
    assert classifier_weights(low_rank=9, classifier_rank=0) == (0, 1152 * 50 + 50)
    # a format-3 file keeps what it says, whatever low_rank is
    current = model_flags.describe("BottleneckModel", low_rank=9, classifier_rank=0)
    assert model_flags.migrate(current.as_dict())["settings"]["classifier_rank"] == 0
