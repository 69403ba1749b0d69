"""eval.py watching a train_dir while train.py writes checkpoints."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from utils import REPO_DIR

pytestmark = pytest.mark.slow  # every test here starts TensorFlow processes


def test_watching_evaluates_each_checkpoint_once(generated_data, tmp_path):
    train_dir = tmp_path / "train"
    common = [f"--train_dir={train_dir}"]
    train = [sys.executable, os.path.join(REPO_DIR, "train.py"), *common,
             f"--train_data_pattern={generated_data['video']}", "--num_classes=50",
             "--model=LogisticModel", "--batch_size=32", "--num_epochs=100",
             "--checkpoint_steps=5"]
    watcher = subprocess.Popen(  # before train.py has made the train_dir
        [sys.executable, os.path.join(REPO_DIR, "eval.py"), *common,
         f"--eval_data_pattern={generated_data['video']}", "--poll_seconds=1",
         "--batch_size=64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().startswith(
            f"waiting for the first checkpoint of train.py in {train_dir} (looking every 1s")
        subprocess.run(train + ["--max_steps=5"], check=True, capture_output=True, timeout=240)
        subprocess.run(train + ["--max_steps=15"], check=True, capture_output=True, timeout=240)
        results = train_dir / "eval_results.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline:
            lines = results.read_text().splitlines() if results.exists() else []
            if lines and json.loads(lines[-1])["step"] == 15:
                break
            time.sleep(1)
        time.sleep(3)  # a second look at the same checkpoint must not evaluate it again
    finally:
        watcher.terminate()
        out, err = watcher.communicate(timeout=60)
    steps = [json.loads(line)["step"] for line in results.read_text().splitlines()]
    assert steps[0] in (5, 10) and steps[-1] == 15, (steps, err[-2000:])
    assert len(steps) == len(set(steps)), steps
    assert all(json.loads(line)["videos"] == 600 for line in results.read_text().splitlines())
    assert "Traceback" not in err and not any(line.startswith("error:")
                                               for line in err.splitlines())
    assert "waiting for a checkpoint after step 15" in out
    assert re.search(r"^videos 64/600 \(11%\)$", out, re.M)  # progress, not on a terminal


def test_a_train_dir_eval_cannot_write_in_is_one_line_and_results_dir_writes_elsewhere(
        generated_data, tmp_path):
    from helpers import run_in_one_process, run_tool

    train_dir = tmp_path / "train"
    run_tool("train.py", f"--train_dir={train_dir}", "--num_classes=50", "--max_steps=2",
             f"--train_data_pattern={generated_data['video']}")
    (train_dir / "eval").write_text("")  # where eval.py's events would go: not a folder
    data = f"--eval_data_pattern={generated_data['video']}"
    elsewhere = tmp_path / "results"
    (code, _, stderr), (ok, out, _) = run_in_one_process("eval", [
        [f"--train_dir={train_dir}", data, "--run_once"],
        [f"--train_dir={train_dir}", data, "--run_once", f"--results_dir={elsewhere}"]])
    assert code == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.strip().endswith("give --results_dir=FOLDER for eval.py's results"), stderr
    assert ok == 0 and "step 2: 600 videos" in out, out
    assert json.loads((elsewhere / "eval_results.jsonl").read_text())["step"] == 2
    assert (elsewhere / "eval").is_dir() and not (train_dir / "eval_results.jsonl").exists()
