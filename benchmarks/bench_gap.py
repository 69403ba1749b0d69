"""GAP@20 of 1,000,000 videos x 3,862 classes, streamed in batches as eval.py streams them.

    .venv/bin/python benchmarks/bench_gap.py [--videos=1000000] [--batch=10000]

Predictions are sigmoid(normal logits - 4) in float32 (mostly small, as a trained model's),
labels about 3 a video. --distinct batches are generated first and fed in turn (generating 15 GB
of random numbers would dominate); the time is that of `EvaluationMetrics.add` over every batch
plus the final `gap()`, split into the two.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import eval_util  # noqa: E402

flags.DEFINE_integer("videos", 1_000_000, "Videos in all.")
flags.DEFINE_integer("batch", 10_000, "Videos per batch.")
flags.DEFINE_integer("classes", 3862, "Classes.")
flags.DEFINE_integer("distinct", 4, "Distinct batches generated and fed in turn.")
FLAGS = flags.FLAGS


def batches():
    rng = np.random.default_rng(0)
    made = []
    for _ in range(FLAGS.distinct):
        logits = rng.standard_normal((FLAGS.batch, FLAGS.classes), np.float32) - 4.0
        predictions = 1.0 / (1.0 + np.exp(-logits))
        labels = rng.random((FLAGS.batch, FLAGS.classes), np.float32) < 3.0 / FLAGS.classes
        predictions[labels] += 0.2  # some signal, so that GAP is not near zero
        made.append((predictions.astype(np.float32), labels))
    return made


def main(argv):
    del argv
    made = batches()
    metrics = eval_util.EvaluationMetrics(20)
    started = time.perf_counter()
    fed = 0
    while fed < FLAGS.videos:
        predictions, labels = made[(fed // FLAGS.batch) % len(made)]
        take = min(FLAGS.batch, FLAGS.videos - fed)
        metrics.add(predictions[:take], labels[:take])
        fed += take
    added = time.perf_counter()
    gap = metrics.gap()
    done = time.perf_counter()
    print(f"{fed:,} videos x {FLAGS.classes:,} classes, batches of {FLAGS.batch:,}: "
          f"add {added - started:.1f}s + gap {done - added:.1f}s = {done - started:.1f}s "
          f"(GAP {gap:.4f})")


if __name__ == "__main__":
    app.run(main)
