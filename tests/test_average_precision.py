import numpy as np

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


def test_average_precision_with_ties_and_top_n():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(np.float32)  # many ties
    relevant = rng.random(200) < 0.3
    for top_n in (None, 10, 50):
        got = apc.average_precision(scores, relevant, top_n=top_n)
        assert abs(got - reference_ap(scores.tolist(), relevant.tolist(), top_n=top_n)) < 1e-12


def test_streaming_calculator_equals_one_pass():
    rng = np.random.default_rng(1)
    scores, relevant = rng.random(1000), rng.random(1000) < 0.1
    for top_n in (None, 40):
        calculator = apc.AveragePrecisionCalculator(top_n=top_n)
        for start in range(0, 1000, 37):
            calculator.accumulate(scores[start:start + 37], relevant[start:start + 37])
        want = reference_ap(scores.tolist(), relevant.tolist(), top_n=top_n)
        assert abs(calculator.peek_ap_at_n() - want) < 1e-9


def test_mean_average_precision_skips_classes_without_positives():
    rng = np.random.default_rng(2)
    predictions = rng.random((80, 30))
    labels = rng.random((80, 30)) < 0.1
    labels[:, 3] = False
    want = np.mean([reference_ap(predictions[:, c].tolist(), labels[:, c].tolist())
                    for c in range(30) if labels[:, c].any()])
    assert abs(apc.mean_average_precision(predictions, labels, chunk=7) - want) < 1e-12
