"""Video-level models: one feature vector per video ([B, F]) -> class probabilities.

LogisticModel and MoeModel follow the YouTube-8M starter code; `moe_prob_gating` adds Context
Gating on the output probabilities (Miech, Laptev & Sivic 2017). With "moe" in compact_layers,
their dense layers become diagonal-circulant (Araujo et al. 2018).
"""

import keras
import numpy as np
import tensorflow as tf

import model_utils
from model_utils import LogisticClassifier, MoeClassifier


class VideoModel(keras.Model):
    """Base: l2-normalises the input features (as the starter does) before the layers."""

    frame_level = False

    def features(self, inputs):
        return tf.math.l2_normalize(inputs["features"], axis=-1)


class LogisticModel(VideoModel):
    """One dense layer to the classes, sigmoid; L2 penalty on the weights."""

    def __init__(self, num_classes, l2_penalty=1e-8, compact_layers="", k_factor=1, **kwargs):
        super().__init__(**kwargs)
        compact = "moe" in model_utils.parse_compact_layers(compact_layers)
        self.classifier = LogisticClassifier(num_classes, compact, k_factor, l2_penalty,
                                             name="classifier")

    def call(self, inputs, training=False):
        return self.classifier(self.features(inputs))


class MoeModel(VideoModel):
    """The starter's Mixture of Experts (`moe_num_mixtures` experts and a dummy one)."""

    def __init__(self, num_classes, moe_num_mixtures=2, moe_l2=1e-8, moe_prob_gating=False,
                 compact_layers="", k_factor=1, **kwargs):
        super().__init__(**kwargs)
        compact = model_utils.parse_compact_layers(compact_layers)
        self.moe = MoeClassifier(num_classes, moe_num_mixtures, moe_l2, compact,
                                 k_factor, moe_prob_gating, "gating" in compact, name="moe")

    def call(self, inputs, training=False):
        return self.moe(self.features(inputs), training=training)


class GatedMoeModel(MoeModel):
    """MoeModel with Context Gating on its output probabilities (Miech et al. 2017)."""

    def __init__(self, num_classes, moe_num_mixtures=2, moe_l2=1e-8, compact_layers="",
                 k_factor=1, **kwargs):
        super().__init__(num_classes, moe_num_mixtures, moe_l2, True, compact_layers, k_factor,
                         **kwargs)


class BottleneckModel(VideoModel):
    """Features -> `wide_layers` layers of `wide_size` units -> `bottleneck_size` units ->
    classifier, each hidden layer followed by batch norm and ReLU (`linear_bottleneck`: the
    bottleneck layer alone, with neither, which with a dense layer is a low-rank classifier).

    For a weight budget: the bottleneck sets the classifier's cost (bottleneck_size x classes);
    "fc" in compact_layers makes the hidden layers diagonal-circulant, "moe" (or moe_gates,
    moe_experts) the classifier, "gating" the Context Gating of the output probabilities
    (`output_gating`, Miech et al. 2017; a classes x classes matrix when dense). low_rank > 0
    makes the classifier's dense matrices low-rank products instead. bottleneck_size 0: no
    hidden layers, the classifier on the features.
    """

    settings_help = {
        "bottleneck_size": "Units of the bottleneck layer (0: none).",
        "wide_layers": "Hidden layers before the bottleneck.",
        "wide_size": "Units of each of those hidden layers.",
        "low_rank": "Rank of the classifier's matrices (0: full rank).",
        "output_gating": "Context Gating of the class probabilities.",
        "linear_bottleneck": "No batch norm and ReLU after the bottleneck.",
    }

    def __init__(self, num_classes, bottleneck_size=512, wide_layers=0, wide_size=2048,
                 video_level_classifier_model="LogisticModel", moe_num_mixtures=2, moe_l2=1e-8,
                 output_gating=False, low_rank=0, linear_bottleneck=False, l2_penalty=1e-8,
                 compact_layers="", k_factor=1, **kwargs):
        super().__init__(**kwargs)
        if video_level_classifier_model not in ("LogisticModel", "MoeModel"):
            raise ValueError("video_level_classifier_model must be LogisticModel or MoeModel, "
                             f"got {video_level_classifier_model!r}")
        compact = model_utils.parse_compact_layers(compact_layers)
        sizes = [wide_size] * wide_layers + [bottleneck_size] if bottleneck_size else []
        self.depth = len(sizes)
        for i, size in enumerate(sizes):  # attributes, not a list: tf.train.Checkpoint sees them
            setattr(self, f"hidden_{i}", model_utils.linear(
                size, "fc" in compact, k_factor, use_bias=False, l2=l2_penalty, name=f"hidden_{i}"))
            if not (linear_bottleneck and i == len(sizes) - 1):
                setattr(self, f"hidden_{i}_bn",
                        keras.layers.BatchNormalization(name=f"hidden_{i}_bn"))
        if video_level_classifier_model == "LogisticModel":
            self.classifier = LogisticClassifier(num_classes, "moe" in compact, k_factor,
                                                 l2_penalty, low_rank, name="classifier")
        else:
            self.classifier = MoeClassifier(num_classes, moe_num_mixtures, moe_l2, compact,
                                            k_factor, rank=low_rank, name="classifier")
        self.output_gating = (model_utils.ContextGating("gating" in compact, k_factor,
                                                        name="output_gating")
                              if output_gating else None)

    def call(self, inputs, training=False):
        x = self.features(inputs)
        for i in range(self.depth):
            x = getattr(self, f"hidden_{i}")(x)
            norm = getattr(self, f"hidden_{i}_bn", None)  # none after a linear bottleneck
            if norm is not None:
                x = tf.nn.relu(norm(x, training=training))
        probabilities = self.classifier(x, training=training)
        if self.output_gating is not None:
            probabilities = self.output_gating(probabilities, training=training)
        return probabilities


class KnnMoeModel(VideoModel):
    """A MoE blended with the k nearest training videos (for datasets that fit in memory).

    With "moe" in compact_layers the MoE is diagonal-circulant. Each input feature is
    l2-normalised apart (video: the first `video_size` values; audio: the
    rest, scaled by `audio_weight`). Training fits the MoE (input dropout `input_dropout`) alone;
    prediction returns (1 - knn_weight) * MoE + knn_weight * kNN, where kNN averages the labels
    of the `knn_k` most cosine-similar training videos with weights softmax(knn_temperature *
    similarity). The training videos are the model's memory: train.py fills it in one ordered
    pass over the training files before the first step (`memorize`), and it is checkpointed and
    exported with the weights, as float16 features and label lists.
    """

    # Settings that train.py measures on the training data; not flags.
    data_settings = ("memory_videos", "memory_labels")
    settings_help = {
        "knn_k": "Nearest training videos whose labels are blended in.",
        "knn_weight": "Weight of the neighbours' labels in the blend (the MoE has the rest).",
        "knn_temperature": "Softmax temperature over the neighbours' cosine similarities.",
        "audio_weight": "Scale of the l2-normalised audio features against the video ones.",
        "input_dropout": "Dropout on the MoE's input in training.",
    }

    def __init__(self, num_classes, moe_num_mixtures=2, moe_l2=1e-8, input_dropout=0.3,
                 audio_weight=0.5, video_size=1024, knn_k=30, knn_temperature=10.0,
                 knn_weight=0.3, compact_layers="", k_factor=1, memory_videos=1,
                 memory_labels=1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.video_size, self.audio_weight = num_classes, video_size, audio_weight
        self.knn_k, self.knn_temperature, self.knn_weight = knn_k, knn_temperature, knn_weight
        self.dropout = keras.layers.Dropout(input_dropout)
        compact = model_utils.parse_compact_layers(compact_layers)
        self.moe = MoeClassifier(num_classes, moe_num_mixtures, moe_l2, compact, k_factor,
                                 name="moe")
        self.memory_videos, self.memory_labels = memory_videos, memory_labels

    def build(self, input_shape):
        dim = input_shape["features"][-1]
        self.keys = self.add_weight((self.memory_videos, dim), "zeros", dtype="float16",
                                    trainable=False, name="memory_features")
        self.label_ids = self.add_weight((self.memory_labels,), "zeros", dtype="int32",
                                         trainable=False, name="memory_label_ids")
        self.label_splits = self.add_weight((self.memory_videos + 1,), "zeros", dtype="int32",
                                            trainable=False, name="memory_label_splits")

    @staticmethod
    def settings_from_data(reader, files):
        """The memory's size: the training videos and their labels in all."""
        videos = labels = 0
        with reader.reraise_data_errors(files):
            for batch in reader.dataset(files, 4096):
                videos += len(batch["num_labels"])
                labels += int(batch["num_labels"].numpy().sum())
        return {"memory_videos": max(videos, 1), "memory_labels": max(labels, 1)}

    def features(self, inputs):
        x = inputs["features"]
        video = tf.math.l2_normalize(x[:, :self.video_size], axis=-1)
        if x.shape[-1] == self.video_size:
            return video
        audio = tf.math.l2_normalize(x[:, self.video_size:], axis=-1) * self.audio_weight
        return tf.concat([video, audio], axis=1)

    def memorize(self, batches):
        """Fill the memory with every video of `batches` (an ordered pass over the files)."""
        keys, label_ids, counts = [], [], []
        for batch in batches:
            keys.append(self.features(batch).numpy().astype("float16"))
            labels = batch["labels"].numpy()
            rows, classes = labels.nonzero()
            label_ids.append(classes.astype("int32"))
            counts.append(labels.sum(axis=1).astype("int32"))
        keys, label_ids = np.concatenate(keys), np.concatenate(label_ids)
        if len(keys) != self.memory_videos or len(label_ids) != self.memory_labels:
            raise ValueError(f"the training data changed: {len(keys)} videos and "
                             f"{len(label_ids)} labels, model_flags.json says "
                             f"{self.memory_videos} and {self.memory_labels}")
        self.keys.assign(keys)
        self.label_ids.assign(label_ids)
        self.label_splits.assign(np.concatenate([[0], np.cumsum(np.concatenate(counts))]))

    def neighbour_probabilities(self, x):
        """[B, C]: the similarity-weighted label average of the k nearest memory videos."""
        similarity = tf.matmul(x, tf.cast(self.keys, x.dtype), transpose_b=True)  # (B, N)
        k = min(self.knn_k, self.memory_videos)
        top, index = tf.math.top_k(similarity, k)  # (B, k)
        weights = tf.nn.softmax(self.knn_temperature * top, axis=1)
        starts = tf.gather(self.label_splits, tf.reshape(index, [-1]))
        limits = tf.gather(self.label_splits, tf.reshape(index, [-1]) + 1)
        positions = tf.ragged.range(starts, limits)  # (B * k, labels of that neighbour)
        neighbour = positions.value_rowids()  # which of the B * k neighbours
        classes = tf.gather(self.label_ids, positions.flat_values)
        batch = tf.shape(x)[0]
        segment = tf.cast(neighbour // k, tf.int32) * self.num_classes + classes
        scores = tf.math.unsorted_segment_sum(
            tf.gather(tf.reshape(weights, [-1]), neighbour), segment, batch * self.num_classes)
        return tf.reshape(scores, [batch, self.num_classes])

    def call(self, inputs, training=False):
        x = self.features(inputs)
        moe = self.moe(self.dropout(x, training=training), training=training)
        if training:
            return moe
        return (1.0 - self.knn_weight) * moe + self.knn_weight * self.neighbour_probabilities(x)
