"""DiagonalCirculant against Dense and against bare FFTs, at the paper's layer shapes.

    .venv/bin/python benchmarks/bench_circulant.py [--batch=128] [--ks=1,2,4] [--shapes=...]

For each shape and k: forward time and forward+backward time (gradients for the input and every
weight) of the layer; the same for `Dense` of that shape; the floor, k bare rfft/irfft pairs at
the layer's n on the same rows (forward), and 2k pairs (forward+backward: a factor's backward
needs one pair for the input's gradient);
weights; peak memory of its steps beyond the inputs and weights. Each variant runs in its own
process so that its peak memory is its own (GPU: TensorFlow's peak allocation; CPU: the peak
resident set minus the resident set before the first step).
Times are the best of --repeats runs of --steps steps, after two warm-up steps.
--forms times the layer in each of its forms (diagonal side / expansion, see circulant_ops):
"input/blocks" (the default) and "output/pad" (the first form).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from process_memory import rss_kib  # noqa: E402 - beside this script

from utils import quiet_tensorflow  # noqa: E402

# name: (input size, units, frames per example or 0)
SHAPES = {
    "video_fc": (8192, 512, 0),
    "audio_fc": (4096, 512, 0),
    "video_dbof": (1024, 8192, 30),  # the cluster projection, on each of 30 sampled frames
    "moe_gating": (1024, 19310, 0),
    "moe_experts": (1024, 15448, 0),
    "netvlad_fc": (262144 + 4096, 1024, 0),
}

flags.DEFINE_integer("batch", 128, "Examples per step (the DBoF shape multiplies by frames).")
flags.DEFINE_string("ks", "1,2,4", "Numbers of factors.")
flags.DEFINE_string("shapes", ",".join(SHAPES), "Shapes to run: " + ", ".join(SHAPES))
flags.DEFINE_integer("steps", 5, "Steps per timing.")
flags.DEFINE_integer("repeats", 3, "Timings per variant; the best is kept.")
flags.DEFINE_string("forms", "input/blocks", "The layer's forms to time, comma-separated "
                    "diagonal_side/expansion: input/blocks (the default), output/pad.")
flags.DEFINE_string("variant", "", "Internal: run one variant and print JSON.")
flags.DEFINE_string("json_out", "", "Also write the rows as JSON lines here.")
FLAGS = flags.FLAGS


def run_variant(spec):
    """Time one variant in this process; returns a dict."""
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    import circulant_ops as co

    kind, shape_name, k = spec["kind"], spec["shape"], spec["k"]
    n_in, units, frames = SHAPES[shape_name]
    rows = (FLAGS.batch, frames, n_in) if frames else (FLAGS.batch, n_in)
    x = tf.random.normal(rows)
    n = co.fft_size(max(n_in, units))
    gpu = bool(tf.config.list_physical_devices("GPU"))

    if kind == "dense":
        layer = keras.layers.Dense(units)
    elif kind == "circulant":
        side, expansion = spec["form"].split("/")
        layer = co.DiagonalCirculant(units, k_factors=k, seed=0, diagonal_side=side,
                                     expansion=expansion)
    else:
        layer = None
    if layer is not None:
        layer.build(rows)
        weights = layer.count_params()
        if kind == "circulant":
            n = f"{layer.blocks} x {layer.n}" if layer.blocks > 1 else layer.n
        variables = layer.trainable_variables

        def forward(x):
            return layer(x)
    else:  # the floor: k bare rfft/irfft pairs at n, no weights
        weights = 0
        variables = []

        def forward(x):
            for _ in range(k):
                x = tf.signal.irfft(tf.signal.rfft(x, fft_length=[n]), fft_length=[n])
            return x

    # A weighted sum, so that no gradient is a constant that graph optimisation could fold.
    out_shape = forward(x).shape
    scale = tf.Variable(tf.random.normal(out_shape[-1:]))

    @tf.function
    def fwd(x):
        return tf.reduce_sum(forward(x) * scale)

    @tf.function
    def fwd_bwd(x):
        if layer is None:  # training needs two pairs a factor: forward, and the input gradient
            return tf.reduce_sum(forward(forward(x)[..., :n_in]) * scale)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(forward(x) * scale)
        return tape.gradient(loss, [x, *variables])

    def best_time(fn):
        for _ in range(2):
            _sync(fn(x))
        best = float("inf")
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                result = fn(x)
            _sync(result)
            best = min(best, (time.perf_counter() - start) / FLAGS.steps)
        return best

    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    before = rss_kib("VmRSS")  # inputs and weights are in place; no step has run
    forward_s = best_time(fwd)
    train_s = best_time(fwd_bwd)
    if gpu:
        peak_mb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        peak_mb = max(0, rss_kib("VmHWM") - before) / 1024
    return dict(spec, n=n, weights=weights, forward_ms=forward_s * 1e3, train_ms=train_s * 1e3,
                peak_mb=peak_mb, device="GPU" if gpu else "CPU")


def _sync(result):
    import tensorflow as tf
    tf.nest.map_structure(lambda t: t.numpy(), result)


def spawn(spec):
    command = [sys.executable, os.path.abspath(__file__), f"--variant={json.dumps(spec)}",
               f"--batch={FLAGS.batch}", f"--steps={FLAGS.steps}", f"--repeats={FLAGS.repeats}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.variant:
        print(json.dumps(run_variant(json.loads(FLAGS.variant))))
        return
    ks = [int(k) for k in FLAGS.ks.split(",")]
    print(f"batch {FLAGS.batch}; times in ms, best of {FLAGS.repeats} x {FLAGS.steps} steps")
    forms = [f.strip() for f in FLAGS.forms.split(",") if f.strip()]
    print("| shape | k | form | n | weights (dense) | fwd ms (dense) | fwd vs floor | fwd+bwd ms "
          "(dense) | fwd+bwd vs floor | vs dense (fwd+bwd) | peak MB (dense) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for shape in FLAGS.shapes.split(","):
        dense = spawn({"kind": "dense", "shape": shape, "k": 0})
        rows.append(dense)
        for k in ks:
            floor = spawn({"kind": "floor", "shape": shape, "k": k})
            rows.append(floor)
            for form in forms:
                ours = spawn({"kind": "circulant", "shape": shape, "k": k, "form": form})
                rows.append(ours)
                print_row(shape, k, form, ours, floor, dense)
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)


def print_row(shape, k, form, ours, floor, dense):
    n_in, units, frames = SHAPES[shape]
    label = f"{shape} {n_in}→{units}" + (f" ×{frames} frames" if frames else "")
    print(f"| {label} | {k} | {form} | {ours['n']} | {ours['weights']:,} ({dense['weights']:,}) "
          f"| {ours['forward_ms']:.2f} ({dense['forward_ms']:.2f}) "
          f"| {ours['forward_ms'] / floor['forward_ms']:.2f}x "
          f"| {ours['train_ms']:.2f} ({dense['train_ms']:.2f}) "
          f"| {ours['train_ms'] / floor['train_ms']:.2f}x "
          f"| {dense['train_ms'] / ours['train_ms']:.2f}x faster "
          f"| {ours['peak_mb']:.0f} ({dense['peak_mb']:.0f}) |", flush=True)

if __name__ == "__main__":
    app.run(main)
