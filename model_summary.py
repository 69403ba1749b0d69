"""What a built model holds: weights per layer, the dense equivalent of its compact layers,
the summary train.py prints and writes, the weight budget, and the memory training needs."""

import math

import tensorflow as tf

import layer_kinds
import model_utils
import quantization


def _weight_layers(layer):
    """(layer, weights it owns directly) for each layer that owns weights, depth first; a
    structured layer (layer_kinds) is one row with all its weights."""
    if layer_kinds.is_structured(layer):
        return [(layer, layer.weights)]
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
        dense = layer.dense_weight_count() if layer_kinds.is_structured(layer) else weights
        rows.append((layer.path, type(layer).__name__, weights, dense))
    total = model.count_params()
    dense_total = total + sum(d - w for _, _, w, d in rows)
    return rows, {"weights": total, "dense_weights": dense_total,
                  "mb": total * 4 / 2**20, "compression": dense_total / total,
                  "mb_by_precision": mb_by_precision(model)}


def mb_by_precision(model, min_elements=quantization.MIN_ELEMENTS):
    """{precision: MB} of the model's weights as an export stores them at each precision
    (export_model.py --quantize; tensors under min_elements values stay float32), before the
    SavedModel's own bytes and the .tgz's compression."""
    return {name: sum(quantization.WeightPrecision(name, min_elements=min_elements).stored_bytes(
        math.prod(w.shape), w.dtype) for w in model.weights) / 2**20
        for name in quantization.PRECISIONS}


def format_summary(model, name):
    rows, totals = summarize(model)
    width = max([len(r[0]) for r in rows] + [10])
    sizes = totals["mb_by_precision"]
    lines = [f"model {name}: {totals['weights']:,} weights, {totals['mb']:.1f} MB at float32 "
             f"({sizes['float16']:.1f} at float16, {sizes['uint8']:.1f} at uint8); "
             f"the same model with dense layers: {totals['dense_weights']:,} "
             f"(compression {totals['compression']:.2f}x)",
             f"  {'layer':<{width}}  {'kind':<20} {'weights':>13} {'dense':>13}"]
    for path, kind, weights, dense in rows:
        lines.append(f"  {path:<{width}}  {kind:<20} {weights:>13,} {dense:>13,}")
    return "\n".join(lines)


def described(model, name, memory, per_device):
    """model_summary.json's content: the totals, the memory training expects and each layer."""
    rows, totals = summarize(model)
    return {"model": name, **totals, "expected_memory_bytes": memory,
            "batch_per_device": per_device,
            "layers": [{"path": path, "kind": kind, "weights": weights, "dense": dense}
                       for path, kind, weights, dense in rows]}


def check_budget(model, max_model_mb):
    """Raise ValueError when the model's float32 weights exceed max_model_mb (0: no limit)."""
    _, totals = summarize(model)
    if max_model_mb and totals["mb"] > max_model_mb:
        raise ValueError(f"the model needs {totals['mb']:.1f} MB at float32, over "
                         f"--max_model_mb={max_model_mb}")


def _kept_for_backward(model, batch):
    """Bytes of the forward pass's values that the backward pass reads, for `batch`.

    Found in the graphs: the ops of a forward-and-backward trace that the forward-only trace
    lacks are the backward pass; the forward values they read (not weights or constants) are
    what training keeps in memory between the two passes.
    """
    def forward(batch):
        return model(batch, training=True)

    def forward_and_backward(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(batch, training=True), tf.float32))
        return tape.gradient(loss, model.trainable_variables)

    forward_ops = {op.name for op in
                   tf.function(forward).get_concrete_function(batch).graph.get_operations()}
    graph = tf.function(forward_and_backward).get_concrete_function(batch).graph
    kept = {}
    for op in graph.get_operations():
        if op.name not in forward_ops:
            for value in op.inputs:
                if (value.op.name in forward_ops and value.dtype not in (tf.variant, tf.resource)
                        and value.op.type not in ("ReadVariableOp", "Const", "Placeholder")
                        and value.shape.is_fully_defined()):
                    kept[value.name] = value.shape.num_elements() * value.dtype.size
    return sum(kept.values())


def training_memory(model, example, batch_size, optimizer_variables=()):
    """Expected peak memory (bytes) of training `model` at `batch_size` videos a device:
    {"weights", "gradients", "optimizer", "activations", "total"}. example: a one-video batch
    of the reader's shapes. Activations are those kept for the backward pass (measured on the
    traced graphs for one and two videos); TensorFlow's own memory and the input pipeline's
    buffers are not included.
    """
    one = _kept_for_backward(model, example)
    two = _kept_for_backward(model, {k: tf.concat([v, v], 0) for k, v in example.items()})
    per_video, fixed = max(two - one, 0), max(2 * one - two, 0)
    input_bytes = sum(v.shape.num_elements() * v.dtype.size for v in example.values())

    def size(variables):
        return sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in variables)

    nbytes = {"weights": size(model.weights), "gradients": size(model.trainable_weights),
              "optimizer": size(optimizer_variables),
              "activations": fixed + batch_size * (per_video + input_bytes)}
    nbytes["total"] = sum(nbytes.values())
    return nbytes


def format_memory(nbytes, batch_size):
    def size(n):
        return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"

    return (f"expected peak training memory {size(nbytes['total'])} a device: weights "
            f"{size(nbytes['weights'])}, gradients {size(nbytes['gradients'])}, optimizer "
            f"{size(nbytes['optimizer'])}, activations of {batch_size:,} videos "
            f"{size(nbytes['activations'])} (beyond TensorFlow's own)")
