"""One train.py run of an experiment, kept in its train_dir and read again instead of retrained."""

import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import utils  # noqa: E402


def run_train(args, name, train_dir):
    """Train in train_dir with train.py's `args` unless it holds a finished run of them.

    Returns (train.py's output, wall seconds); a failed run exits with one line naming its log.
    """
    log = os.path.join(train_dir, "train_log.txt")
    if os.path.exists(os.path.join(train_dir, "done")):
        with open(os.path.join(train_dir, "done")) as done:
            finished = json.load(done)
        if finished.get("args", args) == args:  # runs of before args were recorded: as asked
            with open(log) as f:
                return f.read(), finished["seconds"]
    command = [sys.executable, os.path.join(REPO, "train.py"), f"--train_dir={train_dir}", *args]
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    started = time.time()
    os.makedirs(train_dir, exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, text=True)
    if done.returncode:
        raise SystemExit(f"error: {name} failed (exit {done.returncode}); see {log}")
    seconds = time.time() - started
    utils.atomic_write(os.path.join(train_dir, "done"),
                       json.dumps({"seconds": seconds, "args": args}))
    with open(log) as f:
        return f.read(), seconds


def weights_of(output):
    """The model's weight count from train.py's summary line."""
    return int(re.search(r"^model \w+: ([\d,]+) weights", output, re.M)[1].replace(",", ""))


def examples_per_second(output):
    """The median training rate of the progress lines, the first (warm-up) left out."""
    rates = [float(r.replace(",", "")) for r in
             re.findall(r"^step [^|]*\|(?: epoch [^|]*\|)? ([\d,]+) examples/s", output, re.M)[1:]]
    return statistics.median(rates) if rates else None


def validations(train_dir):
    """train.py's validation results of the run, in order (one per --validation_steps)."""
    with open(os.path.join(train_dir, "validation.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
