"""train -> eval -> export -> inference on the real shared data, through the command lines."""

import csv
import io
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
from helpers import run_in_one_process, run_tool

import average_precision_calculator
import bundles
import readers
from utils import REPO_DIR

pytestmark = pytest.mark.slow  # every test here starts TensorFlow processes


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    train_dir = folder / "train"
    train = ",".join(os.path.join(shared_data, "yt8m-2018-video/train", f"validate00{i:02d}"
                                  ".tfrecord") for i in range(12))
    run_tool("train.py", f"--train_data_pattern={train}", "--model=MoeModel",
             f"--train_dir={train_dir}", "--batch_size=256", "--max_steps=40",
             "--base_learning_rate=0.01", "--num_epochs=20", "--log_steps=20")
    return folder, train_dir


def csv_rows(path):
    with open(path) as f:
        text = f.read()
    assert text.startswith("VideoId,LabelConfidencePairs\n")
    return list(csv.DictReader(io.StringIO(text)))


def test_gap_from_the_submission_equals_eval(trained, shared_data):
    folder, train_dir = trained
    validate = os.path.join(shared_data, "yt8m-2018-video/validate/*.tfrecord")
    out = run_tool("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={validate}",
                   "--run_once").stdout
    match = re.search(r"step 40: ([\d,]+) videos \| GAP@20 ([\d.]+)", out)
    assert match and match[1] == "5,701", out
    submission = folder / "submission.csv"
    run_tool("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={validate}",
             f"--output_file={submission}")
    rows = csv_rows(submission)
    assert len(rows) == 5701 == len({r["VideoId"] for r in rows})

    assert round(submission_gap(rows, validate), 4) == float(match[2])


def submission_gap(rows, pattern):
    """GAP of a submission's rows against the labels of the records of `pattern`."""
    truth = {}
    for batch in readers.VideoReader().dataset(readers.resolve_files(pattern), 1024):
        for video, labels in zip(batch["id"].numpy(), batch["labels"].numpy()):
            truth[video.decode()] = set(np.flatnonzero(labels).tolist())
    scores, hits = [], []
    for row in rows:
        pairs = row["LabelConfidencePairs"].split()
        classes, confidences = pairs[0::2], pairs[1::2]
        assert len(classes) == 20
        assert [float(c) for c in confidences] == sorted(map(float, confidences), reverse=True)
        scores += [float(c) for c in confidences]
        hits += [int(c) in truth[row["VideoId"]] for c in classes]
    positives = sum(len(labels) for labels in truth.values())
    return average_precision_calculator.average_precision(np.array(scores), np.array(hits),
                                                          positives)


def test_an_ensemble_is_scored_as_eval_scores_its_mean(trained, shared_data):
    import checkpoints
    import eval_util

    folder, train_dir = trained
    other = folder / "logistic"
    train = os.path.join(shared_data, "yt8m-2018-video/train/validate000*.tfrecord")
    run_tool("train.py", f"--train_data_pattern={train}", "--model=LogisticModel",
             f"--train_dir={other}", "--batch_size=256", "--max_steps=5")
    bundle = folder / "logistic.tgz"
    run_tool("export_model.py", f"--train_dir={other}",
             f"--output_dir={folder / 'logistic_export'}",
             f"--output_tgz={bundle}")
    data = os.path.join(shared_data, "yt8m-2018-video/validate/validate008*.tfrecord")
    output = folder / "ensemble.csv"
    out = run_tool("ensemble.py", f"--inputs={train_dir},{bundle}", "--weights=3,1",
                   f"--input_data_pattern={data}", f"--output_file={output}",
                   f"--untar_model_dir={folder / 'untar_ensemble'}").stdout
    printed = float(re.search(r"labelled videos: GAP@20 ([\d.]+)", out)[1])

    files = readers.resolve_files(data)
    predictions, labels = [], []
    for path, weight in ((train_dir, 0.75), (other, 0.25)):
        model, reader, _, _ = checkpoints.load(str(path))
        batches = list(reader.dataset(files, 1024))
        predictions.append(weight * np.concatenate([model(b).numpy() for b in batches]))
        labels = np.concatenate([b["labels"].numpy() for b in batches])
    want = eval_util.calculate_gap(predictions[0] + predictions[1], labels)
    assert printed == round(want, 4)
    rows = csv_rows(output)
    assert len(rows) == len(labels)
    assert abs(submission_gap(rows, data) - want) < 1e-4  # scores printed to 6 digits


def test_ensembles_of_submissions(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9 5 0.5\nv2,1 0.8\n")
    b.write_text("VideoId,LabelConfidencePairs\nv2,1 0.4 2 0.6\nv3,7 1\n")
    output = tmp_path / "mean.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9 5\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9\nv2,1 0.5\nv1,4 0.2\n")
    other = tmp_path / "other.csv"  # another test set: no video in common
    other.write_text("VideoId,LabelConfidencePairs\nABCDEFGHIJK,3 0.9\n")
    refusals = [((f"--inputs={a},{b}", "--weights=1"), "--weights needs 2 non-negative numbers"),
                ((f"--inputs={a},{bad}",), "bad.csv line 2: expected"),
                ((f"--inputs={a},{twice}",),
                 "twice.csv line 4: video v1 is listed twice (line 2 too)"),
                ((f"--inputs={a},{other}",), "have no video in common"),
                ((f"--inputs={a},{tmp_path}",), "is neither a submission")]
    (code, _, stderr), *refused = run_in_one_process("ensemble", [
        [f"--inputs={a},{b}", "--weights=3,1", f"--output_file={output}", "--top_k=2"],
        *[[*args, f"--output_file={tmp_path / 'never.csv'}"] for args, _ in refusals]])
    assert code == 0, stderr
    assert f"{b} and {a} share 1 videos of 2 and 2: a video missing from a submission scores " \
        "0 there" in stderr
    assert output.read_text() == ("VideoId,LabelConfidencePairs\n"
                                  "v1,3 0.675 5 0.375\n"
                                  "v2,1 0.7 2 0.15\n"
                                  "v3,7 0.25\n")
    for (args, expected), (code, _, stderr) in zip(refusals, refused, strict=True):
        assert code == 1, args
        assert expected in stderr.strip().splitlines()[-1], stderr[-1000:]
    assert not (tmp_path / "never.csv").exists()


def test_the_2017_test_split_needs_a_model_of_the_2017_classes(trained, shared_data):
    folder, train_dir = trained
    submission = folder / "test2017.csv"
    test = os.path.join(shared_data, "yt8m-2017-video/test/*.tfrecord")
    validate = os.path.join(shared_data, "yt8m-2017-video/validate/*.tfrecord")
    train_2017 = folder / "train2017"
    (wrong, _, wrong_err), (trained_2017, _, err) = run_in_one_process("train", [
        [f"--train_data_pattern={validate}", f"--train_dir={folder / 'x'}", "--max_steps=1"],
        [f"--train_data_pattern={validate}", f"--train_dir={train_2017}", "--num_classes=4716",
         "--model=LogisticModel", "--batch_size=256", "--max_steps=5"]])
    assert wrong == 1
    assert "--num_classes=4716" in wrong_err.strip().splitlines()[-1]
    assert trained_2017 == 0, err
    refused_csv = folder / "refused2017.csv"
    (refused, _, refused_err), (code, out, err) = run_in_one_process("inference", [
        [f"--train_dir={train_dir}", f"--input_data_pattern={test}",
         f"--output_file={refused_csv}"],
        [f"--train_dir={train_2017}", f"--input_data_pattern={test}",
         f"--output_file={submission}", "--batch_size=300"]])
    assert refused == 1 and not refused_csv.exists()
    last = refused_err.strip().splitlines()[-1]
    assert "2017 release" in last and "--num_classes=4716" in last, refused_err[-2000:]
    assert code == 0, err
    assert "wrote 1,709 videos" in out
    rows = csv_rows(submission)
    assert len(rows) == 1709 == len({r["VideoId"] for r in rows})
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_exported_model_predicts_as_its_checkpoint(trained, shared_data):
    folder, train_dir = trained
    export_dir, bundle = folder / "export", folder / "model.tgz"
    out = run_tool("export_model.py", f"--train_dir={train_dir}", f"--output_dir={export_dir}",
                   f"--output_tgz={bundle}").stdout
    assert re.search(r"exported MoeModel .* [\d,]+ weights at float32, [\d.]+ MB on disk", out)
    data = os.path.join(shared_data, "yt8m-2018-video/validate/validate008*.tfrecord")
    from_checkpoint, from_bundle = folder / "a.csv", folder / "b.csv"
    for code, _, err in run_in_one_process("inference", [
            [f"--train_dir={train_dir}", f"--input_data_pattern={data}",
             f"--output_file={from_checkpoint}"],
            [f"--input_model_tgz={bundle}", f"--untar_model_dir={folder / 'untar'}",
             f"--input_data_pattern={data}", f"--output_file={from_bundle}"]]):
        assert code == 0, err
    assert from_checkpoint.read_text() == from_bundle.read_text()


def test_a_folder_as_data_pattern_is_one_line(trained, shared_data):
    folder, train_dir = trained
    data = os.path.join(shared_data, "yt8m-2018-video/validate")
    folder_error = (f"error: {data} is a folder: add /*.tfrecord to the pattern "
                    f"('{data}/*.tfrecord')")
    output = f"--output_file={folder / 'never.csv'}"
    runs = [(("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={data}"),
             folder_error),
            (("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={data}",
              output), folder_error),
            (("generate_data.py", f"--output_dir={folder / 'never'}",
              f"--from_video_pattern={data}"), folder_error),
            (("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={data}/*",
              output, f"--output_model_tgz={folder / 'm.tgz'}"),
             "error: --output_model_tgz is not supported by inference.py: bundle the model "
             "with export_model.py --output_tgz=...")]
    for run, expected in runs:
        done = run_tool(*run, check=False)
        assert done.returncode == 1, run
        # one line and nothing else: no TensorFlow start-up noise either
        assert done.stderr.strip().splitlines() == [expected], run


def _archive(path, add):
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return str(path)


def _member(tar, name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    data = b"x" if kind == tarfile.REGTYPE else b""
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name, kind, link", [
    ("/tmp/absolute_member", tarfile.REGTYPE, ""),
    ("model/../../escaped", tarfile.REGTYPE, ""),
    ("model/link", tarfile.SYMTYPE, "/etc/passwd"),
    ("model/up", tarfile.SYMTYPE, "../../outside"),
    ("model/device", tarfile.CHRTYPE, ""),
])
def test_untrusted_bundles_are_refused(tmp_path, name, kind, link):
    bundle = _archive(tmp_path / "bad.tgz", lambda tar: _member(tar, name, kind, link))
    target = tmp_path / "inside" / "target"
    with pytest.raises(ValueError, match="refused"):
        bundles.safe_untar(bundle, str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tgz", "inside"]
    if name.startswith("/"):
        assert not os.path.exists(name)


def test_a_file_that_is_no_archive_is_named_as_such(tmp_path):
    (tmp_path / "model.tgz").write_text("a page saved from the browser")
    with pytest.raises(ValueError) as refused:
        bundles.safe_untar(str(tmp_path / "model.tgz"), str(tmp_path / "target"))
    assert str(refused.value) == (
        f"{tmp_path}/model.tgz is not a .tgz (or .tar) archive: give the bundle that "
        "export_model.py --output_tgz wrote, or the SavedModel folder")
    with pytest.raises(ValueError) as missing:
        bundles.safe_untar(str(tmp_path / "none.tgz"), str(tmp_path / "target"))
    assert str(missing.value) == (f"{tmp_path}/none.tgz does not exist: give the bundle that "
                                  "export_model.py --output_tgz wrote")
    assert list((tmp_path / "target").iterdir()) == []


def test_sigkill_of_inference_leaves_no_partial_submission(trained, shared_data):
    folder, train_dir = trained
    output = folder / "killed.csv"
    validate = os.path.join(shared_data, "yt8m-2018-video/validate/*.tfrecord")
    for delay in (0.0, 0.3, 1.0):
        process = subprocess.Popen(
            [sys.executable, os.path.join(REPO_DIR, "inference.py"), f"--train_dir={train_dir}",
             f"--input_data_pattern={validate}", f"--output_file={output}", "--batch_size=8",
             "--log_seconds=0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = process.stdout.readline()
        assert re.match(r"videos \d+/5,701 \(\d+%\)", line), line
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not output.exists()
        assert list(folder.glob("killed.csv.tmp-*")), "the partial file keeps its temporary name"
