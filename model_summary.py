"""What a built model holds: weights per layer, the dense equivalent of its compact layers,
the summary train.py prints and writes, and the weight budget."""

import math

import circulant_ops
import model_utils


def _weight_layers(layer):
    """(layer, weights it owns directly) for each layer that owns weights, depth first."""
    children = model_utils.sublayers(layer)
    found = []
    for child in children:
        found.extend(_weight_layers(child))
    inner = {id(w) for c in children for w in c.weights}
    own = [w for w in layer.weights if id(w) not in inner]
    if own:
        found.append((layer, own))
    return found


def summarize(model):
    """(rows, totals) of a built model: per layer (path, kind, weights, dense-equivalent)."""
    rows = []
    for layer, own in _weight_layers(model):
        weights = sum(math.prod(w.shape) for w in own)
        dense = (layer.dense_weight_count()
                 if isinstance(layer, circulant_ops.DiagonalCirculant) else weights)
        rows.append((layer.path, type(layer).__name__, weights, dense))
    total = model.count_params()
    dense_total = total + sum(d - w for _, _, w, d in rows)
    return rows, {"weights": total, "dense_weights": dense_total,
                  "mb": total * 4 / 2**20, "compression": dense_total / total}


def format_summary(model, name):
    rows, totals = summarize(model)
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"model {name}: {totals['weights']:,} weights, {totals['mb']:.1f} MB at float32; "
             f"the same model with dense layers: {totals['dense_weights']:,} "
             f"(compression {totals['compression']:.2f}x)",
             f"  {'layer':<{width}}  {'kind':<20} {'weights':>13} {'dense':>13}"]
    for path, kind, weights, dense in rows:
        lines.append(f"  {path:<{width}}  {kind:<20} {weights:>13,} {dense:>13,}")
    return "\n".join(lines)


def check_budget(model, max_model_mb):
    """Raise ValueError when the model's float32 weights exceed max_model_mb (0: no limit)."""
    _, totals = summarize(model)
    if max_model_mb and totals["mb"] > max_model_mb:
        raise ValueError(f"the model needs {totals['mb']:.1f} MB at float32, over "
                         f"--max_model_mb={max_model_mb}")


