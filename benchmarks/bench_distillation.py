"""What distillation costs a training step: the student alone against the student with its
teacher on the same batch, and the teacher's share.

    .venv/bin/python benchmarks/bench_distillation.py [--steps=150] [--out_dir=/tmp/bench_distil]

Real 2018 video-level training files (train/, 23,091 videos) at batch 256. The teacher: the
starter's MoeModel (2 mixtures, 22.3M weights) trained --teacher_steps steps here (its accuracy
does not matter for speed), used as its train_dir and as a uint8 bundle. The students: the
LogisticModel (4.5M) and the 2M circulant-gating model of the frontier. Each setting is a whole
Trainer run, rate from train_log.jsonl after warm-up, all in one process, in turn.
"""

import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from utils import quiet_tensorflow, shared_data_dir  # noqa: E402

quiet_tensorflow()
import bundles  # noqa: E402
import checkpoints  # noqa: E402
import model_flags  # noqa: E402
import quantization  # noqa: E402
import run_dir  # noqa: E402
import train_config  # noqa: E402
import trainer  # noqa: E402

flags.DEFINE_integer("steps", 150, "Training steps per setting.")
flags.DEFINE_integer("teacher_steps", 40, "Steps that train the teacher.")
flags.DEFINE_string("out_dir", "/tmp/bench_distillation", "Scratch folder (emptied first).")
FLAGS = flags.FLAGS

BATCH = 256
STUDENTS = {
    "LogisticModel (4.5M)": ("LogisticModel", {}),
    "low rank 391 + circulant gating (2M)": ("BottleneckModel", dict(
        bottleneck_size=0, low_rank=391, output_gating=True, compact_layers="gating",
        k_factor=2, circulant_diagonal_side="input", circulant_expansion="blocks")),
}


def rate(folder):
    """Median examples/s of the progress lines after the first two (warm-up, tracing)."""
    rates = [r["examples_per_second"] for r in run_dir.read_train_log(folder)[2:]]
    return statistics.median(rates)


def train_files():
    return os.path.join(shared_data_dir(), "yt8m-2018-video", "train", "*.tfrecord")


def train(folder, model, settings, steps, **changes):
    config = train_config.TrainConfig(
        train_dir=folder, start_new_model=True, model_flags=model_flags.describe(
            model, **settings), train_data_pattern=train_files(), batch_size=BATCH,
        max_steps=steps, log_steps=10, checkpoint_steps=10**6, **changes)
    trainer.Trainer(config).run()
    return folder


def main(argv):
    del argv
    shutil.rmtree(FLAGS.out_dir, ignore_errors=True)
    teacher = train(os.path.join(FLAGS.out_dir, "teacher"), "MoeModel",
                    {"moe_num_mixtures": 2}, FLAGS.teacher_steps)
    model, reader, _, _ = checkpoints.load(teacher)
    bundle_dir = os.path.join(FLAGS.out_dir, "teacher_uint8")
    bundles.export_members([(model, reader, 1.0)], bundle_dir, 20,
                           quantization.WeightPrecision("uint8"))
    model_flags.copy(teacher, bundle_dir)
    lines = ["| student | alone (examples/s) | + MoE teacher, train_dir | ratio | "
             "+ MoE teacher, uint8 bundle | ratio |", "|---|---|---|---|---|---|"]
    for name, (model_name, settings) in STUDENTS.items():
        found = {}
        for label, changes in (("alone", {}), ("train_dir", {"teacher": teacher}),
                               ("bundle", {"teacher": bundle_dir})):
            folder = os.path.join(FLAGS.out_dir, f"{model_name}_{label}")
            found[label] = rate(train(folder, model_name, settings, FLAGS.steps, **changes))
        lines.append(f"| {name} | {found['alone']:,.0f} | {found['train_dir']:,.0f} | "
                     f"{found['train_dir'] / found['alone']:.2f} | {found['bundle']:,.0f} | "
                     f"{found['bundle'] / found['alone']:.2f} |")
        print("\n".join(lines), flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
