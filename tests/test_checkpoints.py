"""Damaged checkpoints: a data file cut short or a lost `checkpoint` index, as a full disk or a
copied train_dir leaves them. Every tool names the damaged one in one line and goes on with the
newest that restores, or stops with one line when none does."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import checkpoint_step, run_in_one_process, run_tool

import checkpoints
from utils import REPO_DIR

pytestmark = pytest.mark.slow  # TensorFlow processes


@pytest.fixture(scope="module")
def trained(generated_data, tmp_path_factory):
    """A MoeModel train_dir with model.ckpt-10, -20 and -30."""
    folder = tmp_path_factory.mktemp("checkpoints") / "model"
    run_tool("train.py", f"--train_dir={folder}", f"--train_data_pattern={generated_data['video']}",
             "--num_classes=50", "--model=MoeModel", "--batch_size=32", "--num_epochs=100",
             "--max_steps=30", "--checkpoint_steps=10")
    return folder


def copy_of(trained, tmp_path, name, truncate=(), lose_index=False):
    """A copy of the trained train_dir with the data files of the given steps cut to half."""
    folder = tmp_path / name
    shutil.copytree(trained, folder)
    for step in truncate:
        data = folder / f"model.ckpt-{step}.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    if lose_index:
        (folder / "checkpoint").unlink()
    return folder


def test_candidates_are_found_by_their_files_when_the_index_is_lost(trained, tmp_path):
    folder = copy_of(trained, tmp_path, "no_index", lose_index=True)
    assert [p.rsplit("/", 1)[1] for p in checkpoints.candidates(str(folder))] == \
        ["model.ckpt-30", "model.ckpt-20", "model.ckpt-10"]
    (folder / "checkpoint").write_text("garbage that is no index {")
    assert len(checkpoints.candidates(str(folder))) == 3


def test_every_tool_passes_over_a_damaged_newest_checkpoint(trained, tmp_path, generated_data):
    damaged = copy_of(trained, tmp_path, "damaged", truncate=[30])
    no_index = copy_of(trained, tmp_path, "no_index", lose_index=True)
    hopeless = copy_of(trained, tmp_path, "hopeless", truncate=[10, 20, 30])
    data = f"--eval_data_pattern={generated_data['video']}"
    (ok_damaged, out_damaged, err_damaged), (ok_index, out_index, err_index), \
        (failed, _, err_hopeless) = run_in_one_process("eval", [
            [f"--train_dir={damaged}", data, "--run_once"],
            [f"--train_dir={no_index}", data, "--run_once"],
            [f"--train_dir={hopeless}", data, "--run_once"]])
    assert ok_damaged == 0 and ok_index == 0, err_damaged + err_index
    first = err_damaged.strip().splitlines()[0]
    assert first.startswith(f"warning: checkpoint {damaged}/model.ckpt-30 is damaged (")
    assert first.endswith("trying the one before it")
    assert f"evaluating {damaged}/model.ckpt-20" in out_damaged
    assert [json.loads(line)["step"] for line in
            (damaged / "eval_results.jsonl").read_text().splitlines()] == [20]
    assert "missing or names none there: found 3 checkpoint(s)" in err_index
    assert f"evaluating {no_index}/model.ckpt-30" in out_index
    assert failed == 1
    lines = err_hopeless.strip().splitlines()
    assert len(lines) == 4 and all("is damaged" in line for line in lines[:3])
    assert lines[-1].startswith("error: none of the 3 checkpoint(s)") and \
        "--start_new_model" in lines[-1]

    exported = run_tool("export_model.py", f"--train_dir={damaged}",
                        f"--output_dir={tmp_path / 'export'}")
    assert "model.ckpt-30 is damaged" in exported.stderr
    assert f"from {damaged}/model.ckpt-20 to" in exported.stdout
    submission = tmp_path / "submission.csv"
    inferred = run_tool("inference.py", f"--train_dir={hopeless}",
                        f"--input_data_pattern={generated_data['video']}",
                        f"--output_file={submission}", check=False)
    assert inferred.returncode == 1 and not submission.exists()
    assert inferred.stderr.strip().splitlines()[-1].startswith("error: none of the 3")
    assert "Traceback" not in inferred.stderr


def test_training_resumes_from_the_newest_checkpoint_that_restores(trained, tmp_path,
                                                                     generated_data):
    """Without --model: the saved model flags bind the run even with the index lost, and a
    damaged newer checkpoint is moved aside so that it cannot come first again."""
    damaged = copy_of(trained, tmp_path, "damaged", truncate=[30], lose_index=True)
    flags_before = (damaged / "model_flags.json").read_text()
    done = run_tool("train.py", f"--train_dir={damaged}", "--max_steps=25", "--num_epochs=100",
                    f"--train_data_pattern={generated_data['video']}", "--batch_size=32")
    assert "model.ckpt-30 is damaged" in done.stderr
    assert f"resumed from {damaged}/model.ckpt-20 at step 20" in done.stdout
    assert "moved 1 damaged checkpoint(s)" in done.stdout
    assert (damaged / "damaged" / "model.ckpt-30.index").exists()
    assert (damaged / "model_flags.json").read_text() == flags_before
    assert checkpoint_step(checkpoints.candidates(str(damaged))[0]) == 25


def test_watching_says_what_it_waits_for_when_the_newest_is_evaluated(trained, tmp_path,
                                                                       generated_data):
    folder = copy_of(trained, tmp_path, "evaluated")
    data = f"--eval_data_pattern={generated_data['video']}"
    run_tool("eval.py", f"--train_dir={folder}", data, "--run_once")
    watcher = subprocess.Popen(
        [sys.executable, os.path.join(REPO_DIR, "eval.py"), f"--train_dir={folder}", data,
         "--poll_seconds=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = watcher.stdout.readline()
    finally:
        watcher.terminate()
        watcher.communicate(timeout=60)
    assert first.startswith("waiting for a checkpoint after step 30 (step 30 is in "
                            "eval_results.jsonl already: --run_once evaluates it again)")


def test_after_a_lost_index_the_old_checkpoints_are_rotated_away_as_before(trained, tmp_path,
                                                                            generated_data):
    folder = copy_of(trained, tmp_path, "rotated", lose_index=True)  # steps 10, 20 and 30
    done = run_tool("train.py", f"--train_dir={folder}", "--max_steps=60", "--num_epochs=100",
                    "--checkpoint_steps=10", f"--train_data_pattern={generated_data['video']}",
                    "--batch_size=32")
    assert "missing or names none there: found 3 checkpoint(s)" in done.stderr
    assert sorted(checkpoint_step(p) for p in checkpoints.candidates(str(folder))) == \
        [20, 30, 40, 50, 60]  # the five newest, as the index had kept them
    assert not list(folder.glob("model.ckpt-10.*"))


def test_a_relative_train_dir_lists_each_checkpoint_once(trained, tmp_path, monkeypatch):
    copy_of(trained, tmp_path, "relative")
    monkeypatch.chdir(tmp_path)
    assert checkpoints.candidates("relative") == [f"relative/model.ckpt-{s}" for s in (30, 20, 10)]
