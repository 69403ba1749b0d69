"""The paper's experiments, re-run with this project's own train.py (issue 7).

    .venv/bin/python experiments/paper.py --experiment=video_level [--out_dir=out/experiments]
    .venv/bin/python experiments/plot.py out/experiments/video_level.jsonl

Each variant is one `train.py` run (seed 0) in `<out_dir>/<experiment>/<variant>/` that
evaluates the validation files after every epoch; its per-epoch validation GAP@20, weights and
training examples/s are appended to `<out_dir>/<experiment>.jsonl`, one JSON line per epoch.
A variant whose train_dir already holds a finished run is read again, not re-trained; with
--variants, only those are trained, and the results file gathers every finished variant.

Experiments defined so far:

  video_level  experiment 5: on the shared real 2018 video-level data (23,091 train, 5,701
               validate videos), LogisticModel and MoeModel (2 mixtures), dense against their
               compact versions (every dense layer of the classifier diagonal-circulant, k=1).
               Adam 0.01, batch 256, 10 epochs. The same at both scales: the data is what it is.
  compact_moe  the same data and training: MoeModel with only its gates diagonal-circulant
               (k=1, experts dense), with 2 and 1 mixtures, 1 mixture with k=3, and the dense
               1-mixture MoE.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

import utils  # noqa: E402

TRAIN_VIDEOS = 23091
EXPERIMENTS = {
    "video_level": {
        "train": "yt8m-2018-video/train/*.tfrecord",
        "validate": "yt8m-2018-video/validate/*.tfrecord",
        "flags": ["--batch_size=256", "--base_learning_rate=0.01", "--num_epochs=10",
                  "--validation_steps=91", "--log_steps=30", "--seed=0"],
        "variants": {
            "LogisticModel dense": ["--model=LogisticModel"],
            "LogisticModel compact": ["--model=LogisticModel", "--compact_layers=moe"],
            "MoeModel dense": ["--model=MoeModel", "--moe_num_mixtures=2"],
            "MoeModel compact": ["--model=MoeModel", "--moe_num_mixtures=2",
                                 "--compact_layers=moe,gating"],
        },
        "videos_per_epoch": TRAIN_VIDEOS,
        "batch_size": 256,
    },
    "compact_moe": {  # which part of the MoE to make compact (issue 7's goal for the MoE)
        "train": "yt8m-2018-video/train/*.tfrecord",
        "validate": "yt8m-2018-video/validate/*.tfrecord",
        "flags": ["--batch_size=256", "--base_learning_rate=0.01", "--num_epochs=10",
                  "--validation_steps=91", "--log_steps=30", "--seed=0", "--model=MoeModel"],
        "variants": {
            "2 mixtures, compact gates": ["--moe_num_mixtures=2", "--compact_layers=moe_gates"],
            "1 mixture, compact gates": ["--moe_num_mixtures=1", "--compact_layers=moe_gates"],
            "1 mixture, dense": ["--moe_num_mixtures=1"],
            "1 mixture, compact gates, k=3": ["--moe_num_mixtures=1", "--compact_layers=moe_gates",
                                              "--k_factor=3"],
        },
        "videos_per_epoch": TRAIN_VIDEOS,
        "batch_size": 256,
    },
}

flags.DEFINE_enum("experiment", "video_level", list(EXPERIMENTS), "Which experiment.")
flags.DEFINE_enum("scale", "small", ["small", "paper"], "small: a 2-core CPU; paper: the "
                  "paper's sizes, for a GPU (the same for video_level).")
flags.DEFINE_string("out_dir", os.path.join(REPO, "out", "experiments"), "Where runs go.")
flags.DEFINE_string("variants", "", "Comma-separated variants as their folder names, e.g. "
                    "moemodel_dense (default: all).")
FLAGS = flags.FLAGS


def slug(name):
    return re.sub(r"\W+", "_", name).strip("_").lower()


def run_variant(spec, name, train_dir):
    """Train one variant (unless done); returns its output lines and wall seconds."""
    log = os.path.join(train_dir, "train_log.txt")
    if os.path.exists(os.path.join(train_dir, "done")):
        with open(log) as f, open(os.path.join(train_dir, "done")) as done:
            return f.read(), json.load(done)["seconds"]
    data = utils.shared_data_dir()
    command = [sys.executable, os.path.join(REPO, "train.py"), f"--train_dir={train_dir}",
               f"--train_data_pattern={os.path.join(data, spec['train'])}",
               f"--validation_data_pattern={os.path.join(data, spec['validate'])}",
               "--start_new_model", *spec["flags"], *spec["variants"][name]]
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    started = time.time()
    os.makedirs(train_dir, exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, text=True)
    if done.returncode:
        raise SystemExit(f"error: {name} failed (exit {done.returncode}); see {log}")
    seconds = time.time() - started
    utils.atomic_write(os.path.join(train_dir, "done"), json.dumps({"seconds": seconds}))
    with open(log) as f:
        return f.read(), seconds


def results_of(spec, name, train_dir, output, seconds):
    """One row per validation (an epoch): variant, epoch, GAP, weights, examples/s."""
    weights = int(re.search(r"^model \w+: ([\d,]+) weights", output, re.M)[1].replace(",", ""))
    rates = [float(r.replace(",", "")) for r in
             re.findall(r"^step \d+ \| ([\d,]+) examples/s", output, re.M)[1:]]
    rate = statistics.median(rates) if rates else None
    rows = []
    with open(os.path.join(train_dir, "validation.jsonl")) as f:
        for line in f:
            result = json.loads(line)
            epoch = result["step"] * spec["batch_size"] / spec["videos_per_epoch"]
            rows.append({"experiment": FLAGS.experiment, "scale": FLAGS.scale, "variant": name,
                         "epoch": round(epoch, 2), "step": result["step"],
                         "gap": result["gap"], "weights": weights,
                         "examples_per_second": rate, "wall_seconds": round(seconds)})
    return rows


def main(argv):
    del argv
    spec = EXPERIMENTS[FLAGS.experiment]
    slugs = {slug(name): name for name in spec["variants"]}
    requested = [v.strip() for v in FLAGS.variants.split(",") if v.strip()] or list(slugs)
    unknown = [v for v in requested if v not in slugs]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {unknown}; choose from {list(slugs)}")
    names = [slugs[v] for v in requested]
    results = os.path.join(FLAGS.out_dir, f"{FLAGS.experiment}.jsonl")
    rows = []
    for name in spec["variants"]:  # results of every finished variant, trained or not now
        train_dir = os.path.join(FLAGS.out_dir, FLAGS.experiment, FLAGS.scale, slug(name))
        if name not in names and not os.path.exists(os.path.join(train_dir, "done")):
            continue
        output, seconds = run_variant(spec, name, train_dir)
        rows.extend(results_of(spec, name, train_dir, output, seconds))
        best = max((r for r in rows if r["variant"] == name), key=lambda r: r["gap"])
        print(f"{name}: {best['weights']:,} weights, best GAP {best['gap']:.4f} at epoch "
              f"{best['epoch']}, {best['examples_per_second'] or 0:,.0f} examples/s, "
              f"{seconds / 60:.1f} min", flush=True)
    utils.atomic_write(results, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"results: {results}")


if __name__ == "__main__":
    app.run(main)
