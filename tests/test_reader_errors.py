"""Bad input gives a one-line DataError naming the file and what is wrong."""

import numpy as np
import pytest
from records import frame_example, video_example, write

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
                 "outside [0, 3862)", "3862")
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


def test_missing_feature_list(tmp_path):
    # A video-level record has no frames: reading it as frame-level data names a missing list.
    bad = write(tmp_path / "video.tfrecord", [video_example(b"a", [1], RGB, AUDIO)])
    expect_error(readers.FrameReader(), [bad], "video.tfrecord record 0", "is missing")


def test_feature_flags_that_do_not_fit():
    with pytest.raises(readers.DataError, match="equal length"):
        readers.VideoReader(feature_names="mean_rgb,mean_audio", feature_sizes="1024")
    with pytest.raises(readers.DataError, match="integers"):
        readers.VideoReader(feature_names="mean_rgb", feature_sizes="big")
    with pytest.raises(readers.DataError, match="max_frames"):
        readers.FrameReader(max_frames=0)
