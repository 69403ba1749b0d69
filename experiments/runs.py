"""One train.py run of an experiment, kept in its train_dir and read again instead of retrained."""

import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import utils  # noqa: E402

utils.quiet_tensorflow()
import run_dir  # noqa: E402

# The video-level experiments' data (below utils.shared_data_dir()) and training: the real 2018
# files, 43,552 training videos, validation after every epoch.
TRAIN_VIDEOS = 43552
DATA = {"train": ("yt8m-2018-video/train/*.tfrecord", "yt8m-2018-video/extra-train/*.tfrecord"),
        "validate": ("yt8m-2018-video/validate/*.tfrecord",)}
BATCH = 256
TRAINING = [f"--batch_size={BATCH}", "--base_learning_rate=0.003", "--num_epochs=12",
            f"--validation_steps={TRAIN_VIDEOS // BATCH}", "--log_steps=85",
            "--batch_norm_momentum=0.9"]
KNN_TRAINING = ["--base_learning_rate=0.01", "--num_epochs=10"]  # EXPERIMENTS: KnnMoeModel


def run_train(args, name, train_dir):
    """Train in train_dir with train.py's `args` unless it holds a finished run of them.

    Returns the wall seconds of the training; a failed run exits with one line naming its log
    (train.py's output, train_dir/train_log.txt).
    """
    log = os.path.join(train_dir, "train_log.txt")
    seconds = finished_seconds(args, train_dir)
    if seconds is not None:
        return seconds
    print(f"{name}: train.py --train_dir={train_dir} {' '.join(args)}", flush=True)
    started = time.time()
    run_tool("train.py", [f"--train_dir={train_dir}", *args], log)
    seconds = time.time() - started
    utils.atomic_write(os.path.join(train_dir, "done"),
                       json.dumps({"seconds": seconds, "args": args}))
    return seconds


def run_tool(script, args, log):
    """One run of the repository's `script` with `args`, its output in `log`; a failure exits
    with one line naming the log."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, os.path.join(REPO, script), *args], stdout=out,
                              stderr=subprocess.STDOUT, text=True)
    if done.returncode:
        raise SystemExit(f"error: {script} failed (exit {done.returncode}); see {log}")


def finished_seconds(args, train_dir):
    """The wall seconds of a finished run of train.py's `args` in train_dir, else None."""
    if not (os.path.exists(os.path.join(train_dir, "done"))
            and os.path.exists(os.path.join(train_dir, run_dir.SUMMARY_FILE))):
        return None
    with open(os.path.join(train_dir, "done")) as done:
        finished = json.load(done)
    # Runs of before the arguments were recorded count as asked.
    return finished["seconds"] if finished.get("args", args) == args else None


def summary(train_dir):
    """train.py's model_summary.json of the run."""
    with open(os.path.join(train_dir, run_dir.SUMMARY_FILE)) as f:
        return json.load(f)


def weights_of(train_dir):
    return summary(train_dir)["weights"]


def layer_weights(train_dir, suffix):
    """Weights of the layers whose name ends with `suffix` (None if there is none)."""
    found = [layer["weights"] for layer in summary(train_dir)["layers"]
             if layer["path"].rsplit("/", 1)[-1].endswith(suffix)]
    return sum(found) if found else None


def examples_per_second(train_dir):
    """The median training rate of the progress records, the first (warm-up) left out."""
    rates = [r["examples_per_second"] for r in run_dir.read_train_log(train_dir)[1:]]
    return statistics.median(rates) if rates else None


def validations(train_dir):
    """train.py's validation results of the run, in order (one per --validation_steps)."""
    with open(os.path.join(train_dir, "validation.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
