"""The kinds of linear layer a model can put at each of its places: dense, diagonal-circulant,
low rank and Monarch, behind one description (`Structure`) and one protocol.

Every layer that `Structure.build` makes computes y = x A^T + bias on any leading dimensions,
and answers:
- `dense_matrix()`: its [units, n_in] matrix A (tests, inspection);
- `structured_variables()`: the variables that hold its structure (empty for dense), which the
  learning-rate scale, recomputation and the model summary work on.
`Structure.weight_count(n_in, units)` gives its weights before it is built.
"""

import dataclasses

import keras
import numpy as np

import circulant_ops
import monarch_ops

KINDS = ("dense", "circulant", "low_rank", "monarch")
# The option that sizes each kind, which `--compact_layers=SITE=KIND:SIZE` sets for one site.
SIZE_OPTION = {"circulant": "k_factor", "low_rank": "low_rank", "monarch": "monarch_blocks"}


@dataclasses.dataclass(frozen=True)
class Structure:
    """A kind of linear layer with its options; each kind reads only its own."""

    kind: str = "dense"
    # circulant: k factors and the layer's options (circulant_ops.DiagonalCirculant)
    k_factor: int = 1
    diagonal_side: str = circulant_ops.DEFAULT_DIAGONAL_SIDE
    expansion: str = circulant_ops.DEFAULT_EXPANSION
    leaky_slope: float = 1.0
    regularized: bool = True  # False: no L2 penalty on the diagonal and circulant vectors
    # low_rank: the rank r of U V
    low_rank: int = 0
    # monarch: blocks of each factor (0: about the square root of the smaller side)
    monarch_blocks: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind == "circulant":
            if self.k_factor < 1:
                raise ValueError(f"--k_factor must be at least 1, got {self.k_factor}")
            circulant_ops.check_options(self.diagonal_side, self.expansion, self.leaky_slope,
                                        prefix="circulant_")  # as the model settings spell them
        if self.kind == "low_rank" and self.low_rank < 1:
            raise ValueError(f"a low_rank layer needs --low_rank of at least 1, got "
                             f"{self.low_rank}")
        if self.kind == "monarch" and self.monarch_blocks < 0:
            raise ValueError(f"--monarch_blocks must be 0 (automatic) or more, got "
                             f"{self.monarch_blocks}")

    def build(self, units, use_bias=True, l2=0.0, bias=0.0, name=None):
        """The Keras layer of this kind (bias: the bias's initial value)."""
        regularizer = keras.regularizers.L2(l2) if l2 else None
        bias_initializer = keras.initializers.Constant(bias)
        if self.kind == "circulant":
            return circulant_ops.DiagonalCirculant(
                units, k_factors=self.k_factor, use_bias=use_bias,
                regularizer=regularizer if self.regularized else None,
                bias_initializer=bias_initializer, diagonal_side=self.diagonal_side,
                expansion=self.expansion, leaky_slope=self.leaky_slope, name=name)
        if self.kind == "low_rank":
            return LowRank(units, self.low_rank, use_bias, regularizer, bias_initializer,
                           name=name)
        if self.kind == "monarch":
            return monarch_ops.Monarch(units, self.monarch_blocks, use_bias, regularizer,
                                       bias_initializer, name=name)
        return Dense(units, use_bias=use_bias, kernel_regularizer=regularizer,
                     bias_initializer=bias_initializer, name=name)

    def weight_count(self, n_in, units, use_bias=True):
        """Weights of this kind's n_in -> units layer, bias included."""
        bias = units if use_bias else 0
        if self.kind == "circulant":
            return circulant_ops.weight_count(n_in, units, self.k_factor, use_bias,
                                              self.expansion)
        if self.kind == "low_rank":
            return (n_in + units) * self.low_rank + bias
        if self.kind == "monarch":
            blocks = self.monarch_blocks or monarch_ops.default_blocks(n_in, units)
            return monarch_ops.weight_count(n_in, units, blocks, use_bias)
        return n_in * units + bias


@keras.saving.register_keras_serializable(package="yt8m")
class Dense(keras.layers.Dense):
    """keras.layers.Dense with the protocol of the structured kinds."""

    structure_kind = "dense"

    def dense_weight_count(self):
        return int(self.kernel.shape[0]) * self.units + (self.units if self.use_bias else 0)

    def structured_variables(self):
        return []

    def dense_matrix(self):
        return np.asarray(self.kernel.numpy(), np.float64).T


@keras.saving.register_keras_serializable(package="yt8m")
class LowRank(keras.layers.Layer):
    """A Dense layer whose [n_in, units] kernel is the product U V of rank `rank`:
    (n_in + units) * rank weights instead of n_in * units."""

    def __init__(self, units, rank, use_bias=True, regularizer=None, bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self.units, self.rank = units, rank
        self.down = keras.layers.Dense(rank, use_bias=False, kernel_regularizer=regularizer,
                                       name="u")
        self.up = keras.layers.Dense(units, use_bias=use_bias, kernel_regularizer=regularizer,
                                     bias_initializer=bias_initializer, name="v")

    structure_kind = "low_rank"

    def call(self, x):
        return self.up(self.down(x))

    def structured_variables(self):
        return [self.down.kernel, self.up.kernel]

    def dense_weight_count(self):
        return int(self.down.kernel.shape[0]) * self.units + (
            self.units if self.up.use_bias else 0)

    def dense_matrix(self):
        return (np.asarray(self.down.kernel.numpy(), np.float64)
                @ np.asarray(self.up.kernel.numpy(), np.float64)).T


def kind_of(layer):
    """The kind of a layer (its `structure_kind`; "dense" for any layer without one)."""
    return getattr(layer, "structure_kind", "dense")


def is_structured(layer):
    """A layer of a kind other than dense (it keeps fewer weights than its matrix)."""
    return kind_of(layer) != "dense"
