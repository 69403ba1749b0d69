"""Pieces the models share: compact-layer choice (`linear`: dense, diagonal-circulant or low
rank), frame sampling and masked pooling, Context Gating, the logistic and Mixture-of-Experts
classifiers, and the walks over a built model's layers (circulant vectors, batch norms).
"""

import collections
import dataclasses
import math

import keras
import tensorflow as tf

import circulant_ops

COMPACT_LAYERS = ("embedding", "fc", "moe", "moe_gates", "moe_experts", "gating")


@dataclasses.dataclass(frozen=True)
class Circulant:
    """How `linear` makes its diagonal-circulant layers: k factors and the layer's options
    (circulant_ops.DiagonalCirculant). Models pass it where they pass `k_factor`."""

    k: int = 1
    diagonal_side: str = circulant_ops.DEFAULT_DIAGONAL_SIDE
    expansion: str = circulant_ops.DEFAULT_EXPANSION
    leaky_slope: float = 1.0
    regularized: bool = True  # False: no L2 penalty on the diagonal and circulant vectors

    def __post_init__(self):
        circulant_ops.check_options(self.diagonal_side, self.expansion, self.leaky_slope,
                                    prefix="circulant_")  # as the model settings spell them


def parse_compact_layers(value):
    """'embedding,fc' (or a list) -> frozenset; unknown names raise with the valid ones."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(value) - set(COMPACT_LAYERS))
    if unknown:
        raise ValueError(f"unknown compact layer(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(COMPACT_LAYERS)}")
    return frozenset(value)


def linear(units, compact, k_factor=1, use_bias=True, l2=0.0, bias=0.0, name=None, rank=0):
    """Dense, or its diagonal-circulant replacement when `compact` (k_factor: an int or a
    `Circulant`), or when rank > 0 its low-rank replacement; bias: its initial value."""
    regularizer = keras.regularizers.L2(l2) if l2 else None
    bias_initializer = keras.initializers.Constant(bias)
    if compact:
        spec = k_factor if isinstance(k_factor, Circulant) else Circulant(int(k_factor))
        return circulant_ops.DiagonalCirculant(
            units, k_factors=spec.k, use_bias=use_bias,
            regularizer=regularizer if spec.regularized else None,
            bias_initializer=bias_initializer, diagonal_side=spec.diagonal_side,
            expansion=spec.expansion, leaky_slope=spec.leaky_slope, name=name)
    if rank:
        return LowRank(units, rank, use_bias, regularizer, bias_initializer, name=name)
    return keras.layers.Dense(units, use_bias=use_bias, kernel_regularizer=regularizer,
                              bias_initializer=bias_initializer, name=name)


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

    def call(self, x):
        return self.up(self.down(x))


def prior_logit(num_classes):
    """Initial bias of class outputs: every class starts near probability 1/num_classes.

    The starter starts them at 1/2; with thousands of classes and about three labels a video,
    the first epochs then go into pushing thousands of negatives down.
    """
    return -math.log(num_classes)


# -- frames ---------------------------------------------------------------------------------------

def sample_frames(features, num_frames, count, random=True, seed=None):
    """`count` frames of each video, chosen among its real frames.

    features [B, T, F], num_frames [B] -> [B, count, F]. random=True draws uniformly with
    replacement (the starter's SampleRandomFrames); random=False takes evenly spaced frames, the
    same every time (for evaluation).
    """
    frames = tf.maximum(tf.cast(num_frames, tf.float32), 1.0)[:, None]  # (B, 1)
    if random:
        position = tf.random.uniform([tf.shape(features)[0], count], seed=seed)
    else:
        position = (tf.range(count, dtype=tf.float32)[None, :] + 0.5) / count
    index = tf.minimum(tf.cast(position * frames, tf.int32), tf.cast(frames, tf.int32) - 1)
    return tf.gather(features, index, batch_dims=1)


def frame_mask(num_frames, length):
    """[B, length, 1] float mask of the real frames."""
    return tf.cast(tf.sequence_mask(num_frames, length), tf.float32)[:, :, None]


def masked_max(values, mask):
    """Max over frames (axis 1) of the real frames only; values [B, T, K], mask [B, T, 1]."""
    mask = tf.cast(mask, values.dtype)
    far_below = min(1e9, float(values.dtype.max) / 2)  # 1e9 overflows float16
    return tf.reduce_max(values + (mask - 1.0) * far_below, axis=1)


def masked_mean(values, mask):
    mask = tf.cast(mask, values.dtype)
    return tf.reduce_sum(values * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


# -- shared layers --------------------------------------------------------------------------------

class ContextGating(keras.layers.Layer):
    """y = x * sigmoid(BN(x W)), W [d, d] (Miech, Laptev & Sivic 2017)."""

    def __init__(self, compact=False, k_factor=1, batch_norm=True, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.compact, self.k_factor, self.batch_norm, self.l2 = compact, k_factor, batch_norm, l2

    def build(self, input_shape):
        self.transform = linear(int(input_shape[-1]), self.compact, self.k_factor,
                                use_bias=not self.batch_norm, l2=self.l2, name="gating_weights")
        self.norm = keras.layers.BatchNormalization(name="gating_bn") if self.batch_norm else None

    def call(self, x, training=False):
        gates = self.transform(x)
        if self.norm is not None:
            gates = self.norm(gates, training=training)
        # In x's precision: float32 for class probabilities under a mixed-precision policy.
        return x * tf.sigmoid(tf.cast(gates, x.dtype))


class LogisticClassifier(keras.layers.Layer):
    """sigmoid(x W + b), b starting at the class prior (prior_logit)."""

    def __init__(self, num_classes, compact=False, k_factor=1, l2=0.0, rank=0, **kwargs):
        super().__init__(**kwargs)
        self.logits = linear(num_classes, compact, k_factor, l2=l2,
                             bias=prior_logit(num_classes), name="logistic", rank=rank)

    def call(self, x, training=False):
        return tf.sigmoid(tf.cast(self.logits(x), tf.float32))  # probabilities in float32


def logistic_classifier(num_classes, settings):
    """The logistic models' classifier, from their settings (model_settings.Logistic, Compact)."""
    return LogisticClassifier(num_classes, "moe" in settings.compact(), settings.circulant(),
                              settings.l2_penalty, name="classifier")


class MoeClassifier(keras.layers.Layer):
    """Mixture of experts: gates softmax over M+1 (one dummy expert), experts sigmoid.

    compact: True/False for both parts, or the compact layer names ("moe": both parts,
    "moe_gates" or "moe_experts": one).

    probabilities = sum_m gate_m * expert_m, per class. Optionally Context Gating on the output
    probabilities (`prob_gating`, Miech et al. 2017). rank > 0: the dense gates and experts are
    low-rank products (LowRank).
    """

    def __init__(self, num_classes, num_mixtures=2, l2=1e-8, compact=False, k_factor=1,
                 prob_gating=False, compact_gating=False, rank=0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.num_mixtures = num_classes, num_mixtures
        if isinstance(compact, bool):
            compact_gates = compact_experts = compact
        else:  # the set of compact layer names: "moe" is both parts
            compact_gates = bool({"moe", "moe_gates"} & set(compact))
            compact_experts = bool({"moe", "moe_experts"} & set(compact))
        self.gates = linear(num_classes * (num_mixtures + 1), compact_gates, k_factor,
                            use_bias=False, l2=l2, name="gates", rank=rank)
        self.experts = linear(num_classes * num_mixtures, compact_experts, k_factor, l2=l2,
                              bias=prior_logit(num_classes), name="experts", rank=rank)
        self.prob_gating = (ContextGating(compact_gating, k_factor, name="prob_gating")
                            if prob_gating else None)

    def call(self, x, training=False):
        m = self.num_mixtures
        # Probabilities in float32 whatever the precision policy: float16 cannot tell 0.9999
        # from 1, which the loss needs.
        gates = tf.nn.softmax(tf.reshape(tf.cast(self.gates(x), tf.float32),
                                         [-1, self.num_classes, m + 1]))
        experts = tf.sigmoid(tf.reshape(tf.cast(self.experts(x), tf.float32),
                                        [-1, self.num_classes, m]))
        probabilities = tf.reduce_sum(gates[:, :, :m] * experts, axis=2)  # (B, C)
        if self.prob_gating is not None:
            probabilities = self.prob_gating(probabilities, training=training)
        return probabilities


def sublayers(layer):
    """The layers that `layer` holds as attributes (or in list or tuple attributes), in the
    order they were set. Keras 3 has no public walk below a model's own `.layers`, and these
    attributes are where our layers keep their parts."""
    found = []
    for value in vars(layer).values():
        for each in value if isinstance(value, (list, tuple)) else (value,):
            if (isinstance(each, keras.layers.Layer) and each is not layer
                    and not any(each is seen for seen in found)):
                found.append(each)
    return found


def all_layers(layer):
    """`layer` and every layer inside it, in the order of Keras' own walk (the optimizer's
    state of the circulant variables follows this order in checkpoints)."""
    found, waiting = [layer], collections.deque(sublayers(layer))
    while waiting:
        each = waiting.popleft()
        if not any(each is seen for seen in found):
            found.append(each)
            waiting.extendleft(sublayers(each))
    return found


def circulant_variables(model):
    """The diagonal and circulant vectors of every diagonal-circulant layer of `model`."""
    return [v for layer in all_layers(model)
            if isinstance(layer, circulant_ops.DiagonalCirculant)
            for v in (layer.diagonals, layer.circulants) if v.trainable]


def set_circulant_recompute(model, recompute):
    """Whether every diagonal-circulant layer of `model` recomputes its intermediate values in
    the backward pass instead of keeping them (less memory, more time; same results)."""
    for layer in all_layers(model):
        if isinstance(layer, circulant_ops.DiagonalCirculant):
            layer.recompute = bool(recompute)


def set_batch_norm_momentum(model, momentum):
    """Momentum of every batch-norm layer's moving statistics (evaluation's mean and variance).

    At 0.99 (Keras' default) they average about the last 100 steps. Early in training, or at a
    high learning rate, the weights move faster than that and evaluation sees stale statistics.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"--batch_norm_momentum must be in [0, 1), got {momentum}")
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
