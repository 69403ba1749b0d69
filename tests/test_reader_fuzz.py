"""Random and mutated records: the readers parse them correctly or stop with a DataError.

The suite tries 60 files of up to 3 records; tests/fuzz.py runs the same property over as many
records as asked (YT8M_FUZZ_EXAMPLES files, up to YT8M_FUZZ_MUTATED mutated records a file)."""

import collections
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
EXAMPLES = int(os.environ.get("YT8M_FUZZ_EXAMPLES", "60"))
MUTATED = int(os.environ.get("YT8M_FUZZ_MUTATED", "1"))
TRIED = collections.Counter()  # files and records tried, outcomes: for tests/fuzz.py


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


@settings(max_examples=EXAMPLES, deadline=20_000, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), level=st.sampled_from(sorted(READERS)), skip=st.booleans(),
       where=st.sampled_from(["record", "file", "random"]))
def test_fuzzed_input_parses_or_fails_cleanly(data, level, skip, where):
    reader, original = READERS[level], VIDEO if level == "video" else FRAMES
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.tfrecord")
        count = data.draw(st.integers(1, MUTATED))
        if where == "random":
            with open(path, "wb") as f:
                f.write(data.draw(st.binary(max_size=300)))
        elif where == "record":
            write(path, [original, *[data.draw(mutated(original)) for _ in range(count)],
                         original])
        else:
            write(path, [original] * (count + 1))
            with open(path, "rb") as f:
                framed = f.read()
            with open(path, "wb") as f:
                f.write(data.draw(mutated(framed)))
        TRIED["files"] += 1
        TRIED["records"] += 0 if where == "random" else count + (2 if where == "record" else 1)
        skipped = readers.SkipCounts() if skip else None
        try:
            batches = batches_of(reader, path, skipped)
        except readers.DataError as err:
            assert not skip, f"skip mode raised {err}"
            assert "\n" not in str(err) and str(err)
            event("clean error")
            TRIED["clean errors"] += 1
            return
        outcome = "parsed" if not skipped or not (
            skipped.records.numpy() or skipped.damaged_files.numpy()) else "skipped some"
        event(outcome)
        TRIED[outcome] += 1
        check_batches(reader, batches)
        ids = [i for b in batches for i in b["id"].numpy()]
        if where == "record":
            assert ids.count(b"v1" if level == "video" else b"f1") >= 2
