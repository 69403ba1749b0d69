import numpy as np

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


def test_gap_with_ties_and_k_above_and_below_the_class_count():
    rng = np.random.default_rng(3)
    predictions = rng.integers(0, 4, size=(70, 12)) / 4.0  # many ties, also at the k-th place
    labels = (rng.random((70, 12)) < 0.2).astype(np.float32)
    labels[:3] = 0  # videos without labels
    for k in (1, 3, 12, 20):
        got = eval_util.calculate_gap(predictions, labels, k)
        assert abs(got - reference_gap(predictions, labels, k)) < 1e-12, k
