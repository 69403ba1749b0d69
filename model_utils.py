"""Pieces the models share: the places a model can make structured and `linear` (a layer of
one of the kinds of layer_kinds), frame sampling and masked pooling, Context Gating,
the logistic and Mixture-of-Experts classifiers, and the walks over a built model's layers
(structured variables, batch norms).
"""

import collections
import math

import keras
import tensorflow as tf

import layer_kinds

# The places a model can make structured, and the broader place each falls back to when only
# that one is named ("moe" makes the logistic classifier structured too, as it always has).
SITES = ("embedding", "fc", "bottleneck", "moe", "moe_gates", "moe_experts", "classifier",
         "gating")
FALLBACK = {"moe_gates": "moe", "moe_experts": "moe", "classifier": "moe", "bottleneck": "fc"}
DENSE = layer_kinds.KINDS["dense"]()


def parse_compact_layers(value):
    """'fc,moe_gates=low_rank:4' (or a list of such) -> {site: (kind, size)}: a site named
    alone is circulant; size, where given, is that site's own value of the kind's size setting
    (layer_kinds.SIZED: k_factor, low_rank, ...), None where the model's setting applies.
    Unknown sites, kinds or sizes raise with the valid ones."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    kinds = {}
    for item in value:
        site, _, kind = (part.strip() for part in item.partition("="))
        kind, _, size = (part.strip() for part in (kind or "circulant").partition(":"))
        kinds[site] = (kind, size or None)
    unknown = sorted(set(kinds) - set(SITES))
    if unknown:
        raise ValueError(f"unknown compact layer(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(SITES)} (each may be SITE=KIND or SITE=KIND:SIZE)")
    wrong = sorted({k for k, _ in kinds.values() if k not in layer_kinds.KINDS})
    if wrong:
        raise ValueError(f"unknown layer kind(s) {', '.join(wrong)} in --compact_layers; "
                         f"valid: {', '.join(layer_kinds.KINDS)}")
    for site, (kind, size) in kinds.items():
        if size is None:
            continue
        option = layer_kinds.SIZED.get(kind)
        if option is None or not size.isdigit() or int(size) < 1:
            raise ValueError(
                f"--compact_layers={site}={kind}:{size}: the size after ':' is a whole number "
                "of at least 1, the site's own "
                + ", ".join(f"{o} for {k}" for k, o in layer_kinds.SIZED.items())
                + ("" if option else f"; {kind} layers have no size"))
        kinds[site] = (kind, int(size))
    return kinds


def linear(units, structure=DENSE, use_bias=True, l2=0.0, bias=0.0, name=None):
    """A Dense layer, or its replacement of the kind `structure` (a layer_kinds kind; bias: its
    initial value)."""
    return structure.build(units, use_bias=use_bias, l2=l2, bias=bias, name=name)


class BeforeTraining:
    """The hook of the registered models for work a new run does once, before its first step."""

    def before_first_step(self, training_videos):
        """training_videos(): an ordered pass over the training files, batched. Returns a line
        for the log, or None (most models have nothing to do)."""
        return None


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

    def __init__(self, structure=DENSE, batch_norm=True, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.structure, self.batch_norm, self.l2 = structure, batch_norm, l2

    def build(self, input_shape):
        self.transform = linear(int(input_shape[-1]), self.structure,
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

    def __init__(self, num_classes, structure=DENSE, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.logits = linear(num_classes, structure, l2=l2, bias=prior_logit(num_classes),
                             name="logistic")

    def call(self, x, training=False):
        return tf.sigmoid(tf.cast(self.logits(x), tf.float32))  # probabilities in float32


def logistic_classifier(num_classes, settings):
    """The logistic models' classifier, from their settings (model_settings.Logistic, Compact)."""
    return LogisticClassifier(num_classes, settings.structure("classifier"),
                              settings.l2_penalty, name="classifier")


class MoeClassifier(keras.layers.Layer):
    """Mixture of experts: gates softmax over M+1 (one dummy expert), experts sigmoid; the gates
    and the experts each a linear layer of their kind.

    probabilities = sum_m gate_m * expert_m, per class. Optionally Context Gating on the output
    probabilities (Miech et al. 2017): `prob_gating` is the kind of its matrix (None: none).
    """

    def __init__(self, num_classes, num_mixtures=2, l2=1e-8, gates=DENSE, experts=DENSE,
                 prob_gating=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.num_mixtures = num_classes, num_mixtures
        self.gates = linear(num_classes * (num_mixtures + 1), gates, use_bias=False, l2=l2,
                            name="gates")
        self.experts = linear(num_classes * num_mixtures, experts, l2=l2,
                              bias=prior_logit(num_classes), name="experts")
        self.prob_gating = (ContextGating(prob_gating, name="prob_gating")
                            if prob_gating is not None else None)

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


def structured_variables(model, kind):
    """The structure-holding variables (trainable) of every layer of `kind` in `model`, in the
    order of the layer walk (the circulant optimizer's state follows it in checkpoints)."""
    return [v for layer in all_layers(model) if layer_kinds.kind_of(layer) == kind
            for v in layer.structured_variables() if v.trainable]


def set_circulant_recompute(model, recompute):
    """Whether every layer that can (the diagonal-circulant ones) recomputes its intermediate
    values in the backward pass instead of keeping them (less memory, more time; same
    results)."""
    for layer in all_layers(model):
        if hasattr(layer, "recompute"):
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
