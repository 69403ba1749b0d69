"""What a run keeps in its train_dir besides the model: the progress log (train_log.jsonl), the
checkpoints as they are saved, and a previous run moved aside."""

import json
import os
import time

import tensorflow as tf

import model_flags
import utils

TRAIN_LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "model_summary.json"
VALIDATION_FILE = "validation.jsonl"


def move_previous_run(train_dir):
    """Everything of train_dir into old-<time>/, a train_dir again; not earlier old-* folders,
    nor the other workers' scratch folders, in use by them already."""
    previous = [f for f in tf.io.gfile.listdir(train_dir)
                if not f.startswith("old-") and f.rstrip("/") != "workers"]
    if not previous:
        return
    aside = os.path.join(train_dir, f"old-{time.strftime('%Y%m%d-%H%M%S')}")
    tf.io.gfile.makedirs(aside)
    for name in previous:
        tf.io.gfile.rename(os.path.join(train_dir, name.rstrip("/")),
                           os.path.join(aside, name.rstrip("/")))
    print(f"--start_new_model: moved the previous run to {aside}", flush=True)


def append_train_log(path, values, skipped=None):
    """One line of train_log.jsonl: a progress line's values, as JSON, with the wall-clock time
    (a resumed run appends to the same file)."""
    record = dict(values, time=time.time())
    if skipped is not None:
        record.update(skipped_records=int(skipped.records.numpy()),
                      damaged_files=int(skipped.damaged_files.numpy()))
    with tf.io.gfile.GFile(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_train_log(train_dir):
    """The records of train_dir/train_log.jsonl, in order."""
    with tf.io.gfile.GFile(os.path.join(train_dir, TRAIN_LOG_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def skip_note(skipped):
    if skipped is None or not (skipped.records.numpy() or skipped.damaged_files.numpy()):
        return ""
    return f" | {skipped}"


def report_progress(values, status, num_epochs, skipped):
    """Print a progress line of `values` (a train_log.jsonl line's; status: utils.Progress's of
    its step) and write its TensorBoard scalars."""
    v = values
    left = f" | {utils.duration(v['seconds_left'])} left" if v["seconds_left"] is not None else ""
    print(f"step {status} | epoch {v['epoch']:.1f}/{num_epochs} | "
          f"{v['examples_per_second']:,.0f} examples/s | loss {v['loss']:.4f} | "
          f"GAP {v['gap']:.3f} | hit@1 {v['hit_at_one']:.3f} | "
          f"lr {v['learning_rate']:.2e}{left}{skip_note(skipped)}", flush=True)
    for name in ("loss", "gap", "hit_at_one", "learning_rate", "examples_per_second"):
        tf.summary.scalar(f"train/{name}", v[name], step=v["step"])


def append_validation(out_dir, results, step):
    """One line of validation.jsonl, and the validation's TensorBoard scalars."""
    for name in ("gap", "hit_at_one", "perr", "loss"):
        tf.summary.scalar(f"validation/{name}", results[name], step=step)
    with tf.io.gfile.GFile(os.path.join(out_dir, VALIDATION_FILE), "a") as log:
        log.write(json.dumps(dict(results, step=step)) + "\n")


class ProgressLog:
    """train_log.jsonl of a run, and the training rate since the last progress line."""

    def __init__(self, path, start_step):
        self.path, self.start_step = path, start_step
        self.last_time, self.last_step = time.time(), start_step

    def rate(self, step, now, batch_size):
        """Examples a second since the last call (or the start)."""
        rate = (step - self.last_step) * batch_size / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        return rate


class Saver:
    """The run's checkpoints: one per step at most, model_flags.json written (by the chief)
    before the first, a failed save one line that names the checkpoint kept."""

    def __init__(self, manager, chief, train_dir, flags_to_write, saved_step=None,
                 before_saving=lambda: None):
        self.manager, self.chief, self.train_dir = manager, chief, train_dir
        self.flags_to_write, self.saved_step = flags_to_write, saved_step
        self.before_saving = before_saving

    def save(self, step):
        if step == self.saved_step:
            return
        self.before_saving()
        if self.chief and self.flags_to_write is not None:
            model_flags.write(self.train_dir, self.flags_to_write)
            self.flags_to_write = None
        try:
            path = self.manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as err:
            kept = self.manager.latest_checkpoint
            reason = (getattr(err, "message", None) or str(err)).strip() or "no reason given"
            raise OSError(f"could not save the checkpoint of step {step} in "
                          f"{self.manager.directory} ({reason.splitlines()[0]}; disk full?); "
                          + (f"{kept} is kept" if kept else "no earlier checkpoint")) from None
        self.saved_step = step
        print(f"saved {path}", flush=True)
