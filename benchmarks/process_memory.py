"""This process's memory, from /proc/self/status (Linux), for the benchmarks' peak figures."""


def rss_kib(field):
    """A /proc/self/status field in KiB: "VmRSS" (resident now) or "VmHWM" (peak); 0 if absent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
