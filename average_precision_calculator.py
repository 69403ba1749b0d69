"""Average precision of a ranking, streaming over batches, and mean AP over classes.

AP = (1/P) * sum_i precision@i * rel(i) over the ranking by decreasing score, P the number of
positives (with `top_n`, only the n best-ranked items count, but P still counts every positive).

Equal scores have no order of their own: the starter code shuffled them (seed 0) before a
stable sort, so its AP depended on that shuffle. Here every AP is the expected value over all
orders of tied items, computed exactly (McSherry & Najork 2008) and independent of the order in
which items arrive.
"""

import numpy as np


def tie_groups(scores, relevant):
    """(sizes, positives) of the groups of equal scores, best score first."""
    scores, relevant = np.asarray(scores), np.asarray(relevant) > 0
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    starts = np.r_[True, ranked[1:] != ranked[:-1]] if ranked.size else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group, minlength=int(starts.sum()))
    positives = np.bincount(group, weights=relevant[order], minlength=sizes.size)
    return sizes, positives


def expected_precision_sums(sizes, hits, pairs, segments=None, num_segments=1, top_n=None):
    """Per segment, E[sum_i precision@i * rel(i)] over all orders within each tie group.

    The groups are given in ranking order (all groups of a segment together, best first):
    `sizes` items each, `hits` the expected number of positives among them and `pairs` the
    expected h(h-1) of that number h (h(h-1) itself when h is known). Ranks restart with each
    segment (a class in mean AP); with `top_n`, only each segment's first n ranks count.

    A group of n items after s items and c expected positives contributes, at its j-th place,
    E[rel_j * (c + 1 + hits among its first j-1)] / (s + j)
        = (hits * (c + 1) / n + (j - 1) * pairs / (n (n - 1))) / (s + j),
    summed over j in closed form with harmonic numbers.
    """
    sizes = np.asarray(sizes, np.int64)
    hits, pairs = np.asarray(hits, np.float64), np.asarray(pairs, np.float64)
    segments = np.zeros(sizes.size, np.int64) if segments is None else np.asarray(segments)
    if not sizes.size:
        return np.zeros(num_segments)
    first = np.r_[True, segments[1:] != segments[:-1]]
    items_before, hits_before = np.cumsum(sizes) - sizes, np.cumsum(hits) - hits
    start = np.maximum.accumulate(np.where(first, np.arange(sizes.size), 0))
    s = items_before - items_before[start]  # items ranked before the group in its segment
    c = hits_before - hits_before[start]
    n = sizes
    counted = n if top_n is None else np.clip(top_n - s, 0, n)
    harmonic = np.r_[0.0, np.cumsum(1.0 / np.arange(1, int((s + counted).max()) + 1))]
    inverse_ranks = harmonic[s + counted] - harmonic[s]  # sum over counted j of 1 / (s + j)
    later_ranks = counted - (s + 1) * inverse_ranks  # sum of (j - 1) / (s + j)
    pair_share = np.where(n > 1, pairs / np.maximum(n * (n - 1), 1), 0.0)
    terms = hits * (c + 1) / n * inverse_ranks + pair_share * later_ranks
    return np.bincount(segments, weights=terms, minlength=num_segments)


def average_precision(scores, relevant, num_positives=None, top_n=None):
    """AP of one ranking (expected over the orders of tied scores): scores [N], relevant [N]."""
    relevant = np.asarray(relevant) > 0
    positives = int(relevant.sum()) if num_positives is None else int(num_positives)
    if positives == 0:
        return 0.0
    sizes, hits = tie_groups(scores, relevant)
    return float(expected_precision_sums(sizes, hits, hits * (hits - 1), top_n=top_n)[0]
                 / positives)


class AveragePrecisionCalculator:
    """Accumulate (scores, relevant) batches; `peek_ap_at_n()` gives the AP so far.

    With top_n, only the items that can still rank among the top n (every item tied with the
    n-th score included) are kept between batches, so memory stays bounded; the positives
    outside them still count.
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
            nth = np.partition(self.scores, self.scores.size - self.top_n)[-self.top_n]
            keep = self.scores >= nth
            self.scores, self.relevant = self.scores[keep], self.relevant[keep]

    def peek_ap_at_n(self):
        return average_precision(self.scores, self.relevant, self.positives, self.top_n)


def class_average_precisions(classes, scores, relevant, positives):
    """AP of each class [C] from items (class, score, relevant), each class's items ranked
    apart; positives [C] counts every positive of each class (a class without any: AP 0)."""
    classes, scores = np.asarray(classes, np.int64), np.asarray(scores, np.float64)
    relevant, positives = np.asarray(relevant) > 0, np.asarray(positives, np.float64)
    order = np.lexsort((-scores, classes))
    classes, scores, relevant = classes[order], scores[order], relevant[order]
    starts = np.r_[True, (classes[1:] != classes[:-1]) | (scores[1:] != scores[:-1])] \
        if classes.size else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group, minlength=int(starts.sum()))
    hits = np.bincount(group, weights=relevant, minlength=sizes.size)
    sums = expected_precision_sums(sizes, hits, hits * (hits - 1), classes[starts],
                                   num_segments=positives.size)
    return np.divide(sums, positives, out=np.zeros_like(sums), where=positives > 0)


def mean_average_precision(predictions, labels, chunk=256):
    """Mean over classes of each class's AP over all videos; classes without positives left out.

    predictions, labels [N, C]; one block of classes at a time. Not the starter's MAP, which
    ranks only each video's top k (eval_util.EvaluationMetrics).
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels) > 0
    aps = []
    for start in range(0, predictions.shape[1], chunk):
        scores, relevant = predictions[:, start:start + chunk], labels[:, start:start + chunk]
        columns = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        positives = relevant.sum(axis=0)
        per_class = class_average_precisions(columns.ravel(), scores.ravel(), relevant.ravel(),
                                             positives)
        aps.append(per_class[positives > 0])
    aps = np.concatenate(aps) if aps else np.zeros(0)
    return float(aps.mean()) if aps.size else 0.0
