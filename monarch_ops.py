"""Monarch layers: a Dense layer whose matrix is a product of two block-diagonal factors with a
fixed permutation between them (Dao et al., "Monarch: Expressive Structured Matrices for
Efficient and Accurate Training", ICML 2022).

For n inputs, `units` outputs and b blocks: the input, zero-padded to b·p (p = ceil(n / b)), is
cut into b blocks of p values; the first factor maps each block to q values (b matrices [q, p]);
the b·q values are regrouped by a stride permutation (value j of block i goes to block
(i·q + j) mod b, place (i·q + j) div b) so that each block of the second factor sees one value
from q different blocks of the first; the second factor maps each block to s = ceil(units / b)
values (b matrices [s, q]); the output, regrouped the same way (place t of block i is output
t·b + i), is cut to `units`. q = min(p, s). Weights b·q·(p + s): at n = units and b = sqrt(n),
2·n·sqrt(n) instead of n².
"""

import math

import keras
import numpy as np
import tensorflow as tf


def block_sizes(n_in, units, blocks):
    """(p, q, s): the input, middle and output size of each block."""
    p, s = math.ceil(n_in / blocks), math.ceil(units / blocks)
    return p, min(p, s), s


def weight_count(n_in, units, blocks, use_bias=True):
    p, q, s = block_sizes(n_in, units, blocks)
    return blocks * q * (p + s) + (units if use_bias else 0)


def default_blocks(n_in, units):
    """About the square root of the smaller side: the Monarch paper's choice for a square matrix."""
    return max(1, round(math.sqrt(min(n_in, units))))


def check_blocks(blocks, n_in, units, setting="monarch_blocks"):
    """A ValueError naming `setting` when there are more blocks than the layer's smaller side
    (a block would hold padding only)."""
    if blocks > min(n_in, units):
        raise ValueError(f"{setting}={blocks} is more than the smaller side of a {n_in} -> "
                         f"{units} layer: use at most {min(n_in, units)}")


@keras.saving.register_keras_serializable(package="yt8m")

def matrix_of(layer):
    """The [units, n_in] matrix A of a built layer's y = x A^T + bias, from the layer itself
    (its outputs on the identity, less its `bias`), in float64: `dense_matrix()` of the kinds
    whose matrix is never stored."""
    bias = layer.bias if layer.bias is not None else 0.0
    return tf.transpose(layer.call(tf.eye(layer.n_in)) - bias).numpy().astype(np.float64)


class Monarch(keras.layers.Layer):
    """A drop-in for keras.layers.Dense (any leading dimensions) with a Monarch matrix.

    Weights: `first` [b, q, p], `second` [b, s, q], `bias` [units]. Each factor starts with
    variance 1/(its block's inputs), so the layer keeps the variance of its input.
    """

    def __init__(self, units, blocks=0, use_bias=True, regularizer=None,
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units, self.blocks, self.use_bias = int(units), int(blocks), use_bias
        self.regularizer = keras.regularizers.get(regularizer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.n_in = int(input_shape[-1])
        if self.blocks <= 0:
            self.blocks = default_blocks(self.n_in, self.units)
        check_blocks(self.blocks, self.n_in, self.units)
        b = self.blocks
        self.p, self.q, self.s = block_sizes(self.n_in, self.units, b)
        self.first = self.add_weight(
            name="first", shape=(b, self.q, self.p), regularizer=self.regularizer,
            initializer=keras.initializers.RandomNormal(stddev=1 / math.sqrt(self.p)))
        self.second = self.add_weight(
            name="second", shape=(b, self.s, self.q), regularizer=self.regularizer,
            initializer=keras.initializers.RandomNormal(stddev=1 / math.sqrt(self.q)))
        self.bias = self.add_weight(name="bias", shape=(self.units,),
                                    initializer=self.bias_initializer) if self.use_bias else None

    def call(self, x):
        b, p, q, s = self.blocks, self.p, self.q, self.s
        leading = tf.shape(x)[:-1]
        rows = tf.reshape(x, [-1, self.n_in])  # (N, n_in)
        if b * p > self.n_in:
            rows = tf.pad(rows, [[0, 0], [0, b * p - self.n_in]])
        h = tf.einsum("nbp,bqp->nbq", tf.reshape(rows, [-1, b, p]),
                      tf.cast(self.first, rows.dtype))  # (N, b, q)
        # The stride permutation: flat value f = i*q + j goes to block f mod b, place f div b.
        h = tf.transpose(tf.reshape(h, [-1, q, b]), [0, 2, 1])  # (N, b, q)
        y = tf.einsum("nbq,bsq->nbs", h, tf.cast(self.second, h.dtype))  # (N, b, s)
        y = tf.reshape(tf.transpose(y, [0, 2, 1]), [-1, s * b])[:, :self.units]  # (N, units)
        if self.bias is not None:
            y = y + tf.cast(self.bias, y.dtype)
        return tf.reshape(y, tf.concat([leading, [self.units]], 0))

    structure_kind = "monarch"  # layer_kinds' protocol

    def structured_variables(self):
        return [self.first, self.second]

    def dense_weight_count(self):
        return self.n_in * self.units + (self.units if self.use_bias else 0)

    def dense_matrix(self):
        return matrix_of(self)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "blocks": self.blocks,
                "use_bias": self.use_bias,
                "regularizer": keras.regularizers.serialize(self.regularizer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
