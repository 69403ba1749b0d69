"""Small helpers shared by the command-line tools."""

import os
import sys

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


def shared_data_dir():
    """The real YouTube-8M files: $YT8M_SHARED_DATA, else ../shared/data beside the repo."""
    return os.environ.get("YT8M_SHARED_DATA",
                          os.path.join(os.path.dirname(REPO_DIR), "shared", "data"))


def quiet_tensorflow():
    """Hide TensorFlow's start-up chatter; call before importing tensorflow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fail(message):
    """Print a one-line error and exit non-zero (for bad input, not for bugs)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
