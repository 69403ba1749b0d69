"""Pieces the models share: the registry, compact-layer choice, frame sampling, Context Gating,
the Mixture-of-Experts classifier, and the model summary.

Every model is a `keras.Model` called on the reader's batch dict (`features`, `num_frames`) and
returning class probabilities [B, num_classes].
"""

import dataclasses
import inspect
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


# Model settings of every model with compact layers (circulant_ + a field of Circulant but k,
# which is k_factor), and their defaults for new runs.
CIRCULANT_SETTINGS = {f"circulant_{f.name}": f.default for f in dataclasses.fields(Circulant)
                      if f.name != "k"}
# What a model_flags.json written before these settings existed meant by their absence.
_CIRCULANT_BEFORE_SETTINGS = {"circulant_diagonal_side": circulant_ops.FIRST_DIAGONAL_SIDE,
                              "circulant_expansion": circulant_ops.FIRST_EXPANSION,
                              "circulant_leaky_slope": 1.0, "circulant_regularized": True}

# The meaning of the settings that several models share; a model class's `settings_help` has
# its own (and may say more of a shared one).
SETTINGS_HELP = {
    "compact_layers": "Layers made diagonal-circulant, comma-separated: " + ", ".join(
        COMPACT_LAYERS) + " (moe_gates or moe_experts: one part of the MoE).",
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

_REGISTRY = {}


def register(cls):
    """Class decorator: make a model available by its class name (`--model=Name`)."""
    _REGISTRY[cls.__name__] = cls
    return cls


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


def all_hyperparameters():
    """The names of every model's settings, except those measured on the training data."""
    return {key for name in model_names()
            for key in model_hyperparameters(name)
            if key not in getattr(get_model_class(name), "data_settings", ())}


def unused_compact_layers(name, num_classes, settings):
    """The names in settings["compact_layers"] that make no layer of this model compact.

    Each is tried alone on a model that is constructed but not built (no weights created).
    """
    unused = []
    for layer in sorted(parse_compact_layers(settings.get("compact_layers", ""))):
        model = build_model(name, num_classes, keras_name=f"probe_{layer}",
                            **{**settings, "compact_layers": layer})
        if not any(isinstance(each, circulant_ops.DiagonalCirculant)
                   or (isinstance(each, ContextGating) and each.compact)  # made when built
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
        chosen["k_factor"] = Circulant(int(chosen.get("k_factor", 1)), **options)
    if keras_name:
        chosen["name"] = keras_name
    return get_model_class(name)(num_classes, **chosen)


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
    return tf.reduce_max(values + (mask - 1.0) * 1e9, axis=1)


def masked_mean(values, mask):
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
        return x * tf.sigmoid(gates)


class LogisticClassifier(keras.layers.Layer):
    """sigmoid(x W + b), b starting at the class prior (prior_logit)."""

    def __init__(self, num_classes, compact=False, k_factor=1, l2=0.0, rank=0, **kwargs):
        super().__init__(**kwargs)
        self.logits = linear(num_classes, compact, k_factor, l2=l2,
                             bias=prior_logit(num_classes), name="logistic", rank=rank)

    def call(self, x, training=False):
        return tf.sigmoid(self.logits(x))


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
        gates = tf.nn.softmax(tf.reshape(self.gates(x), [-1, self.num_classes, m + 1]))
        experts = tf.sigmoid(tf.reshape(self.experts(x), [-1, self.num_classes, m]))
        probabilities = tf.reduce_sum(gates[:, :, :m] * experts, axis=2)  # (B, C)
        if self.prob_gating is not None:
            probabilities = self.prob_gating(probabilities, training=training)
        return probabilities


# -- summary and budget ---------------------------------------------------------------------------

def _weight_layers(layer):
    """(layer, weights it owns directly) for each layer that owns weights, depth first."""
    children = [c for c in layer._flatten_layers(include_self=False, recursive=False)]
    found = []
    for child in children:
        found.extend(_weight_layers(child))
    inner = {id(w) for c in children for w in c.weights}
    own = [w for w in layer.weights if id(w) not in inner]
    if own:
        found.append((layer, own))
    return found


def summarize(model):
    """(rows, totals) of a built model: per layer (path, kind, weights, dense-equivalent)."""
    rows = []
    for layer, own in _weight_layers(model):
        weights = sum(math.prod(w.shape) for w in own)
        dense = (layer.dense_weight_count()
                 if isinstance(layer, circulant_ops.DiagonalCirculant) else weights)
        rows.append((layer.path, type(layer).__name__, weights, dense))
    total = model.count_params()
    dense_total = total + sum(d - w for _, _, w, d in rows)
    return rows, {"weights": total, "dense_weights": dense_total,
                  "mb": total * 4 / 2**20, "compression": dense_total / total}


def format_summary(model, name):
    rows, totals = summarize(model)
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"model {name}: {totals['weights']:,} weights, {totals['mb']:.1f} MB at float32; "
             f"the same model with dense layers: {totals['dense_weights']:,} "
             f"(compression {totals['compression']:.2f}x)",
             f"  {'layer':<{width}}  {'kind':<20} {'weights':>13} {'dense':>13}"]
    for path, kind, weights, dense in rows:
        lines.append(f"  {path:<{width}}  {kind:<20} {weights:>13,} {dense:>13,}")
    return "\n".join(lines)


def check_budget(model, max_model_mb):
    """Raise ValueError when the model's float32 weights exceed max_model_mb (0: no limit)."""
    _, totals = summarize(model)
    if max_model_mb and totals["mb"] > max_model_mb:
        raise ValueError(f"the model needs {totals['mb']:.1f} MB at float32, over "
                         f"--max_model_mb={max_model_mb}")


def circulant_variables(model):
    """The diagonal and circulant vectors of every diagonal-circulant layer of `model`."""
    return [v for layer in model._flatten_layers()
            if isinstance(layer, circulant_ops.DiagonalCirculant)
            for v in (layer.diagonals, layer.circulants) if v.trainable]


def set_batch_norm_momentum(model, momentum):
    """Momentum of every batch-norm layer's moving statistics (evaluation's mean and variance).

    At 0.99 (Keras' default) they average about the last 100 steps. Early in training, or at a
    high learning rate, the weights move faster than that and evaluation sees stale statistics.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"--batch_norm_momentum must be in [0, 1), got {momentum}")
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
