"""Average precision of a ranking, streaming over batches, and mean AP over classes.

AP = (1/P) * sum_i precision@i * rel(i) over the ranking by decreasing score, P the number of
positives (with `top_n`, only the n best-scored items are ranked, but P still counts every
positive). Equal scores keep the order in which the items arrived, as Python's stable sort
did in the YouTube-8M starter code.
"""

import numpy as np


def average_precision(scores, relevant, num_positives=None, top_n=None):
    """AP of one ranking: scores [N], relevant [N] bool."""
    scores, relevant = np.asarray(scores), np.asarray(relevant) > 0
    positives = int(relevant.sum()) if num_positives is None else int(num_positives)
    if positives == 0:
        return 0.0
    hits = relevant[np.argsort(-scores, kind="stable")][:top_n]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / positives)


class AveragePrecisionCalculator:
    """Accumulate (scores, relevant) batches; `peek_ap_at_n()` gives the AP so far.

    With top_n, only the top_n highest scores are kept between batches, so memory stays
    bounded; the positives outside them still count.
    """

    def __init__(self, top_n=None):
        self.top_n = top_n
        self.scores = np.zeros(0, np.float32)
        self.relevant = np.zeros(0, bool)
        self.positives = 0

    def accumulate(self, scores, relevant, num_positives=None):
        relevant = np.asarray(relevant) > 0
        self.positives += int(relevant.sum()) if num_positives is None else int(num_positives)
        self.scores = np.concatenate([self.scores, np.asarray(scores, np.float32)])
        self.relevant = np.concatenate([self.relevant, relevant])
        if self.top_n is not None and self.scores.size > 2 * self.top_n:
            keep = np.sort(np.argsort(-self.scores, kind="stable")[: self.top_n])
            self.scores, self.relevant = self.scores[keep], self.relevant[keep]

    def peek_ap_at_n(self):
        return average_precision(self.scores, self.relevant, self.positives, self.top_n)


def mean_average_precision(predictions, labels, chunk=256):
    """Mean over classes of each class's AP over all videos; classes without positives left out.

    predictions, labels [N, C]; vectorised one block of classes at a time.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels) > 0
    aps = []
    for start in range(0, predictions.shape[1], chunk):
        scores, relevant = predictions[:, start:start + chunk], labels[:, start:start + chunk]
        order = np.argsort(-scores, axis=0, kind="stable")
        hits = np.take_along_axis(relevant, order, axis=0)
        precision = np.cumsum(hits, axis=0) / np.arange(1, len(hits) + 1)[:, None]
        positives = relevant.sum(axis=0)
        has = positives > 0
        aps.append((precision * hits).sum(axis=0)[has] / positives[has])
    aps = np.concatenate(aps) if aps else np.zeros(0)
    return float(aps.mean()) if aps.size else 0.0
