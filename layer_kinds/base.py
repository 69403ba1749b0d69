"""What every layer kind is: a frozen dataclass of its options (`option`), with its name, the
option that sizes it, its Keras layer and its weight count.

Every layer a kind builds computes y = x A^T + bias on any leading dimensions, names its kind
in `structure_kind`, and answers
- `dense_matrix()`: its [units, n_in] matrix A in float64 (tests, inspection);
- `structured_variables()`: the variables that hold its structure (empty for dense), which the
  learning-rate scales, recomputation and the model summary work on;
- `dense_weight_count()`: the weights of the dense layer it stands for.
"""

import dataclasses

import keras


def option(default, setting, meaning, choices=()):
    """An option of a kind: its default, the model setting (and train.py flag) that gives it,
    its meaning for --help, and its valid values (checked by the settings)."""
    return dataclasses.field(default=default, metadata={
        "setting": setting, "meaning": meaning, "choices": tuple(choices)})


@dataclasses.dataclass(frozen=True)
class Kind:
    """The base of the kinds. A kind sets `name`, `size` (the option that
    `--compact_layers=SITE=KIND:SIZE` sets for one site; None: no size), `layer` and
    `weight_count`, and checks its options in `__post_init__` (a one-line ValueError that names
    the setting)."""

    name = ""
    size = None

    @classmethod
    def options(cls):
        return dataclasses.fields(cls)

    @classmethod
    def from_settings(cls, settings, size=None):
        """The kind with its options from a model's settings (an object with one attribute per
        setting), `size` (where not None) for its size option."""
        values = {o.name: getattr(settings, o.metadata["setting"]) for o in cls.options()}
        if size is not None:
            values[cls.size] = size
        return cls(**values)

    @classmethod
    def setting_of(cls, option_name):
        """The model setting (and train.py flag) that gives an option: 'k_factor' for the
        circulant k_factor."""
        return next(o.metadata["setting"] for o in cls.options() if o.name == option_name)

    def build(self, units, use_bias=True, l2=0.0, bias=0.0, name=None):
        """The Keras layer of this kind (l2: its weights' penalty; bias: the bias's initial
        value)."""
        regularizer = keras.regularizers.L2(l2) if l2 else None
        return self.layer(units, use_bias, regularizer, keras.initializers.Constant(bias), name)

    def layer(self, units, use_bias, regularizer, bias_initializer, name):
        raise NotImplementedError

    def weight_count(self, n_in, units, use_bias=True):
        """Weights of this kind's n_in -> units layer, bias included."""
        raise NotImplementedError

