"""Which initialisation of the diagonal-circulant layer trains best?

    .venv/bin/python experiments/circulant_init.py [--epochs=5] [--out=/tmp/circulant_init.jsonl]

On the shared real 2018 video-level data (23,091 train / 5,701 validate videos): l2-normalised
mean_rgb+mean_audio (1152) -> `depth` DiagonalCirculant layers 1152->1152 (k factors, leaky ReLU
after each) -> Dense to 3,862 classes, sigmoid, cross-entropy, Adam. For each initialiser of
--initializers (all of circulant_ops.INITIALIZERS by default) and each of --depths: validation
GAP@20 after each epoch. Seeds fixed.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from utils import fail, quiet_tensorflow, shared_data_dir  # noqa: E402

quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import circulant_ops  # noqa: E402
import eval_util  # noqa: E402
import readers  # noqa: E402

flags.DEFINE_integer("epochs", 5, "Training epochs per run.")
flags.DEFINE_integer("batch_size", 256, "Examples per step.")
flags.DEFINE_float("learning_rate", 0.001, "Adam learning rate.")
flags.DEFINE_string("depths", "1,4", "Numbers of stacked circulant layers.")
flags.DEFINE_integer("k_factors", 2, "Factors per circulant layer.")
flags.DEFINE_string("initializers", ",".join(circulant_ops.INITIALIZERS), "Schemes to compare.")
flags.DEFINE_string("out", "", "Write one JSON line per run and epoch here.")
FLAGS = flags.FLAGS


def load(split):
    files = readers.resolve_files(
        os.path.join(shared_data_dir(), "yt8m-2018-video", split, "*.tfrecord"))
    features, labels = [], []
    for batch in readers.VideoReader().dataset(files, 4096):
        features.append(tf.math.l2_normalize(batch["features"], axis=1).numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(features), np.concatenate(labels)


def build(initializer, depth, k):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1152,))
    x = inputs
    for _ in range(depth):
        x = circulant_ops.DiagonalCirculant(1152, k_factors=k, initializer=initializer)(x)
        x = keras.layers.LeakyReLU(0.3)(x)
    outputs = keras.layers.Dense(readers.NUM_CLASSES, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(FLAGS.learning_rate), "binary_crossentropy")
    return model


def main(argv):
    del argv
    try:
        train_x, train_y = load("train")
        valid_x, valid_y = load("validate")
    except readers.DataError as err:
        fail(f"{err} (this experiment needs the shared YouTube-8M data)")
    out = open(FLAGS.out, "w") if FLAGS.out else None
    print("| initializer | depth | k | " + " | ".join(
        f"GAP epoch {e + 1}" for e in range(FLAGS.epochs)) + " | seconds |")
    print("|---|---|---|" + "---|" * (FLAGS.epochs + 1))
    for depth in (int(d) for d in FLAGS.depths.split(",")):
        for initializer in FLAGS.initializers.split(","):
            model = build(initializer, depth, FLAGS.k_factors)
            start = time.time()
            gaps = []
            for epoch in range(FLAGS.epochs):
                model.fit(train_x, train_y, batch_size=FLAGS.batch_size, epochs=1, verbose=0,
                          shuffle=True)
                predictions = model.predict(valid_x, batch_size=4096, verbose=0)
                gaps.append(eval_util.calculate_gap(predictions, valid_y))
                if out:
                    out.write(json.dumps(dict(initializer=initializer, depth=depth,
                                              k=FLAGS.k_factors, epoch=epoch + 1,
                                              gap=gaps[-1])) + "\n")
            print(f"| {initializer} | {depth} | {FLAGS.k_factors} | "
                  + " | ".join(f"{g:.4f}" for g in gaps) + f" | {time.time() - start:.0f} |",
                  flush=True)
    if out:
        out.close()


if __name__ == "__main__":
    app.run(main)
