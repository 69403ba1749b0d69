import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import utils  # noqa: E402

utils.choose_cpu_kernels()  # as every tool does, before TensorFlow is imported


@pytest.fixture(scope="session")
def shared_data():
    """The real YouTube-8M files; skipped on a machine without them, but never in CI."""
    path = utils.shared_data_dir()
    if not os.path.isdir(os.path.join(path, "yt8m-2018-video")):
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared YouTube-8M data at {path}")
        pytest.skip(f"no shared YouTube-8M data at {path} (set YT8M_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def generated_data(tmp_path_factory):
    """Small generated datasets (50 classes): comma-separated file lists by name."""
    import generate_data

    folder = tmp_path_factory.mktemp("generated")
    structure = generate_data.HiddenStructure(50, seed=0)
    video = generate_data.synthetic_records(structure, 600, 0, "video", frame_level=False)
    frames = generate_data.synthetic_records(structure, 160, 0, "frames", frame_level=True,
                                             min_frames=10, max_frames=40)
    return {
        "video": ",".join(generate_data.write_shards(video, str(folder), "video", 3)),
        "frames": ",".join(generate_data.write_shards(frames, str(folder), "frames", 2)),
    }
