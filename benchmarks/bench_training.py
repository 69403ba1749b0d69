"""Training, evaluation and memory of the paper's DBoF model, dense against its compact variants.

    .venv/bin/python benchmarks/bench_training.py [--scale=small|paper] [--batch=32]

The model is `TwoStreamModel` (DBoF embedding, audio + video, MoE, Context Gating), trained by
train.py's own step (`trainer.Trainer`: Adam, the starter's cross-entropy with its L2
penalties, gradient clipping). Variants, all
built in one process and timed in turn, round after round, on the same cached batches:
dense; compact FC with k = 1, 3, 6; compact embedding (k=1); compact MoE and gating (k=1).

Also measured:
- evaluation throughput (forward only, videos/s) of each variant, and inference throughput
  along inference.py's path (ordered reading of the files, the model, top 20, CSV rows);
- the input pipeline: the compact k=1 model trained from the frame-level reader (generated
  files, read as train.py reads them) against the same model on cached batches;
- a breakdown of one compact k=1 step: input batch, embedding, FC, MoE + gating, whole forward,
  forward + backward, optimizer (the step minus forward + backward);
- peak memory of training, each variant in its own process: TensorFlow's peak of live tensors
  (what a GPU would have to hold) and the peak resident set, both above the process before the
  model was built.

Scales: "paper" is the paper's model (8,192 video and 4,096 audio clusters, FC 512, MoE 4
mixtures, 30 frames sampled); "small" has 1,024 and 512 clusters, same FC, MoE and frames.
Data: --videos generated frame-level videos (3,862 classes, 100-300 frames), read as uint8
frames as train.py reads them (--noquantized: dequantized by the reader, as before).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from process_memory import TensorMemory, keep_cpu_memory_statistics, rss_kib  # noqa: E402

from utils import quiet_tensorflow  # noqa: E402

if any(arg.startswith("--memory_variant=") for arg in sys.argv):
    keep_cpu_memory_statistics()  # chosen before TensorFlow starts, so read from argv

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import checkpoints  # noqa: E402
import generate_data  # noqa: E402
import inference  # noqa: E402
import losses  # noqa: E402
import model_flags  # noqa: E402
import model_summary  # noqa: E402
import readers  # noqa: E402
import train_config  # noqa: E402
import trainer  # noqa: E402

SCALES = {"paper": dict(video_clusters=8192, audio_clusters=4096),
          "small": dict(video_clusters=1024, audio_clusters=512)}
VARIANTS = {"dense": ("", 1), "fc_k1": ("fc", 1), "fc_k3": ("fc", 3), "fc_k6": ("fc", 6),
            "embedding_k1": ("embedding", 1), "moe_k1": ("moe,gating", 1),
            # --recompute_circulant (not in the default list)
            "fc_k1_recompute": ("fc", 1, True), "embedding_k1_recompute": ("embedding", 1, True),
            "all_k1": ("embedding,fc,moe,gating", 1),
            "all_k1_recompute": ("embedding,fc,moe,gating", 1, True)}
DEFAULT_VARIANTS = ("dense", "fc_k1", "fc_k3", "fc_k6", "embedding_k1", "moe_k1")
flags.DEFINE_enum("scale", "small", list(SCALES), "Model size.")
flags.DEFINE_integer("batch", 32, "Videos per step.")
flags.DEFINE_integer("videos", 256, "Generated frame-level videos.")
flags.DEFINE_integer("steps", 5, "Steps per timing.")
flags.DEFINE_integer("rounds", 3, "Timings per variant; the best is kept.")
flags.DEFINE_string("variants", ",".join(DEFAULT_VARIANTS), "Variants to run, of: "
                    + ", ".join(VARIANTS))
flags.DEFINE_bool("quantized", True, "Frames as uint8, as train.py reads them (--noquantized: "
                  "float32, as before).")
flags.DEFINE_string("memory_variant", "", "Internal: measure this variant's peak memory.")
flags.DEFINE_string("data_dir", "", "--memory_variant: the frame-level files to train on "
                    "(comma-separated globs).")
FLAGS = flags.FLAGS
CLASSES = readers.NUM_CLASSES


def build(variant, files):
    """(model, train step, predict, trainer) of a variant: train.py's Trainer and its step."""
    compact, k, recompute = (*VARIANTS[variant], False)[:3]
    config = train_config.TrainConfig(
        train_dir=os.path.join(os.path.dirname(files[0]), f"train_dir_{variant}"),
        train_data_pattern=",".join(files),
        model_flags=model_flags.describe("TwoStreamModel", CLASSES, compact_layers=compact,
                                         k_factor=k, **SCALES[FLAGS.scale]),
        batch_size=FLAGS.batch, base_learning_rate=0.01, recompute_circulant=recompute)
    run = trainer.Trainer(config)
    model = run.model

    def train_step(batch):
        return run.train_step(batch)[0]  # the loss

    @tf.function
    def predict(batch):
        return model(batch, training=False)

    return model, train_step, predict, run


def timed(function, batches, steps):
    """Seconds for `steps` calls over `batches` (an iterator or list), the result fetched."""
    source = iter(batches) if not isinstance(batches, list) else None
    start = time.perf_counter()
    for i in range(steps):
        result = function(next(source) if source else batches[i % len(batches)])
    float(tf.reduce_sum(result))
    return time.perf_counter() - start


def make_data(folder):
    structure = generate_data.HiddenStructure(CLASSES, seed=0)
    records = generate_data.synthetic_records(structure, FLAGS.videos, 0, "train",
                                              frame_level=True, min_frames=100, max_frames=300)
    return generate_data.write_shards(records, folder, "train", 4)


def reader_batches(files):
    dataset = readers.FrameReader(quantized=FLAGS.quantized).dataset(
        files, FLAGS.batch, num_epochs=None, shuffle=True, seed=0, drop_remainder=True)
    return iter(dataset)


def inference_rate(predict, files):
    """Videos/s along inference.py's path: ordered reading, the model, top 20, CSV rows."""
    dataset = readers.FrameReader(quantized=FLAGS.quantized).dataset(files, FLAGS.batch)
    top = tf.function(lambda batch: tf.math.top_k(predict(batch), 20))
    best = float("inf")
    for _ in range(1 + FLAGS.rounds):  # the first pass traces
        start, rows = time.perf_counter(), []
        for batch in dataset:
            scores, classes = top(batch)
            rows.extend(map(inference.format_row, batch["id"].numpy(), classes.numpy(),
                            scores.numpy()))
        best = min(best, time.perf_counter() - start) if rows else best
    return len(rows) / best


def memory_of(variant, files):
    """Memory of training `variant` for 4 steps, in this process (run alone), MB: {"mb":
    TensorFlow's peak of live tensors over the run (what a GPU must hold;
    `tf.config.experimental.get_memory_info`), "built_mb": its live tensors once built
    (weights, optimizer state), "first_step_mb"/"later_steps_mb": the peak during the first step
    (which also traces and optimises the graph) and during the three after it, "rss_mb": peak
    resident memory (adds the allocator's slack, TensorFlow's own memory and code),
    "expected_mb": the model summary's estimate}; all above the process before the model was
    built."""
    # Two batches from a reading run to its end: a reader still prefetching would add its
    # buffers to the live tensors.
    cached = list(readers.FrameReader(quantized=FLAGS.quantized).dataset(
        files, FLAGS.batch, num_epochs=2, shuffle=True, seed=0, drop_remainder=True))[:2]

    memory = TensorMemory("CPU:0")
    if not memory.available:
        print(memory.why, file=sys.stderr)

    def tensors(key="current"):
        """MB above the process before the model was built; None where not counted."""
        return memory.mb(key) - start if memory.available else None

    start, rss = memory.mb(), rss_kib("VmRSS")
    _, train_step, _, run = build(variant, files)
    result = {"built_mb": tensors()}
    float(train_step(cached[0]))
    result["first_step_mb"] = tensors("peak")
    memory.reset()
    for i in range(3):
        float(train_step(cached[(i + 1) % 2]))
    result["later_steps_mb"] = tensors("peak")
    result["mb"] = max(result["first_step_mb"], result["later_steps_mb"]) \
        if memory.available else None
    result["rss_mb"] = (rss_kib("VmHWM") - rss) / 1024
    result["expected_mb"] = model_summary.training_memory(
        run.model, checkpoints.example_batch(run.reader), FLAGS.batch,
        [v for o in run.optimizers.values() for v in o.variables])["total"] / 2**20
    return result


def breakdown(files, cached):
    model, train_step, predict, _ = build("fc_k1", files)
    batch = cached[0]
    frames, mask = model.frames(batch, True)
    video, audio = frames[:, :, :1024], frames[:, :, 1024:]

    def pool(which, stream):
        return model._pool(getattr(model, f"{which}_pool"), stream, mask, True)

    pooled = [pool("video", video), pool("audio", audio)]
    fc_in = tf.concat([model.video_fc(pooled[0]), model.audio_fc(pooled[1])], 1)

    parts = {
        "embedding (both DBoF pools)": tf.function(
            lambda b: tf.concat([pool("video", video), pool("audio", audio)], 1)),
        "FC (both streams, circulant k=1)": tf.function(lambda b: tf.concat(
            [model.video_fc(pooled[0]), model.audio_fc(pooled[1])], 1)),
        "MoE + gating": tf.function(lambda b: model.gating(model.moe(fc_in, training=True),
                                                          training=True)),
        "forward": tf.function(lambda b: model(b, training=True)),
    }

    @tf.function
    def forward_backward(b):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.CrossEntropyLoss()(model(b, training=True),
                                                            b["labels"]))
        return tape.gradient(loss, model.trainable_variables)[0]

    parts["forward + backward"] = forward_backward
    parts["whole step (forward, backward, Adam)"] = train_step
    source = reader_batches(files)
    next(source)
    results = {"input: one batch from the reader": min(
        timed(lambda b: b["features"], source, FLAGS.steps) for _ in range(FLAGS.rounds))}
    for name, function in parts.items():
        timed(function, cached, 2)
        results[name] = min(timed(function, cached, FLAGS.steps) for _ in range(FLAGS.rounds))
    return {name: 1000 * seconds / FLAGS.steps for name, seconds in results.items()}


def main(argv):
    del argv
    unknown = [v for v in [*FLAGS.variants.split(","), FLAGS.memory_variant]
               if v and v not in VARIANTS]
    if unknown:
        raise app.UsageError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if FLAGS.memory_variant:
        try:
            files = readers.resolve_files(FLAGS.data_dir)
        except ValueError as error:
            raise app.UsageError(f"--data_dir: {error}") from None
        print(json.dumps(memory_of(FLAGS.memory_variant, files)))
        return
    variants = FLAGS.variants.split(",")
    with tempfile.TemporaryDirectory() as folder:
        files = make_data(folder)
        source = reader_batches(files)
        cached = [next(source) for _ in range(4)]
        built = {v: build(v, files) for v in variants}
        for v in variants:  # trace and warm up
            timed(built[v][1], cached, 2)
            timed(built[v][2], cached, 2)
        train, evaluate = {v: [] for v in variants}, {v: [] for v in variants}
        for _ in range(FLAGS.rounds):
            for v in variants:
                train[v].append(timed(built[v][1], cached, FLAGS.steps))
                evaluate[v].append(timed(built[v][2], cached, FLAGS.steps))
        compact_step = built.get("fc_k1", built[variants[0]])[1]
        reading, cache = [], []
        for _ in range(FLAGS.rounds):
            reading.append(timed(compact_step, source, FLAGS.steps))
            cache.append(timed(compact_step, cached, FLAGS.steps))
        served = {v: inference_rate(built[v][2], files) for v in variants}
        weights = {v: built[v][0].count_params() for v in variants}
        del built
        memory = {}
        for v in variants:
            done = subprocess.run(
                [sys.executable, __file__, f"--memory_variant={v}", f"--scale={FLAGS.scale}",
                 f"--batch={FLAGS.batch}", f"--data_dir={','.join(files)}",
                 f"--quantized={FLAGS.quantized}"],
                stdout=subprocess.PIPE, text=True, check=True)  # its stderr: why a figure is n/a
            memory[v] = json.loads(done.stdout.strip().splitlines()[-1])
        parts = breakdown(files, cached)

    examples = FLAGS.batch * FLAGS.steps
    dense = examples / min(train["dense"]) if "dense" in train else None
    print(f"scale {FLAGS.scale}, batch {FLAGS.batch}, quantized {FLAGS.quantized}, "
          f"best of {FLAGS.rounds} x {FLAGS.steps} steps")
    print("| variant | weights | train examples/s | vs dense | eval videos/s | "
          "inference videos/s | peak MB (tensors) | once built | peak MB (resident) | "
          "expected MB (model summary) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        rate = examples / min(train[v])
        ratio = f"{rate / dense:.2f}x" if dense else "-"
        print(f"| {v} | {weights[v]:,} | {rate:,.1f} | {ratio} | "
              f"{examples / min(evaluate[v]):,.1f} | {served[v]:,.1f} | "
              + " | ".join("n/a" if memory[v][key] is None else f"{memory[v][key]:,.0f}"
                           for key in ("mb", "built_mb", "rss_mb", "expected_mb")) + " |")
    print(f"input pipeline: fc_k1 from the reader {examples / min(reading):,.1f} examples/s, "
          f"from cached batches {examples / min(cache):,.1f} "
          f"(reading/cached time {min(reading) / min(cache):.3f}x)")
    print("| part of one fc_k1 step | ms |")
    print("|---|---|")
    for name, ms in parts.items():
        print(f"| {name} | {ms:,.1f} |")


if __name__ == "__main__":
    app.run(main)
