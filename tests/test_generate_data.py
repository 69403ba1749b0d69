import os

import numpy as np
import pytest
from helpers import read_all, run_tool

import generate_data
import quantization
import readers


def synthetic(tmp_path, split, num_videos, frame_level, num_classes=50, seed=0, **kwargs):
    structure = generate_data.HiddenStructure(num_classes, seed)
    records = generate_data.synthetic_records(structure, num_videos, seed, split, frame_level,
                                              **kwargs)
    return generate_data.write_shards(records, str(tmp_path), split, num_shards=2)


def test_synthetic_frame_level_reads_back(tmp_path):
    files = synthetic(tmp_path, "train", 30, True, min_frames=30, max_frames=300)
    got = read_all(readers.FrameReader(num_classes=50), files, batch_size=64)
    assert len(got["id"]) == 30 and len(set(got["id"].tolist())) == 30
    assert got["features"].shape == (30, 300, 1152)
    assert got["num_frames"].min() >= 30 and got["num_frames"].max() <= 300
    assert len(set(got["num_frames"].tolist())) > 10, "lengths should vary"
    assert (got["num_labels"] >= 1).all() and (got["num_labels"] <= 19).all()
    for row, length in zip(got["features"], got["num_frames"]):
        assert not row[length:].any()


def test_synthetic_video_level_2017_keys_without_labels(tmp_path):
    files = synthetic(tmp_path, "test", 20, False, id_key="video_id", labelled=False)
    got = read_all(readers.VideoReader(num_classes=50), files, batch_size=64)
    assert {len(i) for i in got["id"]} >= {12}  # 11 random characters and an index
    assert got["num_labels"].sum() == 0
    assert np.abs(got["features"]).max() <= 2.0


def test_same_seed_same_bytes_other_split_other_videos(tmp_path):
    first = synthetic(tmp_path / "a", "train", 10, False)
    again = synthetic(tmp_path / "b", "train", 10, False)
    other = synthetic(tmp_path / "c", "validate", 10, False)
    assert [open(p, "rb").read() for p in first] == [open(p, "rb").read() for p in again]
    ids = read_all(readers.VideoReader(num_classes=50), first, batch_size=64)["id"]
    other_ids = read_all(readers.VideoReader(num_classes=50), other, batch_size=64)["id"]
    assert not set(ids.tolist()) & set(other_ids.tolist())


def test_labels_are_long_tailed_and_learnable(tmp_path):
    """A least-squares linear model predicts held-out labels far better than class frequency."""
    reader = readers.VideoReader(num_classes=50)
    train = read_all(reader, synthetic(tmp_path, "train", 1500, False), batch_size=64)
    test = read_all(reader, synthetic(tmp_path, "validate", 400, False), batch_size=64)
    counts = train["labels"].sum(axis=0)
    assert counts.max() > 8 * np.median(counts), "a few classes should dominate"

    x = np.hstack([train["features"], np.ones((len(train["features"]), 1))]).astype(np.float64)
    weights = np.linalg.solve(x.T @ x + 10.0 * np.eye(x.shape[1]), x.T @ train["labels"])
    scores = np.hstack([test["features"], np.ones((len(test["features"]), 1))]) @ weights
    top1 = scores.argmax(axis=1)
    hit_model = test["labels"][np.arange(len(top1)), top1].mean()
    hit_prior = test["labels"][:, counts.argmax()].mean()
    assert hit_model > 0.6 and hit_model > hit_prior + 0.25, (hit_model, hit_prior)


def test_expanding_real_video_level_records(shared_data, tmp_path):
    source = [os.path.join(shared_data, "yt8m-2018-video/train/validate0000.tfrecord")]
    records = generate_data.expanded_records(source, seed=0, min_frames=20, max_frames=60)
    files = generate_data.write_shards(records, str(tmp_path), "train", num_shards=1)
    video = read_all(readers.VideoReader(), source, batch_size=64)
    frames = read_all(readers.FrameReader(max_frames=60), files, batch_size=64)
    assert frames["id"].tolist() == video["id"].tolist()
    np.testing.assert_array_equal(frames["labels"], video["labels"])
    assert frames["num_frames"].min() >= 20 and frames["num_frames"].max() <= 60
    means = frames["features"].sum(axis=1) / frames["num_frames"][:, None]
    error = np.abs(means - video["features"])
    assert error.mean() < 0.01 and np.percentile(error, 99) < 0.05


@pytest.mark.slow  # TensorFlow processes
def test_command_line_writes_files_and_rejects_bad_flags(tmp_path):
    done = run_tool("generate_data.py", f"--output_dir={tmp_path}", "--split=demo",
                    "--num_videos=12", "--num_shards=3", "--num_classes=20", "--frame_level",
                    "--min_frames=5", "--max_frames=8")
    assert sorted(os.listdir(tmp_path)) == [f"demo000{i}.tfrecord" for i in range(3)]
    assert "wrote 12 videos" in done.stdout
    bad = run_tool("generate_data.py", f"--output_dir={tmp_path}", "--min_frames=9",
                   "--max_frames=3", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: need 1 <= min_frames")


@pytest.mark.parametrize("values", [[-3.0, -2.0, 0.0, 1.99, 2.0, 5.0]])
def test_quantize_inverts_dequantize(values):
    quantized = quantization.quantize(np.array(values))
    assert quantized.tolist() == [0, 0, 128, 254, 255, 255]
    back = quantization.dequantize(quantized).numpy()
    assert np.all(np.abs(back - np.clip(values, -2, 2)) <= 4 / 255 / 2 + 4 / 512)


@pytest.mark.slow  # a TensorFlow process
def test_expanding_real_records_writes_the_first_num_videos(shared_data, tmp_path):
    source = os.path.join(shared_data, "yt8m-2018-video/train/validate0000.tfrecord")
    done = run_tool("generate_data.py", f"--output_dir={tmp_path}", "--num_videos=7",
                    f"--from_video_pattern={source}", "--num_shards=1", "--min_frames=5",
                    "--max_frames=20")
    assert "wrote 7 videos" in done.stdout
    written = read_all(readers.FrameReader(max_frames=20), [str(tmp_path / "train0000.tfrecord")])
    first = read_all(readers.VideoReader(), [source], batch_size=7)["id"][:7]
    assert written["id"].tolist() == first.tolist()
