"""Evaluation metrics of YouTube-8M, vectorised in NumPy.

GAP@k (global average precision): each video's top-k predictions are pooled over all videos and
ranked by confidence; GAP = (1/P) * sum_i precision@i * rel(i), where P counts every ground-truth
label of every video, also those outside anyone's top k.

Equal scores have no order of their own: the starter code filled a video's top k from tied
predictions in argpartition's order and ranked the pooled ties in a seeded random order. GAP,
hit@1 and PERR here are exact expected values with both steps uniformly random and independent:
where a tie straddles a video's k-th place, the video contributes t of its m tied predictions,
of which a hypergeometric number are positives, and tied scores in the pooled list are in any
order alike.
"""

import time
import weakref

import numpy as np

import average_precision_calculator as apc


def top_k_by_row(predictions, k):
    """(scores, class indexes) [N, min(k, C)] of each row's k highest predictions, descending.

    Equal scores rank by class index, also at the k-th place (the order `tf.math.top_k`
    documents). TensorFlow's top-k is 1.5x faster than NumPy's argpartition and a tie pass
    (benchmarks/bench_gap.py).
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


def _around(predictions, labels, value):
    """Per row, against its `value` [N]: (predictions above it, positives among them,
    predictions equal to it, positives among those)."""
    above = predictions > value[:, None]
    tied = predictions == value[:, None]
    return (np.count_nonzero(above, axis=1), np.count_nonzero(above & labels, axis=1),
            np.count_nonzero(tied, axis=1), np.count_nonzero(tied & labels, axis=1))


class EvaluationMetrics:
    """Streaming GAP@k, hit@1, PERR, the starter's MAP and mean loss (where `add` is given the
    losses) over batches; keeps k predictions per video.

    MAP (the starter's): each class's AP over the videos that have it among their top k, divided
    by all of its positives; the mean over all classes (a class without positives counts 0).
    Tied predictions at a video's k-th place enter it by class index (tf.math.top_k's order).
    With mean_ap=True it also keeps every prediction, for `map_all`: the mean AP over the
    classes with positives, each ranking every video.
    """

    def __init__(self, top_k=20, mean_ap=False):
        self.top_k = top_k
        self.kept = [] if mean_ap else None
        self.scores, self.hits = [], []  # the predictions above each video's k-th score
        self.boundary = []  # (k-th score, places left, predictions tied with it, positives)
        self.map_items = []  # (class, score, hit) of each video's top k
        self.class_positives = None
        self.positives = self.videos = self.labelled = 0
        self.hit_sum = self.perr_sum = 0.0
        self.loss_sum = None  # no loss without the losses of the batches (an ensemble's)

    def add(self, predictions, labels, losses=None):
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if labels.dtype != bool:
            labels = labels > 0
        counts = np.count_nonzero(labels, axis=1)  # (B,)
        classes = predictions.shape[1]
        k = min(self.top_k, classes)
        # One top-k serves GAP (the first k), hit@1 and PERR (each video's first L), and one
        # place more shows whether a tie runs past the last place used.
        depth = min(max(k, int(counts.max()) if counts.size else 0) + 1, classes)
        scores, index = top_k_by_row(predictions, depth)
        hits = np.take_along_axis(labels, index, axis=1)  # (B, depth) bool
        found = np.cumsum(hits, axis=1)
        rows = np.arange(len(labels))

        def straddling(places):
            """(each row's score at its last place, whether a tie there runs past it: rare
            unless predictions are rounded)."""
            value = scores[rows, places - 1]
            return value, (places < classes) & (
                scores[rows, np.minimum(places, depth - 1)] == value)

        def expected_hits(places):
            """Expected positives among each row's first `places`; the rows whose tie runs
            past that place are taken in full."""
            value, straddles = straddling(places)
            result = found[rows, places - 1].astype(np.float64)
            if straddles.any():
                above, above_hits, tied, tied_hits = _around(
                    predictions[straddles], labels[straddles], value[straddles])
                result[straddles] = (above_hits + (places[straddles] - above) * tied_hits
                                     / np.maximum(tied, 1))
            return result

        self.hit_sum += float(expected_hits(np.ones(len(labels), np.int64)).sum())
        has = counts > 0
        if has.any():
            self.perr_sum += float((expected_hits(np.maximum(counts, 1))[has]
                                    / counts[has]).sum())
        kth, straddles = straddling(np.full(len(labels), k))
        fixed = (scores[:, :k] > kth[:, None]) | ~straddles[:, None]  # certain to be in top k
        self.scores.append(scores[:, :k][fixed])
        self.hits.append(hits[:, :k][fixed])
        if straddles.any():
            above, _, tied, tied_hits = _around(predictions[straddles], labels[straddles],
                                                kth[straddles])
            self.boundary.append(np.stack([kth[straddles], k - above, tied, tied_hits],
                                          axis=1).astype(np.float64))
        self.map_items.append((index[:, :k].ravel(), scores[:, :k].ravel(), hits[:, :k].ravel()))
        column_positives = np.count_nonzero(labels, axis=0)
        self.class_positives = column_positives if self.class_positives is None else \
            self.class_positives + column_positives
        self.positives += int(counts.sum())
        self.videos += len(labels)
        self.labelled += int(has.sum())
        if losses is not None:
            self.loss_sum = (self.loss_sum or 0.0) + float(np.sum(losses))
        if self.kept is not None:
            self.kept.append((predictions.astype(np.float32), labels))

    def gap(self):
        if not self.scores or not self.positives:
            return 0.0
        scores, hits = np.concatenate(self.scores), np.concatenate(self.hits)
        kth, places, tied, tied_hits = np.concatenate(self.boundary or [np.zeros((0, 4))]).T
        used = places > 0
        kth, places, tied, tied_hits = kth[used], places[used], tied[used], tied_hits[used]
        values, inverse = np.unique(np.r_[scores.astype(np.float64), kth], return_inverse=True)
        group = values.size - 1 - inverse  # best score first
        fixed, drawn = group[:scores.size], group[scores.size:]
        sizes = (np.bincount(fixed, minlength=values.size)
                 + np.bincount(drawn, weights=places, minlength=values.size)).astype(np.int64)
        share = tied_hits / tied
        expected = (np.bincount(fixed, weights=hits, minlength=values.size)
                    + np.bincount(drawn, weights=places * share, minlength=values.size))
        # Each video draws `places` of its `tied` predictions: a hypergeometric count.
        spread = places * share * (1 - share) * (tied - places) / np.maximum(tied - 1, 1)
        variance = np.bincount(drawn, weights=spread, minlength=values.size)
        pairs = variance + expected ** 2 - expected
        return float(apc.expected_precision_sums(sizes, expected, pairs)[0] / self.positives)

    def starter_map(self):
        if not self.map_items:
            return 0.0
        classes, scores, hits = (np.concatenate(part) for part in zip(*self.map_items))
        return float(apc.class_average_precisions(classes, scores, hits,
                                               self.class_positives).mean())

    def hit_at_one(self):
        return self.hit_sum / max(self.videos, 1)

    def results(self):
        videos = max(self.videos, 1)
        results = {"videos": self.videos, "labelled": self.labelled, "gap": self.gap(),
                   "hit_at_one": self.hit_at_one(),
                   "perr": self.perr_sum / max(self.labelled, 1), "map": self.starter_map()}
        if self.loss_sum is not None:
            results["loss"] = self.loss_sum / videos
        if self.kept:
            results["map_all"] = apc.mean_average_precision(
                np.concatenate([p for p, _ in self.kept]),
                np.concatenate([t for _, t in self.kept]))
        return results


def metrics_line(results, top_k=None, segment_max_pred=None):
    """The metrics as every tool prints them, of what `results` (EvaluationMetrics.results,
    evaluate's) holds: "GAP@20 0.8123 | hit@1 ... | PERR ... | MAP ... [| mAP(all) ...]
    [| segment MAP@N ... (C classes with rated positives)] [| loss ...] [| 12s]"."""
    r = results
    parts = [f"GAP{f'@{top_k}' if top_k else ''} {r['gap']:.4f}",
             f"hit@1 {r['hit_at_one']:.4f}", f"PERR {r['perr']:.4f}", f"MAP {r['map']:.4f}"]
    if "map_all" in r:
        parts.append(f"mAP(all) {r['map_all']:.4f}")
    if "segment_map" in r:
        parts.append(f"segment MAP@{segment_max_pred:,} {r['segment_map']:.6f} "
                     f"({r['segment_classes']} classes with rated positives)")
    if "loss" in r:
        parts.append(f"loss {r['loss']:.4f}")
    if "seconds" in r:
        parts.append(f"{r['seconds']:.0f}s")
    return " | ".join(parts)


_PREDICTORS = weakref.WeakKeyDictionary()  # model -> {jit_compile: its traced prediction}


def traced_prediction(model, jit_compile=False):
    """The model's prediction (training=False) of a batch's model inputs as one traced function,
    whatever the batch size, kept for the next call (training validates the same model many
    times; inference predicts every batch)."""
    import tensorflow as tf

    predictors = _PREDICTORS.setdefault(model, {})
    if jit_compile not in predictors:
        held = weakref.ref(model)  # the cache must not keep the model alive
        predictors[jit_compile] = tf.function(lambda batch: held()(batch, training=False),
                                              jit_compile=jit_compile, reduce_retracing=True)
    return predictors[jit_compile]


def evaluate(model, reader, files, loss_fn, batch_size, top_k=20, mean_ap=False, num_readers=8,
             on_batch=None, jit_compile=False, on_predictions=None):
    """Metrics of a Keras model over every video of `files`, each counted exactly once.

    on_batch(videos so far) is called after each batch (for progress); jit_compile: the
    prediction step compiled by XLA. Rated segments (batches with label_weights) are scored as
    the starter scores them: the probabilities of the unrated classes taken as 0, the loss
    over the rated ones. on_predictions(batch, probabilities) sees each batch's probabilities
    (numpy) as the model gave them.
    """

    import readers

    metrics = EvaluationMetrics(top_k, mean_ap=mean_ap)
    started = time.time()
    with reader.reraise_data_errors(files):
        for batch in reader.dataset(files, batch_size, num_readers=num_readers):
            probabilities = traced_prediction(model, jit_compile)(readers.model_inputs(batch))
            weights = batch.get("label_weights")
            scored = probabilities if weights is None else probabilities * weights
            metrics.add(scored.numpy(), batch["labels"].numpy(),
                        loss_fn(probabilities, batch["labels"], weights).numpy())
            if on_predictions:
                on_predictions({k: v.numpy() for k, v in batch.items()}, probabilities.numpy())
            if on_batch:
                on_batch(metrics.videos)
    if not metrics.videos:
        raise reader.no_examples(files)
    results = metrics.results()
    results["seconds"] = time.time() - started
    return results
