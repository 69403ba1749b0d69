"""train_dir/model_flags.json: the description of a trained model (a `Description`), written,
read, compared and merged here only.

    {"format": 3, "model": "MoeModel", "frame_features": false,
     "feature_names": "mean_rgb,mean_audio", "feature_sizes": "1024,128", "num_classes": 3862,
     "max_frames": 300, "label_loss": "CrossEntropyLoss", "settings": {"moe_num_mixtures": 2}}

train.py writes it with a run's first checkpoint; eval.py, inference.py, export_model.py and
ensemble.py read it; export_model.py copies it beside the SavedModel.
"""

import dataclasses
import json
import os

import tensorflow as tf

import circulant_ops
import models
import readers
import utils

FILE = "model_flags.json"
TOP_LEVEL = ("model", "frame_features", "feature_names", "feature_sizes", "num_classes",
             "max_frames", "label_loss")  # beside "settings", the model's own
# Format 1 (no "format" key) was written before the circulant options existed: a file without
# them describes circulant layers of the first form. Format 2 names every setting it depends
# on; a setting added later takes its default. Format 3 gave a setting that had two meanings a
# second name (BottleneckModel's classifier_rank, which low_rank set too): a file of format 2
# takes it from the older spelling.
FORMAT = 3
FIRST_CIRCULANT_FORM = {"circulant_diagonal_side": circulant_ops.FIRST_DIAGONAL_SIDE,
                        "circulant_expansion": circulant_ops.FIRST_EXPANSION,
                        "circulant_leaky_slope": 1.0, "circulant_regularized": True}


@dataclasses.dataclass(frozen=True)
class Description:
    """What a trained model is: the model, the records it reads and its own settings (those of
    models.settings_class(model), by name). model_flags.json holds it with the format's number."""

    model: str
    frame_features: bool
    feature_names: str  # comma-separated, as the reader takes them
    feature_sizes: str
    num_classes: int
    max_frames: int
    label_loss: str
    settings: dict

    @classmethod
    def of(cls, value, where=FILE):
        """A Description of a Description, or of a dict of any format (migrate)."""
        if isinstance(value, cls):
            return value
        migrated = migrate(value, where)
        return cls(**{key: migrated[key] for key in TOP_LEVEL},
                   settings=dict(migrated["settings"]))

    def as_dict(self):
        """model_flags.json's content."""
        return {"format": FORMAT, **{key: getattr(self, key) for key in TOP_LEVEL},
                "settings": dict(self.settings)}

    def with_settings(self, **changes):
        return dataclasses.replace(self, settings={**self.settings, **changes})


def describe(model, num_classes=readers.NUM_CLASSES, frame_features=None, feature_names=None,
             feature_sizes=None, max_frames=readers.MAX_FRAMES, label_loss="CrossEntropyLoss",
             **settings):
    """The description of model `model` with `settings` (its defaults for the others), as
    train.py would record it; frame_features defaults to the model's level."""
    model_class = models.get_model_class(model)
    frame_features = model_class.frame_level if frame_features is None else frame_features
    reader = readers.make_reader(frame_features, num_classes, feature_names, feature_sizes,
                                 max_frames)
    defaults = models.given_settings(model)
    settings = models.as_given(model, settings)
    return Description(model=model, frame_features=frame_features,
                       feature_names=",".join(reader.feature_names),
                       feature_sizes=",".join(map(str, reader.feature_sizes)),
                       num_classes=num_classes, max_frames=max_frames, label_loss=label_loss,
                       settings={**defaults, **settings})


def path_in(folder):
    return os.path.join(folder, FILE)


def exists(folder):
    return tf.io.gfile.exists(path_in(folder))


def read(folder):
    """The Description in folder's model_flags.json, of any format (migrate)."""
    if not exists(folder):
        raise ValueError(f"no {FILE} in {folder}: is it a train_dir of train.py?")
    with tf.io.gfile.GFile(path_in(folder)) as f:
        return Description.of(json.load(f), path_in(folder))


def migrate(description, where=FILE):
    """A model_flags.json dict of any format as the current format says it: the one place that
    knows what an older file meant."""
    version = description.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise ValueError(f"{where} is of format {version!r}, newer than this project reads "
                         f"({FORMAT}): update yt8m-circulant")
    migrated = {**description, "format": FORMAT,
                "settings": dict(description.get("settings", {}))}
    settings, defaults = migrated["settings"], models.given_settings(migrated["model"])
    if version < 2 and "k_factor" in defaults:
        migrated["settings"] = settings = {**FIRST_CIRCULANT_FORM, **settings}
    if version < 3:  # a setting named since takes its older spelling's value
        migrated["settings"] = models.as_given(migrated["model"], settings)
    return migrated


def write(folder, description):
    """A Description (or a model_flags.json dict), written whole or not at all."""
    utils.atomic_write(path_in(folder), json.dumps(Description.of(description).as_dict(),
                                                   indent=2, sort_keys=True))


def copy(source_folder, target_folder):
    write(target_folder, read(source_folder))


def flat(description):
    """One level: the top-level fields and the model's settings side by side."""
    return {**{key: getattr(description, key) for key in TOP_LEVEL}, **description.settings}


# What a new run that starts from another run's weights (train.py --init_from) may change: the
# flags that shape no weight. Every other model flag must agree with the weights it loads.
FREE_AT_INIT = ("label_loss",)


def merge(saved, from_flags, given, measured=(), where=FILE, free=()):
    """The model flags of a run that goes on with `saved`: those `given` on the command line
    (or `measured` on the data) from `from_flags`, every other from `saved`. A ValueError names
    the given or measured ones that differ from `saved`, except those `free` to change.

    from_flags: what the command line describes (defaults where a flag is unset), for the model
    it names; a key of the saved settings that from_flags lacks (a setting added since) stays.
    """
    saved, from_flags = Description.of(saved, where), Description.of(from_flags)
    top = {key: getattr(from_flags if key in given else saved, key) for key in TOP_LEVEL}
    other_model = top["model"] != saved.model
    merged = Description(**top, settings={**saved.settings, **{
        key: value for key, value in from_flags.settings.items()
        if key in given or key in measured or other_model}})
    old, new = flat(saved), flat(merged)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                     and (k in given or k in measured) and k not in free)
    if changed and free:
        raise ValueError(f"model flags differ from {where} ({', '.join(changed)}): --init_from "
                         "loads those weights, so only --" + ", --".join(free) + " may change; "
                         "leave the others out")
    if changed:
        raise ValueError(f"model flags differ from {where} ({', '.join(changed)}); leave them out "
                         "to go on with the saved model, or add --start_new_model to train a new "
                         "model in this train_dir")
    return merged
