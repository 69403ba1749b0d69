"""Video-level models: one feature vector per video ([B, F]) -> class probabilities.

LogisticModel and MoeModel follow the YouTube-8M starter code; `moe_prob_gating` adds Context
Gating on the output probabilities (Miech, Laptev & Sivic 2017). With "moe" in compact_layers,
their dense layers become diagonal-circulant (Araujo et al. 2018).
"""

import keras
import tensorflow as tf

import model_utils
from model_utils import LogisticClassifier, MoeClassifier, register


class VideoModel(keras.Model):
    """Base: l2-normalises the input features (as the starter does) before the layers."""

    frame_level = False

    def features(self, inputs):
        return tf.math.l2_normalize(inputs["features"], axis=-1)


@register
class LogisticModel(VideoModel):
    """One dense layer to the classes, sigmoid; L2 penalty on the weights."""

    def __init__(self, num_classes, l2_penalty=1e-8, compact_layers="", k_factor=1, **kwargs):
        super().__init__(**kwargs)
        compact = "moe" in model_utils.parse_compact_layers(compact_layers)
        self.classifier = LogisticClassifier(num_classes, compact, k_factor, l2_penalty,
                                             name="classifier")

    def call(self, inputs, training=False):
        return self.classifier(self.features(inputs))


@register
class MoeModel(VideoModel):
    """The starter's Mixture of Experts (`moe_num_mixtures` experts and a dummy one)."""

    def __init__(self, num_classes, moe_num_mixtures=2, moe_l2=1e-8, moe_prob_gating=False,
                 compact_layers="", k_factor=1, **kwargs):
        super().__init__(**kwargs)
        compact = model_utils.parse_compact_layers(compact_layers)
        self.moe = MoeClassifier(num_classes, moe_num_mixtures, moe_l2, "moe" in compact,
                                 k_factor, moe_prob_gating, "gating" in compact, name="moe")

    def call(self, inputs, training=False):
        return self.moe(self.features(inputs), training=training)


@register
class GatedMoeModel(MoeModel):
    """MoeModel with Context Gating on its output probabilities (Miech et al. 2017)."""

    def __init__(self, num_classes, moe_num_mixtures=2, moe_l2=1e-8, compact_layers="",
                 k_factor=1, **kwargs):
        super().__init__(num_classes, moe_num_mixtures, moe_l2, True, compact_layers, k_factor,
                         **kwargs)
