"""What many tests share: running a command, and reading every batch of a reader."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from utils import REPO_DIR


def run_tool(script, *args, check=True, timeout=300, env=None):
    """`script` (a path under the repository) run with `args` in a process of its own, without
    the caller's TF_CONFIG; check: its exit status must be 0."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environment.update(env or {})
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=environment)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


_IN_ONE_PROCESS = """
import contextlib, importlib, io, json, sys
from absl import flags
import utils
module = importlib.import_module(sys.argv[1])
results = []
for args in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS([sys.argv[1] + ".py", *args])
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            utils.cli_main(module.run)([])
            code = 0
        except SystemExit as exit:
            code = exit.code
    results.append([code, stdout.getvalue(), stderr.getvalue()])
print(json.dumps(results))
"""


def run_in_one_process(tool, arguments, timeout=300, env=None):
    """[(exit code, stdout, stderr)] of the command-line tool `tool` ("train", "eval", ...) run
    with each list of arguments in turn, all in one process: one TensorFlow start-up for all;
    env: variables set for it."""
    done = subprocess.run([sys.executable, "-c", _IN_ONE_PROCESS, tool, json.dumps(arguments)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def checkpoint_step(path):
    """The optimizer's step saved in checkpoint `path`."""
    reader = tf.train.load_checkpoint(path)
    keys = [k for k in reader.get_variable_to_shape_map() if "iteration" in k]
    assert keys, "the optimizer's step is checkpointed"
    return int(reader.get_tensor(keys[0]))


def read_all(reader, files, batch_size=4, **kwargs):
    """Every batch of a pass over `files`, concatenated into NumPy arrays."""
    parts = {}
    with reader.reraise_data_errors(files):
        for batch in reader.dataset(files, batch_size, **kwargs):
            for key, value in batch.items():
                parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


