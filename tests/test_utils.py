"""The command-line helpers: start-up noise filtering, the CPU kernels, durations."""

import io
import os
import platform
import subprocess
import sys

import pytest

import utils


def test_start_up_noise_is_hidden_and_real_errors_are_not():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795696366.557897    1010 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1795696366.558255    1010 cudart_stub.cc:31] Could not find cuda drivers",
        "E0000 00:00:1795696368.499077    1010 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    ]
    real = [
        "E0000 00:00:1795696368.499077    1010 some_kernel.cc:12] out of memory",
        "Traceback (most recent call last):",
        "ImportError: libcudart.so.12: cannot open shared object file",
        "UserWarning: something the user should see",
    ]
    assert all(utils._START_UP_NOISE.match(line) for line in noise)
    assert not any(utils._START_UP_NOISE.match(line) for line in real)


def test_duration():
    assert [utils.duration(s) for s in (-3, 45, 200, 3725)] == ["0s", "45s", "3m20s", "1h02m"]


def test_time_left_leaves_the_first_unit_out():
    progress = utils.Progress(110, start=10)
    assert progress.left(11, now=100.0) is None  # the first step: compilation, no rate yet
    assert progress.left(21, now=110.0) == 89 * 1.0  # 10 steps in 10 s, 89 to go
    assert progress.status(21) == "21/110 (11% of this run)"  # 11 of its 100 steps
    assert utils.Progress(110).status(21) == "21/110 (19%)"
    assert utils.Progress(5000, estimated=True).status(1234) == "1,234/~5,000 (25%)"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_line_rewritten_on_a_terminal_and_plain_lines_otherwise():
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        printer = utils.ProgressPrinter(utils.Progress(300), seconds=0, stream=stream)
        for done in (100, 200, 300):
            printer.update(done)
            printer.last = 0  # as if enough time had passed
        printer.close()
    assert terminal.getvalue().startswith("\r[#######             ] videos 100/300 (33%)")
    assert "\r[####################] videos 300/300 (100%)" in terminal.getvalue()
    assert terminal.getvalue().count("\r") == 4 and terminal.getvalue().endswith("\n")
    assert log.getvalue().splitlines()[0] == "videos 100/300 (33%)"
    assert log.getvalue().splitlines()[2].startswith("videos 300/300 (100%) | ")


def test_a_log_ends_with_the_final_line_even_when_it_came_between_two_prints():
    log = io.StringIO()
    printer = utils.ProgressPrinter(utils.Progress(5701), seconds=3600, stream=log)
    for done in (1024, 2048, 5701):
        printer.update(done)
    printer.close()
    assert log.getvalue().splitlines() == ["videos 1,024/5,701 (18%)",
                                           "videos 5,701/5,701 (100%) | 0s left"]


_KERNELS = ("import utils; utils.quiet_tensorflow(); "
            "from tensorflow.python.util import _pywrap_util_port as port; "
            "print(port.IsMklEnabled())")


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="oneDNN is chosen on x86 only")
@pytest.mark.slow  # TensorFlow processes
@pytest.mark.parametrize("given, expected", [(None, "True"), ("0", "False"), ("1", "True")])
def test_tools_choose_onednn_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    done = subprocess.run([sys.executable, "-c", _KERNELS], capture_output=True, text=True,
                          cwd=utils.REPO_DIR, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == expected
