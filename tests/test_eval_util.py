import itertools

import numpy as np
import pytest

import eval_util


def reference_gap(predictions, labels, k):
    """GAP by its definition, with plain loops in float64."""
    pooled = []
    for row, truth in zip(predictions, labels):
        for c in sorted(range(len(row)), key=lambda c: -row[c])[:k]:
            pooled.append((row[c], truth[c] > 0))
    pooled.sort(key=lambda pair: -pair[0])
    hits, total = 0, 0.0
    for rank, (_, relevant) in enumerate(pooled, start=1):
        if relevant:
            hits += 1
            total += hits / rank
    return total / float(labels.sum())


def test_gap_matches_the_definition():
    rng = np.random.default_rng(0)
    for n, c, k in [(50, 30, 5), (40, 10, 20), (30, 100, 20), (1, 5, 1)]:
        predictions = rng.random((n, c))  # continuous: no ties
        labels = (rng.random((n, c)) < 0.1).astype(np.float32)
        labels[0, 0] = 1
        got = eval_util.calculate_gap(predictions, labels, k)
        assert abs(got - reference_gap(predictions, labels, k)) < 1e-12


def test_gap_extremes():
    labels = np.eye(4)
    assert eval_util.calculate_gap(labels * 0.9 + 0.05, labels, 1) == 1.0
    assert eval_util.calculate_gap(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0


def test_streaming_metrics_equal_one_pass():
    rng = np.random.default_rng(1)
    predictions = rng.random((60, 25))
    labels = (rng.random((60, 25)) < 0.15).astype(np.float32)
    labels[:5] = 0
    streamed = eval_util.EvaluationMetrics(top_k=10)
    for start in range(0, 60, 7):
        streamed.add(predictions[start:start + 7], labels[start:start + 7], np.ones(7)[:len(
            labels[start:start + 7])])
    got = streamed.results()
    assert got["videos"] == 60 and got["loss"] == 1.0
    assert abs(got["gap"] - reference_gap(predictions, labels, 10)) < 1e-12
    top = predictions.argmax(axis=1)
    assert got["hit_at_one"] == np.mean(labels[np.arange(60), top] > 0)
    perr = []
    for row, truth in zip(predictions, labels):
        count = int(truth.sum())
        if count:
            perr.append(float(truth[np.argsort(-row)[:count]].sum()) / count)
    assert abs(got["perr"] - np.mean(perr)) < 1e-12


def tie_orders(items, score):
    """Every ranking of `items` by decreasing score, ties in each possible order."""
    values = sorted({score(i) for i in items}, reverse=True)
    groups = [[i for i in items if score(i) == value] for value in values]
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for order in orders for i in order]


def mean_over(rankings, metric):
    results = [metric(ranking) for ranking in rankings]
    return sum(results) / len(results)


def metrics_over_tie_orders(predictions, labels, k):
    """GAP, hit@1, PERR and the starter's MAP averaged over the orders of tied predictions, as
    the starter's steps randomise them: each video's ranking (its top k, hit@1, PERR), then,
    independently, the pooled list for GAP and each class's list for MAP. The starter's MAP
    takes a video's top k by class index, as tf.math.top_k does."""
    n, c = predictions.shape

    def score(item):
        return predictions[item]

    def video_metrics(rankings):
        pooled = [i for ranking in rankings for i in ranking[:k]]
        gap = mean_over(tie_orders(pooled, score),
                        lambda order: ap([labels[i] for i in order], labels.sum()))
        hit = np.mean([labels[ranking[0]] for ranking in rankings])
        perr = np.mean([sum(labels[i] for i in ranking[:int(labels[v].sum())]) / labels[v].sum()
                        for v, ranking in enumerate(rankings) if labels[v].sum()])
        return np.array([gap, hit, perr])

    each_video = [list(tie_orders([(v, j) for j in range(c)], score)) for v in range(n)]
    gap, hit, perr = mean_over(itertools.product(*each_video), video_metrics)
    by_class = [[] for _ in range(c)]
    for v in range(n):
        for j in sorted(range(c), key=lambda j: (-predictions[v, j], j))[:k]:
            by_class[j].append((v, j))
    starter_map = np.mean([
        mean_over(tie_orders(items, score),
                  lambda order, j=j: ap([labels[i] for i in order], labels[:, j].sum()))
        for j, items in enumerate(by_class)])
    return [gap, hit, perr, starter_map]


def ap(ranked_relevance, positives):
    hits, total = 0, 0.0
    for place, relevant in enumerate(ranked_relevance, start=1):
        if relevant:
            hits += 1
            total += hits / place
    return total / positives if positives else 0.0


def test_ties_give_the_mean_metrics_over_their_orders():
    rng = np.random.default_rng(3)
    for n, c, k in [(2, 3, 1), (3, 3, 2), (2, 4, 2), (3, 2, 1), (2, 3, 5)]:
        for _ in range(3):
            predictions = rng.integers(0, 3, size=(n, c)) / 2.0
            labels = (rng.random((n, c)) < 0.4).astype(np.float64)
            labels[0, 0] = 1
            metrics = eval_util.EvaluationMetrics(top_k=k)
            metrics.add(predictions, labels)
            got = metrics.results()
            want = metrics_over_tie_orders(predictions, labels, k)
            np.testing.assert_allclose([got["gap"], got["hit_at_one"], got["perr"], got["map"]],
                                       want, rtol=0, atol=1e-12, err_msg=f"{predictions}")


def test_equal_predictions_favour_no_class():
    """All predictions tied: every order is as likely, whatever the class indexes."""
    labels = np.zeros((4, 10), np.float32)
    labels[:, 0] = 1  # the lowest index, which a by-index order would rank first
    metrics = eval_util.EvaluationMetrics(top_k=3)
    metrics.add(np.full((4, 10), 0.5), labels)
    got = metrics.results()
    assert got["hit_at_one"] == pytest.approx(0.1) and got["perr"] == pytest.approx(0.1)
    # 12 pooled items, each video's one label drawn into its top 3 with chance 3/10
    assert 0 < got["gap"] < 0.3


def test_starter_map_counts_every_class():
    predictions = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.1]])
    labels = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    metrics = eval_util.EvaluationMetrics(top_k=1, mean_ap=True)
    metrics.add(predictions, labels)
    got = metrics.results()
    # top 1: class 0 from both videos (AP 1/1 over ranks 1, 2), class 1 from none (AP 0),
    # class 2 without positives (AP 0): MAP 1/3; over all predictions, classes 0 and 1 each
    # rank their positive first: 1.0
    assert got["map"] == pytest.approx(1 / 3)
    assert got["map_all"] == pytest.approx(1.0)
