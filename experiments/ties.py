"""How much tied scores move GAP and PERR: ours (the expected value over the orders of ties)
against the starter's rule and against ranking ties by class index.

    .venv/bin/python experiments/ties.py --train_dir=out/some_run \
        --eval_data_pattern='../shared/data/yt8m-2018-video/validate/*.tfrecord' --round=0.1

The model's validation predictions are rounded to multiples of --round (0: as they are), which
makes ties common, and scored three ways:
- expected: eval_util (ours);
- starter: each video's top k by numpy.argpartition, the pooled list shuffled with Python's
  random.seed(0) and then stable-sorted by decreasing score, as REFERENCE.md describes the
  starter code; PERR from a stable sort of each video's predictions (class order);
- by index: ties ranked by class index within a video and by video order across videos;
and the lowest and highest GAP that any order of ties gives (every tie broken against, or for,
the positives): every rule's figure, the starter's included, lies between them.
"""

import random

import numpy as np
import runs  # noqa: F401 - beside this script; puts the repository on sys.path
from absl import app, flags

import utils  # noqa: E402

utils.quiet_tensorflow()
import checkpoints  # noqa: E402
import eval_util  # noqa: E402
import readers  # noqa: E402

flags.DEFINE_string("train_dir", None, "A train_dir of train.py.", required=True)
flags.DEFINE_string("eval_data_pattern", None, "Labelled records.", required=True)
flags.DEFINE_float("round", 0.1, "Round predictions to multiples of this (0: do not).")
flags.DEFINE_integer("top_k", 20, "Predictions per video for GAP.")
FLAGS = flags.FLAGS


def ap_of(hits, positives):
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / positives)


def starter_gap(predictions, labels, k):
    scores, hits = [], []
    for row, truth in zip(predictions, labels):
        top = np.argpartition(row, -k)[-k:]
        scores += row[top].tolist()
        hits += truth[top].tolist()
    pairs = list(zip(scores, hits))
    random.seed(0)
    random.shuffle(pairs)
    ranked = sorted(pairs, key=lambda pair: pair[0], reverse=True)
    return ap_of(np.array([h for _, h in ranked], float), labels.sum())


def by_index_metrics(predictions, labels, k):
    order = np.argsort(-predictions, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(predictions, order, axis=1).ravel()
    hits = np.take_along_axis(labels, order, axis=1).ravel()
    ranked = np.argsort(-scores, kind="stable")
    gap = ap_of(hits[ranked].astype(float), labels.sum())
    counts = labels.sum(axis=1).astype(int)
    full = np.argsort(-predictions, axis=1, kind="stable")
    perr = [labels[v, full[v, :counts[v]]].sum() / counts[v]
            for v in range(len(labels)) if counts[v]]
    return gap, float(np.mean(perr))


def tie_bound_gap(predictions, labels, k, positives_first):
    """GAP with every tie broken for (positives_first) or against the positives, in each
    video's top k and in the pooled list: the highest or lowest GAP any order of ties gives."""
    def after(relevant):  # the second sort key: False sorts first
        return ~relevant if positives_first else relevant

    top = np.lexsort((after(labels), -predictions), axis=1)[:, :k]
    scores = np.take_along_axis(predictions, top, axis=1).ravel()
    hits = np.take_along_axis(labels, top, axis=1).ravel()
    pooled = np.lexsort((after(hits), -scores))
    return ap_of(hits[pooled].astype(float), labels.sum())


def run():
    model, reader, _, checkpoint = checkpoints.load(FLAGS.train_dir)
    files = readers.resolve_files(FLAGS.eval_data_pattern)
    predictions, labels = [], []
    with reader.reraise_data_errors(files):
        for batch in reader.dataset(files, 1024):
            predictions.append(model(batch, training=False).numpy())
            labels.append(batch["labels"].numpy())
    predictions, labels = np.concatenate(predictions), np.concatenate(labels) > 0
    if FLAGS.round:
        predictions = np.round(predictions / FLAGS.round) * FLAGS.round
    predictions = predictions.astype(np.float32)
    metrics = eval_util.EvaluationMetrics(FLAGS.top_k)
    metrics.add(predictions, labels)
    ours = metrics.results()
    index_gap, index_perr = by_index_metrics(predictions, labels, FLAGS.top_k)
    print(f"{checkpoint}, {len(labels)} videos, predictions rounded to {FLAGS.round}")
    print(f"expected: GAP {ours['gap']:.4f} | PERR {ours['perr']:.4f}")
    print(f"starter:  GAP {starter_gap(predictions, labels, FLAGS.top_k):.4f}")
    print(f"by index: GAP {index_gap:.4f} | PERR {index_perr:.4f}")
    worst, best = (tie_bound_gap(predictions, labels, FLAGS.top_k, first)
                   for first in (False, True))
    print(f"any order of ties: GAP from {worst:.4f} to {best:.4f}")


if __name__ == "__main__":
    app.run(utils.cli_main(run))
