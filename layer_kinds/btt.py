"""The Block Tensor-Train kind (BTT): two block factors with a rank between them (Qiu et al.,
"Compute Better Spent: Replacing Dense Layers with Structured Matrices", ICML 2024;
Potapczynski et al., "Searching for Efficient Linear Layers over a Continuous Space of
Structured Matrices", 2024).

For n inputs, `units` outputs, b blocks and rank r: the input, zero-padded to b·p
(p = ceil(n / b)), is cut into b blocks x[j, i] (block j, place i); the output, b·s values
(s = ceil(units / b)) cut to `units`, is y[k, a] (block k, place a; output k·s + a). Then

    h[j, k, t] = sum_i  R[j, k, t, i] x[j, i]          R: [b, b, r, p]
    y[k, a]    = sum_j,t L[k, a, j, t] h[j, k, t]      L: [b, s, b, r]

so A[(k, a), (j, i)] = sum_t L[k, a, j, t] R[j, k, t, i]. Weights r·b²·(p + s) + bias: at a
square n x n with b = sqrt(n), 2·r·n·sqrt(n). One block is a low-rank layer of rank r; rank 1
is a Monarch matrix (middle blocks of b values).
"""

import dataclasses
import math

import keras
import tensorflow as tf

import monarch_ops
from layer_kinds.base import Kind, option


def block_sizes(n_in, units, blocks):
    """(p, s): the input and output size of each block."""
    return math.ceil(n_in / blocks), math.ceil(units / blocks)


@dataclasses.dataclass(frozen=True)
class BttKind(Kind):
    name = "btt"
    size = "rank"

    rank: int = option(1, "btt_rank", "Rank r between the two block factors of the btt layers "
                                      "(r*b^2*(p+s) weights; rank 1 is a Monarch matrix).")
    blocks: int = option(0, "btt_blocks", "Blocks b of each factor of the btt layers (0: about "
                                          "the square root of the layer's smaller side; 1: a "
                                          "low-rank layer).")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"--{self.setting_of('rank')} must be at least 1, got {self.rank}")
        if self.blocks < 0:
            raise ValueError(f"--{self.setting_of('blocks')} must be 0 (automatic) or more, got "
                             f"{self.blocks}")

    def layer(self, units, use_bias, regularizer, bias_initializer, name):
        return BlockTensorTrain(units, self.rank, self.blocks, use_bias, regularizer,
                                bias_initializer, name=name)

    def weight_count(self, n_in, units, use_bias=True):
        b = self.blocks or monarch_ops.default_blocks(n_in, units)
        p, s = block_sizes(n_in, units, b)
        return self.rank * b * b * (p + s) + (units if use_bias else 0)


@keras.saving.register_keras_serializable(package="yt8m")
class BlockTensorTrain(keras.layers.Layer):
    """A drop-in for keras.layers.Dense (any leading dimensions) with a BTT matrix.

    Weights: `first` R [b, b, r, p], `second` L [b, s, b, r], `bias` [units]. R starts with
    variance 1/p and L with 1/(b·r), so the layer keeps the variance of its input.
    """

    structure_kind = "btt"  # layer_kinds' protocol

    def __init__(self, units, rank=1, blocks=0, use_bias=True, regularizer=None,
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units, self.rank, self.blocks, self.use_bias = int(units), int(rank), int(blocks), \
            use_bias
        self.regularizer = keras.regularizers.get(regularizer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.n_in = int(input_shape[-1])
        if self.blocks <= 0:
            self.blocks = monarch_ops.default_blocks(self.n_in, self.units)
        monarch_ops.check_blocks(self.blocks, self.n_in, self.units, setting="btt_blocks")
        b, r = self.blocks, self.rank
        self.p, self.s = block_sizes(self.n_in, self.units, b)
        self.first = self.add_weight(
            name="first", shape=(b, b, r, self.p), regularizer=self.regularizer,
            initializer=keras.initializers.RandomNormal(stddev=1 / math.sqrt(self.p)))
        self.second = self.add_weight(
            name="second", shape=(b, self.s, b, r), regularizer=self.regularizer,
            initializer=keras.initializers.RandomNormal(stddev=1 / math.sqrt(b * r)))
        self.bias = self.add_weight(name="bias", shape=(self.units,),
                                    initializer=self.bias_initializer) if self.use_bias else None

    def call(self, x):
        b, p, s = self.blocks, self.p, self.s
        leading = tf.shape(x)[:-1]
        rows = tf.reshape(x, [-1, self.n_in])  # (N, n_in)
        if b * p > self.n_in:
            rows = tf.pad(rows, [[0, 0], [0, b * p - self.n_in]])
        h = tf.einsum("nji,jkti->njkt", tf.reshape(rows, [-1, b, p]),
                      tf.cast(self.first, rows.dtype))  # (N, b, b, r)
        y = tf.einsum("njkt,kajt->nka", h, tf.cast(self.second, h.dtype))  # (N, b, s)
        y = tf.reshape(y, [-1, b * s])[:, :self.units]  # (N, units)
        if self.bias is not None:
            y = y + tf.cast(self.bias, y.dtype)
        return tf.reshape(y, tf.concat([leading, [self.units]], 0))

    def structured_variables(self):
        return [self.first, self.second]

    def dense_weight_count(self):
        return self.n_in * self.units + (self.units if self.use_bias else 0)

    def dense_matrix(self):
        return monarch_ops.matrix_of(self)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "rank": self.rank,
                "blocks": self.blocks, "use_bias": self.use_bias,
                "regularizer": keras.regularizers.serialize(self.regularizer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
