"""This process's memory for the benchmarks' peak figures: resident memory from /proc/self/status
(Linux) and TensorFlow's own count of live tensors on a device."""

import os

import utils  # the repository's, on the path of every script here


def rss_kib(field):
    """A /proc/self/status field in KiB: "VmRSS" (resident now) or "VmHWM" (peak); 0 if absent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def keep_cpu_memory_statistics():
    """Ask TensorFlow's CPU allocator to count live tensors; call it before importing TensorFlow.

    TensorFlow counts them (`tf.config.experimental.get_memory_info("CPU:0")`) only with its BFC
    allocator, which it uses on the CPU when oneDNN is on (its default on some Intel CPUs only)
    or when TF_CPU_ALLOCATOR_USE_BFC is true. A value the user set is kept.
    """
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


class TensorMemory:
    """TensorFlow's live tensors on `device` ("CPU:0", "GPU:0") in MB, or None for every figure
    where TensorFlow keeps no statistics there (`why` says so in one line)."""

    def __init__(self, device):
        import tensorflow as tf
        self.device, self._info = device, tf.config.experimental
        try:
            self._info.reset_memory_stats(device)
            self.why = ""
        except (ValueError, tf.errors.OpError) as error:
            self.why = (f"peak memory on {device} not available ({utils.first_line(error)}): "
                        "TensorFlow counts CPU tensors only with its BFC allocator; set "
                        "TF_CPU_ALLOCATOR_USE_BFC=true (or TF_ENABLE_ONEDNN_OPTS=1) before it "
                        "starts")

    @property
    def available(self):
        return not self.why

    def reset(self):
        """Start a new peak (from what is alive now)."""
        if self.available:
            self._info.reset_memory_stats(self.device)

    def mb(self, key="current"):
        """"current" or "peak" (since the last reset) live tensors in MB; None if not counted."""
        return self._info.get_memory_info(self.device)[key] / 2**20 if self.available else None
