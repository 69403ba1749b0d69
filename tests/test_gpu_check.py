"""benchmarks/gpu_check.py in its --smoke mode: every part runs and writes its results."""

import json
import os
import subprocess
import sys

import pytest
from helpers import run_tool

from utils import REPO_DIR

pytestmark = pytest.mark.slow  # a TensorFlow process of its own, about half a minute


def test_the_gpu_check_runs_in_smoke_mode_and_writes_every_result(tmp_path):
    folder = tmp_path / "check"
    # one variant (circulant MoE and gating) is enough for every part to run
    run_tool("benchmarks/gpu_check.py", folder, "--smoke", "--variants=moe_k1", timeout=600)
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    by_check = {}
    for record in records:
        by_check.setdefault(record["check"], []).append(record)
    assert by_check["machine"][0]["smoke"] is True
    layer = by_check["circulant_layer"][0]
    assert layer["passed"] and max(layer["relative_errors"].values()) < 1e-4
    timed = {(r["variant"], r["precision"], r["jit_compile"]) for r in by_check["training"]}
    low = "mixed_float16" if by_check["machine"][0]["device"] == "GPU" else "mixed_bfloat16"
    assert timed == {("moe_k1", p, j) for p in ("float32", low) for j in (False, True)}
    for record in by_check["training"]:
        assert record["train_examples_per_second"] > 0 < record["eval_examples_per_second"]
        # weights, gradients and Adam's two moments are float32 and live at once in training
        assert record["peak_memory_mb"] > 4 * record["weights"] * 4 / 2**20
    assert by_check["input"][0]["variant"] == "moe_k1"
    assert by_check["input"][0]["reading_examples_per_second"] > 0
    assert by_check["done"][0]["passed"]
    summary = (folder / "summary.txt").read_text().splitlines()
    assert len(summary) == len(records) and "PASS" in summary[1]


_MEMORY = """
import json, sys
sys.path.insert(0, "benchmarks")
from process_memory import TensorMemory
import tensorflow as tf
memory = TensorMemory("CPU:0")
memory.reset()
x = tf.ones([1024, 1024])  # 4 MiB alive
print(json.dumps([memory.available, memory.mb("peak"), memory.why]))
"""


@pytest.mark.parametrize("allocator", ["true", "false"])
def test_memory_figures_are_counted_with_the_bfc_allocator_or_say_why_not(allocator):
    # oneDNN off on any CPU: TensorFlow's CPU allocator is the BFC one only when asked for
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPU_ALLOCATOR_USE_BFC": allocator}
    done = subprocess.run([sys.executable, "-c", _MEMORY], capture_output=True, text=True,
                          cwd=REPO_DIR, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    available, peak, why = json.loads(done.stdout.strip().splitlines()[-1])
    if allocator == "true":
        assert available and peak >= 4.0 and why == ""
    else:
        assert not available and peak is None
        assert "TF_CPU_ALLOCATOR_USE_BFC=true" in why and "\n" not in why
