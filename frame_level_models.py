"""Frame-level models: frames [B, T, F] and num_frames [B] -> class probabilities.

* From the YouTube-8M starter: FrameLevelLogisticModel, DbofModel, LstmModel.
* From Miech, Laptev & Sivic, "Learnable pooling with Context Gating for video classification"
  (2017): NetVLADModelLF, NetRVLADModelLF (LightVLAD), NetFVModelLF, SoftDbofModelLF,
  GatedDbofModelLF, GruModel. Video and audio frames are pooled separately (audio with half the
  clusters), then a hidden layer, Context Gating and a MoE with gated probabilities.
* From Araujo et al. (2018): TwoStreamModel, each stream embedded (DBoF, NetVLAD or NetFV) then
  a 512-unit layer with batch norm, concatenated, a 4-mixture MoE and Context Gating; and its
  "robust DBoF" (mean of max-pools over `n_bagging` random subsets of `iterations` frames).

`compact_layers` puts diagonal-circulant layers in place of dense ones: "embedding" (the
clusters' projection), "fc" (the hidden / per-stream layer), "moe", "gating".
"""

import functools

import keras
import tensorflow as tf

import model_settings as ms
from model_settings import setting, settings
from model_utils import (
    DENSE,
    BeforeTraining,
    ContextGating,
    LogisticClassifier,
    MoeClassifier,
    frame_mask,
    linear,
    logistic_classifier,
    masked_max,
    masked_mean,
    sample_frames,
)
from quantization import dequantize

_ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu6": tf.nn.relu6, "relu": tf.nn.relu}


def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


# -- pooling layers: (frames [B, T, D], mask [B, T, 1]) -> [B, out] ---------------------------

class _ClusterPooling(keras.layers.Layer):
    """Soft assignment of frames to K clusters: a = softmax(BN(X W)), padding frames zeroed."""

    def __init__(self, cluster_size, structure=DENSE, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.assign = linear(cluster_size, structure, use_bias=False, name="clusters")
        self.norm = keras.layers.BatchNormalization(name="clusters_bn")

    def assignment(self, frames, mask, training):
        return tf.nn.softmax(self.norm(self.assign(frames), training=training)) * mask  # (B,T,K)


class DbofPooling(keras.layers.Layer):
    """Deep bag of frames: X W (+BN) -> activation -> max (or mean) over the real frames."""

    def __init__(self, cluster_size, activation="sigmoid", batch_norm=True, pooling="max",
                 structure=DENSE, **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("max", "average"):
            raise ValueError(f"unknown pooling {pooling!r}; choose max or average")
        self.project = linear(cluster_size, structure, use_bias=not batch_norm, name="clusters")
        self.norm = keras.layers.BatchNormalization(name="clusters_bn") if batch_norm else None
        self.activation, self.pooling = _activation(activation), pooling

    def call(self, frames, mask, training=False):
        x = self.project(frames)  # (B, T, K)
        if self.norm is not None:
            x = self.norm(x, training=training)
        x = self.activation(x)
        return masked_max(x, mask) if self.pooling == "max" else masked_mean(x, mask)


def _flatten_normalized(v):
    """[B, D, K] -> intra-normalised over D, flattened to [B, D*K], L2-normalised."""
    v = tf.math.l2_normalize(v, axis=1)
    return tf.math.l2_normalize(tf.reshape(v, [-1, v.shape[1] * v.shape[2]]), axis=1)


class NetVLAD(_ClusterPooling):
    """V = a^T X - (sum_t a) * C, intra-normalised over D, flattened, L2-normalised.

    Without centres (`centres=False`) this is NetRVLAD / LightVLAD.
    """

    def __init__(self, cluster_size, centres=True, structure=DENSE, **kwargs):
        super().__init__(cluster_size, structure, **kwargs)
        self.centres = centres

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if self.centres:
            self.centre = self.add_weight(
                name="centres", shape=(dim, self.cluster_size),
                initializer=keras.initializers.RandomNormal(stddev=dim ** -0.5))

    def call(self, frames, mask, training=False):
        a = self.assignment(frames, mask, training)  # (B, T, K)
        vlad = tf.einsum("btk,btd->bdk", a, frames)  # (B, D, K)
        if self.centres:
            vlad -= tf.reduce_sum(a, axis=1)[:, None, :] * self.centre[None]
        return _flatten_normalized(vlad)


class NetFV(_ClusterPooling):
    """Fisher vectors with learned centres C and scales w (sigma = w^2 + 1e-6)."""

    def __init__(self, cluster_size, couple_weights=True, structure=DENSE, **kwargs):
        super().__init__(cluster_size, structure, **kwargs)
        self.couple_weights = couple_weights and structure.name == "dense"  # needs a dense W

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.scale = self.add_weight(
            name="covariances", shape=(dim, self.cluster_size),
            initializer=keras.initializers.RandomNormal(mean=1.0, stddev=dim ** -0.5))
        if not self.couple_weights:
            self.centre = self.add_weight(
                name="centres", shape=(dim, self.cluster_size),
                initializer=keras.initializers.RandomNormal(stddev=dim ** -0.5))

    def call(self, frames, mask, training=False):
        a = self.assignment(frames, mask, training)  # (B, T, K)
        centres = 0.01 * self.assign.kernel if self.couple_weights else self.centre  # (D, K)
        sigma = tf.square(self.scale) + 1e-6
        a_sum = tf.reduce_sum(a, axis=1)[:, None, :]  # (B, 1, K)
        ax = tf.einsum("btk,btd->bdk", a, frames)
        ax2 = tf.einsum("btk,btd->bdk", a, tf.square(frames))
        first = (ax - a_sum * centres) / sigma
        second = (ax2 + a_sum * tf.square(centres) - 2.0 * centres * ax) / tf.square(sigma) - a_sum
        return tf.concat([_flatten_normalized(first), _flatten_normalized(second)], axis=1)


class SoftDbof(_ClusterPooling):
    """Sum of soft assignments (L2-normalised), with their max-pool (L2-normalised) if asked."""

    def __init__(self, cluster_size, max_pool=True, structure=DENSE, **kwargs):
        super().__init__(cluster_size, structure, **kwargs)
        self.max_pool = max_pool

    def call(self, frames, mask, training=False):
        a = self.assignment(frames, mask, training)
        pooled = [tf.math.l2_normalize(tf.reduce_sum(a, axis=1), axis=1)]
        if self.max_pool:
            pooled.append(tf.math.l2_normalize(masked_max(a, mask), axis=1))
        return tf.concat(pooled, axis=1)


class GatedDbof(_ClusterPooling):
    """Sum of soft assignments gated by sigmoid(max-pool W1 W2), W1 [K, D], W2 [D, K]."""

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.gate_down = keras.layers.Dense(dim, use_bias=False, name="gate_down")
        self.gate_up = keras.layers.Dense(self.cluster_size, use_bias=False, name="gate_up")

    def call(self, frames, mask, training=False):
        a = self.assignment(frames, mask, training)
        gates = tf.sigmoid(self.gate_up(self.gate_down(masked_max(a, mask))))
        return tf.math.l2_normalize(tf.reduce_sum(a, axis=1) * gates, axis=1)


# -- settings that several frame-level models share ----------------------------------------------

@settings
class _DbofSizes(ms.ModelSettings):
    dbof_cluster_size: int = setting(8192, "Clusters of the DBoF projection.")
    dbof_hidden_size: int = setting(1024, "Units of the hidden layer after DBoF pooling.")


@settings
class _DbofActivation(ms.ModelSettings):
    dbof_activation: str = setting("sigmoid", "Activation of the DBoF clusters.",
                                   choices=tuple(_ACTIVATIONS))


@settings
class _Gating(ms.ModelSettings):
    gating: bool = setting(True, "Context Gating (after the hidden layer in the learnable "
                                 "pooling models, of the class probabilities in "
                                 "TwoStreamModel).")


# -- models ---------------------------------------------------------------------------------------

class FrameModel(BeforeTraining, keras.Model):
    """Base: frames l2-normalised (as the starter does), sampled when iterations > 0."""

    frame_level = True
    Settings = ms.ModelSettings  # each model's own: its settings, their defaults and meanings

    def __init__(self, settings=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = ms.checked(type(self), settings)
        # Models without the Frames settings read every real frame.
        self.iterations = getattr(self.settings, "iterations", 0)
        self.sample_random_frames = getattr(self.settings, "sample_random_frames", True)

    def frames(self, inputs, training, count=None):
        """(frames [B, T', F], mask [B, T', 1]): `count` sampled real frames, or all of them.

        Features may be float32 or quantized uint8 (`FrameReader(quantized=True)`).

        Sampling is random only in training with sample_random_frames; otherwise evenly spaced.
        """
        features, num_frames = inputs["features"], inputs["num_frames"]
        count = self.iterations if count is None else count
        if count <= 0:
            mask = frame_mask(num_frames, tf.shape(features)[1])
            if features.dtype == tf.uint8:  # padding must stay 0 once dequantized
                features = tf.where(mask > 0, dequantize(features), 0.0)
            return tf.math.l2_normalize(features, axis=-1), mask
        # Dequantizing and normalising act on each frame alone: sampling first gives the same
        # values for less work.
        sampled = sample_frames(features, num_frames, count,
                                random=bool(training) and self.sample_random_frames)
        if sampled.dtype == tf.uint8:
            sampled = dequantize(sampled)
        return tf.math.l2_normalize(sampled, axis=-1), tf.ones_like(sampled[:, :, :1])


def _classifier(num_classes, s, prob_gating):
    """The video-level classifier of settings `s` (ms.Classifier, ms.Moe, ms.Compact)."""
    if s.video_level_classifier_model == "LogisticModel":
        return LogisticClassifier(num_classes, s.structure("classifier"), s.moe_l2,
                                  name="classifier")
    return MoeClassifier(num_classes, s.moe_num_mixtures, s.moe_l2, s.structure("moe_gates"),
                         s.structure("moe_experts"),
                         s.structure("gating") if prob_gating else None, name="classifier")


class FrameLevelLogisticModel(FrameModel):
    """Mean of the real frames, then one dense layer to the classes."""

    @settings
    class Settings(ms.Logistic, ms.Compact):
        pass

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        self.classifier = logistic_classifier(num_classes, self.settings)

    def call(self, inputs, training=False):
        frames, mask = self.frames(inputs, training)
        return self.classifier(masked_mean(frames, mask))


class DbofModel(FrameModel):
    """The starter's DBoF: input BN, clusters (+BN), activation, max-pool, hidden (+BN), MoE."""

    @settings
    class Settings(ms.Frames, _DbofSizes, _DbofActivation, ms.Classifier, ms.Moe,
                   ms.ProbGating, ms.Compact):
        dbof_add_batch_norm: bool = setting(True, "Batch norm on the input, the clusters and "
                                                  "the hidden layer.")
        dbof_pooling_method: str = setting("max", "Pooling of the clusters over frames.",
                                           choices=("max", "average"))

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        self.input_norm = keras.layers.BatchNormalization(name="input_bn") \
            if s.dbof_add_batch_norm else None
        self.pool = DbofPooling(s.dbof_cluster_size, s.dbof_activation, s.dbof_add_batch_norm,
                                s.dbof_pooling_method, s.structure("embedding"), name="dbof")
        self.hidden = linear(s.dbof_hidden_size, s.structure("fc"),
                             use_bias=not s.dbof_add_batch_norm, name="hidden")
        self.hidden_norm = keras.layers.BatchNormalization(name="hidden_bn") \
            if s.dbof_add_batch_norm else None
        self.activation = _activation(s.dbof_activation)
        self.classifier = _classifier(num_classes, s, s.moe_prob_gating)

    def call(self, inputs, training=False):
        frames, mask = self.frames(inputs, training)
        if self.input_norm is not None:
            frames = self.input_norm(frames, training=training)
        x = self.hidden(self.pool(frames, mask, training=training))
        if self.hidden_norm is not None:
            x = self.hidden_norm(x, training=training)
        return self.classifier(self.activation(x), training=training)


class _RecurrentModel(FrameModel):
    """Stacked recurrent layers over all real frames; the last state goes to the classifier."""

    cell = None

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        cells, layers = s.stack()
        self.layer_count = layers
        for i in range(layers):  # attributes, not a list: see TwoStreamModel
            setattr(self, f"rnn_{i}", self.cell(cells, return_sequences=i < layers - 1,
                                                name=f"rnn_{i}"))
        self.classifier = _classifier(num_classes, s, False)

    def call(self, inputs, training=False):
        x, mask = self.frames(inputs, training)
        mask = tf.cast(mask[:, :, 0], tf.bool)
        for i in range(self.layer_count):
            x = getattr(self, f"rnn_{i}")(x, mask=mask, training=training)
        return self.classifier(x, training=training)


class LstmModel(_RecurrentModel):
    """The starter's stacked LSTM (`lstm_cells` units, `lstm_layers` layers)."""

    cell = keras.layers.LSTM

    @settings
    class Settings(ms.Classifier, ms.Moe, ms.Compact):
        lstm_cells: int = setting(1024, "Units of each LSTM layer.")
        lstm_layers: int = setting(2, "Stacked LSTM layers.")

        def stack(self):
            return self.lstm_cells, self.lstm_layers


class GruModel(_RecurrentModel):
    """Stacked GRU (Miech et al. 2017)."""

    cell = keras.layers.GRU

    @settings
    class Settings(ms.Classifier, ms.Moe, ms.Compact):
        gru_cells: int = setting(1024, "Units of each GRU layer.")
        gru_layers: int = setting(2, "Stacked GRU layers.")

        def stack(self):
            return self.gru_cells, self.gru_layers


class _LearnablePoolingModel(FrameModel):
    """Miech et al.'s late-fusion models: input BN; video and audio pooled apart; hidden layer
    (+BN, relu6 if asked); Context Gating (`gating`); MoE with `moe_prob_gating`."""

    pooling = None  # the pooling layer's class
    video_size = 1024  # the first features are video (rgb), the rest audio

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        cluster_size, hidden_size = s.sizes()
        embed = s.structure("embedding")
        self.input_norm = keras.layers.BatchNormalization(name="input_bn") \
            if s.add_batch_norm else None
        self.video_pool = self.pooling(cluster_size, structure=embed, name="video_pool")
        self.audio_pool = self.pooling(max(1, cluster_size // 2), structure=embed,
                                       name="audio_pool")
        self.hidden = linear(hidden_size, s.structure("fc"), use_bias=not s.add_batch_norm,
                             name="hidden")
        self.hidden_norm = keras.layers.BatchNormalization(name="hidden_bn") \
            if s.add_batch_norm else None
        self.gating = ContextGating(s.structure("gating"), name="gating") if s.gating else None
        self.classifier = MoeClassifier(num_classes, s.moe_num_mixtures, s.moe_l2,
                                        s.structure("moe_gates"), s.structure("moe_experts"),
                                        s.structure("gating") if s.moe_prob_gating
                                        else None, name="classifier")

    def call(self, inputs, training=False):
        frames, mask = self.frames(inputs, training)
        if self.input_norm is not None:
            frames = self.input_norm(frames, training=training)
        pooled = tf.concat([
            self.video_pool(frames[:, :, :self.video_size], mask, training=training),
            self.audio_pool(frames[:, :, self.video_size:], mask, training=training)], axis=1)
        x = self.hidden(pooled)
        if self.hidden_norm is not None:
            x = self.hidden_norm(x, training=training)
        if self.settings.relu:
            x = tf.nn.relu6(x)
        if self.gating is not None:
            x = self.gating(x, training=training)
        return self.classifier(x, training=training)


@settings
class _LearnablePoolingSettings(ms.Frames, ms.Moe, ms.ProbGating, _Gating, ms.Compact):
    iterations: int = 300
    moe_l2: float = 1e-6
    moe_prob_gating: bool = True
    add_batch_norm: bool = setting(True, "Batch norm on the input, the pooling and the hidden "
                                         "layer.")
    relu: bool = setting(False, "relu6 after the hidden layer.")

    def sizes(self):
        """(clusters, hidden units): each family names them its own way."""
        raise NotImplementedError


@settings
class _NetVLADSettings(_LearnablePoolingSettings):
    netvlad_cluster_size: int = setting(64, "Clusters of NetVLAD (NetRVLAD) pooling.")
    netvlad_hidden_size: int = setting(1024, "Units of the hidden layer after NetVLAD pooling.")

    def sizes(self):
        return self.netvlad_cluster_size, self.netvlad_hidden_size


@settings
class _SoftDbofSettings(_LearnablePoolingSettings, _DbofSizes):
    dbof_cluster_size: int = 4096

    def sizes(self):
        return self.dbof_cluster_size, self.dbof_hidden_size


class NetVLADModelLF(_LearnablePoolingModel):
    """NetVLAD pooling (Miech et al. 2017)."""

    pooling = NetVLAD

    @settings
    class Settings(_NetVLADSettings):
        pass


class NetRVLADModelLF(_LearnablePoolingModel):
    """NetRVLAD / LightVLAD: NetVLAD without centres."""

    pooling = functools.partial(NetVLAD, centres=False)

    @settings
    class Settings(_NetVLADSettings):
        pass


class NetFVModelLF(_LearnablePoolingModel):
    """NetFV: Fisher-vector pooling (Miech et al. 2017)."""

    pooling = NetFV

    @settings
    class Settings(_LearnablePoolingSettings):
        fv_cluster_size: int = setting(64, "Clusters of NetFV pooling.")
        fv_hidden_size: int = setting(2048, "Units of the hidden layer after NetFV pooling.")

        def sizes(self):
            return self.fv_cluster_size, self.fv_hidden_size


class SoftDbofModelLF(_LearnablePoolingModel):
    """Soft DBoF: sums (and max) of soft assignments."""

    pooling = SoftDbof

    @settings
    class Settings(_SoftDbofSettings):
        pass


class GatedDbofModelLF(_LearnablePoolingModel):
    """Gated DBoF: assignment sums gated by their max-pool."""

    pooling = GatedDbof

    @settings
    class Settings(_SoftDbofSettings):
        pass


class TwoStreamModel(FrameModel):
    """Araujo et al. (2018): per stream embedding -> FC (+BN, relu6); concat; MoE; gating.

    embedding: dbof (robust DBoF when n_bagging > 1), netvlad or netfv. Its weights, counted as
    the paper counts them (batch-norm statistics included), are 65,795,732 with the defaults.
    """

    @settings
    class Settings(ms.Frames, _DbofActivation, ms.Moe, _Gating, ms.VideoSize, ms.Compact):
        embedding: str = setting("dbof", "Each stream's embedding.",
                                 choices=("dbof", "netvlad", "netfv"))
        video_clusters: int = setting(8192, "Clusters of the video stream's embedding.")
        audio_clusters: int = setting(4096, "Clusters of the audio stream's embedding.")
        fc_size: int = setting(512, "Units of each stream's FC layer after its embedding.")
        n_bagging: int = setting(1, "Robust DBoF: mean of max-pools over this many random "
                                    "frame subsets.")
        dbof_activation: str = "relu6"
        moe_num_mixtures: int = 4
        moe_l2: float = 1e-6
        fv_couple_weights: bool = setting(True, "NetFV centres tied to the assignment weights "
                                                "(not with a compact embedding).")
        use_audio: bool = setting(True, "Use the audio stream as well as the video one.")

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        embed = s.structure("embedding")
        self.n_bagging = max(1, s.n_bagging)

        # Each stream's layers are attributes: tf.train.Checkpoint does not see layers that
        # Keras 3 keeps in lists or tuples.
        self.streams = ["video"] + (["audio"] if s.use_audio else [])
        for name, clusters in zip(self.streams, (s.video_clusters, s.audio_clusters)):
            if s.embedding == "dbof":
                pool = DbofPooling(clusters, s.dbof_activation, True, "max", embed,
                                   name=f"{name}_dbof")
            elif s.embedding == "netvlad":
                pool = NetVLAD(clusters, structure=embed, name=f"{name}_vlad")
            else:
                pool = NetFV(clusters, s.fv_couple_weights, embed, name=f"{name}_fv")
            setattr(self, f"{name}_pool", pool)
            setattr(self, f"{name}_fc", linear(s.fc_size, s.structure("fc"), use_bias=False,
                                               name=f"{name}_fc"))
            setattr(self, f"{name}_norm", keras.layers.BatchNormalization(name=f"{name}_fc_bn"))
        self.moe = MoeClassifier(num_classes, s.moe_num_mixtures, s.moe_l2,
                                 s.structure("moe_gates"), s.structure("moe_experts"), name="moe")
        self.gating = ContextGating(s.structure("gating"), name="gating") if s.gating else None

    def _pool(self, pool, frames, mask, training):
        if self.n_bagging == 1 or self.settings.embedding != "dbof":
            return pool(frames, mask, training=training)
        # Robust DBoF: frames hold n_bagging subsets of `iterations` frames; mean of max-pools.
        dim = frames.shape[-1]
        subsets = tf.reshape(frames, [-1, self.iterations, dim])
        pooled = pool(subsets, tf.ones_like(subsets[:, :, :1]), training=training)
        return tf.reduce_mean(tf.reshape(pooled, [-1, self.n_bagging, pooled.shape[-1]]), axis=1)

    def call(self, inputs, training=False):
        count = self.iterations * self.n_bagging if self.settings.embedding == "dbof" else None
        frames, mask = self.frames(inputs, training, count)
        parts = [frames[:, :, :self.settings.video_size], frames[:, :, self.settings.video_size:]]
        outputs = []
        for name, part in zip(self.streams, parts):
            pool, fc, norm = (getattr(self, f"{name}_{layer}") for layer in ("pool", "fc", "norm"))
            x = fc(self._pool(pool, part, mask, training))
            outputs.append(tf.nn.relu6(norm(x, training=training)))
        probabilities = self.moe(tf.concat(outputs, axis=1), training=training)
        if self.gating is not None:
            probabilities = self.gating(probabilities, training=training)
        return probabilities
