"""Today's release keeps working: the train_dirs and bundles of tests/fixtures/release (made by
tests/release_fixture.py) evaluate and predict as they did when they were made. On the machine
and kernels that made them, to the last digit; elsewhere within 1e-4 (float32 sums in another
order, ties broken otherwise)."""

import json
import os
import shutil

import pytest
import release_fixture
from helpers import run_in_one_process

pytestmark = pytest.mark.slow  # TensorFlow processes

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "release")
with open(os.path.join(FIXTURE, release_fixture.MANIFEST)) as _f:
    MANIFEST = json.load(_f)
SAME_MACHINE = MANIFEST["machine"] == release_fixture.machine()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(a copy of the fixture, {split: the regenerated records}); the records must be those
    the fixture was scored on."""
    folder = tmp_path_factory.mktemp("release")
    copy = shutil.copytree(FIXTURE, folder / "fixture")
    data = release_fixture.generate(str(folder))
    for split, path in data.items():
        assert release_fixture.digest(path) == MANIFEST["data"][split], \
            f"generate_data.py writes other {split} records than the fixture's"
    return copy, data


def rows(path):
    """{video: {class: score}} of a submission, in file order."""
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    found = {}
    for line in lines[1:]:
        video, pairs = line.split(",")
        values = pairs.split()
        found[video] = {int(c): float(s) for c, s in zip(values[0::2], values[1::2])}
    return found


def assert_same_submission(got_path, expected_path):
    if SAME_MACHINE:
        with open(got_path) as got, open(expected_path) as expected:
            assert got.read() == expected.read()
        return
    got, expected = rows(got_path), rows(expected_path)
    assert list(got) == list(expected)
    for video in expected:
        cut = min(expected[video].values())  # a class may enter or leave at the 20th place
        for c in set(got[video]) | set(expected[video]):
            a, b = got[video].get(c), expected[video].get(c)
            if a is None or b is None:
                assert abs((a if a is not None else b) - cut) <= 1e-4, (video, c)
            else:
                assert abs(a - b) <= 1e-4 * max(abs(b), 1e-3), (video, c, a, b)


def test_every_train_dir_evaluates_as_it_did(release, tmp_path):
    copy, data = release
    names = sorted(MANIFEST["train_dirs"])
    done = run_in_one_process("eval", [
        [f"--train_dir={copy / name}", "--run_once", f"--results_dir={tmp_path / name}",
         f"--eval_data_pattern={data[MANIFEST['train_dirs'][name]['records']]}"]
        for name in names])
    for name, (code, _, err) in zip(names, done):
        assert code == 0, (name, err[-2000:])
        with open(tmp_path / name / "eval_results.jsonl") as f:
            got = json.loads(f.read().splitlines()[-1])
        for key, expected in MANIFEST["train_dirs"][name]["eval"].items():
            if SAME_MACHINE or isinstance(expected, int):
                assert got[key] == expected, (name, key)
            else:
                assert got[key] == pytest.approx(expected, rel=1e-4, abs=1e-4), (name, key)


def test_every_train_dir_and_bundle_predicts_as_it_did(release, tmp_path):
    copy, data = release
    runs = [(name, [f"--train_dir={copy / name}"], entry["records"])
            for name, entry in sorted(MANIFEST["train_dirs"].items())]
    runs += [(name[:-len(".tgz")], [f"--input_model_tgz={copy / name}"], entry["records"])
             for name, entry in sorted(MANIFEST["bundles"].items())]
    done = run_in_one_process("inference", [
        [*source, f"--input_data_pattern={data[records]}", f"--output_file={tmp_path}/{name}.csv"]
        for name, source, records in runs])
    for (name, _, _), (code, _, err) in zip(runs, done):
        assert code == 0, (name, err[-2000:])
        assert_same_submission(tmp_path / f"{name}.csv", copy / f"{name}.csv")
