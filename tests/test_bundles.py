"""Quantized exports and one-bundle ensembles: the codebooks against brute force, the bundle's
predictions against the model with its weights decoded, the refusals."""

import json
import os
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from helpers import run_in_one_process, run_tool

import bundles
import checkpoints
import model_flags
import model_summary
import quantization
from utils import REPO_DIR

HEAVY_TAILED = np.random.default_rng(0).standard_t(3, size=40_000).astype(np.float32)


def test_uniform_codebook_spans_the_tensor_and_every_index_is_the_nearest_value():
    precision = quantization.WeightPrecision("uint8", min_elements=10)
    stored = precision.encode(HEAVY_TAILED)
    book, indices = stored["codebook"], stored["indices"]
    assert book.dtype == np.float32 and book.shape == (256,) and indices.dtype == np.uint8
    assert (book[0], book[-1]) == (HEAVY_TAILED.min(), HEAVY_TAILED.max())
    np.testing.assert_allclose(np.diff(book.astype(np.float64)),
                               (float(book[-1]) - float(book[0])) / 255, rtol=1e-4)
    # Brute force: the distance from every value to every codebook entry.
    distances = np.abs(HEAVY_TAILED[:, None].astype(np.float64) - book[None, :])
    best = distances.min(axis=1)
    chosen = distances[np.arange(len(HEAVY_TAILED)), indices]
    np.testing.assert_array_equal(chosen, best)


def test_kmeans_codebook_has_less_error_than_the_uniform_one():
    def error(codebook):
        stored = quantization.WeightPrecision("uint8", codebook, min_elements=10).encode(
            HEAVY_TAILED)
        return np.mean((stored["codebook"][stored["indices"]] - HEAVY_TAILED) ** 2)

    # Heavy tails stretch the uniform codebook over values few weights have.
    assert error("kmeans") < 0.5 * error("uniform")


def test_decoding_gives_exactly_the_codebook_values_and_float16_exactly_its_rounding():
    for name in ("uint8", "float16"):
        precision = quantization.WeightPrecision(name, "kmeans", min_elements=10)
        stored = precision.encode(HEAVY_TAILED.reshape(200, 200))
        decoded = quantization.decode({k: tf.constant(v) for k, v in stored.items()}).numpy()
        assert decoded.dtype == np.float32 and decoded.shape == (200, 200)
        expected = (stored["codebook"][stored["indices"]] if name == "uint8"
                    else HEAVY_TAILED.reshape(200, 200).astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(decoded, expected)
    small = quantization.WeightPrecision("uint8").encode(np.ones(100, np.float32))
    assert list(small) == ["values"] and small["values"].dtype == np.float32  # under the size


def test_stored_bytes_at_each_precision():
    uint8, float16 = quantization.WeightPrecision("uint8"), quantization.WeightPrecision("float16")
    assert uint8.stored_bytes(20_000) == 20_000 + 256 * 4
    assert float16.stored_bytes(20_000) == 40_000
    assert uint8.stored_bytes(100) == float16.stored_bytes(100) == 400  # kept float32
    assert quantization.WeightPrecision().stored_bytes(20_000) == 80_000
    # float16 tensors: uint8 codebooks, kept as they are at float16 and float32
    assert uint8.stored_bytes(20_000, np.float16) == 20_000 + 256 * 4
    assert float16.stored_bytes(20_000, np.float16) == 40_000
    assert uint8.stored_bytes(20_000, np.int32) == 80_000


MODELS = [  # (model, frame level, settings): structured layers of every kind among them
    ("MoeModel", False, {"moe_num_mixtures": 2, "compact_layers": "moe_gates"}),
    ("BottleneckModel", False, {"bottleneck_size": 0, "low_rank": 8, "output_gating": True,
                                "compact_layers": "gating=monarch:5"}),
    ("LstmModel", True, {"lstm_cells": 16, "lstm_layers": 1}),
    # Its memory of training videos is float16: uint8 stores that too.
    ("KnnMoeModel", False, {"moe_num_mixtures": 1, "memory_videos": 40, "memory_labels": 80}),
]


def built(name, frame, settings, seed=0):
    description = model_flags.describe(name, num_classes=50, frame_features=frame,
                                       max_frames=40 if frame else 300, **settings)
    reader = checkpoints.make_reader(description, trained=False)
    tf.keras.utils.set_random_seed(seed)
    model = checkpoints.build_model(description, reader)
    for variable in model.trainable_variables:  # trained-looking, not the initial values
        variable.assign(variable + tf.random.normal(variable.shape, stddev=0.05))
    if name == "KnnMoeModel":  # a memory of 40 videos of 2 labels each
        model.keys.assign(tf.cast(tf.random.normal(model.keys.shape), tf.float16))
        model.label_ids.assign(tf.random.uniform([80], 0, 50, tf.int32))
        model.label_splits.assign(tf.range(0, 82, 2))
    return model, reader


def serialized(generated_data, frame, count=16):
    files = generated_data["frames" if frame else "video"].split(",")
    return next(iter(tf.data.TFRecordDataset(files).batch(count)))


def decoded_copy(model, precision):
    """The model's weights as the precision stores and decodes them (the reference)."""
    for variable in model.weights:
        stored = precision.encode(variable.numpy())
        variable.assign(quantization.decode({k: tf.constant(v) for k, v in stored.items()},
                                            variable.dtype))


@pytest.mark.parametrize("precision_name", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("name, frame, settings", MODELS, ids=[m[0] for m in MODELS])
def test_a_bundle_predicts_what_the_model_with_its_decoded_weights_predicts(
        generated_data, tmp_path, name, frame, settings, precision_name):
    model, reader = built(name, frame, settings)
    precision = quantization.WeightPrecision(precision_name, "kmeans", min_elements=500)
    bundles.export_members([(model, reader, 1.0)], str(tmp_path / "export"), 5, precision)
    records = serialized(generated_data, frame)
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](
        serialized=records)
    decoded_copy(model, precision)
    expected = model(reader.parse(records), training=False).numpy()
    np.testing.assert_allclose(served["predictions"].numpy(), expected, rtol=0, atol=1e-6)
    assert served["class_indexes"].shape == (16, 5)
    if precision_name != "float32":  # something was quantized
        assert any(precision.applies(int(np.prod(v.shape)), v.dtype) for v in model.weights)
    if name == "KnnMoeModel":
        assert precision.applies(model.keys.shape.num_elements(), np.float16) == \
            (precision_name == "uint8")


def test_one_bundle_of_several_models_predicts_the_weighted_mean_of_theirs(generated_data,
                                                                          tmp_path):
    first, reader = built("MoeModel", False, MODELS[0][2], seed=1)
    second, reader_2 = built("BottleneckModel", False, MODELS[1][2], seed=2)
    bundles.export_members([(first, reader, 0.25), (second, reader_2, 0.75)],
                           str(tmp_path / "export"))
    records = serialized(generated_data, False)
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](
        serialized=records)["predictions"].numpy()
    expected = 0.25 * first(reader.parse(records), training=False).numpy() + \
        0.75 * second(reader_2.parse(records), training=False).numpy()
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_the_summary_gives_the_size_at_each_precision():
    model, _ = built("MoeModel", False, {"moe_num_mixtures": 2})
    sizes = model_summary.summarize(model)[1]["mb_by_precision"]
    big = [int(np.prod(v.shape)) for v in model.weights if np.prod(v.shape) >= 17_000]
    small = model.count_params() - sum(big)
    assert sizes["float32"] * 2**20 == 4 * model.count_params()
    assert sizes["float16"] * 2**20 == 2 * sum(big) + 4 * small
    assert sizes["uint8"] * 2**20 == sum(big) + 1024 * len(big) + 4 * small
    assert "MB at float32 (" in model_summary.format_summary(model, "MoeModel")


@pytest.fixture(scope="module")
def trained_dirs(generated_data, tmp_path_factory):
    """Two short train.py runs (video-level MoE of 3 mixtures: 1,152 x 150 tensors to
    quantize; the second keeps its best checkpoint), and one at frame level."""
    folders, arguments = {}, []
    best = ["--keep_best_checkpoint", f"--validation_data_pattern={generated_data['video']}",
            "--validation_steps=2"]
    for name, extra in (("a", ["--seed=1"]), ("b", ["--seed=2", *best]),
                        ("frames", ["--frame_features", "--model=FrameLevelLogisticModel",
                                    "--max_frames=40"])):
        folders[name] = tmp_path_factory.mktemp("bundles") / name
        data = generated_data["frames" if name == "frames" else "video"]
        arguments.append([f"--train_dir={folders[name]}", f"--train_data_pattern={data}",
                          "--model=MoeModel", "--moe_num_mixtures=3", "--num_classes=50",
                          "--batch_size=32", "--max_steps=3", *extra])
    done = run_in_one_process("train", arguments)
    assert [code for code, _, _ in done] == [0, 0, 0], done
    return folders


@pytest.mark.slow  # TensorFlow processes
def test_uint8_bundle_is_smaller_and_an_over_budget_one_is_refused(trained_dirs, tmp_path):
    trained = f"--train_dir={trained_dirs['a']}"
    exports = run_in_one_process("export_model", [
        *([trained, f"--output_dir={tmp_path / p}", f"--output_tgz={tmp_path}/{p}.tgz",
           f"--quantize={p}"] for p in ("float32", "uint8")),
        [trained, f"--output_dir={tmp_path / 'over'}", f"--output_tgz={tmp_path}/over.tgz",
         "--max_bundle_mb=0.01"],
        [trained, f"--output_dir={tmp_path / 'x'}", "--output_tgz=/nonexistent/x.tgz"],
        [trained, f"--output_dir={tmp_path / 'over8'}", "--quantize=uint8",
         "--max_bundle_mb=0.01"]])
    assert [code for code, _, _ in exports] == [0, 0, 1, 1, 1], exports
    sizes = {}
    for precision in ("float32", "uint8"):
        sizes[precision] = os.path.getsize(tmp_path / f"{precision}.tgz")
        with tarfile.open(tmp_path / f"{precision}.tgz") as tar:
            assert f"{precision}/saved_model.pb" in tar.getnames()
    assert sizes["float32"] > 3.5 * sizes["uint8"]
    refused = exports[2][2].strip().splitlines()
    assert len(refused) == 1 and refused[0].startswith(f"error: the bundle {tmp_path}/over.tgz is ")
    assert refused[0].endswith("over --max_bundle_mb=0.01: nothing was kept; try "
                               "--quantize=uint8 or a smaller model")
    assert not (tmp_path / "over").exists() and not (tmp_path / "over.tgz").exists()
    assert "exported" not in exports[2][1]  # nothing said to be where nothing is
    assert exports[4][2].strip().endswith("over --max_bundle_mb=0.01: nothing was kept; try a "
                                          "smaller model"), exports[4]
    assert "exported" not in exports[4][1] and not (tmp_path / "over8").exists()
    assert not (tmp_path / "x").exists()
    assert exports[3][2].strip() == ("error: --output_tgz=/nonexistent/x.tgz: the folder "
                                     "/nonexistent does not exist; create it first")


@pytest.mark.slow  # TensorFlow processes
def test_ensemble_writes_one_bundle_and_evaluates_a_bundle_alone(trained_dirs, tmp_path,
                                                                 generated_data):
    made, scored, mixed, best, none_kept, unknown = run_in_one_process("ensemble", [
        [f"--inputs={trained_dirs['a']},{trained_dirs['b']}", "--weights=1,3",
         f"--bundle_dir={tmp_path / 'both'}", f"--bundle_tgz={tmp_path}/both.tgz",
         "--quantize=uint8"],
        [f"--inputs={tmp_path}/both.tgz", f"--input_data_pattern={generated_data['video']}",
         f"--output_file={tmp_path}/both.csv", f"--untar_model_dir={tmp_path}/untar",
         f"--metrics_file={tmp_path}/both.json"],
        [f"--inputs={trained_dirs['a']},{trained_dirs['frames']}",
         f"--bundle_dir={tmp_path / 'mixed'}"],
        # --checkpoint=best: each train_dir's best validation (b kept one, a did not)
        [f"--inputs={trained_dirs['b']}", "--checkpoint=best", f"--bundle_dir={tmp_path / 'b'}"],
        [f"--inputs={trained_dirs['b']},{trained_dirs['a']}", "--checkpoint=best",
         f"--bundle_dir={tmp_path / 'ab'}"],
        [f"--inputs={trained_dirs['b']}", "--checkpoint=latest", f"--bundle_dir={tmp_path / 'c'}"]])
    assert made[0] == 0 and "an ensemble of 2 models (weights 0.25, 0.75)" in made[1], made
    assert scored[0] == 0 and "ensemble on 600 labelled videos: GAP@20 " in scored[1], scored
    metrics = json.loads((tmp_path / "both.json").read_text())
    printed = re.search(r"GAP@20 (\d\.\d+) \| hit@1 (\d\.\d+)", scored[1]).groups()
    assert (f"{metrics['gap']:.4f}", f"{metrics['hit_at_one']:.4f}") == printed
    assert metrics["videos"] == 600 and metrics["inputs"] == [f"{tmp_path}/both.tgz"]
    assert "loss" not in metrics  # an ensemble has no loss of its own
    assert mixed[0] == 1 and "records of both levels" in mixed[2]
    assert not (tmp_path / "mixed").exists()
    assert f"member 2: MoeModel from {trained_dirs['b']}/model.ckpt-3" in made[1], made
    kept = json.loads((trained_dirs["b"] / "best" / "best.json").read_text())["checkpoint"]
    assert best[0] == 0 and (f"member 1: MoeModel from {trained_dirs['b']}/best/{kept}"
                             in best[1]), best
    assert (tmp_path / "b" / "saved_model.pb").exists()
    assert none_kept[0] == 1 and none_kept[2].strip() == (
        f"error: {trained_dirs['a']} has no best checkpoint ({trained_dirs['a']}/best/best.json): "
        "train with --keep_best_checkpoint, or give a checkpoint path"), none_kept
    assert not (tmp_path / "ab").exists()
    assert unknown[0] == 1 and unknown[2].strip() == (
        "error: --checkpoint=latest: give best (each train_dir's best validation) or leave it "
        "out (each one's latest)"), unknown


@pytest.mark.slow  # TensorFlow processes
def test_an_exported_model_on_records_of_the_other_level_is_one_line_with_the_hint(
        trained_dirs, tmp_path, generated_data):
    exported = run_in_one_process("export_model", [
        [f"--train_dir={trained_dirs[name]}", f"--output_dir={tmp_path / name}"]
        for name in ("a", "frames")])
    assert [code for code, _, _ in exported] == [0, 0], exported
    video_model = (f"error: the exported model {tmp_path / 'a'} on these records: record 0: "
                   "feature 'mean_audio' is missing (frame-level data? this model reads "
                   "video-level records)")
    frame_model = (f"error: the exported model {tmp_path / 'frames'} on these records: record "
                   "0: feature 'audio' is missing (video-level data? this model reads "
                   "frame-level records)")
    for tool, model, data, expected in (
            ("inference.py", f"--saved_model_dir={tmp_path / 'a'}", "frames", video_model),
            ("ensemble.py", f"--inputs={tmp_path / 'a'}", "frames", video_model),
            ("inference.py", f"--saved_model_dir={tmp_path / 'frames'}", "video", frame_model)):
        done = run_tool(tool, model, f"--input_data_pattern={generated_data[data]}",
                        f"--output_file={tmp_path / 'out.csv'}", check=False)
        assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == expected, \
            done.stderr[-1500:]


def test_an_output_place_that_cannot_be_written_is_named_before_any_work(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match=r"--output_tgz=.*/file/x.tgz: .*/file is a file, not a "
                                         "folder$"):
        bundles.check_writable(str(a_file / "x.tgz"), "output_tgz")
    monkeypatch.setattr(bundles.os, "access", lambda path, mode: False)  # root writes anywhere
    with pytest.raises(ValueError, match=r"--output_dir=.*/out: .* is not writable; choose "
                                         "another place$"):
        bundles.check_writable(str(tmp_path / "out"), "output_dir")


@pytest.fixture(scope="module")
def two_bundles(trained_dirs, tmp_path_factory):
    """The .tgz bundles of runs a and b (two models of 50 classes, each its own folder name
    inside its archive) and the submission of each SavedModel folder (the reference)."""
    folder = tmp_path_factory.mktemp("two_bundles")
    exports = run_in_one_process("export_model", [
        [f"--train_dir={trained_dirs[n]}", f"--output_dir={folder / f'export_{n}'}",
         f"--output_tgz={folder}/{n}.tgz"] for n in ("a", "b")])
    assert [code for code, _, _ in exports] == [0, 0], exports
    return folder


@pytest.mark.slow  # TensorFlow processes
def test_each_bundle_is_scored_with_its_own_model_whatever_the_unpacking_folder_holds(
        two_bundles, generated_data, tmp_path):
    folder, data = two_bundles, f"--input_data_pattern={generated_data['video']}"
    runs = [[f"--saved_model_dir={folder / f'export_{n}'}", data,
             f"--output_file={tmp_path}/reference_{n}.csv"] for n in ("a", "b")]
    # one after the other through one named folder, in both orders
    for named, order in (("first", "ab"), ("second", "ba")):
        runs += [[f"--input_model_tgz={folder}/{n}.tgz", f"--untar_model_dir={tmp_path / named}",
                  data, f"--output_file={tmp_path}/{named}_{n}.csv"] for n in order]
    done = run_in_one_process("inference", runs)
    assert [code for code, _, _ in done] == [0] * 6, done
    reference = {n: (tmp_path / f"reference_{n}.csv").read_text() for n in "ab"}
    assert reference["a"] != reference["b"]
    for named in ("first", "second"):
        for n in "ab":
            assert (tmp_path / f"{named}_{n}.csv").read_text() == reference[n], (named, n)
        kept = sorted(p.name for p in (tmp_path / named).iterdir())  # a folder for each run
        assert len(kept) == 2 and {k.split("-")[0] for k in kept} == {"a", "b"}, kept

    # two runs at once with the default: each its own fresh folder, both removed at the end
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    processes = [subprocess.Popen(
        [sys.executable, os.path.join(REPO_DIR, "inference.py"),
         f"--input_model_tgz={folder}/{n}.tgz", data, f"--output_file={tmp_path}/at_once_{n}.csv"],
        env={**os.environ, "TMPDIR": str(temporary)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for n in "ab"]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    for n in "ab":
        assert (tmp_path / f"at_once_{n}.csv").read_text() == reference[n], n
    assert list(temporary.iterdir()) == []


@pytest.mark.slow  # TensorFlow processes
def test_a_cut_short_bundle_is_one_line_in_every_tool_and_nothing_is_left(
        two_bundles, generated_data, tmp_path):
    cut = tmp_path / "cut.tgz"
    cut.write_bytes((two_bundles / "a.tgz").read_bytes()[:20_000])
    expected = (f"error: {cut} is damaged or cut short (its compressed data ends early): copy "
                "the bundle again, or export it again with export_model.py")
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    data = f"--input_data_pattern={generated_data['video']}"
    for tool, args in (
            ("inference.py", [f"--input_model_tgz={cut}", data, f"--output_file={tmp_path}/x.csv"]),
            ("ensemble.py", [f"--inputs={cut}", data, f"--output_file={tmp_path}/x.csv"]),
            ("train.py", [f"--teacher={cut}", f"--train_data_pattern={generated_data['video']}",
                          f"--train_dir={tmp_path / 'student'}", "--num_classes=50",
                          "--max_steps=1"])):
        done = run_tool(tool, *args, check=False, env={"TMPDIR": str(temporary)})
        assert done.returncode == 1 and done.stderr.strip().splitlines() == [expected], \
            (tool, done.stderr[-2000:])
        assert list(temporary.iterdir()) == [], tool


def test_a_bundle_of_two_saved_models_is_refused(tmp_path):
    bundle = tmp_path / "two.tgz"
    with tarfile.open(bundle, "w:gz") as tar:
        for name in ("one/saved_model.pb", "two/saved_model.pb"):
            path = tmp_path / name
            path.parent.mkdir()
            path.write_text("x")
            tar.add(path, arcname=name)
    with pytest.raises(ValueError, match="two.tgz holds 2 SavedModels: give the bundle that "):
        bundles.safe_untar(str(bundle), str(tmp_path / "unpacked"))
    assert list((tmp_path / "unpacked").iterdir()) == []  # its folder removed


@pytest.mark.slow  # TensorFlow processes
def test_submissions_on_labelled_records_are_scored_as_their_model_is(trained_dirs, tmp_path,
                                                                      generated_data):
    data = f"--input_data_pattern={generated_data['video']}"
    written = run_in_one_process("inference", [[f"--train_dir={trained_dirs['a']}", data,
                                                f"--output_file={tmp_path}/a.csv"]])
    assert written[0][0] == 0, written
    from_model, from_submissions = run_in_one_process("ensemble", [
        [f"--inputs={trained_dirs['a']}", data, f"--output_file={tmp_path}/model.csv"],
        [f"--inputs={tmp_path}/a.csv,{tmp_path}/a.csv", data,
         f"--output_file={tmp_path}/submissions.csv", f"--metrics_file={tmp_path}/m.json"]])
    gap = re.compile(r"ensemble on 600 labelled videos: GAP@20 (\d\.\d+) \| hit@1 (\d\.\d+)")
    assert from_model[0] == 0 and from_submissions[0] == 0, (from_model, from_submissions)
    assert gap.search(from_model[1]).groups() == gap.search(from_submissions[1]).groups(), \
        (from_model[1], from_submissions[1])
    assert "(over 3,862 classes)" in from_submissions[1]  # the release of records keyed 'id'
    assert json.loads((tmp_path / "m.json").read_text())["videos"] == 600


@pytest.mark.slow  # TensorFlow processes
def test_inference_reads_no_labels_so_labels_past_the_classes_do_not_stop_it(trained_dirs,
                                                                             two_bundles,
                                                                             tmp_path):
    from records import video_example, write

    rng = np.random.default_rng(0)
    path = write(tmp_path / "test.tfrecord", [
        video_example(f"v{i}".encode(), [3, 60 + i], rng.normal(0, 0.3, 1024).astype(np.float32),
                      rng.normal(0, 0.3, 128).astype(np.float32)) for i in range(3)])
    done = run_in_one_process("inference", [
        [source, f"--input_data_pattern={path}", f"--output_file={tmp_path}/{name}.csv"]
        for name, source in (("checkpoint", f"--train_dir={trained_dirs['a']}"),
                             ("export", f"--saved_model_dir={two_bundles / 'export_a'}"))])
    assert [code for code, _, _ in done] == [0, 0], done
    rows = (tmp_path / "checkpoint.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["v0", "v1", "v2"]
    assert (tmp_path / "export.csv").read_text().splitlines()[1:] == rows[1:]
