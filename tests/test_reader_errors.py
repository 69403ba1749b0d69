"""Bad input gives a one-line DataError naming the file and what is wrong."""

import re

import numpy as np
import pytest
from records import frame_example, video_example, write

import eval_util
import readers

RGB, AUDIO = np.zeros(1024), np.zeros(128)


def read(reader, files):
    with reader.reraise_data_errors(files):
        for _ in reader.dataset(files, 4):
            pass


def expect_error(reader, files, *fragments):
    with pytest.raises(readers.DataError) as caught:
        read(reader, files)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def good_file(tmp_path, name="good.tfrecord", count=5):
    return write(tmp_path / name, [video_example(f"g{i}".encode(), [i], RGB, AUDIO)
                                   for i in range(count)])


def test_pattern_matching_no_file(tmp_path):
    with pytest.raises(readers.DataError, match="no file matches"):
        readers.resolve_files(f"{tmp_path}/good*.tfrecord,{tmp_path}/missing*.tfrecord")


def test_a_folder_or_an_unreadable_file_in_a_pattern(tmp_path, monkeypatch):
    good = good_file(tmp_path)
    folder = tmp_path / "shards"
    folder.mkdir()
    with pytest.raises(readers.DataError) as caught:
        readers.resolve_files(f"{folder}/")
    assert str(caught.value) == (f"{folder}/ is a folder: add /*.tfrecord to the pattern "
                                 f"('{folder}/*.tfrecord')")
    with pytest.raises(readers.DataError, match="matches the folder .*shards: make it match "
                                                r"files only \(end it in \*.tfrecord\)"):
        readers.resolve_files(f"{tmp_path}/*")
    # The tests run as root, who may read anything: stand in for a file without permission.
    monkeypatch.setattr(readers.os, "access", lambda path, mode: path != good)
    with pytest.raises(readers.DataError, match="good.tfrecord cannot be read"):
        readers.resolve_files(f"{tmp_path}/*.tfrecord")


@pytest.mark.parametrize("id_key, num_classes, refused", [
    ("video_id", 3862, "is the 2017 release (records keyed 'video_id', 4,716 classes) but the "
                       "model has the 2018 release's 3,862 classes"),
    ("id", 4716, "--num_classes=3862 on 2018 data"),
    ("video_id", 4716, None), ("id", 3862, None), ("video_id", 50, None)])
def test_records_of_the_other_release_are_refused(tmp_path, id_key, num_classes, refused):
    path = write(tmp_path / "a.tfrecord", [video_example(b"v", None, RGB, AUDIO, id_key=id_key)])
    if refused:
        with pytest.raises(readers.DataError, match=re.escape(refused)):
            readers.check_release([path], num_classes)
    else:
        readers.check_release([path], num_classes)
    damaged = tmp_path / "damaged.tfrecord"  # left to the reader, which names the damage
    damaged.write_bytes(open(path, "rb").read()[:20])
    readers.check_release([str(damaged)], num_classes)


def test_missing_feature(tmp_path):
    bad = write(tmp_path / "bad.tfrecord", [video_example(b"a", [1], RGB, AUDIO),
                                            video_example(b"b", [1], RGB, None)])
    expect_error(readers.VideoReader(), [good_file(tmp_path), bad],
                 "bad.tfrecord record 1", "'mean_audio' is missing")


def test_feature_of_wrong_size(tmp_path):
    bad = write(tmp_path / "bad.tfrecord", [video_example(b"a", [1], np.zeros(1000), AUDIO)])
    expect_error(readers.VideoReader(), [bad], "bad.tfrecord record 0", "'mean_rgb'",
                 "1000", "1024")


def test_label_out_of_range(tmp_path):
    bad = write(tmp_path / "bad.tfrecord", [video_example(b"a", [1], RGB, AUDIO),
                                            video_example(b"b", [2, 3862], RGB, AUDIO)])
    expect_error(readers.VideoReader(), [bad], "bad.tfrecord record 1",
                 "outside [0, 3862) (got 3862); 2017 data? its 4,716 classes need "
                 "--num_classes=4716")
    other = expect_error(readers.VideoReader(num_classes=50), [bad], "outside [0, 50)")
    assert "4716" not in other
    negative = write(tmp_path / "neg.tfrecord", [video_example(b"a", [-1], RGB, AUDIO)])
    expect_error(readers.VideoReader(), [negative], "neg.tfrecord record 0", "-1")


def test_non_finite_feature(tmp_path):
    rgb = RGB.copy()
    rgb[5] = np.nan
    bad = write(tmp_path / "bad.tfrecord", [video_example(b"a", [1], rgb, AUDIO)])
    expect_error(readers.VideoReader(), [bad], "bad.tfrecord record 0", "finite")


def test_missing_id(tmp_path):
    bad = write(tmp_path / "bad.tfrecord", [video_example(b"", [1], RGB, AUDIO)])
    expect_error(readers.VideoReader(), [bad], "bad.tfrecord record 0", "'id'")


def test_corrupt_record(tmp_path):
    path = good_file(tmp_path, "corrupt.tfrecord")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside a record's payload: bad CRC
    open(path, "wb").write(bytes(data))
    expect_error(readers.VideoReader(), [good_file(tmp_path), path],
                 "corrupt.tfrecord", "corrupt or truncated")


def test_truncated_file(tmp_path):
    path = good_file(tmp_path, "cut.tfrecord")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 100])
    message = expect_error(readers.VideoReader(), [path], "cut.tfrecord", "truncated")
    assert "after 4 good records" in message


def test_not_a_tfrecord_file(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_text("these are not records\n" * 20)
    expect_error(readers.VideoReader(), [str(path)], "notes.tfrecord", "not a TFRecord file")


def test_record_that_is_not_an_example(tmp_path):
    bad = write(tmp_path / "bad.tfrecord", [video_example(b"a", [1], RGB, AUDIO),
                                            b"\xff\xfe garbage \x99 not a protobuf"])
    expect_error(readers.VideoReader(), [bad], "bad.tfrecord record 1", "not a valid")
    expect_error(readers.FrameReader(), [bad], "bad.tfrecord record")


def test_frame_of_wrong_length(tmp_path):
    frames = [np.zeros(1024, np.uint8)] * 2 + [np.zeros(1000, np.uint8)]
    bad = write(tmp_path / "bad.tfrecord", [
        frame_example(b"a", [1], frames, [np.zeros(128, np.uint8)] * 3)])
    expect_error(readers.FrameReader(), [bad], "bad.tfrecord record 0", "'rgb' frame",
                 "1024 bytes")


def test_data_of_the_other_level_for_a_trained_model(tmp_path):
    import checkpoints
    import model_flags

    frame_model = model_flags.describe("DbofModel", max_frames=10)
    expect_error(checkpoints.make_reader(frame_model), [good_file(tmp_path)],
                 "(video-level data? this model reads frame-level records)")
    frames = write(tmp_path / "frames.tfrecord",
                   [frame_example(b"f", [1], [np.zeros(1024)], [np.zeros(128)])])
    expect_error(checkpoints.make_reader(model_flags.describe("MoeModel")),
                 [frames], "(frame-level data? this model reads video-level records)")


def test_data_of_the_other_level(tmp_path):
    video = write(tmp_path / "video.tfrecord", [video_example(b"a", [1], RGB, AUDIO)])
    expect_error(readers.FrameReader(), [video], "video.tfrecord record 0", "is missing",
                 "leave out --frame_features")
    frames = write(tmp_path / "frames.tfrecord", [
        frame_example(b"a", [1], [np.zeros(1024, np.uint8)], [np.zeros(128, np.uint8)])])
    expect_error(readers.VideoReader(), [frames], "frames.tfrecord record 0",
                 "is missing", "add --frame_features")


def test_empty_files(tmp_path):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    ids = [i for batch in readers.VideoReader().dataset([str(empty), good_file(tmp_path)], 4)
           for i in batch["id"].numpy()]
    assert ids == [f"g{i}".encode() for i in range(5)]
    with pytest.raises(readers.DataError, match="no records in .*empty.tfrecord$"):
        eval_util.evaluate(None, readers.VideoReader(), [str(empty)], None, 4)


def damage(path, cut=None, flip=None):
    data = bytearray(open(path, "rb").read())
    if flip is not None:
        data[flip] ^= 0xFF
    open(path, "wb").write(bytes(data[:cut]))
    return path


def test_skipping_drops_and_counts_bad_records(tmp_path):
    per_record = len(open(good_file(tmp_path, "probe.tfrecord", 1), "rb").read())
    rgb = RGB.copy()
    rgb[3] = np.inf
    files = [
        good_file(tmp_path),
        write(tmp_path / "bad.tfrecord", [
            video_example(b"a", [1], RGB, AUDIO), video_example(b"b", [1], RGB, None),
            video_example(b"c", [3862], RGB, AUDIO), b"not a record", video_example(b"d", [2],
                                                                                  RGB, AUDIO),
            video_example(b"e", [1], rgb, AUDIO)]),
        damage(good_file(tmp_path, "crc.tfrecord"), flip=2 * per_record + 50),
        damage(good_file(tmp_path, "cut.tfrecord"), cut=3 * per_record + 20),
    ]
    skipped = readers.SkipCounts()
    batches = list(readers.VideoReader().dataset(files, 3, skipped=skipped))
    ids = sorted(i.decode() for batch in batches for i in batch["id"].numpy())
    assert ids == sorted([f"g{i}" for i in range(5)] + ["a", "d", "g0", "g1"]
                         + ["g0", "g1", "g2"])
    assert [len(b["id"]) for b in batches] == [3, 3, 3, 3]
    assert int(skipped.records.numpy()) == 4 and int(skipped.damaged_files.numpy()) == 2
    assert str(skipped) == "4 bad records and the damaged ends of 2 files skipped"
    labels = {i.decode(): np.flatnonzero(row).tolist() for batch in batches
              for i, row in zip(batch["id"].numpy(), batch["labels"].numpy())}
    assert labels["d"] == [2] and labels["g3"] == [3]
    list(readers.VideoReader().dataset(files, 3, num_epochs=2, skipped=skipped))
    assert str(skipped) == "8 bad records and the damaged ends of 2 files skipped"  # 2 files


def test_skipping_frame_records(tmp_path):
    good = [np.zeros(1024, np.uint8)] * 3
    files = [write(tmp_path / "frames.tfrecord", [
        frame_example(b"a", [1], good, [np.zeros(128, np.uint8)] * 3),
        frame_example(b"b", [1], good[:2] + [np.zeros(9, np.uint8)], [np.zeros(128, np.uint8)] * 3),
        video_example(b"c", [1], RGB, AUDIO),
        frame_example(b"d", [4], good, [np.full(128, 255, np.uint8)] * 2)])]
    skipped = readers.SkipCounts()
    batches = list(readers.FrameReader(max_frames=5).dataset(files, 8, skipped=skipped))
    assert [i.decode() for i in batches[0]["id"].numpy()] == ["a", "d"]
    assert batches[0]["num_frames"].numpy().tolist() == [3, 2]
    assert int(skipped.records.numpy()) == 2 and int(skipped.damaged_files.numpy()) == 0


def test_feature_flags_that_do_not_fit():
    with pytest.raises(readers.DataError, match="equal length"):
        readers.VideoReader(feature_names="mean_rgb,mean_audio", feature_sizes="1024")
    with pytest.raises(readers.DataError, match="integers"):
        readers.VideoReader(feature_names="mean_rgb", feature_sizes="big")
    with pytest.raises(readers.DataError, match="max_frames"):
        readers.FrameReader(max_frames=0)
