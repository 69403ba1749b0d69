"""The options of DiagonalCirculant, one at a time, on the real video-level data.

    .venv/bin/python experiments/circulant_options.py [--trials=1,2,...] [--epochs=8]

Same data and training as experiments/frontier.py (43,552 training videos, 5,701 validation
videos, Adam 0.003, batch 256, validated after every epoch; the best epoch counts), at about
0.5M weights, in two places:

  bottleneck  features -> diagonal-circulant 1152 -> 127 (batch norm, ReLU) -> dense logistic
  gating      features -> low-rank (96) logistic -> Context Gating of the probabilities with a
              diagonal-circulant 3,862 x 3,862 matrix

Each trial changes one thing from its place's first trial (the diagonal on the output side, as
this project first had it): the factor order, k, a leaky ReLU between factors, the circulant
vectors' learning rate, and (trials 15-16, at an L2 penalty of 1e-5, 1,000 times the starter's,
so that it matters) whether the circulant vectors are penalised. Dense references of the same
size close each place. Results:
`<out_dir>/circulant_options.jsonl` and a Markdown table on stdout.
"""

import json
import os
import sys

import frontier  # beside this script: data, training, the run helper
import runs
from absl import app, flags

import utils  # noqa: E402

BOTTLENECK = ["--model=BottleneckModel", "--bottleneck_size=127", "--compact_layers=fc",
              "--circulant_expansion=blocks"]
GATING = ["--model=BottleneckModel", "--bottleneck_size=0", "--low_rank=96", "--output_gating",
          "--compact_layers=gating", "--circulant_expansion=blocks"]
OUTPUT, INPUT = "--circulant_diagonal_side=output", "--circulant_diagonal_side=input"
TRIALS = {
    "bottleneck, output diagonal": [*BOTTLENECK, OUTPUT],
    "bottleneck, input diagonal": [*BOTTLENECK, INPUT],
    "bottleneck, input diagonal, k=2": [*BOTTLENECK, INPUT, "--k_factor=2"],
    "bottleneck, input diagonal, k=2, leaky ReLU 0.1 between factors": [
        *BOTTLENECK, INPUT, "--k_factor=2", "--circulant_leaky_slope=0.1"],
    "bottleneck, input diagonal, learning rate x0.3": [
        *BOTTLENECK, INPUT, "--circulant_learning_rate_scale=0.3"],
    "bottleneck, input diagonal, learning rate x3": [
        *BOTTLENECK, INPUT, "--circulant_learning_rate_scale=3"],
    "bottleneck, input diagonal, linear (no batch norm, no ReLU), learning rate x3": [
        *BOTTLENECK, INPUT, "--linear_bottleneck", "--circulant_learning_rate_scale=3"],
    "dense bottleneck of the same size (98)": ["--model=BottleneckModel", "--bottleneck_size=98"],
    "gating, output diagonal, k=2": [*GATING, OUTPUT, "--k_factor=2"],
    "gating, input diagonal, k=1": [*GATING, INPUT, "--k_factor=1"],
    "gating, input diagonal, k=2": [*GATING, INPUT, "--k_factor=2"],
    "gating, input diagonal, k=4": [*GATING, INPUT, "--k_factor=4"],
    "gating, input diagonal, k=2, learning rate x3": [
        *GATING, INPUT, "--k_factor=2", "--circulant_learning_rate_scale=3"],
    "low rank of the same size (98), no gating": [
        "--model=BottleneckModel", "--bottleneck_size=0", "--low_rank=98"],
    "bottleneck, input diagonal, learning rate x3, no L2 penalty on the circulant vectors": [
        *BOTTLENECK, INPUT, "--circulant_learning_rate_scale=3", "--nocirculant_regularized",
        "--l2_penalty=1e-5"],
    "bottleneck, input diagonal, learning rate x3, L2 penalty 1e-5 on every weight": [
        *BOTTLENECK, INPUT, "--circulant_learning_rate_scale=3", "--l2_penalty=1e-5"],
}

flags.DEFINE_string("trials", "", "Comma-separated trial numbers (1-based) to run (default: all).")
flags.DEFINE_integer("epochs", 8, "Epochs per trial.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    names = list(TRIALS)
    chosen = [int(t) for t in FLAGS.trials.split(",") if t.strip()] or range(1, len(names) + 1)
    if any(not 1 <= t <= len(names) for t in chosen):
        raise SystemExit(f"error: --trials are numbers from 1 to {len(names)}")
    rows = []
    for number in chosen:
        name = names[number - 1]
        args = frontier.train_args([f"--num_epochs={FLAGS.epochs}", *TRIALS[name]], seed=0)
        folder = os.path.join(FLAGS.out_dir, "options", f"trial_{number:02d}")
        seconds = runs.run_train(args, name, folder)
        gaps = [r["gap"] for r in runs.validations(folder)]
        rows.append({"trial": number, "name": name, "weights": runs.weights_of(folder),
                     "gap": max(gaps), "gaps": [round(g, 4) for g in gaps],
                     "wall_seconds": round(seconds)})
        print(f"{number}. {name}: GAP {max(gaps):.4f}", flush=True)
    results = os.path.join(FLAGS.out_dir, "circulant_options.jsonl")
    utils.atomic_write(results, "".join(json.dumps(r) + "\n" for r in rows))
    print("| trial | weights | validation GAP@20 by epoch | best |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['trial']}. {row['name']} | {row['weights']:,} | "
              f"{', '.join(f'{g:.3f}' for g in row['gaps'])} | {row['gap']:.4f} |")
    print(f"results: {results}")


if __name__ == "__main__":
    sys.exit(app.run(main))
