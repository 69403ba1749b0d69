import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import utils  # noqa: E402


@pytest.fixture(scope="session")
def shared_data():
    """The real YouTube-8M files; skipped on a machine without them, but never in CI."""
    path = utils.shared_data_dir()
    if not os.path.isdir(os.path.join(path, "yt8m-2018-video")):
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared YouTube-8M data at {path}")
        pytest.skip(f"no shared YouTube-8M data at {path} (set YT8M_SHARED_DATA)")
    return path
