"""Random and mutated records: the readers parse them correctly or stop with a DataError."""

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from records import frame_example, video_example, write

import readers

VIDEO = video_example(b"v1", [1, 7], np.linspace(-1, 1, 1024), np.linspace(0, 1, 128))
FRAMES = frame_example(b"f1", [2], [np.arange(1024) % 256] * 3, [np.arange(128)] * 3)
READERS = {"video": readers.VideoReader(num_classes=10),
           "frames": readers.FrameReader(num_classes=10, max_frames=4)}


@st.composite
def mutated(draw, original):
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 8))]
        else:
            del data[position:]
    return bytes(data)


def batches_of(reader, path, skipped):
    with reader.reraise_data_errors([path]):
        return [b for b in reader.dataset([path], 2, skipped=skipped)]


def check_batches(reader, batches):
    for batch in batches:
        features = batch["features"].numpy()
        assert np.isfinite(features).all()
        assert features.shape[-1] == reader.feature_dim
        labels = batch["labels"].numpy()
        assert labels.shape[1] == reader.num_classes and set(np.unique(labels)) <= {0.0, 1.0}
        assert (batch["num_labels"].numpy() == labels.sum(axis=1)).all()


@settings(max_examples=60, deadline=20_000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), level=st.sampled_from(sorted(READERS)), skip=st.booleans(),
       where=st.sampled_from(["record", "file", "random"]))
def test_fuzzed_input_parses_or_fails_cleanly(data, level, skip, where):
    reader, original = READERS[level], VIDEO if level == "video" else FRAMES
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.tfrecord")
        if where == "random":
            with open(path, "wb") as f:
                f.write(data.draw(st.binary(max_size=300)))
        elif where == "record":
            write(path, [original, data.draw(mutated(original)), original])
        else:
            write(path, [original, original])
            with open(path, "rb") as f:
                framed = f.read()
            with open(path, "wb") as f:
                f.write(data.draw(mutated(framed)))
        skipped = readers.SkipCounts() if skip else None
        try:
            batches = batches_of(reader, path, skipped)
        except readers.DataError as err:
            assert not skip, f"skip mode raised {err}"
            assert "\n" not in str(err) and str(err)
            event("clean error")
            return
        event("parsed" if not skipped or not (skipped.records.numpy() or
                                               skipped.damaged_files.numpy()) else "skipped some")
        check_batches(reader, batches)
        ids = [i for b in batches for i in b["id"].numpy()]
        if where == "record":
            assert ids.count(b"v1" if level == "video" else b"f1") >= 2
