"""model_flags.json: merged on resume, compared, copied."""

import pytest

import model_flags

SAVED = {"model": "MoeModel", "frame_features": False, "feature_names": "mean_rgb,mean_audio",
         "feature_sizes": "1024,128", "num_classes": 3862, "max_frames": 300,
         "label_loss": "CrossEntropyLoss",
         "settings": {"moe_num_mixtures": 3, "compact_layers": "moe"}}


def described(**changes):
    settings = dict(SAVED["settings"], circulant_expansion="blocks")  # a setting added since
    settings.update({k: v for k, v in changes.items() if k not in SAVED})
    return {**SAVED, **{k: v for k, v in changes.items() if k in SAVED}, "settings": settings}


def test_flags_not_given_come_from_the_saved_file():
    from_flags = described(moe_num_mixtures=2, num_classes=50)  # defaults, not given
    assert model_flags.merge(SAVED, from_flags, given=set()) == SAVED  # nothing added either


def test_given_flags_must_agree():
    same = described(moe_num_mixtures=3)
    assert model_flags.merge(SAVED, same, given={"moe_num_mixtures", "model"}) == SAVED
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
    assert model_flags.read(str(tmp_path / "b")) == SAVED
    with pytest.raises(ValueError, match="no model_flags.json in"):
        model_flags.read(str(tmp_path))
