"""The models by name: the registry that `--model` chooses from, each model's settings (their
defaults, meanings and flags), and building a model from its name and settings.

Every model is a `keras.Model` called on the reader's batch dict (`features`, `num_frames`) and
returning class probabilities [B, num_classes].
"""

import dataclasses
import inspect

import circulant_ops
import frame_level_models as frame
import model_utils
import video_level_models as video

_REGISTRY = {cls.__name__: cls for cls in (
    video.LogisticModel, video.MoeModel, video.GatedMoeModel, video.BottleneckModel,
    video.KnnMoeModel,
    frame.FrameLevelLogisticModel, frame.DbofModel, frame.LstmModel, frame.GruModel,
    frame.NetVLADModelLF, frame.NetRVLADModelLF, frame.NetFVModelLF, frame.SoftDbofModelLF,
    frame.GatedDbofModelLF, frame.TwoStreamModel)}

# Model settings of every model with compact layers (circulant_ + a field of Circulant but k,
# which is k_factor), and their defaults for new runs.
CIRCULANT_SETTINGS = {f"circulant_{f.name}": f.default
                      for f in dataclasses.fields(model_utils.Circulant) if f.name != "k"}
# What a model_flags.json written before these settings existed meant by their absence.
_CIRCULANT_BEFORE_SETTINGS = {"circulant_diagonal_side": circulant_ops.FIRST_DIAGONAL_SIDE,
                              "circulant_expansion": circulant_ops.FIRST_EXPANSION,
                              "circulant_leaky_slope": 1.0, "circulant_regularized": True}

# The meaning of the settings that several models share; a model class's `settings_help` has
# its own (and may say more of a shared one).
SETTINGS_HELP = {
    "compact_layers": "Layers made diagonal-circulant, comma-separated: " + ", ".join(
        model_utils.COMPACT_LAYERS) + " (moe_gates or moe_experts: one part of the MoE).",
    "k_factor": "Diagonal-circulant factors per compact layer (2*k*n weights each).",
    "circulant_diagonal_side": "input (each factor C*D, default) or output (D*C, the first "
                               "form).",
    "circulant_expansion": "For more outputs than inputs: blocks (independent n x n products "
                           "side by side, default) or pad (one product of size >= outputs).",
    "circulant_leaky_slope": "Slope of a leaky ReLU between circulant factors (1: linear).",
    "circulant_regularized": "L2 penalty on the circulant and diagonal vectors too.",
    "moe_num_mixtures": "Experts per class in the mixture of experts.",
    "moe_l2": "L2 penalty on the mixture of experts' weights.",
    "moe_prob_gating": "Context Gating on the mixture of experts' output probabilities.",
    "l2_penalty": "L2 penalty on the logistic layer's weights.",
    "video_level_classifier_model": "The classifier: LogisticModel or MoeModel.",
    "iterations": "Frames sampled per video (0: every real frame).",
    "sample_random_frames": "Sample frames at random in training (evenly spaced otherwise, and "
                            "always in evaluation).",
    "video_size": "How many of the features are video (the rest audio).",
}

def model_names():
    return sorted(_REGISTRY)


def get_model_class(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return _REGISTRY[name]


def setting_help(name, key):
    """The meaning of model `name`'s setting `key` ('' if none is written)."""
    for cls in get_model_class(name).__mro__:
        if key in vars(cls).get("settings_help", {}):
            return cls.settings_help[key]
    return SETTINGS_HELP.get(key, "")


def model_hyperparameters(name):
    """{argument: default} of a model's constructor (num_classes excluded)."""
    cls = get_model_class(name)
    signature = inspect.signature(cls.__init__)
    found = {p.name: p.default for p in signature.parameters.values()
             if p.name not in ("self", "num_classes", "kwargs")}
    found.update(getattr(cls, "hyperparameters", {}))  # those a model takes through **kwargs
    if "k_factor" in found:
        found.update(CIRCULANT_SETTINGS)
    return found


def measured_settings(name):
    """The settings of model `name` that train.py measures on the training data (no flags)."""
    return getattr(get_model_class(name), "data_settings", ())


def given_settings(name):
    """{setting: default} of the settings of model `name` that flags and callers give."""
    measured = measured_settings(name)
    return {k: v for k, v in model_hyperparameters(name).items() if k not in measured}


def all_hyperparameters():
    """The names of every model's settings, except those measured on the training data."""
    return {key for name in model_names() for key in given_settings(name)}


def unused_compact_layers(name, num_classes, settings):
    """The names in settings["compact_layers"] that make no layer of this model compact.

    Each is tried alone on a model that is constructed but not built (no weights created).
    """
    unused = []
    for layer in sorted(model_utils.parse_compact_layers(settings.get("compact_layers", ""))):
        model = build_model(name, num_classes, keras_name=f"probe_{layer}",
                            **{**settings, "compact_layers": layer})
        if not any(isinstance(each, circulant_ops.DiagonalCirculant)
                   or (isinstance(each, model_utils.ContextGating)  # built later
                       and each.compact)
                   for each in model._flatten_layers()):
            unused.append(layer)
    return unused


def build_model(name, num_classes, keras_name=None, **settings):
    """The model `name` with those of `settings` that it takes (others are ignored).

    keras_name: the Keras model's name (default: one derived from the class, numbered by Keras
    if taken).

    The circulant_* settings reach the model inside its k_factor (a `Circulant`); when they are
    absent (a model_flags.json of an earlier version) the layers keep their earlier form.
    """
    accepted = model_hyperparameters(name)
    chosen = {k: v for k, v in settings.items() if k in accepted}
    if "k_factor" in accepted:
        options = {key.removeprefix("circulant_"): chosen.pop(key, old)
                   for key, old in _CIRCULANT_BEFORE_SETTINGS.items()}
        chosen["k_factor"] = model_utils.Circulant(int(chosen.get("k_factor", 1)), **options)
    if keras_name:
        chosen["name"] = keras_name
    return get_model_class(name)(num_classes, **chosen)


