"""Evaluation metrics of YouTube-8M, vectorised in NumPy.

GAP@k (global average precision): each video's top-k predictions are pooled over all videos and
ranked by confidence; GAP = (1/P) * sum_i precision@i * rel(i), where P counts every ground-truth
label of every video, also those outside anyone's top k.
"""

import numpy as np


def top_k_by_row(predictions, k):
    """(scores, class indexes) [N, min(k, C)] of each row's k highest predictions, descending."""
    predictions = np.asarray(predictions)
    k = min(k, predictions.shape[1])
    if k < predictions.shape[1]:
        index = np.argpartition(-predictions, k - 1, axis=1)[:, :k]
    else:
        index = np.broadcast_to(np.arange(k), predictions.shape).copy()
    scores = np.take_along_axis(predictions, index, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(index, order, axis=1)


def calculate_gap(predictions, labels, top_k=20):
    """GAP@top_k of predictions [N, C] against multi-hot labels [N, C]."""
    labels = np.asarray(labels)
    scores, index = top_k_by_row(predictions, top_k)
    relevant = np.take_along_axis(labels, index, axis=1) > 0
    positives = int((labels > 0).sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores.ravel(), kind="stable")
    hits = relevant.ravel()[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / positives)
