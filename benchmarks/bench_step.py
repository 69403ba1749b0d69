"""Where a training step's time goes, and what steps per loop, XLA and bfloat16 gain.

    .venv/bin/python benchmarks/bench_step.py [--model=video|dbof] [--steps=300]

Each setting is a whole `trainer.Trainer(...).run()`, train.py's own loop: input pipeline,
steps, progress lines (with their batch GAP), all in one process, the settings in turn; the
rate is taken from train_log.jsonl between the first progress line after warm-up and the last,
so tracing and compilation are left out.

- video: the video-level MoeModel (2 mixtures) on the real 2018 video-level training files
  (23,091 videos, read as train.py reads them) at batch 256: the setting in which we
  compared our trainer with TF Model Garden's (870-950 examples/s there, 880-907 ours).
- dbof: the paper's DBoF model (TwoStreamModel, DBoF, audio + video) at small scale (1,024 /
  512 clusters) on --videos generated frame-level videos at batch 32; dbof_fc: the same with
  its FC layers diagonal-circulant (k=1).

Then a breakdown of one step of the default setting, on one cached batch: forward, forward +
backward, the optimizer's update (the fused Adam, and Keras' own as before), and the progress
line's batch GAP (predictions gathered to the host, top 20 per video).
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from utils import quiet_tensorflow, shared_data_dir  # noqa: E402

quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import eval_util  # noqa: E402
import generate_data  # noqa: E402
import model_flags  # noqa: E402
import optimizers  # noqa: E402
import readers  # noqa: E402
import run_dir  # noqa: E402
import train_config  # noqa: E402
import trainer  # noqa: E402

# (name, steps_per_loop, log_steps, jit_compile, mixed_precision[, Keras' own Adam]); the
# first is the trainer with Keras' Adam, one step a call; the third the default.
SETTINGS = [
    ("before: Keras' Adam, 1 step per call, progress every 10", 1, 10, False, "float32", True),
    ("fused Adam, 1 step per call, progress every 10", 1, 10, False, "float32"),
    ("default: 10 steps per call, progress every 10", 10, 10, False, "float32"),
    ("1 step per call, progress every 100", 1, 100, False, "float32"),
    ("10 steps per call, progress every 100", 10, 100, False, "float32"),
    ("100 steps per call, progress every 100", 100, 100, False, "float32"),
    ("XLA, 1 step per call, progress every 10", 1, 10, True, "float32"),
    ("XLA, 100 steps per call, progress every 100", 100, 100, True, "float32"),
    ("bfloat16, 100 steps per call, progress every 100", 100, 100, False, "mixed_bfloat16"),
    ("XLA + bfloat16, 100 steps per call, progress every 100", 100, 100, True,
     "mixed_bfloat16"),
    ("before again (drift check)", 1, 10, False, "float32", True),
    ("bfloat16, 10 steps per call, progress every 10", 10, 10, False, "mixed_bfloat16"),
]
flags.DEFINE_enum("model", "video", ["video", "dbof", "dbof_fc"],
                  "Which model (see the docstring).")
flags.DEFINE_integer("steps", 300, "Timed steps per setting (after warm-up).")
flags.DEFINE_integer("warm_up", 100, "Steps left out before timing: tracing, XLA compilation, "
                     "the input's start (a multiple of the progress interval).")
flags.DEFINE_bool("breakdown", True, "Also time the parts of one default step.")
flags.DEFINE_integer("videos", 512, "dbof: generated frame-level videos.")
flags.DEFINE_string("settings", "", "Comma-separated indices of SETTINGS to run (default all).")
flags.DEFINE_string("output", "", "Also write the results as JSON lines here.")
FLAGS = flags.FLAGS


def description_and_data(folder):
    """(model_flags, training files, batch size) of --model."""
    if FLAGS.model == "video":
        pattern = os.path.join(shared_data_dir(), "yt8m-2018-video", "train", "*.tfrecord")
        return (model_flags.describe("MoeModel", moe_num_mixtures=2),
                readers.resolve_files(pattern), 256)
    structure = generate_data.HiddenStructure(readers.NUM_CLASSES, seed=0)
    records = generate_data.synthetic_records(structure, FLAGS.videos, 0, "train",
                                              frame_level=True, min_frames=100, max_frames=300)
    files = generate_data.write_shards(records, folder, "train", 4)
    compact = {"compact_layers": "fc", "k_factor": 1} if FLAGS.model == "dbof_fc" else {}
    return (model_flags.describe("TwoStreamModel", frame_features=True, video_clusters=1024,
                                 audio_clusters=512, **compact), files, 32)


def config(folder, description, files, batch, name, steps_per_loop, log_steps, jit, precision,
           warm_up):
    return train_config.TrainConfig(
        train_dir=os.path.join(folder, f"run_{abs(hash(name))}"), start_new_model=True,
        train_data_pattern=",".join(files), model_flags=description, batch_size=batch,
        num_epochs=1000, max_steps=warm_up + FLAGS.steps, log_steps=log_steps,
        checkpoint_steps=10 ** 9, steps_per_loop=steps_per_loop, jit_compile=jit,
        mixed_precision=precision)


def timed_run(run_config, warm_up, keras_adam=False):
    """Training examples/s of a run between its first progress line at or after `warm_up`
    steps and its last (keras_adam: with Keras' Adam instead of the fused one)."""
    fused = optimizers.OPTIMIZERS["AdamOptimizer"]
    if keras_adam:
        optimizers.OPTIMIZERS["AdamOptimizer"] = keras.optimizers.Adam
    try:
        trainer.Trainer(run_config).run()
    finally:
        optimizers.OPTIMIZERS["AdamOptimizer"] = fused
    log = [r for r in run_dir.read_train_log(run_config.train_dir) if r["step"] >= warm_up]
    if len(log) < 2:
        raise SystemExit(f"error: --steps={FLAGS.steps} gives fewer than two progress lines "
                         "to time between; use a multiple of 100")
    first, last = log[0], log[-1]
    return (last["step"] - first["step"]) * run_config.batch_size / (last["time"] - first["time"])


def breakdown(run_config):
    """ms of the parts of one step of this configuration on one cached batch."""
    run = trainer.Trainer(run_config)
    model, optimizer = run.model, run.optimizer
    batch = next(iter(run.dataset()))
    batch = readers.model_inputs(batch, labels=True)
    variables = model.trainable_variables

    @tf.function
    def forward():
        return run.loss_fn(model(batch, training=True), batch["labels"])

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(run.loss_fn(model(batch, training=True), batch["labels"]))
        return tape.gradient(loss, variables)

    grads = forward_backward()

    @tf.function
    def update():
        optimizer.apply_gradients(zip(grads, variables))

    keras_adam = keras.optimizers.Adam(0.01, clipnorm=1.0)
    keras_adam.build(variables)

    @tf.function
    def keras_update():
        keras_adam.apply_gradients(zip(grads, variables))

    def batch_gap():
        _, probabilities, labels = run.train_step(batch)
        metrics = eval_util.EvaluationMetrics()
        metrics.add(probabilities.numpy(), labels.numpy())
        return metrics.gap()

    def ms(function, fetch=lambda r: None, repeats=20):
        fetch(function())
        start = time.perf_counter()
        for _ in range(repeats):
            result = function()
        fetch(result)
        return 1000 * (time.perf_counter() - start) / repeats

    def sync(result):
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)

    step = ms(lambda: run.train_step(batch)[0], sync)
    gap = ms(batch_gap) - step
    parts = {"whole step (train_step)": step, "forward": ms(forward, sync),
             "forward + backward": ms(forward_backward, sync)}
    parts["optimizer update (fused Adam, the default)"] = ms(update, lambda r: sync(variables[0]))
    parts["optimizer update (Keras' Adam, before)"] = ms(keras_update,
                                                         lambda r: sync(variables[0]))
    parts["batch GAP of a progress line (beyond the step)"] = gap
    return parts


def main(argv):
    del argv
    chosen = [SETTINGS[int(i)] for i in FLAGS.settings.split(",")] if FLAGS.settings \
        else SETTINGS
    results = []
    with tempfile.TemporaryDirectory() as folder:
        description, files, batch = description_and_data(folder)
        warm_up = FLAGS.warm_up
        for name, steps_per_loop, log_steps, jit, precision, *keras_adam in chosen:
            run_config = config(folder, description, files, batch, name, steps_per_loop,
                                log_steps, jit, precision, warm_up)
            rate = timed_run(run_config, warm_up, bool(keras_adam))
            results.append({"model": FLAGS.model, "setting": name, "examples_per_second": rate,
                            "keras_adam": bool(keras_adam),
                            "steps_per_loop": steps_per_loop, "log_steps": log_steps,
                            "jit_compile": jit, "mixed_precision": precision, "batch": batch})
            print(f"{name}: {rate:,.0f} examples/s", flush=True)
        base = config(folder, description, files, batch, "breakdown", 1, 10, False, "float32",
                      warm_up)
        parts = breakdown(base) if FLAGS.breakdown else {}
    before = [r["examples_per_second"] for r in results if r["keras_adam"]]
    reference = sum(before) / len(before) if before else results[0]["examples_per_second"]
    print(f"\nmodel {FLAGS.model}, batch {batch}, {FLAGS.steps} timed steps per setting")
    print(f"| setting | examples/s | vs {'before' if before else 'the first'} |")
    print("|---|---|---|")
    for r in results:
        print(f"| {r['setting']} | {r['examples_per_second']:,.0f} | "
              f"{r['examples_per_second'] / reference:.2f}x |")
    if parts:
        print("\n| part of one default step | ms |")
        print("|---|---|")
    for name, value in parts.items():
        print(f"| {name} | {value:,.1f} |")
    if FLAGS.output:
        with open(FLAGS.output, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
            f.write(json.dumps({"model": FLAGS.model, "breakdown_ms": parts,
                                "time": time.time(), "cpus": os.cpu_count(),
                                "tensorflow": tf.__version__, "numpy": np.__version__}) + "\n")


if __name__ == "__main__":
    app.run(main)
