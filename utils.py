"""Small helpers shared by the command-line tools."""

import os
import re
import sys
import time

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


def shared_data_dir():
    """The real YouTube-8M files: $YT8M_SHARED_DATA, else ../shared/data beside the repo."""
    return os.environ.get("YT8M_SHARED_DATA",
                          os.path.join(os.path.dirname(REPO_DIR), "shared", "data"))


# TensorFlow's start-up lines that every run prints and no user can act on: absl's notice,
# info and warning lines logged before logging is set up, and CUDA's failure on a machine
# without a GPU driver.
_START_UP_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog|"
                             r"[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ |"
                             r"E\d{4} \d\d:\d\d:[\d.]+ +\d+ cuda_platform\.cc:\d+\] failed call "
                             r"to cuInit")


def choose_cpu_kernels():
    """oneDNN's CPU kernels on x86, unless TF_ENABLE_ONEDNN_OPTS says otherwise; call it before
    importing tensorflow.

    TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; elsewhere its
    own kernels trained our models 1.2x-1.5x slower in float32 and more in bfloat16
    (BENCHMARKS.md, "CPU kernels"), and its CPU memory statistics need oneDNN's allocator.
    """
    import platform
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def quiet_tensorflow():
    """Import TensorFlow and find its devices without the start-up chatter, oneDNN's kernels
    chosen (choose_cpu_kernels); call it before importing tensorflow. Other lines written
    meanwhile (real errors) are shown.

    YT8M_VERBOSE=1 shows everything.
    """
    choose_cpu_kernels()
    if os.environ.get("YT8M_VERBOSE"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)  # C++ logs bypass sys.stderr
        try:
            import tensorflow as tf
            tf.config.list_physical_devices("GPU")  # where CUDA complains on a CPU machine
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if not _START_UP_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def fail(message):
    """Print a one-line error and exit non-zero (for bad input, not for bugs)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def first_line(error):
    """An exception's first line of text (its type's name if it has none), for one-line
    messages."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def warn(message):
    """A one-line warning on stderr: the run goes on."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def parse_weights(text, count, flag, what):
    """The comma-separated weights of --`flag` for `count` `what`s, summing to 1 (equal when
    `text` is empty); ValueError naming the flag for a bad list."""
    if not text:
        return [1.0 / count] * count if count else []
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--{flag} must be numbers, got {text!r}") from None
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"--{flag} needs {count} non-negative numbers, not all 0 (one per "
                         f"{what}), got {text!r}")
    return [w / sum(weights) for w in weights]


def duration(seconds):
    """'1h02m', '3m20s', '45s'."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """How far work of a known (or estimated) size has gone, and the time left.

    The time left is measured from the first report on, so that start-up and the first step's
    compilation do not count: call `status` once the first unit is done.
    """

    def __init__(self, total, start=0, estimated=False):
        self.total, self.start, self.estimated = max(int(total), 1), start, estimated
        self.first = None  # (done, time) at the first report

    def left(self, done, now=None):
        """Seconds left, or None before there is a rate to go by."""
        now = time.time() if now is None else now
        if self.first is None:
            self.first = (done, now)
        first_done, first_time = self.first
        if done <= first_done:
            return None
        return max(self.total - done, 0) * (now - first_time) / (done - first_done)

    def status(self, done):
        """'1,234/5,701 (21%)' ('/~5,701' for an estimated total); work that started part way
        (a resumed run) says its share is of what this run does: '40/50 (9% of this run)'."""
        share = 100 * (done - self.start) / max(self.total - self.start, 1)
        of = " of this run" if self.start else ""
        return (f"{done:,}/{'~' if self.estimated else ''}{self.total:,} "
                f"({min(share, 100):.0f}%{of})")

    def left_text(self, done, now=None):
        """' | 3m10s left', or '' before there is a rate to go by."""
        left = self.left(done, now)
        return f" | {duration(left)} left" if left is not None else ""


class ProgressPrinter:
    """Prints `Progress` of videos: a bar and a line rewritten in place on a terminal, otherwise
    a plain line at most every `seconds`."""

    def __init__(self, progress, what="videos", seconds=10, stream=None):
        self.progress, self.what = progress, what
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty()
        self.seconds = 0.5 if self.terminal else seconds
        self.last = 0.0
        self.written = False
        self.done = self.printed = None

    def update(self, done, rate=None):
        self.done, self.rate = done, rate
        now = time.time()
        left = self.progress.left_text(done, now)  # every call: the first sets the start
        if now - self.last < self.seconds:
            return
        self.last, self.printed = now, done
        extra = f" | {rate:,.0f} {self.what}/s" if rate else ""
        line = f"{self.what} {self.progress.status(done)}{extra}{left}"
        if self.terminal:
            share = min(max(done / self.progress.total, 0.0), 1.0)
            bar = "#" * round(20 * share)
            self.stream.write(f"\r[{bar:<20}] {line:<79}")
            self.written = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """The last state shown: the bar as it ends, or in a log the final line (100%)."""
        if self.done is not None and (self.written or self.printed != self.done):
            self.last = 0.0
            self.update(self.done, self.rate)
        if self.written:
            self.stream.write("\n")
            self.stream.flush()


def atomic_write(path, text):
    """Write a whole file or nothing: a temporary file renamed over the target."""
    import tensorflow as tf
    temporary = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def prepare_dir(path):
    """Create the folder `path` if needed; a clear error if it is a file or not writable."""
    import tensorflow as tf
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        raise ValueError(f"{path} is a file, not a folder")
    try:
        tf.io.gfile.makedirs(path)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as err:
        raise ValueError(f"cannot write in {path}: {getattr(err, 'message', err)}") from None
    return path


class StopRequests:
    """While active, SIGINT and SIGTERM only set `requested` (the signal number)."""

    def __init__(self):
        self.requested = 0
        self._previous = {}

    def __enter__(self):
        import signal
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.requested = signum

    def __exit__(self, *exc):
        import signal
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def cli_main(run):
    """An absl `main` for a tool: absl's INFO logs off, then `run()` as run_cli runs it."""

    def main(argv):
        del argv
        from absl import logging
        logging.set_verbosity(logging.WARNING)
        run_cli(run)

    return main


def error_line(err):
    """The one line that says what went wrong. An error raised inside a layer's call or build
    reaches us in Keras' wrapping ("Exception encountered when calling X.call()", the message
    in bold, then the arguments): its own message is the line."""
    text = str(err)
    if text.startswith("Exception encountered when calling"):
        found = re.search(r"\x1b\[1m(.*?)\x1b\[0m", text, re.S)
        text = found.group(1) if found else text
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def run_cli(function):
    """Run a tool's main work; bad input, bad flags or a failing disk end in one line, exit 1.

    Set YT8M_DEBUG=1 to see the traceback instead.
    """
    import signal

    from readers import DataError

    def terminated(signum, frame):  # as Ctrl-C: `finally` blocks remove temporary folders
        del frame
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        function()
    except (DataError, ValueError, FloatingPointError, OSError) as err:
        if os.environ.get("YT8M_DEBUG"):
            raise
        fail(error_line(err))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
