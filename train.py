"""Train a YouTube-8M model from TFRecords, with the starter code's flags.

    python train.py --train_data_pattern='data/train*.tfrecord' --frame_features \\
        --model=TwoStreamModel --compact_layers=fc,moe --train_dir=/tmp/yt8m_model
    python train.py --train_data_pattern='data/validate*.tfrecord' --segment_labels \\
        --init_from=/tmp/yt8m_model --train_dir=/tmp/yt8m_segments

One device, all local GPUs (MirroredStrategy), or several machines (MultiWorkerMirroredStrategy,
from the standard TF_CONFIG variable). Checkpoints go to train_dir every --checkpoint_steps, at
the end and on SIGINT/SIGTERM; a restart continues from the latest. train_dir/model_flags.json
keeps the model's settings, which eval.py and inference.py read.
"""

import dataclasses
import sys
import textwrap
import typing

from absl import app, flags

import utils

utils.quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import checkpoints  # noqa: E402
import devices  # noqa: E402
import model_flags  # noqa: E402
import model_settings as settings_groups  # noqa: E402
import models  # noqa: E402
import readers  # noqa: E402
import train_config  # noqa: E402
import trainer  # noqa: E402

# -- flags: the starter's names and defaults ------------------------------------------------------
# The training run's flags are TrainConfig's fields (define_config_flags); these describe the
# model (model_flags.json) or are kept for the starter's command lines.
OWN_FLAGS = {"data": ["frame_features", "feature_names", "feature_sizes", "num_classes",
                      "max_frames"], "training": ["model", "label_loss"]}
flags.DEFINE_string("feature_names", None, "Features to read (default mean_rgb,mean_audio for "
                    "video level, rgb,audio for frame level).")
flags.DEFINE_string("feature_sizes", None, "Their sizes (default 1024,128).")
flags.DEFINE_bool("frame_features", False, "Frame-level SequenceExamples instead of video level.")
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES, "3862 (2018 on) or 4716 (2017).")
flags.DEFINE_integer("max_frames", readers.MAX_FRAMES, "Frames kept per video (frame level).")
flags.DEFINE_string("model", "LogisticModel", "Model class name: see 'models' above.")
flags.DEFINE_string("label_loss", "CrossEntropyLoss", "CrossEntropyLoss, HingeLoss, SoftmaxLoss.")
flags.DEFINE_integer("export_model_steps", 1000, "Does nothing (accepted for the starter's "
                     "command lines): export with export_model.py.")
flags.DEFINE_bool("log_device_placement", False, "Not supported (accepted for the starter's "
                  "command lines, ignored with a warning).")


def config_fields():
    """TrainConfig's fields that are flags (all but the model description)."""
    return [f for f in dataclasses.fields(train_config.TrainConfig) if f.name != "model_flags"]


def define_config_flags():
    """One flag per TrainConfig field: its type (the non-None one of `int | None`), default,
    meaning and choices."""
    definers = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                str: flags.DEFINE_string}
    for field in config_fields():
        meta = field.metadata
        kind = next(t for t in typing.get_args(field.type) or (field.type,)
                    if t is not type(None))
        if meta["choices"]:
            flags.DEFINE_enum(field.name, meta["flag_default"], meta["choices"], meta["help"])
        else:
            definers[kind](field.name, meta["flag_default"], meta["help"])


define_config_flags()


def settings_by_model():
    """{setting: {model: default}} of every model's settings (those measured on data aside)."""
    seen = {}
    for name in models.model_names():
        for key, default in models.given_settings(name).items():
            seen.setdefault(key, {})[name] = default
    return seen


def define_model_flags():
    """One flag per model setting (of its field's type; an enum where the field lists its
    valid values), its help the setting's meaning and the models that take it with their
    defaults; unset, each model keeps its own default."""
    definers = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                str: flags.DEFINE_string}
    settings = settings_by_model()
    compact = set(settings["compact_layers"])
    for key, defaults in sorted(settings.items()):
        model = next(iter(defaults))
        meaning = models.setting_help(model, key)
        by_default = {}
        for name, default in defaults.items():
            by_default.setdefault(repr(default), []).append(name)
        if set(defaults) == compact and len(by_default) == 1:
            takers = f"every model with compact layers: {next(iter(by_default))}"
        else:
            takers = "; ".join(f"{', '.join(names)}: {value}"
                               for value, names in sorted(by_default.items()))
        choices = models.setting_choices(model, key)
        if choices:
            flags.DEFINE_enum(key, None, choices, f"{meaning} [{takers}]")
        else:
            definers[models.setting_type(model, key)](key, None, f"{meaning} [{takers}]")


def help_overview():
    """The flags by group, for --help (each flag's own help follows, alphabetically)."""
    groups = {group: [] for group in train_config.GROUPS}
    for field in config_fields():
        groups.setdefault(field.metadata["group"], []).append(field.name)
    for group, names in OWN_FLAGS.items():
        groups[group] = names + groups[group]
    groups[train_config.COMPACT] = [f.name for f in dataclasses.fields(settings_groups.Compact)] \
        + groups[train_config.COMPACT]

    def wrapped(first, items, indent):
        return textwrap.fill(first + ", ".join(items), 100, subsequent_indent=" " * indent)

    lines = ["", "Flags by group (each explained below):"]
    for group, names in groups.items():
        lines.append(wrapped(f"  {group}: ", [f"--{n}" for n in names], 4))
    lines.append(wrapped("  models (--model): ", models.model_names(), 4))
    settings = settings_by_model()
    for name in models.model_names():
        own = sorted(key for key, takers in settings.items()
                     if name in takers and key not in groups["compact layers"])
        lines.append(wrapped(f"    {name}: ", [f"--{key}" for key in own], 8))
    return "\n".join(lines)


define_model_flags()
__doc__ += help_overview()  # noqa: A001 - absl prints the module's docstring for --help
FLAGS = flags.FLAGS


def given(name):
    """Whether flag `name` is on the command line (False for settings without a flag)."""
    return name in FLAGS and FLAGS[name].present > 0


def model_settings(files, model=None, frame_features=None):
    """The model description that the flags give (each model's defaults where unset): what
    model_flags.json records. A model with measured settings (a memory of the training videos)
    measures them on `files`."""
    model = model or FLAGS.model
    frame_features = FLAGS.frame_features if frame_features is None else frame_features
    model_class = models.get_model_class(model)  # raises on unknown names
    settings = {key: FLAGS[key].value for key in models.given_settings(model)
                if FLAGS[key].value is not None}
    description = model_flags.describe(
        model, FLAGS.num_classes, frame_features, FLAGS.feature_names, FLAGS.feature_sizes,
        FLAGS.max_frames, FLAGS.label_loss, **settings)
    if models.measured_settings(model):
        reader = checkpoints.make_reader(description, trained=False)
        description = description.with_settings(**model_class.settings_from_data(reader, files))
    return description


def resumed_settings(saved, files, path, free=()):
    """The model flags of a run that goes on: those saved, except the ones given on the command
    line, which must agree with them (or --start_new_model) unless `free` to change."""
    model = FLAGS.model if given("model") else saved.model
    frame_features = FLAGS.frame_features if given("frame_features") else saved.frame_features
    from_flags = model_settings(files, model, frame_features)
    names = set(model_flags.TOP_LEVEL) | set(from_flags.settings)
    merged = model_flags.merge(saved, from_flags, {n for n in names if given(n)},
                               models.measured_settings(model), path, free)
    if not all(given(k) for k in model_flags.TOP_LEVEL):
        print(f"model flags not given are taken from {path}", flush=True)
    return merged


def warn_about_unused_flags(settings):
    """Flags given that do nothing for this run, each named on stderr."""
    model = settings.model
    accepted = models.model_hyperparameters(model)
    for key in sorted(models.all_hyperparameters()):
        if given(key) and key not in accepted:
            utils.warn(f"--{key} is not a setting of {model}: ignored")
    if given("compact_layers") and "compact_layers" in accepted:
        for name in models.unused_compact_layers(model, settings.num_classes,
                                                 settings.settings):
            utils.warn(f"--compact_layers={name}: {model} has no such layer with these "
                       "settings: ignored")
    if given("export_model_steps"):
        utils.warn("--export_model_steps does nothing: export a trained model with "
                   "export_model.py")
    if FLAGS.log_device_placement:
        utils.warn("--log_device_placement is not supported: ignored")


def run():
    if not FLAGS.train_data_pattern:
        raise ValueError("--train_data_pattern is required")
    if FLAGS.cpu_devices > 1:
        devices.split_cpu(FLAGS.cpu_devices)  # before the records are read
    files = readers.resolve_files(FLAGS.train_data_pattern)
    # A run is bound to its model flags once it has a checkpoint: until then they may change.
    resuming = (not FLAGS.start_new_model and tf.io.gfile.isdir(FLAGS.train_dir)
                and bool(checkpoints.candidates(FLAGS.train_dir)))
    if resuming and model_flags.exists(FLAGS.train_dir):
        settings = resumed_settings(model_flags.read(FLAGS.train_dir), files,
                                    model_flags.path_in(FLAGS.train_dir))
    elif FLAGS.init_from:  # a new run of the model there
        if not model_flags.exists(FLAGS.init_from):
            raise ValueError(f"--init_from={FLAGS.init_from}: no model_flags.json there; give "
                             "the train_dir of a train.py run")
        settings = resumed_settings(model_flags.read(FLAGS.init_from), files,
                                    model_flags.path_in(FLAGS.init_from), model_flags.FREE_AT_INIT)
    else:
        settings = model_settings(files)
    readers.check_release(files, settings.num_classes)
    warn_about_unused_flags(settings)
    config = train_config.TrainConfig(model_flags=settings,
                                      **{f.name: FLAGS[f.name].value for f in config_fields()})
    stopped_by = trainer.Trainer(config).run()
    if stopped_by:
        sys.exit(128 + stopped_by)


if __name__ == "__main__":
    app.run(utils.cli_main(run))
