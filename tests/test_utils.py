"""The command-line helpers: start-up noise filtering, durations."""

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
