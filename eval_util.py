"""Evaluation metrics of YouTube-8M, vectorised in NumPy.

GAP@k (global average precision): each video's top-k predictions are pooled over all videos and
ranked by confidence; GAP = (1/P) * sum_i precision@i * rel(i), where P counts every ground-truth
label of every video, also those outside anyone's top k.
"""

import time

import numpy as np

from average_precision_calculator import average_precision, mean_average_precision


def top_k_by_row(predictions, k):
    """(scores, class indexes) [N, min(k, C)] of each row's k highest predictions, descending.

    Equal scores rank by class index, also at the k-th place (the order `tf.math.top_k`
    documents): the result is exact and deterministic, ties included. TensorFlow's top-k is
    1.5x faster than NumPy's argpartition and a tie pass (benchmarks/bench_gap.py).
    """
    import tensorflow as tf

    predictions = np.asarray(predictions)
    scores, index = tf.math.top_k(predictions, min(k, predictions.shape[1]))
    return scores.numpy(), index.numpy()


def calculate_gap(predictions, labels, top_k=20):
    """GAP@top_k of predictions [N, C] against multi-hot labels [N, C]."""
    metrics = EvaluationMetrics(top_k)
    metrics.add(predictions, labels)
    return metrics.gap()


class EvaluationMetrics:
    """Streaming GAP@k, hit@1, PERR and mean loss over batches; keeps k pairs per video.

    With mean_ap=True it also keeps every prediction, for the mean AP over classes.
    """

    def __init__(self, top_k=20, mean_ap=False):
        self.top_k = top_k
        self.kept = [] if mean_ap else None
        self.scores, self.hits = [], []
        self.positives = self.videos = self.labelled = 0
        self.hit_sum = self.perr_sum = self.loss_sum = 0.0

    def add(self, predictions, labels, losses=None):
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if labels.dtype != bool:
            labels = labels > 0
        counts = np.count_nonzero(labels, axis=1)  # (B,)
        # One top-k serves GAP (the first top_k), hit@1 and PERR (each video's first L).
        depth = max(self.top_k, int(counts.max()) if counts.size else 0, 1)
        scores, index = top_k_by_row(predictions, depth)
        hits = np.take_along_axis(labels, index, axis=1)  # (B, depth) bool
        self.scores.append(scores[:, :self.top_k].ravel())
        self.hits.append(hits[:, :self.top_k].ravel())
        self.positives += int(counts.sum())
        self.videos += len(labels)
        has = counts > 0
        self.labelled += int(has.sum())
        self.hit_sum += float(hits[:, 0].sum())
        within = np.arange(hits.shape[1])[None, :] < counts[:, None]
        self.perr_sum += float(((hits & within).sum(axis=1)[has] / counts[has]).sum())
        if losses is not None:
            self.loss_sum += float(np.sum(losses))
        if self.kept is not None:
            self.kept.append((predictions.astype(np.float32), labels))

    def gap(self):
        if not self.scores:
            return 0.0
        return average_precision(np.concatenate(self.scores), np.concatenate(self.hits),
                                 self.positives)

    def results(self):
        videos = max(self.videos, 1)
        results = {"videos": self.videos, "labelled": self.labelled, "gap": self.gap(),
                   "hit_at_one": self.hit_sum / videos,
                   "perr": self.perr_sum / max(self.labelled, 1), "loss": self.loss_sum / videos}
        if self.kept:
            results["map"] = mean_average_precision(np.concatenate([p for p, _ in self.kept]),
                                                    np.concatenate([t for _, t in self.kept]))
        return results


def evaluate(model, reader, files, loss_fn, batch_size, top_k=20, mean_ap=False, num_readers=8,
             on_batch=None):
    """Metrics of a Keras model over every video of `files`, each counted exactly once.

    on_batch(videos so far) is called after each batch (for progress).
    """
    import tensorflow as tf

    import readers

    metrics = EvaluationMetrics(top_k, mean_ap=mean_ap)
    predict = tf.function(lambda batch: model(batch, training=False))
    started = time.time()
    with reader.reraise_data_errors(files):
        for batch in reader.dataset(files, batch_size, num_readers=num_readers):
            probabilities = predict(batch)
            metrics.add(probabilities.numpy(), batch["labels"].numpy(),
                        loss_fn(probabilities, batch["labels"]).numpy())
            if on_batch:
                on_batch(metrics.videos)
    if not metrics.videos:
        raise readers.no_records(files)
    results = metrics.results()
    results["seconds"] = time.time() - started
    return results
