import itertools

import numpy as np
import pytest

import average_precision_calculator as apc


def reference_ap(scores, relevant, positives=None, top_n=None):
    """AP by its definition, ties in arrival order, plain loops in float64."""
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]
    positives = sum(bool(r) for r in relevant) if positives is None else positives
    hits, total = 0, 0.0
    for rank, i in enumerate(ranked, start=1):
        if relevant[i]:
            hits += 1
            total += hits / rank
    return total / positives if positives else 0.0


def mean_over_orders(scores, relevant, positives=None, top_n=None):
    """AP averaged over every order of the items (ties broken by that order)."""
    results = [reference_ap([scores[i] for i in order], [relevant[i] for i in order],
                            positives, top_n)
               for order in itertools.permutations(range(len(scores)))]
    return sum(results) / len(results)


def test_tied_scores_give_the_mean_ap_over_their_orders():
    rng = np.random.default_rng(0)
    for _ in range(40):
        size = int(rng.integers(1, 8))
        scores = rng.integers(0, 3, size).astype(np.float32)  # many ties
        relevant = rng.random(size) < 0.5
        relevant[0] = True
        for top_n in (None, 1, 3):
            want = mean_over_orders(scores.tolist(), relevant.tolist(), top_n=top_n)
            got = apc.average_precision(scores, relevant, top_n=top_n)
            assert abs(got - want) < 1e-12, (scores, relevant, top_n)
            shuffled = rng.permutation(size)  # the order items arrive in does not matter
            assert apc.average_precision(scores[shuffled], relevant[shuffled],
                                         top_n=top_n) == pytest.approx(got, abs=1e-15)


def test_without_ties_ap_is_the_definition():
    rng = np.random.default_rng(4)
    scores, relevant = rng.random(200), rng.random(200) < 0.3
    for top_n in (None, 10, 50):
        got = apc.average_precision(scores, relevant, top_n=top_n)
        assert abs(got - reference_ap(scores.tolist(), relevant.tolist(), top_n=top_n)) < 1e-12


def test_each_class_ranked_apart():
    rng = np.random.default_rng(5)
    classes = rng.integers(0, 4, 14)
    scores = rng.integers(0, 3, 14) / 2
    relevant = rng.random(14) < 0.4
    positives = np.bincount(classes[relevant], minlength=5) + np.array([0, 1, 0, 2, 0])
    got = apc.class_average_precisions(classes, scores, relevant, positives)
    for c in range(5):
        mine = classes == c
        want = (mean_over_orders(scores[mine].tolist(), relevant[mine].tolist(),
                                 positives[c]) if positives[c] else 0.0)
        assert abs(got[c] - want) < 1e-12, c


def test_streaming_calculator_equals_one_pass():
    rng = np.random.default_rng(1)
    scores, relevant = rng.random(1000), rng.random(1000) < 0.1
    tied = np.round(scores * 20) / 20  # ties, also at the n-th place
    for top_n in (None, 40):
        for values in (scores, tied):
            calculator = apc.AveragePrecisionCalculator(top_n=top_n)
            for start in range(0, 1000, 37):
                calculator.accumulate(values[start:start + 37], relevant[start:start + 37])
            want = apc.average_precision(values, relevant, top_n=top_n)
            assert abs(calculator.peek_ap_at_n() - want) < 1e-9
        want = reference_ap(scores.tolist(), relevant.tolist(), top_n=top_n)
        assert abs(apc.average_precision(scores, relevant, top_n=top_n) - want) < 1e-12


def test_mean_average_precision_skips_classes_without_positives():
    rng = np.random.default_rng(2)
    predictions = rng.random((80, 30))
    labels = rng.random((80, 30)) < 0.1
    labels[:, 3] = False
    want = np.mean([reference_ap(predictions[:, c].tolist(), labels[:, c].tolist())
                    for c in range(30) if labels[:, c].any()])
    assert abs(apc.mean_average_precision(predictions, labels, chunk=7) - want) < 1e-12
