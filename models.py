"""The models by name: the registry that `--model` chooses from, each model's settings (their
defaults, meanings and flags), and building a model from its name and settings.

Every model is a `keras.Model` called on the reader's batch dict (`features`, `num_frames`) and
returning class probabilities [B, num_classes].
"""

import frame_level_models as frame
import model_settings
import model_utils
import video_level_models as video

_REGISTRY = {cls.__name__: cls for cls in (
    video.LogisticModel, video.MoeModel, video.GatedMoeModel, video.BottleneckModel,
    video.KnnMoeModel,
    frame.FrameLevelLogisticModel, frame.DbofModel, frame.LstmModel, frame.GruModel,
    frame.NetVLADModelLF, frame.NetRVLADModelLF, frame.NetFVModelLF, frame.SoftDbofModelLF,
    frame.GatedDbofModelLF, frame.TwoStreamModel)}

# What a model_flags.json written before these settings existed meant by their absence (a
# model built from settings without them gets them too).

def model_names():
    return sorted(_REGISTRY)


def get_model_class(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return _REGISTRY[name]


def settings_class(name):
    """The typed settings of model `name` (a frozen dataclass, model_settings)."""
    return get_model_class(name).Settings


def setting_help(name, key):
    """The meaning of model `name`'s setting `key` ('' if it has none)."""
    return model_settings.meaning(settings_class(name), key)


def setting_choices(name, key):
    """The valid values of model `name`'s setting `key` (() when any value of its type is)."""
    return model_settings.choices(settings_class(name), key)


def setting_type(name, key):
    return {f.name: f.type for f in model_settings.fields(settings_class(name))}[key]


def model_hyperparameters(name):
    """{setting: default} of model `name` (those measured on the data included)."""
    return {f.name: f.default for f in model_settings.fields(settings_class(name))}


def measured_settings(name):
    """The settings of model `name` that train.py measures on the training data (no flags)."""
    return tuple(f.name for f in model_settings.fields(settings_class(name), measured=True))


def given_settings(name):
    """{setting: default} of the settings of model `name` that flags and callers give."""
    return {f.name: f.default
            for f in model_settings.fields(settings_class(name), measured=False)}


def older_spellings(name):
    """{setting: the setting it takes its value from when not given} of model `name`."""
    return model_settings.unset_from(settings_class(name))


def as_given(name, settings):
    """The settings given for model `name` (a dict), each setting not given that has an older
    spelling given taking its value (BottleneckModel's classifier_rank from low_rank)."""
    settings = dict(settings)
    for key, older in older_spellings(name).items():
        if key not in settings and older in settings:
            settings[key] = settings[older]
    return settings


def all_hyperparameters():
    """The names of every model's settings, except those measured on the training data."""
    return {key for name in model_names() for key in given_settings(name)}


def unused_compact_layers(name, num_classes, settings):
    """The names in settings["compact_layers"] that would make no layer of this model compact
    alone: neither a site the model asks for nor the one such a site falls back to. The model
    is constructed, not built (no weights created)."""
    named = model_utils.parse_compact_layers(settings.get("compact_layers", ""))
    model = build_model(name, num_classes, keras_name="probe", **settings)
    asked = model.settings.asked_sites()
    used = asked | {model_utils.FALLBACK.get(site) for site in asked}
    return sorted(set(named) - used)


def build_model(name, num_classes, keras_name=None, **settings):
    """The model `name` with those of `settings` that it takes (others are ignored).

    keras_name: the Keras model's name (default: one derived from the class, numbered by Keras
    if taken).

    A setting not given takes the model's default (model_flags.read gives an older file's
    meaning first).
    """
    accepted = model_hyperparameters(name)
    chosen = {k: v for k, v in as_given(name, settings).items() if k in accepted}
    model_class = get_model_class(name)
    options = {"name": keras_name} if keras_name else {}
    return model_class(num_classes, model_class.Settings(**chosen), **options)
