"""Honest soft targets on small data: which teacher a distilled student should learn from.

    .venv/bin/python experiments/teachers.py [--out_dir=out/teachers] [--seeds=0,1]

A teacher trained on a video predicts that video's labels back, and KnnMoeModel finds the video
itself among its neighbours: on the 43,552 training videos such soft targets repeat the labels
instead of adding the teacher's knowledge. Each variant trains the MB frontier's 1 MB dense
student (bottleneck of 192 units, the student that distillation helped most) for 6 epochs (its
best epoch comes by the 5th) with seeds 0 and 1; its GAP is train.py's best validation on the
5,701 validation videos (eval.py's code, float32). The teachers are KnnMoeModel, the frontier's
teacher, trained with its flags:

- labels only, on every training video;
- one teacher trained on every video: its neighbours leave the video itself out (what the
  tools do for a KnnMoeModel teacher), its mixture of experts saw the video;
- two teachers cross-fitted on folds (--holdout_fold, --teacher_folds=2): each video's soft
  targets from the one that never saw it (the frontier's distilled students);
- unlabelled extra videos: labels on train/ (23,091) alone; the same distilled from a teacher
  trained on train/; and with extra-train/ (20,461) as unlabelled videos
  (--unlabelled_data_pattern), which that teacher never saw.

Output in --out_dir: `teachers.jsonl` (a row per run) and `teachers.md` (the table). A run
finished in its folder is read again, not retrained.
"""

import json
import os
import statistics

import runs  # beside this script; puts the repository on sys.path
from absl import app, flags
from runs import BATCH, DATA, TRAINING

import utils  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "out/teachers", "Runs, teachers.jsonl and teachers.md.")
flags.DEFINE_list("seeds", ["0", "1"], "The students' seeds.")

from configs.teachers import STUDENT, TEACHER, TEACHERS, VARIANTS  # the recipes


def patterns(folders):
    return ",".join(os.path.join(utils.shared_data_dir(), f) for f in folders)


def data_args(training_set):
    labelled, unlabelled, labelled_videos, unlabelled_videos = training_set
    return [f"--train_data_pattern={patterns(labelled)}",
            f"--validation_data_pattern={patterns(DATA['validate'])}", *TRAINING,
            f"--validation_steps={(labelled_videos + unlabelled_videos) // BATCH}",  # an epoch
            *([f"--unlabelled_data_pattern={patterns(unlabelled)}"] if unlabelled else [])]


def train(name, args, folder):
    """A run's row: its best validation GAP, the epoch of it, each epoch's GAP, wall time."""
    seconds = runs.run_train([*args, "--start_new_model"], name, folder)
    results = runs.validations(folder)
    best = max(results, key=lambda r: r["gap"])
    return {"gap": best["gap"], "best_step": best["step"],
            "gaps": [round(r["gap"], 4) for r in results], "wall_seconds": round(seconds),
            "run": os.path.relpath(folder, FLAGS.out_dir)}


def teacher(name):
    """(train_dirs, folds, [their validation GAPs]) of a teacher, trained here first."""
    training_set, folds = TEACHERS[name]
    folders, gaps = [], []
    for fold in range(folds) if folds else [None]:
        holdout = [f"--holdout_fold={fold}/{folds}"] if folds else []
        folder = os.path.join(FLAGS.out_dir, "teachers", name.replace("/", "").replace(" ", "_"),
                              f"fold_{fold}" if folds else "all")
        row = train(" ".join(["teacher", name, *holdout]),
                    [*data_args(training_set), *TEACHER, *holdout, "--seed=0"], folder)
        folders.append(folder)
        gaps.append(round(row["gap"], 4))
    return folders, folds, gaps


def student(variant, training_set, teacher_name, seed):
    args = [*data_args(training_set), *STUDENT, f"--seed={seed}"]
    row = {"variant": variant, "seed": seed, "labelled_videos": training_set[2],
           "unlabelled_videos": training_set[3], "teacher": teacher_name}
    if teacher_name:
        folders, folds, gaps = teacher(teacher_name)
        args += [f"--teacher={','.join(folders)}", "--teacher_cache",
                 *([f"--teacher_folds={folds}"] if folds else [])]
        row["teacher_gaps"] = gaps
    slug = "".join(c if c.isalnum() else "_" for c in variant)[:60].strip("_")
    row.update(train(f"{variant} seed {seed}", args,
                     os.path.join(FLAGS.out_dir, "students", slug, f"seed_{seed}")))
    row["args"] = [a for a in args if not a.startswith(("--train_data_pattern",
                                                        "--validation_data_pattern",
                                                        "--unlabelled_data_pattern",
                                                        "--teacher="))]
    print(f"{variant} seed {seed}: GAP {row['gap']:.4f}", flush=True)
    return row


def table(rows):
    by_variant = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    lines = ["| student's training | teacher (validation GAP) | GAP by seed | mean | "
             "vs labels only, same labels |", "|---|---|---|---|---|"]
    baselines = {}
    for variant, found in by_variant.items():
        mean = statistics.mean(r["gap"] for r in found)
        labelled = found[0]["labelled_videos"]
        if found[0]["teacher"] is None:
            baselines[labelled] = mean
        teacher_gaps = found[0].get("teacher_gaps")
        about = f"KnnMoeModel, {found[0]['teacher']} ({', '.join(map(str, teacher_gaps))})" \
            if teacher_gaps else "-"
        gain = f"{mean - baselines[labelled]:+.4f}" if labelled in baselines else "-"
        seeds = ", ".join(f"{r['gap']:.4f}" for r in sorted(found, key=lambda r: r["seed"]))
        lines.append(f"| {variant} | {about} | {seeds} | {mean:.4f} | {gain} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if not os.path.isdir(utils.shared_data_dir()):
        raise SystemExit(f"error: no real data at {utils.shared_data_dir()}: set "
                         "YT8M_SHARED_DATA to the folder of yt8m-2018-video/")
    if not all(seed.isdigit() for seed in FLAGS.seeds):
        raise SystemExit(f"error: --seeds={','.join(FLAGS.seeds)}: give whole numbers, e.g. 0,1")
    rows = [student(variant, training_set, teacher_name, int(seed))
            for variant, training_set, teacher_name in VARIANTS for seed in FLAGS.seeds]
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    utils.atomic_write(os.path.join(FLAGS.out_dir, "teachers.jsonl"),
                       "".join(json.dumps(row) + "\n" for row in rows))
    text = table(rows)
    utils.atomic_write(os.path.join(FLAGS.out_dir, "teachers.md"), text + "\n")
    print(text)


if __name__ == "__main__":
    app.run(main)
