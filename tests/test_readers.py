import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import read_all
from records import frame_example, video_example, write

import quantization
import readers
import training_data


def test_video_level_records_both_id_keys_and_no_labels(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(3, 1024)).astype(np.float32)
    audio = rng.normal(size=(3, 128)).astype(np.float32)
    path = write(tmp_path / "v.tfrecord", [
        video_example(b"ab12", [0, 5, 3861], rgb[0], audio[0]),
        video_example(b"dQw4w9WgXcQ", [7, 7], rgb[1], audio[1], id_key="video_id"),
        video_example(b"test", None, rgb[2], audio[2]),
    ])
    got = read_all(readers.VideoReader(), [path], batch_size=2)
    assert got["id"].tolist() == [b"ab12", b"dQw4w9WgXcQ", b"test"]
    np.testing.assert_array_equal(got["features"], np.concatenate([rgb, audio], axis=1))
    assert got["labels"].shape == (3, 3862)
    assert np.flatnonzero(got["labels"][0]).tolist() == [0, 5, 3861]
    assert np.flatnonzero(got["labels"][1]).tolist() == [7]  # a repeated label counts once
    assert not got["labels"][2].any()
    assert got["num_labels"].tolist() == [3, 1, 0]
    assert got["num_frames"].tolist() == [1, 1, 1]


def test_video_level_feature_subset_and_2017_class_count(tmp_path):
    path = write(tmp_path / "v.tfrecord", [
        video_example(b"x", [4715], np.full(1024, 0.5), np.zeros(128), id_key="video_id")])
    reader = readers.VideoReader(num_classes=4716, feature_names="mean_audio",
                                 feature_sizes="128")
    got = read_all(reader, [path])
    assert got["features"].shape == (1, 128)
    assert got["labels"].shape == (1, 4716) and got["labels"][0, 4715] == 1


def test_dequantize_matches_the_definition():
    q = np.arange(256, dtype=np.uint8)
    expected = q.astype(np.float64) * 4.0 / 255.0 - 2.0 + 4.0 / 512.0
    got = quantization.dequantize(tf.constant(q)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected.astype(np.float32))  # correctly rounded


def _frames(rng, count, size):
    return [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(count)]


def test_frame_level_padding_truncation_and_exact_values(tmp_path):
    rng = np.random.default_rng(1)
    short_rgb, short_audio = _frames(rng, 3, 1024), _frames(rng, 3, 128)
    long_rgb, long_audio = _frames(rng, 9, 1024), _frames(rng, 7, 128)
    path = write(tmp_path / "f.tfrecord", [
        frame_example(b"shrt", [1, 2], short_rgb, short_audio),
        frame_example(b"long-video-id", None, long_rgb, long_audio, id_key="video_id"),
    ])
    got = read_all(readers.FrameReader(max_frames=5), [path])
    assert got["id"].tolist() == [b"shrt", b"long-video-id"]
    assert got["features"].shape == (2, 5, 1152)
    # num_frames is the real count, capped; with uneven streams, the shorter one.
    assert got["num_frames"].tolist() == [3, 5]
    assert got["num_labels"].tolist() == [2, 0]

    def dequantized(frames):
        exact = np.stack(frames).astype(np.float64) * 4 / 255 - 2 + 4 / 512
        return exact.astype(np.float32)

    expected_short = np.concatenate([dequantized(short_rgb), dequantized(short_audio)], axis=1)
    np.testing.assert_array_equal(got["features"][0, :3], expected_short)
    assert not got["features"][0, 3:].any(), "padding frames must be zeros"
    np.testing.assert_array_equal(got["features"][1, :, :1024], dequantized(long_rgb[:5]))
    np.testing.assert_array_equal(got["features"][1, :5, 1024:], dequantized(long_audio[:5]))

    quantized = read_all(readers.FrameReader(max_frames=5, quantized=True), [path])["features"]
    assert quantized.dtype == np.uint8 and quantized.shape == (2, 5, 1152)
    np.testing.assert_array_equal(quantized[0, :3], np.concatenate(
        [np.stack(short_rgb), np.stack(short_audio)], axis=1))
    assert not quantized[0, 3:].any(), "padding frames must be zeros"
    real = got["num_frames"][:, None, None] > np.arange(5)[None, :, None]
    np.testing.assert_array_equal(np.where(real, quantization.dequantize(quantized).numpy(), 0.0),
                                  got["features"])


def test_frame_level_single_feature(tmp_path):
    rng = np.random.default_rng(2)
    path = write(tmp_path / "f.tfrecord", [
        frame_example(b"a", [3], _frames(rng, 4, 1024), _frames(rng, 4, 128))])
    got = read_all(readers.FrameReader(feature_names="audio", feature_sizes="128",
                                       max_frames=10), [path])
    assert got["features"].shape == (1, 10, 128)
    assert got["num_frames"].tolist() == [4]


def test_evaluation_order_is_fixed_and_keeps_the_partial_batch(tmp_path):
    files = [write(tmp_path / f"v{i}.tfrecord",
                   [video_example(f"{i}-{j}".encode(), [j], np.zeros(1024), np.zeros(128))
                    for j in range(7)]) for i in range(3)]
    reader = readers.VideoReader()
    first = read_all(reader, files, batch_size=4, num_readers=2)
    second = read_all(reader, files, batch_size=4, num_readers=2)
    assert len(first["id"]) == 21 and len(set(first["id"].tolist())) == 21
    assert first["id"].tolist() == second["id"].tolist()
    sizes = [len(b["id"]) for b in reader.dataset(files, 4)]
    assert sizes == [4, 4, 4, 4, 4, 1]


def test_training_shuffles_and_honours_num_epochs(tmp_path):
    files = [write(tmp_path / f"v{i}.tfrecord",
                   [video_example(f"{i}-{j}".encode(), [j], np.zeros(1024), np.zeros(128))
                    for j in range(10)]) for i in range(2)]
    reader = readers.VideoReader()
    ids = read_all(reader, files, batch_size=8, num_epochs=3, shuffle=True, seed=3)["id"]
    assert len(ids) == 60
    values, counts = np.unique(ids, return_counts=True)
    assert len(values) == 20 and set(counts) == {3}
    ordered = read_all(reader, files, batch_size=8, num_epochs=1)["id"].tolist()
    assert ids[:20].tolist() != ordered


@pytest.mark.parametrize("tolerant", [False, True])
def test_unlabelled_files_are_read_among_the_labelled_and_flagged(tmp_path, tolerant):
    def video(name, labels):
        return video_example(name.encode(), labels, np.zeros(1024), np.zeros(128))

    labelled = [write(tmp_path / f"l{i}.tfrecord", [video(f"l{i}-{j}", [j]) for j in range(6)])
                for i in range(2)]
    # a 2017 test file (no labels key) and one whose labels are there but not to be used
    unlabelled = [write(tmp_path / "u0.tfrecord", [video(f"u0-{j}", None) for j in range(5)]),
                  write(tmp_path / "u1.tfrecord", [video(f"u1-{j}", [7]) for j in range(4)])]
    skipped = readers.SkipCounts() if tolerant else None
    kwargs = dict(num_epochs=2, shuffle=True, seed=1, skipped=skipped)
    kept = training_data.KeepRecords()
    got = read_all(readers.VideoReader(), labelled, batch_size=5, transforms=[
        training_data.Unlabelled(unlabelled), kept], **kwargs)
    ids = [i.decode() for i in got["id"]]
    assert sorted(ids) == sorted(2 * [f"l{i}-{j}" for i in range(2) for j in range(6)]
                                 + 2 * [f"u0-{j}" for j in range(5)]
                                 + 2 * [f"u1-{j}" for j in range(4)])
    assert got["labelled"].tolist() == [float(i.startswith("l")) for i in ids]
    assert [np.flatnonzero(row).tolist() for row in got["labels"]] == [
        [int(i[-1])] if i.startswith("l") else [] for i in ids]  # u1's labels are not used
    assert got["num_labels"].tolist() == [int(i.startswith("l")) for i in ids]
    assert {i[0] for i in ids[:12]} == {"l", "u"}  # mixed, not one after the other
    parsed = readers.VideoReader().parse(tf.constant(got["serialized"]))
    assert [i.decode() for i in parsed["id"].numpy()] == ids
    # without unlabelled files, no flag and the same batches as before
    plain = read_all(readers.VideoReader(), labelled, batch_size=5, transforms=[kept], **kwargs)
    assert "labelled" not in plain and len(plain["id"]) == 24
    held = read_all(readers.VideoReader(), labelled, batch_size=5, transforms=[
        training_data.Holdout(0, 2), training_data.Unlabelled(unlabelled)])
    kept = [i.decode() for i in held["id"]]
    folds = readers.fold_of(tf.constant(kept), 2).numpy()
    assert 0 < len(kept) < 21 and (folds == 1).all()  # fold 0 left out
    assert held["labelled"].tolist() == [float(i.startswith("l")) for i in kept]


def test_patterns_are_comma_separated_globs(tmp_path):
    a = write(tmp_path / "a1.tfrecord", [video_example(b"1", [1], np.zeros(1024), np.zeros(128))])
    b = write(tmp_path / "b1.tfrecord", [video_example(b"2", [1], np.zeros(1024), np.zeros(128))])
    assert readers.resolve_files(f"{tmp_path}/a*.tfrecord, {tmp_path}/b*") == [a, b]


def test_make_reader_follows_frame_features():
    assert isinstance(readers.make_reader(True), readers.FrameReader)
    video = readers.make_reader(False, num_classes=4716)
    assert isinstance(video, readers.VideoReader) and video.num_classes == 4716
    assert video.feature_names == ["mean_rgb", "mean_audio"]


# -- the real YouTube-8M files --------------------------------------------------------------------

@pytest.mark.parametrize("folder, num_classes, videos, labels", [
    ("yt8m-2018-video/train", 3862, 23091, 69554),
    ("yt8m-2018-video/validate", 3862, 5701, 16996),
    ("yt8m-2017-video/validate", 4716, 3419, 11711),
    ("yt8m-2017-video/test", 4716, 1709, 0),
])
def test_real_files(shared_data, folder, num_classes, videos, labels):
    files = readers.resolve_files(os.path.join(shared_data, folder, "*.tfrecord"))
    got = read_all(readers.VideoReader(num_classes=num_classes), files, batch_size=1024)
    assert len(got["id"]) == videos
    assert len(set(got["id"].tolist())) == videos
    assert int(got["labels"].sum()) == labels == int(got["num_labels"].sum())
    assert np.isfinite(got["features"]).all()
    if "2018" in folder:
        assert {len(i) for i in got["id"]} == {4}
