"""Video-level variants on the real data, trained by train.py's own Trainer.

    .venv/bin/python experiments/video_level_variants.py --variants=split_l2_dropout --epochs=9

Real 2018 video-level data (23,091 train / 5,701 validate videos), our MoeClassifier (2
mixtures) or a logistic layer, the starter's cross-entropy, Adam with gradients clipped to norm
1.0, batch 256, seed 0; validation GAP@20 after each epoch (90 steps). Variants:

  moe                 l2-normalised features -> MoE (learning rate 0.01)
  dropout             ... dropout 0.3 on the input -> MoE
  split_l2_dropout    mean_rgb and mean_audio l2-normalised apart, dropout 0.3 -> MoE
  moe_l2              as moe with moe_l2=1e-5, learning rate x0.8 every 2 epochs
  batchnorm_input     raw features -> batch norm -> MoE
  raw                 raw features -> MoE
  hidden              dropout 0.2 -> 2,048 units (BN, ReLU) -> dropout 0.5 -> logistic
                      (learning rate 0.002, x0.7 every 2 epochs)

Each run's folder (train_log.jsonl, validation.jsonl) is under --output_dir/<variant>.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from utils import quiet_tensorflow, shared_data_dir  # noqa: E402

quiet_tensorflow()
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import model_flags  # noqa: E402
import model_utils  # noqa: E402
import readers  # noqa: E402
import train_config  # noqa: E402
import trainer  # noqa: E402

VARIANTS = ("moe", "dropout", "split_l2_dropout", "moe_l2", "batchnorm_input", "raw", "hidden")
flags.DEFINE_string("variants", "split_l2_dropout", "Comma-separated: " + ", ".join(VARIANTS))
flags.DEFINE_integer("epochs", 9, "Epochs per variant.")
flags.DEFINE_string("output_dir", "/tmp/yt8m_video_level_variants", "One train_dir per variant.")
FLAGS = flags.FLAGS
CLASSES = readers.NUM_CLASSES
BATCH = 256
STEPS_PER_EPOCH = 90  # 23,091 / 256


class Variant(keras.Model):
    """One of VARIANTS, on the reader's batch dict like a registered model."""

    def __init__(self, variant):
        super().__init__(name=variant)
        self.variant = variant
        self.normalisation = {"split_l2_dropout": "split", "batchnorm_input": "none",
                              "raw": "none"}.get(variant, "joint")
        self.input_norm = keras.layers.BatchNormalization() \
            if variant == "batchnorm_input" else None
        self.dropout = keras.layers.Dropout({"hidden": 0.2}.get(variant, 0.3)) \
            if variant in ("dropout", "split_l2_dropout", "hidden") else None
        if variant == "hidden":
            self.hidden = keras.layers.Dense(2048, use_bias=False)
            self.hidden_norm = keras.layers.BatchNormalization()
            self.hidden_dropout = keras.layers.Dropout(0.5)
            self.classifier = keras.layers.Dense(
                CLASSES, activation="sigmoid",
                bias_initializer=keras.initializers.Constant(model_utils.prior_logit(CLASSES)))
        else:
            self.classifier = model_utils.MoeClassifier(
                CLASSES, 2, 1e-5 if variant == "moe_l2" else 1e-8)

    def call(self, inputs, training=False):
        x = inputs["features"]
        if self.normalisation == "joint":
            x = tf.math.l2_normalize(x, -1)
        elif self.normalisation == "split":
            x = tf.concat([tf.math.l2_normalize(x[:, :1024], -1),
                           tf.math.l2_normalize(x[:, 1024:], -1)], 1)
        if self.input_norm is not None:
            x = self.input_norm(x, training=training)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        if self.variant == "hidden":
            x = tf.nn.relu(self.hidden_norm(self.hidden(x), training=training))
            x = self.hidden_dropout(x, training=training)
        return self.classifier(x, training=training)


def run_variant(variant):
    data = os.path.join(shared_data_dir(), "yt8m-2018-video")
    rate, decay = {"hidden": (0.002, 0.7), "moe_l2": (0.01, 0.8)}.get(variant, (0.01, 1.0))
    train_dir = os.path.join(FLAGS.output_dir, variant)
    config = train_config.TrainConfig(
        train_dir=train_dir, start_new_model=True,
        train_data_pattern=os.path.join(data, "train", "*.tfrecord"),
        validation_data_pattern=os.path.join(data, "validate", "*.tfrecord"),
        model_flags=model_flags.describe("MoeModel"), batch_size=BATCH,
        base_learning_rate=rate, learning_rate_decay=decay,
        learning_rate_decay_examples=2 * STEPS_PER_EPOCH * BATCH, num_epochs=FLAGS.epochs,
        max_steps=FLAGS.epochs * STEPS_PER_EPOCH, validation_steps=STEPS_PER_EPOCH,
        checkpoint_steps=10 ** 9, log_steps=STEPS_PER_EPOCH)
    trainer.Trainer(config, build_model=lambda: Variant(variant)).run()
    with open(os.path.join(train_dir, "validation.jsonl")) as f:
        gaps = [json.loads(line)["gap"] for line in f]
    print(f"| {variant} | " + " | ".join(f"{g:.4f}" for g in gaps) + " |", flush=True)


def main(argv):
    del argv
    for variant in FLAGS.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"error: unknown variant {variant!r}; choose from "
                             f"{', '.join(VARIANTS)}")
        run_variant(variant)


if __name__ == "__main__":
    app.run(main)
