"""Training speed with TensorFlow's oneDNN CPU kernels off and on, in one run.

    .venv/bin/python benchmarks/bench_onednn.py [--models=video,dbof,dbof_fc] [--rounds=2]

oneDNN is chosen when TensorFlow starts (TF_ENABLE_ONEDNN_OPTS; TensorFlow turns it on by
default only on some Intel CPUs), so each measurement is a process of its own:
benchmarks/bench_step.py with the default float32 step and the bfloat16 step (both 10 steps a
call, progress every 10), oneDNN off and on alternated --rounds times per model, so that drift
of a shared machine falls on both. Prints the CPU, each process's examples/s and the median
ratio on/off per model and precision.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {"2": "float32", "11": "bfloat16"}  # indices of bench_step.SETTINGS
flags.DEFINE_string("models", "video,dbof,dbof_fc", "bench_step.py models to time.")
flags.DEFINE_integer("rounds", 2, "Off/on pairs per model.")
flags.DEFINE_integer("steps", 100, "Timed steps per setting.")
flags.DEFINE_integer("warm_up", 50, "Steps before timing.")
FLAGS = flags.FLAGS


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(model, onednn, output):
    """bench_step's {precision: examples/s} for `model` in a process with oneDNN on or off."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    open(output, "w").close()
    done = subprocess.run([sys.executable, os.path.join(HERE, "bench_step.py"),
                           f"--model={model}", f"--settings={','.join(SETTINGS)}",
                           f"--steps={FLAGS.steps}", f"--warm_up={FLAGS.warm_up}",
                           "--nobreakdown", f"--output={output}"],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: bench_step.py --model={model} failed:\n{done.stderr[-3000:]}")
    with open(output) as f:
        records = [json.loads(line) for line in f if '"setting"' in line]
    return {("bfloat16" if r["mixed_precision"] == "mixed_bfloat16" else "float32"):
            r["examples_per_second"] for r in records}


def main(argv):
    del argv
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {FLAGS.steps} timed steps a setting",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "step.jsonl")
        for model in FLAGS.models.split(","):
            rates = {False: [], True: []}
            for _ in range(FLAGS.rounds):
                for onednn in (False, True):
                    rates[onednn].append(measure(model, onednn, output))
                    print(f"{model} oneDNN {'on ' if onednn else 'off'}: " + ", ".join(
                        f"{p} {r:,.0f}" for p, r in rates[onednn][-1].items()) + " examples/s",
                        flush=True)
            for precision in SETTINGS.values():
                off = [r[precision] for r in rates[False]]
                on = [r[precision] for r in rates[True]]
                rows.append((model, precision, off, on,
                             statistics.median(b / a for a, b in zip(off, on))))
    print("\n| model | precision | oneDNN off, examples/s | on | on/off (median of pairs) |")
    print("|---|---|---|---|---|")
    for model, precision, off, on, ratio in rows:
        print(f"| {model} | {precision} | {', '.join(f'{r:,.0f}' for r in off)} | "
              f"{', '.join(f'{r:,.0f}' for r in on)} | {ratio:.2f}x |")


if __name__ == "__main__":
    app.run(main)
