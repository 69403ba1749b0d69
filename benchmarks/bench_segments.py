"""Segment inference (inference.py --segment_labels): segments scored per second, what each
stage costs, and the memory, with the time a 2,300,000-segment test set would take.

    .venv/bin/python benchmarks/bench_segments.py [--videos=400] [--out_dir=/tmp/bench_segments]

Generated frame-level test records in the 2019 format (no ratings; 3,862 classes, 120 to 300
frames a video: 24 to 60 segments), written once into --out_dir. Each model is an untrained
one (its speed does not depend on its accuracy) saved as a train_dir. Stages, in one process,
each a whole pass over the same files: reading and cutting the segments alone; with the model's
forward pass; with the per-class ranking of the 1,000 shipped classes (segments.Ranking), which
is inference.py's checkpoint path; and inference.py itself, from the checkpoint and from the
export's `segments` signature (the CSV written).
"""

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

import utils  # noqa: E402

utils.quiet_tensorflow()
import tensorflow as tf  # noqa: E402
from process_memory import rss_kib  # noqa: E402

import bundles  # noqa: E402
import checkpoints  # noqa: E402
import generate_data  # noqa: E402
import inference  # noqa: E402  (its flags: the tool run in this process)
import model_flags  # noqa: E402
import readers  # noqa: E402
import segments  # noqa: E402

flags.DEFINE_integer("videos", 400, "Test videos generated.")
flags.DEFINE_string("out_dir", "/tmp/bench_segments", "Scratch folder (the data is kept).")
FLAGS = flags.FLAGS

BATCH = 1024  # segments, inference.py's default --batch_size
TEST_SEGMENTS = 2_300_000  # about the 2019 test set
MODELS = {"FrameLevelLogisticModel": {}, "DbofModel": {}}


def test_files():
    folder = os.path.join(FLAGS.out_dir, "data")
    found = tf.io.gfile.glob(os.path.join(folder, "test*.tfrecord"))
    if found:
        return sorted(found)
    structure = generate_data.HiddenStructure(readers.NUM_CLASSES, seed=0)
    return generate_data.write_shards(generate_data.synthetic_records(
        structure, FLAGS.videos, 0, "test", frame_level=True, labelled=False, min_frames=120,
        max_frames=300, rated_classes=set()), folder, "test", 4)


def saved_train_dir(name, settings):
    """An untrained model's train_dir: model_flags.json and a checkpoint."""
    folder = os.path.join(FLAGS.out_dir, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    description = model_flags.describe(name, frame_features=True, **settings)
    model = checkpoints.build_model(description, checkpoints.make_reader(description))
    tf.train.Checkpoint(model=model).save(os.path.join(folder, checkpoints.CHECKPOINT_NAME))
    model_flags.write(folder, description)
    return folder


def timed_pass(batches, work):
    """(segments, seconds) of one pass, `work` done on each batch."""
    started, count = time.time(), 0
    for batch in batches:
        work(batch)
        count += int(tf.size(batch["start"]))
    return count, time.time() - started


def stages_of(name, settings, files):
    """{stage: (segments, seconds)} of one model."""
    train_dir = saved_train_dir(name, settings)
    model, _, description, _ = checkpoints.load(train_dir)
    reader = checkpoints.make_reader(description, segments="all")
    forward = tf.function(lambda b: model(readers.model_inputs(b), training=False))
    ranking = segments.Ranking(segments.read_label_ids(), reader.num_classes)

    def rank(batch):
        ranking.add([segments.segment_name(v, s) for v, s in
                     zip(batch["id"].numpy(), batch["start"].numpy())], forward(batch).numpy())

    dataset = reader.dataset(files, BATCH)
    timed_pass(dataset, forward)  # warm-up: tracing, file cache
    stages = {"read and cut": timed_pass(dataset, lambda b: None),
              "+ model": timed_pass(dataset, lambda b: forward(b).numpy()),
              "+ ranking": timed_pass(dataset, rank)}
    export = os.path.join(FLAGS.out_dir, f"{name}_export")
    shutil.rmtree(export, ignore_errors=True)
    bundles.export(model, checkpoints.make_reader(description), export)
    for source in ("checkpoint", "export"):
        FLAGS.train_dir = train_dir
        FLAGS.saved_model_dir = export if source == "export" else ""
        FLAGS.input_data_pattern = ",".join(files)
        FLAGS.output_file = os.path.join(FLAGS.out_dir, f"{name}_{source}.csv")
        FLAGS.segment_labels, FLAGS.log_seconds = True, 60
        started = time.time()
        inference.run()
        stages[f"inference.py ({source})"] = (stages["+ ranking"][0], time.time() - started)
    return stages


def main(argv):
    del argv
    files = test_files()
    print(f"{len(files)} files of {FLAGS.videos:,} generated test videos; batches of {BATCH:,} "
          f"segments", flush=True)
    rows = [(name, stage, count, seconds) for name, settings in MODELS.items()
            for stage, (count, seconds) in stages_of(name, settings, files).items()]
    print("\n| model | stage | segments | seconds | segments/s | 2.3M segments |")
    print("|---|---|---|---|---|---|")
    for name, stage, count, seconds in rows:
        rate = count / max(seconds, 1e-9)
        print(f"| {name} | {stage} | {count:,} | {seconds:.1f} | {rate:,.0f} | "
              f"{utils.duration(TEST_SEGMENTS / rate)} |")
    print(f"\npeak RSS of the process: {rss_kib('VmHWM') / 1024:,.0f} MB")


if __name__ == "__main__":
    app.run(main)
