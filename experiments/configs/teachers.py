"""Honest soft targets on small data: which teacher a distilled 1 MB student should learn from.

Each kind of teacher: every video with itself left out, cross-fitted folds, unlabelled extra
videos.

    .venv/bin/python experiments/run.py teachers [--seeds=0,1]
    (the same as experiments/teachers.py)

Wall time on 2 cores: about 2 hours (the teachers, then 12 students of 6 epochs). Expected
(experiments/results/teachers.jsonl, EXPERIMENTS.md "Honest soft targets"): cross-fitted folds
+0.0113 over labels alone against +0.0077 for one teacher of every video; with extra-train/
unlabelled, distillation recovers +0.0239 of the +0.0309 their labels give.
"""

from runs import DATA, KNN_TRAINING, TRAIN_VIDEOS

RUNNER, ARGS = "teachers", []

STUDENT = ["--model=BottleneckModel", "--bottleneck_size=192", "--num_epochs=6"]
TEACHER = ["--model=KnnMoeModel", *KNN_TRAINING]
# Training sets: (labelled folders, unlabelled folders, labelled videos, unlabelled videos)
# of DATA's training folders, train/ and extra-train/.
TRAIN_FOLDER_VIDEOS = 23091  # train/; extra-train/ holds the rest of TRAIN_VIDEOS, 20,461
EVERY_VIDEO = (DATA["train"], (), TRAIN_VIDEOS, 0)
TRAIN_ONLY = (DATA["train"][:1], (), TRAIN_FOLDER_VIDEOS, 0)
WITH_UNLABELLED = (DATA["train"][:1], DATA["train"][1:], TRAIN_FOLDER_VIDEOS,
                   TRAIN_VIDEOS - TRAIN_FOLDER_VIDEOS)
# Teachers: name -> (training set, folds); a folded teacher is one run per fold.
TEACHERS = {"every video": (EVERY_VIDEO, 0), "2 folds": (EVERY_VIDEO, 2),
            "train/": (TRAIN_ONLY, 0)}
# Variants, in the table's order: (name, the student's training set, teacher or None).
VARIANTS = [
    ("labels only", EVERY_VIDEO, None),
    ("one teacher trained on every video, its neighbours leave the video out", EVERY_VIDEO,
     "every video"),
    ("2 teachers cross-fitted on folds", EVERY_VIDEO, "2 folds"),
    ("labels on train/ only", TRAIN_ONLY, None),
    ("train/, distilled from a teacher trained on train/", TRAIN_ONLY, "train/"),
    ("train/ + extra-train/ unlabelled, the same teacher", WITH_UNLABELLED, "train/"),
]
