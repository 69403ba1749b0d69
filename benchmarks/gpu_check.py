"""The GPU check: one command that tests and times this project's training on your GPU.

    .venv/bin/python benchmarks/gpu_check.py /tmp/gpu_check          # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py /tmp/gpu_check --smoke  # anywhere, tiny sizes

Writes results.jsonl (one JSON object a measurement) and summary.txt under the folder given:

1. the diagonal-circulant layer on the device against a float64 NumPy reference, forward and
   gradients, at the paper's FC size (its relative errors, and whether they are under 1e-4);
2. the paper's model (TwoStreamModel: DBoF, audio + video, 65.8M weights) dense, with a
   circulant FC layer of k = 1, 3, 6 and with a circulant MoE + gating: training examples/s by
   train.py's own step in float32 and mixed precision (float16 with loss scaling on a GPU,
   bfloat16 without one), each with and without XLA, and evaluation examples/s; one variant
   built at a time, all in this process;
3. reading + training (train.py's input pipeline on generated frame-level files) against
   training on cached batches, for the dense model: the input's overhead;
4. peak device memory of each variant's training: TensorFlow's live tensors on the GPU (on a
   CPU, in host memory, counted by the BFC allocator this script asks for; "n/a" with one line
   saying why where TensorFlow keeps no count).

Aimed at under 8 minutes on one GPU at the defaults (not measured: this project has had no
GPU; see README, "GPUs"). --smoke runs every part at tiny sizes in about two minutes on a
2-core CPU.
"""

import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from process_memory import TensorMemory, keep_cpu_memory_statistics  # noqa: E402 - beside it

from utils import quiet_tensorflow  # noqa: E402

keep_cpu_memory_statistics()  # the peak memory of part 4 on a CPU too
quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import circulant_ops  # noqa: E402
import generate_data  # noqa: E402
import model_flags  # noqa: E402
import readers  # noqa: E402
import train_config  # noqa: E402
import trainer  # noqa: E402

VARIANTS = {"dense": ("", 1), "fc_k1": ("fc", 1), "fc_k3": ("fc", 3), "fc_k6": ("fc", 6),
            "moe_k1": ("moe,gating", 1)}
PAPER = dict(video_clusters=8192, audio_clusters=4096, fc_size=512, moe_num_mixtures=4)
TINY = dict(video_clusters=64, audio_clusters=32, fc_size=32, moe_num_mixtures=2)
flags.DEFINE_bool("smoke", False, "Tiny model, data and step counts: checks that every part "
                  "runs (on a CPU too); the figures mean nothing.")
flags.DEFINE_integer("batch", 256, "Videos per training step (all devices).")
flags.DEFINE_integer("steps", 20, "Timed steps per measurement (after warm-up).")
flags.DEFINE_integer("videos", 512, "Generated frame-level videos to read.")
flags.DEFINE_string("variants", ",".join(VARIANTS), "Variants of the model to time.")
FLAGS = flags.FLAGS


def on_gpu():
    return bool(tf.config.list_logical_devices("GPU"))


class Results:
    """results.jsonl and the lines of summary.txt, written as they come (nothing lost if the
    check stops half-way)."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.jsonl, self.text = os.path.join(folder, "results.jsonl"), \
            os.path.join(folder, "summary.txt")
        for path in (self.jsonl, self.text):
            open(path, "w").close()

    def add(self, record, line):
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        with open(self.text, "a") as f:
            f.write(line + "\n")
        print(line, flush=True)


def explicit_matrix64(diagonals, circulants, n_in, units, side, blocks):
    """[units, n_in] A of circulant_ops' definitions: per block the product of factors
    C_i D_i (side "input") or D_i C_i, C_i[r, s] = c_i[(r - s) mod n]; blocks stacked."""
    k, n = circulants.shape[0], circulants.shape[-1] // blocks
    index = (np.arange(n)[:, None] - np.arange(n)[None, :]) % n
    stacked = []
    for b in range(blocks):
        a = tf.eye(n, dtype=tf.float64)
        for i in range(k):
            d = diagonals[i, b * n:(b + 1) * n]
            c = tf.gather(circulants[i, b * n:(b + 1) * n], index)
            a = a @ (c * d[None, :] if side == "input" else d[:, None] * c)
        stacked.append(a)
    return tf.concat(stacked, axis=0)[:units, :n_in]


def check_circulant(results, n_in, units, k):
    """The layer's forward and gradients on the default device against float64 NumPy."""
    rng = np.random.default_rng(0)
    layer = circulant_ops.DiagonalCirculant(units, k_factors=k, seed=1)
    x = tf.constant(rng.normal(size=(64, n_in)), tf.float32)
    weights = tf.constant(rng.normal(size=(64, units)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * layer(x))
    grads = tape.gradient(loss, [x, layer.diagonals, layer.circulants])
    device = layer.circulants.value.device or "default"

    # The reference: the layer's explicit matrix built in float64 from its definition (no FFT),
    # differentiated by TensorFlow.
    x64, w64 = x.numpy().astype(np.float64), weights.numpy().astype(np.float64)
    with tf.GradientTape() as tape64:
        dv, cv = (tf.Variable(v.numpy().astype(np.float64))
                  for v in (layer.diagonals, layer.circulants))
        matrix = explicit_matrix64(dv, cv, n_in, units, layer.diagonal_side, layer.blocks)
        y_ref = x64 @ tf.transpose(matrix) + layer.bias.numpy()
        loss64 = tf.reduce_sum(w64 * y_ref)
    d_ref, c_ref = tape64.gradient(loss64, [dv, cv])
    x_ref = w64 @ matrix.numpy()
    y_ref = y_ref.numpy()

    def error(got, want):
        return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))

    errors = {"forward": error(layer(x).numpy(), y_ref), "input_gradient": error(
        grads[0].numpy(), x_ref), "diagonal_gradient": error(grads[1].numpy(), d_ref.numpy()),
        "circulant_gradient": error(grads[2].numpy(), c_ref.numpy())}
    passed = max(errors.values()) < 1e-4
    results.add({"check": "circulant_layer", "n_in": n_in, "units": units, "k": k,
                 "device": device, "relative_errors": errors, "passed": passed},
                f"circulant layer {n_in}->{units}, k={k}, on {device}: "
                f"{'PASS' if passed else 'FAIL'} (largest relative error "
                f"{max(errors.values()):.1e}, limit 1e-4)")
    return passed


def make_files(folder, classes):
    structure = generate_data.HiddenStructure(classes, seed=0)
    records = generate_data.synthetic_records(
        structure, FLAGS.videos, 0, "train", frame_level=True,
        min_frames=10 if FLAGS.smoke else 100, max_frames=40 if FLAGS.smoke else 300)
    return generate_data.write_shards(records, folder, "train", 4)


def build(folder, files, classes, sizes, variant, precision, jit):
    compact, k = VARIANTS[variant]
    config = train_config.TrainConfig(
        train_dir=os.path.join(folder, "train_dirs", f"{variant}_{precision}_{jit}"),
        train_data_pattern=",".join(files), batch_size=FLAGS.batch, num_epochs=1000,
        model_flags=model_flags.describe("TwoStreamModel", classes, frame_features=True,
                                         max_frames=40 if FLAGS.smoke else 300,
                                         compact_layers=compact, k_factor=k, **sizes),
        mixed_precision=precision, jit_compile=jit)
    return trainer.Trainer(config)


def rate(function, batches, steps):
    """Examples/s of `steps` calls over `batches` (an iterator or a list), results fetched."""
    source = None if isinstance(batches, list) else batches
    start = time.perf_counter()
    for i in range(steps):
        result = function(next(source) if source is not None else batches[i % len(batches)])
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return steps * FLAGS.batch / (time.perf_counter() - start)


def time_variant(results, memory, folder, files, classes, sizes, variant, precision, jit,
                 device):
    memory.reset()
    run = build(folder, files, classes, sizes, variant, precision, jit)
    source = iter(run.dataset())
    cached = [next(source) for _ in range(4)]
    warm_up = 2 if FLAGS.smoke else 5
    train = lambda batch: run.train_step(batch)[0]  # noqa: E731 - the loss
    predict = tf.function(lambda inputs: run.model(inputs), jit_compile=jit)
    inputs = [readers.model_inputs(b) for b in cached]
    rate(train, cached, warm_up)
    rate(predict, inputs, warm_up)
    record = {"check": "training", "variant": variant, "precision": precision,
              "jit_compile": jit, "weights": run.model.count_params(), "batch": FLAGS.batch,
              "device": device,
              "train_examples_per_second": rate(train, cached, FLAGS.steps),
              "eval_examples_per_second": rate(predict, inputs, FLAGS.steps),
              "peak_memory_mb": memory.mb("peak")}
    peak = "n/a" if record["peak_memory_mb"] is None else f"{record['peak_memory_mb']:,.0f} MB"
    results.add(record, f"{variant:<7} {precision:<15} XLA {'on ' if jit else 'off'}: "
                        f"train {record['train_examples_per_second']:,.0f} examples/s, eval "
                        f"{record['eval_examples_per_second']:,.0f}, peak {peak}")
    return run, source, cached


def input_overhead(results, variant, run, source, cached):
    """Training from train.py's input pipeline against training from cached batches (the first
    variant's model)."""
    def train(batch):
        return run.train_step(batch)[0]

    reading, from_cache = rate(train, source, FLAGS.steps), rate(train, cached, FLAGS.steps)
    results.add({"check": "input", "variant": variant, "reading_examples_per_second": reading,
                 "cached_examples_per_second": from_cache},
                f"input: {variant} model reading {reading:,.0f} examples/s, from cached batches "
                f"{from_cache:,.0f} (reading costs {max(0.0, from_cache / reading - 1):.0%} "
                "more time)")


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: gpu_check.py OUTPUT_FOLDER [--smoke]")
    started = time.time()
    results = Results(argv[1])
    device = "GPU" if on_gpu() else "CPU"
    low = "mixed_float16" if on_gpu() else "mixed_bfloat16"
    if FLAGS.smoke:
        FLAGS.batch, FLAGS.steps, FLAGS.videos = 16, 3, 64
    classes, sizes = (50, TINY) if FLAGS.smoke else (3862, PAPER)
    results.add({"check": "machine", "device": device, "gpus": [
        d.name for d in tf.config.list_logical_devices("GPU")], "tensorflow": tf.__version__,
        "keras": keras.__version__, "python": platform.python_version(), "smoke": FLAGS.smoke},
        f"machine: {device} ({', '.join(d.name for d in tf.config.list_logical_devices('GPU'))}"
        f"), TensorFlow {tf.__version__}{', smoke mode' if FLAGS.smoke else ''}")
    passed = check_circulant(results, *((32, 24, 3) if FLAGS.smoke else (1536, 512, 3)))
    memory = TensorMemory("GPU:0" if on_gpu() else "CPU:0")
    if not memory.available:
        results.add({"check": "memory", "available": False, "why": memory.why}, memory.why)
    with tempfile.TemporaryDirectory() as folder:
        files = make_files(folder, classes)
        variants = FLAGS.variants.split(",")
        for variant in variants:
            for precision in ("float32", low):
                for jit in (False, True):
                    run, source, cached = time_variant(results, memory, folder, files,
                                                       classes, sizes, variant, precision, jit,
                                                       device)
                    if (variant, precision, jit) == (variants[0], "float32", False):
                        input_overhead(results, variant, run, source, cached)
                    del run, source, cached
                    keras.backend.clear_session()
    results.add({"check": "done", "seconds": time.time() - started, "passed": passed},
                f"done in {time.time() - started:.0f} s: circulant layer "
                f"{'PASS' if passed else 'FAIL'}; results in {results.jsonl}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
