"""Typed model settings: each model class has a frozen dataclass `Settings` beside it, every
field with its default, type and meaning; train.py's flags, their --help and model_flags.json's
"settings" come from those fields.

The groups of settings that several models share are defined here once; a model's `Settings`
inherits the groups it takes and may give a shared setting another default by declaring it
again without a meaning (the group's meaning stays).

    @settings
    class Settings(model_settings.Moe, model_settings.Compact):
        bottleneck_size: int = setting(512, "Units of the bottleneck layer (0: none).")
"""

import dataclasses

import layer_kinds
import model_utils


def setting(default, meaning, choices=(), measured=False, unset_from=None):
    """A settings field. choices: its valid values (listed in --help, checked); measured: set
    by train.py from the training data, never a flag; unset_from: the setting whose value it
    takes when it is not given (its older spelling: model_flags.describe and migrate)."""
    return dataclasses.field(default=default, metadata={
        "meaning": meaning, "choices": tuple(choices), "measured": measured,
        "unset_from": unset_from})


def settings(cls):
    """The decorator of every settings class: frozen, keyword-only dataclass."""
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


def _declared(settings_class, name, key, default):
    """Metadata `key` of field `name`, from the class that first declared it with a value (a
    field given another default further down has none)."""
    for cls in settings_class.__mro__:
        field = vars(cls).get("__dataclass_fields__", {}).get(name)
        if field is not None and field.metadata.get(key):
            return field.metadata[key]
    return default


def meaning(settings_class, name):
    return _declared(settings_class, name, "meaning", "")


def choices(settings_class, name):
    return _declared(settings_class, name, "choices", ())


def unset_from(settings_class):
    """{setting: the setting whose value it takes when not given} of a settings class."""
    return {f.name: f.metadata["unset_from"] for f in dataclasses.fields(settings_class)
            if f.metadata.get("unset_from")}


@settings
class ModelSettings:
    """The base: every value is checked against its field's type and choices (a one-line
    ValueError); an int given for a float field becomes a float."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), field.type
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, field.name, value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"model setting {field.name} must be {kind.__name__}, "
                                 f"got {value!r}")
            valid = choices(type(self), field.name)
            if valid and value not in valid:
                raise ValueError(f"model setting {field.name} must be one of "
                                 f"{', '.join(map(str, valid))}, got {value!r}")


def _kind_options():
    """(setting, type, field) of every layer kind's options (layer_kinds.KINDS), in the
    registry's order: the model settings that give them."""
    return [(o.metadata["setting"], o.type,
             setting(o.default, o.metadata["meaning"], o.metadata["choices"]))
            for kind in layer_kinds.KINDS.values() for o in kind.options()]


def _compact_layers_meaning():
    sized = list(layer_kinds.SIZED.values())
    return ("Places made structured, comma-separated, each SITE (diagonal-circulant), SITE=KIND "
            f"or SITE=KIND:SIZE (SIZE: that site's own {', '.join(sized[:-1])} or {sized[-1]}); "
            "sites " + ", ".join(model_utils.SITES) + " (moe: gates, experts and a logistic "
            "classifier; fc: every hidden layer, bottleneck included); kinds "
            + ", ".join(layer_kinds.KINDS) + ".")


@settings
class _CompactSites(ModelSettings):
    """Which places are structured (compact_layers), of which kind, and each kind's options:
    the fields of Compact, made from the layer kinds' registry."""

    def __post_init__(self):
        super().__post_init__()
        for site in self.compact():
            self.kind_at(site)

    def compact(self):
        """{site: (kind, size or None)} of the places named in compact_layers (unknown names
        raise)."""
        return model_utils.parse_compact_layers(self.compact_layers)

    def kind_at(self, site):
        """The layer kind at `site` (layer_kinds): dense unless named, or named through the
        broader site it falls back to, with this model's options, the site's own size where
        compact_layers gives one."""
        kinds = self.compact()
        kind, size = kinds.get(site) or kinds.get(model_utils.FALLBACK.get(site), ("dense", None))
        return layer_kinds.get(kind).from_settings(self, size)

    def structure(self, site):
        """What a model asks for its layer(s) at `site`: kind_at(site), the site counted among
        those the model has (asked_sites)."""
        object.__setattr__(self, "_asked", {*getattr(self, "_asked", ()), site})
        return self.kind_at(site)

    def asked_sites(self):
        """The sites whose kind a model built on these settings asked for."""
        return set(getattr(self, "_asked", ()))


Compact = dataclasses.make_dataclass(
    "Compact", [("compact_layers", str, setting("", _compact_layers_meaning())),
                *_kind_options()],
    bases=(_CompactSites,), frozen=True, kw_only=True)
Compact.__module__ = __name__


@settings
class Moe(ModelSettings):
    moe_num_mixtures: int = setting(2, "Experts per class in the mixture of experts.")
    moe_l2: float = setting(1e-8, "L2 penalty on the mixture of experts' weights.")


@settings
class ProbGating(ModelSettings):
    moe_prob_gating: bool = setting(False, "Context Gating on the mixture of experts' output "
                                           "probabilities.")


@settings
class Logistic(ModelSettings):
    l2_penalty: float = setting(1e-8, "L2 penalty on the logistic layer's weights.")


@settings
class Classifier(ModelSettings):
    video_level_classifier_model: str = setting(
        "MoeModel", "The classifier.", choices=("LogisticModel", "MoeModel"))


@settings
class Frames(ModelSettings):
    iterations: int = setting(30, "Frames sampled per video (0: every real frame).")
    sample_random_frames: bool = setting(
        True, "Sample frames at random in training (evenly spaced otherwise, and always in "
              "evaluation).")


@settings
class VideoSize(ModelSettings):
    video_size: int = setting(1024, "How many of the features are video (the rest audio).")


def checked(model_class, value):
    """`value` if it is the model's `Settings` (None: the model's defaults)."""
    if value is None:
        return model_class.Settings()
    if type(value) is not model_class.Settings:
        raise TypeError(f"{model_class.__name__} takes {model_class.__name__}.Settings, got "
                        f"{type(value).__name__}")
    return value


def fields(settings_class, measured=None):
    """The fields of a settings class; measured: only (True) or none (False) of those measured
    on the training data."""
    return [f for f in dataclasses.fields(settings_class)
            if measured is None or f.metadata.get("measured", False) == measured]
