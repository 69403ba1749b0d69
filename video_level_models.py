"""Video-level models: one feature vector per video ([B, F]) -> class probabilities.

LogisticModel and MoeModel follow the YouTube-8M starter code; `moe_prob_gating` adds Context
Gating on the output probabilities (Miech, Laptev & Sivic 2017). With "moe" in compact_layers,
their dense layers become diagonal-circulant (Araujo et al. 2018).
"""

import time

import keras
import numpy as np
import tensorflow as tf

import layer_kinds
import model_settings as ms
import model_utils
from model_settings import setting, settings
from model_utils import LogisticClassifier, MoeClassifier, logistic_classifier


class VideoModel(model_utils.BeforeTraining, keras.Model):
    """Base: l2-normalises the input features (as the starter does) before the layers."""

    frame_level = False
    Settings = ms.ModelSettings  # each model's own: its settings, their defaults and meanings

    def __init__(self, settings=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = ms.checked(type(self), settings)

    def features(self, inputs):
        return tf.math.l2_normalize(inputs["features"], axis=-1)


class LogisticModel(VideoModel):
    """One dense layer to the classes, sigmoid; L2 penalty on the weights."""

    @settings
    class Settings(ms.Logistic, ms.Compact):
        pass

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        self.classifier = logistic_classifier(num_classes, self.settings)

    def call(self, inputs, training=False):
        return self.classifier(self.features(inputs))


class MoeModel(VideoModel):
    """The starter's Mixture of Experts (`moe_num_mixtures` experts and a dummy one)."""

    @settings
    class Settings(ms.Moe, ms.ProbGating, ms.Compact):
        pass

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        self.moe = MoeClassifier(num_classes, s.moe_num_mixtures, s.moe_l2,
                                 s.structure("moe_gates"), s.structure("moe_experts"),
                                 s.structure("gating") if self.prob_gating() else None,
                                 name="moe")

    def prob_gating(self):
        return self.settings.moe_prob_gating

    def call(self, inputs, training=False):
        return self.moe(self.features(inputs), training=training)


class GatedMoeModel(MoeModel):
    """MoeModel with Context Gating on its output probabilities (Miech et al. 2017)."""

    @settings
    class Settings(ms.Moe, ms.Compact):
        pass

    def prob_gating(self):
        return True


class BottleneckModel(VideoModel):
    """Features -> `wide_layers` layers of `wide_size` units -> `bottleneck_size` units ->
    classifier, each hidden layer followed by batch norm and ReLU (`linear_bottleneck`: the
    bottleneck layer alone, with neither, which with a dense layer is a low-rank classifier).

    For a weight budget: the bottleneck sets the classifier's cost (bottleneck_size x classes);
    Sites of compact_layers: "fc" (every hidden layer) or "bottleneck" (the last), "classifier"
    (logistic) or "moe_gates", "moe_experts" ("moe": the classifier either way), "gating" (the
    Context Gating of the output probabilities, `output_gating`, Miech et al. 2017; a classes x
    classes matrix when dense). classifier_rank > 0 makes a classifier that compact_layers
    leaves dense low rank (unset, it is low_rank: the flag's older second meaning).
    bottleneck_size 0: no hidden layers, the classifier on the features.
    """

    @settings
    class Settings(ms.Classifier, ms.Moe, ms.Logistic, ms.Compact):
        bottleneck_size: int = setting(512, "Units of the bottleneck layer (0: none).")
        wide_layers: int = setting(0, "Hidden layers before the bottleneck.")
        wide_size: int = setting(2048, "Units of each of those hidden layers.")
        video_level_classifier_model: str = "LogisticModel"
        output_gating: bool = setting(False, "Context Gating of the class probabilities.")
        linear_bottleneck: bool = setting(False, "No batch norm and ReLU after the bottleneck.")
        classifier_rank: int = setting(
            0, "Rank of a low-rank classifier (an MoE's gates and experts) where "
            "--compact_layers names no kind for it; 0: dense. Unset, it is --low_rank's.",
            unset_from="low_rank")

        def __post_init__(self):
            super().__post_init__()
            if self.classifier_rank < 0:
                raise ValueError(f"--classifier_rank must be 0 (a dense classifier) or more, "
                                 f"got {self.classifier_rank}")

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        sizes = [s.wide_size] * s.wide_layers + [s.bottleneck_size] if s.bottleneck_size else []
        self.depth = len(sizes)
        for i, size in enumerate(sizes):  # attributes, not a list: tf.train.Checkpoint sees them
            site = "bottleneck" if i == len(sizes) - 1 else "fc"
            setattr(self, f"hidden_{i}", model_utils.linear(
                size, s.structure(site), use_bias=False, l2=s.l2_penalty, name=f"hidden_{i}"))
            if not (s.linear_bottleneck and i == len(sizes) - 1):
                setattr(self, f"hidden_{i}_bn",
                        keras.layers.BatchNormalization(name=f"hidden_{i}_bn"))
        if s.video_level_classifier_model == "LogisticModel":
            self.classifier = LogisticClassifier(num_classes, self.classifier_structure(
                "classifier"), s.l2_penalty, name="classifier")
        else:
            self.classifier = MoeClassifier(
                num_classes, s.moe_num_mixtures, s.moe_l2, self.classifier_structure("moe_gates"),
                self.classifier_structure("moe_experts"), name="classifier")
        self.output_gating = (model_utils.ContextGating(s.structure("gating"),
                                                        name="output_gating")
                              if s.output_gating else None)

    def classifier_structure(self, site):
        """The classifier's layers: of rank classifier_rank where it is > 0 and compact_layers
        names no kind for them."""
        structure = self.settings.structure(site)
        named = self.settings.compact()
        if self.settings.classifier_rank and site not in named \
                and model_utils.FALLBACK.get(site) not in named:
            return layer_kinds.KINDS["low_rank"].from_settings(self.settings,
                                                               self.settings.classifier_rank)
        return structure

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

    @settings
    class Settings(ms.Moe, ms.VideoSize, ms.Compact):
        input_dropout: float = setting(0.3, "Dropout on the MoE's input in training.")
        audio_weight: float = setting(0.5, "Scale of the l2-normalised audio features against "
                                           "the video ones.")
        knn_k: int = setting(30, "Nearest training videos whose labels are blended in.")
        knn_temperature: float = setting(10.0, "Softmax temperature over the neighbours' "
                                               "cosine similarities.")
        knn_weight: float = setting(0.3, "Weight of the neighbours' labels in the blend (the "
                                         "MoE has the rest).")
        memory_videos: int = setting(1, "Training videos in the memory.", measured=True)
        memory_labels: int = setting(1, "Their labels in all.", measured=True)

    def __init__(self, num_classes, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        s = self.settings
        self.num_classes = num_classes
        self.dropout = keras.layers.Dropout(s.input_dropout)
        self.moe = MoeClassifier(num_classes, s.moe_num_mixtures, s.moe_l2,
                                 s.structure("moe_gates"), s.structure("moe_experts"), name="moe")

    def build(self, input_shape):
        dim, s = input_shape["features"][-1], self.settings
        self.keys = self.add_weight((s.memory_videos, dim), "zeros", dtype="float16",
                                    trainable=False, name="memory_features")
        self.label_ids = self.add_weight((s.memory_labels,), "zeros", dtype="int32",
                                         trainable=False, name="memory_label_ids")
        self.label_splits = self.add_weight((s.memory_videos + 1,), "zeros", dtype="int32",
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
        x, s = inputs["features"], self.settings
        video = tf.math.l2_normalize(x[:, :s.video_size], axis=-1)
        if x.shape[-1] == s.video_size:
            return video
        audio = tf.math.l2_normalize(x[:, s.video_size:], axis=-1) * s.audio_weight
        return tf.concat([video, audio], axis=1)

    def before_first_step(self, training_videos):
        started = time.time()
        self.memorize(training_videos())
        return (f"memorised {self.settings.memory_videos:,} training videos in "
                f"{time.time() - started:.0f}s")

    def memorize(self, batches):
        """Fill the memory with every video of `batches` (an ordered pass over the files)."""
        keys, label_ids, counts = [], [], []
        for batch in batches:
            keys.append(self.features(batch).numpy().astype("float16"))
            labels = batch["labels"].numpy()
            rows, classes = labels.nonzero()
            label_ids.append(classes.astype("int32"))
            counts.append(labels.sum(axis=1).astype("int32"))
        keys, label_ids, s = np.concatenate(keys), np.concatenate(label_ids), self.settings
        if len(keys) != s.memory_videos or len(label_ids) != s.memory_labels:
            raise ValueError(f"the training data changed: {len(keys)} videos and "
                             f"{len(label_ids)} labels, model_flags.json says "
                             f"{s.memory_videos} and {s.memory_labels}")
        self.keys.assign(keys)
        self.label_ids.assign(label_ids)
        self.label_splits.assign(np.concatenate([[0], np.cumsum(np.concatenate(counts))]))

    # As a teacher (distillation.py): a memory video whose features match the input's (the
    # video itself, or an exact copy) is no neighbour, so that soft targets are an honest guess.
    leave_self_out = False

    def neighbour_probabilities(self, x):
        """[B, C]: the similarity-weighted label average of the k nearest memory videos."""
        s = self.settings
        similarity = tf.matmul(x, tf.cast(self.keys, x.dtype), transpose_b=True)  # (B, N)
        if self.leave_self_out:
            # The input's own similarity is its squared norm (1 + audio_weight^2 with audio);
            # float16 memory keys round it by about 1e-3.
            own = tf.reduce_sum(tf.square(x), axis=1, keepdims=True)
            similarity = tf.where(similarity > own - 2e-3, -1e9 * tf.ones_like(similarity),
                                  similarity)
        k = min(s.knn_k, s.memory_videos)
        top, index = tf.math.top_k(similarity, k)  # (B, k)
        weights = tf.nn.softmax(s.knn_temperature * top, axis=1)
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
        neighbours = self.neighbour_probabilities(tf.cast(x, tf.float32))  # float32 as the MoE's
        return (1.0 - self.settings.knn_weight) * moe + self.settings.knn_weight * neighbours
