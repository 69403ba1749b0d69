"""Reader throughput against the floor of reading the same records' bytes, and how the
frame-level reader scales with cores and parallel calls.

    .venv/bin/python benchmarks/bench_readers.py [--epochs=3] [--repeats=3]
    .venv/bin/python benchmarks/bench_readers.py --scaling [--cores=1,2] [--scaling_epochs=20]

Video level: the shared real 2018 train shards. Frame level: generated files (written to a
temporary folder). The floor is `tf.data.TFRecordDataset` over the same files with the same
interleave and batching, parsing nothing. Each figure is the best of --repeats passes, the reader
and its floor alternating, after one warm-up pass each (file cache, tracing).

--scaling: the frame-level reader as train.py uses it (frames kept as uint8, batches of 256) on
generated files, with 1, 2, 4 and 8 parallel calls and tf.data's own tuning, each in a process
pinned to the first --cores CPUs (`taskset`).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from utils import quiet_tensorflow, shared_data_dir  # noqa: E402

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import generate_data  # noqa: E402
import readers  # noqa: E402

flags.DEFINE_integer("epochs", 3, "Passes over the files per timing.")
flags.DEFINE_integer("repeats", 3, "Timings per pipeline; the best is kept.")
flags.DEFINE_integer("frame_videos", 600, "Generated frame-level videos.")
flags.DEFINE_bool("scaling", False, "Time the frame-level reader against cores and parallel "
                  "calls instead.")
flags.DEFINE_string("cores", "1,2", "--scaling: the numbers of cores to pin to.")
flags.DEFINE_integer("scaling_epochs", 20, "--scaling: passes over the files per timing; long "
                     "enough for tf.data's tuning to settle (3, 7 batches a timing, were not).")
flags.DEFINE_string("worker", "", "Internal: comma-separated files to time with "
                    "--parallel_calls in this process.")
flags.DEFINE_integer("parallel_calls", -1, "Internal: parallel calls (-1: tf.data's tuning).")
FLAGS = flags.FLAGS
SCALING_BATCH = 256


def floor_dataset(files, batch_size, epochs, num_readers=8):
    records = tf.data.Dataset.from_tensor_slices(files).repeat(epochs).interleave(
        tf.data.TFRecordDataset, cycle_length=num_readers, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    return records.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def videos_per_second(make_dataset, videos):
    for _ in make_dataset():  # warm-up
        pass
    best = float("inf")
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in make_dataset():
            pass
        best = min(best, time.perf_counter() - start)
    return videos / best


def compare(label, reader, files, videos, batch_size):
    epochs = FLAGS.epochs
    floor = videos_per_second(lambda: floor_dataset(files, batch_size, epochs), videos * epochs)
    ours = videos_per_second(
        lambda: reader.dataset(files, batch_size, num_epochs=epochs), videos * epochs)
    print(f"| {label} | {batch_size} | {ours:,.0f} | {floor:,.0f} | {floor / ours:.2f}x |",
          flush=True)


def write_frame_files(folder):
    structure = generate_data.HiddenStructure(readers.NUM_CLASSES, seed=0)
    records = generate_data.synthetic_records(structure, FLAGS.frame_videos, 0, "bench",
                                              frame_level=True)
    return generate_data.write_shards(records, folder, "bench", num_shards=8)


def scaling():
    calls = [1, 2, 4, 8, -1]
    print(f"frame-level reader, uint8 frames, batch {SCALING_BATCH}, {FLAGS.frame_videos} "
          f"generated videos x {FLAGS.scaling_epochs} epochs; videos/s (best of {FLAGS.repeats})")
    print("| cores | " + " | ".join("tuned" if c < 0 else f"{c} calls" for c in calls) + " |")
    print("|---" * (len(calls) + 1) + "|")
    with tempfile.TemporaryDirectory() as folder:
        files = write_frame_files(folder)
        for cores in map(int, FLAGS.cores.split(",")):
            rates = []
            for parallel in calls:
                done = subprocess.run(
                    ["taskset", "-c", ",".join(map(str, range(cores))), sys.executable,
                     __file__, f"--worker={','.join(files)}", f"--parallel_calls={parallel}",
                     f"--epochs={FLAGS.scaling_epochs}", f"--repeats={FLAGS.repeats}",
                     f"--frame_videos={FLAGS.frame_videos}"],
                    capture_output=True, text=True, check=True)
                rates.append(json.loads(done.stdout.strip().splitlines()[-1])["videos_per_second"])
            print(f"| {cores} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |", flush=True)


def worker():
    reader = readers.FrameReader(quantized=True)
    parallel = tf.data.AUTOTUNE if FLAGS.parallel_calls < 0 else FLAGS.parallel_calls
    files = FLAGS.worker.split(",")
    rate = videos_per_second(lambda: reader.dataset(
        files, SCALING_BATCH, num_epochs=FLAGS.epochs, parallel_calls=parallel),
        FLAGS.frame_videos * FLAGS.epochs)
    print(json.dumps({"videos_per_second": rate}))


def main(argv):
    del argv
    if FLAGS.worker:
        return worker()
    if FLAGS.scaling:
        return scaling()
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} cores, {FLAGS.epochs} epochs a pass")
    print("| reader | batch | videos/s | floor videos/s | time vs floor |")
    print("|---|---|---|---|---|")
    real = os.path.join(shared_data_dir(), "yt8m-2018-video", "train", "*.tfrecord")
    if tf.io.gfile.glob(real):
        files = readers.resolve_files(real)
        compare(f"video level, real 2018 train ({len(files)} files, 23,091 videos)",
                readers.VideoReader(), files, 23091, 1024)
    else:
        print(f"(no shared data at {real}: video-level benchmark skipped)")
    with tempfile.TemporaryDirectory() as folder:
        files = write_frame_files(folder)
        compare(f"frame level, generated ({FLAGS.frame_videos} videos, 30-300 frames)",
                readers.FrameReader(), files, FLAGS.frame_videos, 64)


if __name__ == "__main__":
    app.run(main)
