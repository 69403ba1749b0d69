"""The kinds of linear layer (layer_kinds) against each other at the paper's layer shapes.

    .venv/bin/python benchmarks/bench_kinds.py [--batch=128] [--shapes=...] [--kinds=...]

For each shape and kind: weights, forward ms and forward+backward ms (gradients of the input
and of every weight) of one layer on a random batch, each kind in turn within each round, the
best of --rounds rounds of --steps steps after two warm-up steps; the speed against Dense of
the same shape. All in one process.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from utils import quiet_tensorflow  # noqa: E402

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import layer_kinds  # noqa: E402

# name: (input size, units, frames per example or 0), from the paper's model
SHAPES = {
    "video_dbof": (1024, 8192, 30),  # the cluster projection, on each of 30 sampled frames
    "video_fc": (8192, 512, 0),
    "moe_gating": (1024, 19310, 0),
    "context_gating": (3862, 3862, 0),
}
KINDS = {
    "dense": layer_kinds.KINDS["dense"](),
    "circulant k=1": layer_kinds.KINDS["circulant"](),
    "low_rank 32": layer_kinds.KINDS["low_rank"](rank=32),
    "monarch": layer_kinds.KINDS["monarch"](),
}
flags.DEFINE_integer("batch", 128, "Examples per step (the DBoF shape multiplies by frames).")
flags.DEFINE_string("shapes", ",".join(SHAPES), "Shapes: " + ", ".join(SHAPES))
flags.DEFINE_string("kinds", ",".join(KINDS), "Kinds: " + ", ".join(KINDS))
flags.DEFINE_integer("steps", 5, "Steps per timing.")
flags.DEFINE_integer("rounds", 3, "Timings per variant; the best is kept.")
FLAGS = flags.FLAGS


def timed(function, x):
    tf.nest.map_structure(lambda t: t.numpy(), function(x))
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        result = function(x)
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return 1000 * (time.perf_counter() - start) / FLAGS.steps


def main(argv):
    del argv
    shapes, kinds = FLAGS.shapes.split(","), FLAGS.kinds.split(",")
    unknown = [s for s in shapes if s not in SHAPES] + [k for k in kinds if k not in KINDS]
    if unknown:
        raise app.UsageError(f"unknown shape or kind {unknown[0]!r}; shapes: "
                             f"{', '.join(SHAPES)}; kinds: {', '.join(KINDS)}")
    print("| shape | kind | weights | fwd ms | fwd+bwd ms | fwd+bwd vs dense |")
    print("|---|---|---|---|---|---|")
    for shape in shapes:
        n_in, units, frames = SHAPES[shape]
        x = tf.random.normal((FLAGS.batch, frames, n_in) if frames else (FLAGS.batch, n_in))
        steps = {}
        for kind in kinds:
            layer = KINDS[kind].build(units, name=kind.replace(" ", "_").replace("=", ""))
            layer(x[:1])
            scale = tf.random.normal([units])

            def forward(x, layer=layer, scale=scale):
                return tf.reduce_sum(layer(x) * scale)

            def forward_backward(x, layer=layer, forward=forward):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = forward(x)
                return tape.gradient(loss, [x, *layer.trainable_variables])

            steps[kind] = (layer.count_params(), tf.function(forward),
                           tf.function(forward_backward))
        best = {kind: [float("inf")] * 2 for kind in kinds}
        for _ in range(FLAGS.rounds):
            for kind in kinds:
                _, fwd, bwd = steps[kind]
                best[kind] = [min(best[kind][0], timed(fwd, x)),
                              min(best[kind][1], timed(bwd, x))]
        dense = best["dense"][1] if "dense" in best else None
        for kind in kinds:
            fwd, bwd = best[kind]
            ratio = f"{dense / bwd:.2f}x" if dense else "-"
            print(f"| {shape} {n_in}->{units}{f' x{frames}' if frames else ''} | {kind} | "
                  f"{steps[kind][0]:,} | {fwd:.2f} | {bwd:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    app.run(main)
