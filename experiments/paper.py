"""The paper's experiments, re-run with this project's own train.py.

    .venv/bin/python experiments/paper.py --experiment=NAME [--scale=small|paper]
    .venv/bin/python experiments/plot.py out/experiments/NAME.jsonl

Each variant is one `train.py` run (seed 0) in `<out_dir>/<experiment>/<scale>/<variant>/` that
evaluates the validation files after every epoch; its per-epoch validation GAP@20, weights and
training examples/s are appended to `<out_dir>/<experiment>.jsonl`, one JSON line per epoch.
A variant whose train_dir already holds a finished run is read again, not re-trained, and so is
one whose exact command another experiment has already run; with --variants, only those are
trained, and the results file gathers every finished variant.

Frame-level experiments (1-3; 4 is their figures) train on frame-level files expanded once from
the shared real 2018 video-level records (`generate_data.py --from_video_pattern`: real ids and
labels, each video's frames its real mean features plus zero-mean noise) into
`<out_dir>/frames/<scale>/`, and validate on the expanded validate split.

Experiments:

  layer_by_layer  experiment 1: video only, TwoStreamModel with DBoF; dense, then the DBoF
                  embedding, the FC layer, or the MoE and Context Gating diagonal-circulant;
                  and only the MoE's gates and Context Gating (experts dense), with a dense
                  model of about that size for comparison.
  embeddings      experiment 2: audio + video, DBoF, NetVLAD and NetFV, each with a dense and a
                  circulant FC layer.
  factors         experiment 3: audio + video DBoF, circulant FC with k = 1, 3, 6 factors
                  against dense (examples/s, FC weights, GAP).
  video_level     experiment 5: on the shared real 2018 video-level data (23,091 train, 5,701
                  validate videos), LogisticModel and MoeModel (2 mixtures), dense against their
                  compact versions (every dense layer of the classifier diagonal-circulant, k=1).
                  Adam 0.01, batch 256, 10 epochs. The same at both scales: the data is what it is.
  compact_moe     the same data and training: MoeModel with only its gates diagonal-circulant
                  (k=1, experts dense), with 2 and 1 mixtures, 1 mixture with k=3, and the dense
                  1-mixture MoE.

Every experiment runs its circulant layers in their first form (diagonal after each circulant,
one zero-padded product); the variants named "input diagonal, lr x3" (experiments 1 and 2) use
the best settings of experiments/circulant_options.py instead, and "dense, 1 mixture, no Context
Gating, FC 350" is a dense model of the size of the compact-gates one.

Scales of the frame-level experiments: "paper" is the paper's model (DBoF 8,192 video / 4,096
audio clusters, NetVLAD and NetFV 64 / 32, FC 512, MoE 4 mixtures, Context Gating, 30 frames
sampled from videos of 100-300 frames; Adam 0.0002 as the paper, batch 80, 15 epochs) for a GPU;
"small" keeps that structure, smaller (FRAME_SCALES: DBoF 256 / 128 clusters, NetVLAD and
NetFV 16 / 8, MoE 2 mixtures, videos of 30-60 frames; Adam 0.002, batch 256, 5 epochs, batch-norm
momentum 0.9 because a 0.99 average lags the weights over so few steps), to finish in about 30
minutes an experiment on a 2-core CPU.
"""

import json
import math
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402
from configs.paper import (  # noqa: E402  (the recipes)
    EXPERIMENTS,
    FIRST_CIRCULANT,
    FRAME_SCALES,
    TRAIN_VIDEOS,
    VIDEO_DATA,
)
from runs import (  # noqa: E402
    examples_per_second,
    layer_weights,
    run_train,
    validations,
    weights_of,
)

import utils  # noqa: E402

flags.DEFINE_enum("experiment", "video_level", list(EXPERIMENTS), "Which experiment.")
flags.DEFINE_enum("scale", "small", ["small", "paper"], "small: a 2-core CPU; paper: the "
                  "paper's sizes, for a GPU (the same for video_level).")
flags.DEFINE_string("out_dir", os.path.join(REPO, "out", "experiments"), "Where runs go.")
flags.DEFINE_string("variants", "", "Comma-separated variants as their folder names, e.g. "
                    "moemodel_dense (default: all).")
FLAGS = flags.FLAGS


def slug(name):
    return re.sub(r"\W+", "_", name).strip("_").lower()


def frames_dir(scale):
    return os.path.join(FLAGS.out_dir, "frames", scale)


def frame_patterns(scale):
    return {split: os.path.join(frames_dir(scale), f"{split}*.tfrecord") for split in VIDEO_DATA}


def expand_frames(scale):
    """Expand the real video-level train and validate files to frame level (once a scale)."""
    folder = frames_dir(scale)
    low, high = FRAME_SCALES[scale]["frames"]
    for split, pattern in VIDEO_DATA.items():
        marker = os.path.join(folder, f"{split}.done")
        if os.path.exists(marker):
            continue
        command = [sys.executable, os.path.join(REPO, "generate_data.py"), f"--output_dir={folder}",
                   f"--split={split}", f"--min_frames={low}", f"--max_frames={high}",
                   f"--from_video_pattern={os.path.join(utils.shared_data_dir(), pattern)}",
                   "--num_shards=8", "--seed=0"]
        print(f"expanding {split} to frame level: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command).returncode:
            raise SystemExit(f"error: expanding the {split} split failed")
        utils.atomic_write(marker, "")


def arguments(spec, name, scale):
    """(train.py's arguments but --train_dir, global batch size) of a variant at a scale."""
    variant = spec["variants"][name]
    if not spec.get("frame_level"):
        data = utils.shared_data_dir()
        files = {split: os.path.join(data, pattern) for split, pattern in VIDEO_DATA.items()}
        common, batch = [*spec["flags"], *FIRST_CIRCULANT], spec["batch_size"]
    else:
        size, files = FRAME_SCALES[scale], frame_patterns(scale)
        embedding = next((f.split("=", 1)[1] for f in variant if f.startswith("--embedding=")),
                         "dbof")
        video, audio = size["clusters"][embedding]
        batch = size["batch_size"]
        common = ["--frame_features", "--model=TwoStreamModel", f"--max_frames={size['frames'][1]}",
                  f"--video_clusters={video}", f"--audio_clusters={audio}",
                  f"--batch_size={batch}", f"--num_epochs={size['num_epochs']}",
                  f"--validation_steps={math.ceil(TRAIN_VIDEOS / batch)}", "--log_steps=20",
                  "--seed=0", *size["flags"], *FIRST_CIRCULANT]
    return [f"--train_data_pattern={files['train']}",
            f"--validation_data_pattern={files['validate']}", "--start_new_model",
            *common, *variant], batch


def run_dir(experiment, scale, name):
    return os.path.join(FLAGS.out_dir, experiment, scale, slug(name))


def finished_run(args, scale):
    """The folder of a finished run of exactly these arguments, in any experiment, or None."""
    for experiment, spec in EXPERIMENTS.items():
        for name in spec["variants"]:
            folder = run_dir(experiment, scale, name)
            if os.path.exists(os.path.join(folder, "done")) and \
                    arguments(spec, name, scale)[0] == args:
                return folder
    return None


def results_of(name, train_dir, batch, seconds):
    """One row per validation (an epoch): variant, epoch, GAP, weights, examples/s."""
    weights, rate = weights_of(train_dir), examples_per_second(train_dir)
    fc = layer_weights(train_dir, "_fc")  # the FC layers after the embeddings
    rows = []
    for result in validations(train_dir):
        epoch = result["step"] * batch / TRAIN_VIDEOS
        rows.append({"experiment": FLAGS.experiment, "scale": FLAGS.scale, "variant": name,
                     "epoch": round(epoch, 2), "step": result["step"],
                     "gap": result["gap"], "weights": weights,
                     "fc_weights": fc,
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
    if spec.get("frame_level"):
        expand_frames(FLAGS.scale)
    results = os.path.join(FLAGS.out_dir, f"{FLAGS.experiment}.jsonl")
    rows = []
    for name in spec["variants"]:  # results of every finished variant, trained or not now
        args, batch = arguments(spec, name, FLAGS.scale)
        finished = finished_run(args, FLAGS.scale)  # here or in another experiment
        if name not in names and not finished:
            continue
        train_dir = finished or run_dir(FLAGS.experiment, FLAGS.scale, name)
        seconds = run_train(args, name, train_dir)
        rows.extend(results_of(name, train_dir, batch, seconds))
        best = max((r for r in rows if r["variant"] == name), key=lambda r: r["gap"])
        print(f"{name}: {best['weights']:,} weights, best GAP {best['gap']:.4f} at epoch "
              f"{best['epoch']}, {best['examples_per_second'] or 0:,.0f} examples/s, "
              f"{seconds / 60:.1f} min", flush=True)
    utils.atomic_write(results, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"results: {results}")


if __name__ == "__main__":
    app.run(main)
