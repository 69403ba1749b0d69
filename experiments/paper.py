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
from runs import (  # noqa: E402
    examples_per_second,
    layer_weights,
    run_train,
    validations,
    weights_of,
)

import utils  # noqa: E402

TRAIN_VIDEOS = 23091
VIDEO_DATA = {"train": "yt8m-2018-video/train/*.tfrecord",
              "validate": "yt8m-2018-video/validate/*.tfrecord"}

# The frame-level experiments' sizes and training, by scale (see the module's docstring).
FRAME_SCALES = {
    "paper": {"frames": (100, 300), "batch_size": 320, "num_epochs": 15,
              "clusters": {"dbof": (8192, 4096), "netvlad": (64, 32), "netfv": (64, 32)},
              "flags": ["--base_learning_rate=0.0002", "--learning_rate_decay=0.8",
                        "--learning_rate_decay_examples=4000000", "--fc_size=512",
                        "--moe_num_mixtures=4"]},
    "small": {"frames": (30, 60), "batch_size": 256, "num_epochs": 5,
              "clusters": {"dbof": (256, 128), "netvlad": (16, 8), "netfv": (16, 8)},
              "flags": ["--base_learning_rate=0.002", "--learning_rate_decay=0.8",
                        "--learning_rate_decay_examples=4000000", "--fc_size=512",
                        "--moe_num_mixtures=2", "--batch_norm_momentum=0.9"]},
}
VIDEO_ONLY = ["--use_audio=false", "--feature_names=rgb", "--feature_sizes=1024"]
# The circulant layers these experiments first ran with (diagonal after each circulant, one
# zero-padded product); the variants marked "input diagonal, lr x3" override them (the last
# flag wins) with the best settings found: the diagonal on each factor's input, expanding
# layers by blocks, the circulant vectors at 3x the learning rate.
FIRST_CIRCULANT = ["--circulant_diagonal_side=output", "--circulant_expansion=pad"]
INPUT_DIAGONAL = ["--circulant_diagonal_side=input", "--circulant_expansion=blocks",
                  "--circulant_learning_rate_scale=3"]
EXPERIMENTS = {
    "layer_by_layer": {
        "frame_level": True,
        "variants": {
            "dense": [*VIDEO_ONLY],
            "compact DBoF": [*VIDEO_ONLY, "--compact_layers=embedding"],
            "compact FC": [*VIDEO_ONLY, "--compact_layers=fc"],
            "compact MoE": [*VIDEO_ONLY, "--compact_layers=moe,gating"],
            # The experts stay dense: the gates are where circulant layers pay.
            "compact MoE gates and Context Gating": [*VIDEO_ONLY,
                                                     "--compact_layers=moe_gates,gating"],
            # A dense model of about the size of the one above: does the compact one beat it?
            "dense, 1 mixture, no Context Gating": [*VIDEO_ONLY, "--moe_num_mixtures=1",
                                                    "--gating=false"],
            "compact MoE, input diagonal, lr x3": [*VIDEO_ONLY, "--compact_layers=moe,gating",
                                                   *INPUT_DIAGONAL],
            "compact MoE gates and Context Gating, input diagonal, lr x3": [
                *VIDEO_ONLY, "--compact_layers=moe_gates,gating", *INPUT_DIAGONAL],
            # A dense model of the size of the one above (4,413,130 against 4,405,476 weights).
            "dense, 1 mixture, no Context Gating, FC 350": [
                *VIDEO_ONLY, "--moe_num_mixtures=1", "--gating=false", "--fc_size=350"],
        },
    },
    "embeddings": {
        "frame_level": True,
        "variants": {
            "DBoF dense": ["--embedding=dbof"],
            "DBoF compact FC": ["--embedding=dbof", "--compact_layers=fc"],
            "NetVLAD dense": ["--embedding=netvlad"],
            "NetVLAD compact FC": ["--embedding=netvlad", "--compact_layers=fc"],
            # The paper's NetFV learns its centres apart from the assignment weights: its weight
            # counts are those of --fv_couple_weights=false, to the unit.
            "NetFV dense": ["--embedding=netfv", "--fv_couple_weights=false"],
            "NetFV compact FC": ["--embedding=netfv", "--fv_couple_weights=false",
                                 "--compact_layers=fc"],
            "NetVLAD compact FC, input diagonal, lr x3": [
                "--embedding=netvlad", "--compact_layers=fc", *INPUT_DIAGONAL],
            "NetFV compact FC, input diagonal, lr x3": [
                "--embedding=netfv", "--fv_couple_weights=false", "--compact_layers=fc",
                *INPUT_DIAGONAL],
            # Still rising after 5 epochs where the dense model peaked at 3: trained longer.
            "NetVLAD compact FC, input diagonal, lr x3, 10 epochs": [
                "--embedding=netvlad", "--compact_layers=fc", *INPUT_DIAGONAL,
                "--num_epochs=10"],
        },
    },
    "factors": {
        "frame_level": True,
        "variants": {  # dense and k=1 are the same runs as embeddings' DBoF ones
            "dense": ["--embedding=dbof"],
            "compact FC, k=1": ["--embedding=dbof", "--compact_layers=fc"],
            "compact FC, k=3": ["--embedding=dbof", "--compact_layers=fc", "--k_factor=3"],
            "compact FC, k=6": ["--embedding=dbof", "--compact_layers=fc", "--k_factor=6"],
        },
    },
    "video_level": {
        **VIDEO_DATA,
        "flags": ["--batch_size=256", "--base_learning_rate=0.01", "--num_epochs=10",
                  "--validation_steps=91", "--log_steps=30", "--seed=0"],
        "variants": {
            "LogisticModel dense": ["--model=LogisticModel"],
            "LogisticModel compact": ["--model=LogisticModel", "--compact_layers=moe"],
            "MoeModel dense": ["--model=MoeModel", "--moe_num_mixtures=2"],
            "MoeModel compact": ["--model=MoeModel", "--moe_num_mixtures=2",
                                 "--compact_layers=moe,gating"],
        },
        "batch_size": 256,
    },
    "compact_moe": {  # which part of the MoE to make compact
        **VIDEO_DATA,
        "flags": ["--batch_size=256", "--base_learning_rate=0.01", "--num_epochs=10",
                  "--validation_steps=91", "--log_steps=30", "--seed=0", "--model=MoeModel"],
        "variants": {
            "2 mixtures, compact gates": ["--moe_num_mixtures=2", "--compact_layers=moe_gates"],
            "1 mixture, compact gates": ["--moe_num_mixtures=1", "--compact_layers=moe_gates"],
            "1 mixture, dense": ["--moe_num_mixtures=1"],
            "1 mixture, compact gates, k=3": ["--moe_num_mixtures=1", "--compact_layers=moe_gates",
                                              "--k_factor=3"],
        },
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
