"""The typed schema of a training run: `TrainConfig`, one field per train.py flag (train.py
defines its flags and their --help from these fields), and the checks of what cannot work."""

import dataclasses

import layer_kinds
import losses
import model_flags
import utils
from optimizers import OPTIMIZERS

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # the Keras policies' names


def option(default, meaning, group, choices=None, flag_default=dataclasses.MISSING):
    """A TrainConfig field: its default, its meaning and its group (train.py makes one flag of
    each field, of the field's type, with this help, in this group of its --help; an enum where
    `choices` are given). flag_default: the flag's default for a field that has none."""
    return dataclasses.field(default=default, metadata={
        "help": meaning, "group": group, "choices": choices,
        "flag_default": default if flag_default is dataclasses.MISSING else flag_default})


GROUPS = DATA, TRAINING, DISTILLATION, DEVICES, COMPACT = (
    "data", "training", "distillation", "devices and speed", "compact layers")  # --help's


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs besides the data: train.py's flags of the same names,
    declared here once (train.py defines them from these fields)."""

    model_flags: "model_flags.Description" = None  # what model_flags.json keeps (required)
    train_dir: str = option(None, "Checkpoints, summaries, model_flags.json.", TRAINING,
                            flag_default="/tmp/yt8m_model/")
    train_data_pattern: str = option(None, "Comma-separated globs of training TFRecords.", DATA,
                                     flag_default="")
    validation_data_pattern: str = option("", "Evaluate on these files as training goes.", DATA)
    unlabelled_data_pattern: str = option(
        "", "Comma-separated globs of more training records whose labels are not used (none "
            "needed): each of their videos trains on the teacher's probabilities alone. Needs "
            "--teacher.", DATA)
    num_readers: int = option(8, "Files read in parallel.", DATA)
    skip_corrupt_records: bool = option(
        False, "Drop unreadable records and the damaged ends of files instead of stopping; "
               "counts are printed with the progress.", DATA)
    segment_labels: bool = option(
        False, "Segment-rated frame-level records (2019): one example per rated 5-frame "
               "segment, the loss on its rated classes alone (the others count neither as "
               "positives nor as negatives); validation on rated segments too.", DATA)
    start_new_model: bool = option(False, "Start afresh (old checkpoints are moved aside).",
                                   TRAINING)
    init_from: str = option(
        "", "A new run starts from the weights of this train_dir's newest checkpoint (the "
            "moving average where it kept one; a fresh optimizer), its model flags taken from "
            "there (of them only --label_loss may change; the training flags are this run's): "
            "e.g. a video-level frame model fine-tuned with --segment_labels. A run that has "
            "checkpoints of its own resumes from them instead.", TRAINING)
    batch_size: int = option(1024, "Global batch size, whatever the number of devices.",
                             TRAINING)
    num_epochs: int = option(5, "Passes over the training data in this run (a resumed run "
                                "counts its own).", TRAINING)
    max_steps: int | None = option(None, "Stop at this global step.", TRAINING)
    base_learning_rate: float = option(0.01, "Initial learning rate.", TRAINING)
    learning_rate_decay: float = option(0.95, "Factor applied every decay period.", TRAINING)
    learning_rate_decay_examples: float = option(4000000, "Examples per decay period.",
                                                 TRAINING)
    optimizer: str = option("AdamOptimizer", "The optimizer, by the starter's names.", TRAINING,
                            choices=tuple(OPTIMIZERS))
    clip_gradient_norm: float = option(1.0, "Clip each gradient to this norm (0: no clipping).",
                                       TRAINING)
    label_smoothing: float = option(0.0, "Label smoothing (CrossEntropy and Softmax losses).",
                                    TRAINING)
    regularization_penalty: float = option(1.0, "Weight of the models' L2 penalties.", TRAINING)
    seed: int = option(0, "Seeds weights, shuffling and frame sampling.", TRAINING)
    batch_norm_momentum: float = option(
        0.99, "Momentum of the batch-norm layers' moving statistics, which evaluation uses. "
              "Lower it (0.9) for runs of a few hundred steps or at high learning rates, where "
              "the weights outpace a 0.99 average.", TRAINING)
    keep_best_checkpoint: bool = option(
        False, "Also keep the checkpoint of the best validation GAP in train_dir/best/ "
               "(export_model.py --checkpoint=best exports it).", TRAINING)
    checkpoint_steps: int = option(500, "Save a checkpoint every this many steps.", TRAINING)
    log_steps: int = option(10, "Print progress every this many steps.", TRAINING)
    validation_steps: int = option(1000, "Evaluate every this many steps (and at the end).",
                                   TRAINING)
    max_model_mb: float = option(0, "Stop at start when the float32 weights exceed this (0: no "
                                    "limit; the 2018 challenge allowed 1024).", TRAINING)
    ema_decay: float = option(
        0.0, "Keep an exponential moving average of the weights, this decay a step (0: none; "
             "a half-life of h steps is 0.5 ** (1 / h): the 2018 winners' 2,000 steps is "
             "0.99965). Validation, eval.py, inference.py and export_model.py use the average; "
             "a resumed run goes on with it.", TRAINING)
    teacher: str = option(
        "", "Distil: train on a frozen teacher's probabilities too (comma-separated train_dirs "
            "or exported models, averaged; each reads the training records itself).",
        DISTILLATION)
    teacher_weights: str = option("", "Comma-separated weight of each teacher (default: "
                                      "equal).", DISTILLATION)
    teacher_folds: int = option(
        0, "The teachers are K models, teacher i trained with --holdout_fold=i/K: each video's "
           "soft targets come from the one that never saw it (0: all teachers, averaged).",
        DISTILLATION)
    teacher_cache: bool = option(
        False, "Keep the teacher's probabilities of each video in memory from its first batch "
               "on (the teacher is frozen: later epochs cost a lookup instead of the teacher's "
               "pass). Videos x classes x 4 bytes: 0.67 GB for 43,552 videos of 3,862 classes.",
        DISTILLATION)
    distillation_weight: float = option(
        0.5, "The share of the loss on the teacher's probabilities (the rest on the labels).",
        DISTILLATION)
    distillation_temperature: float = option(
        1.0, "Temperature T on the logits of both (the soft loss times T^2; 1: none, as the "
             "2018 winners).", DISTILLATION)
    holdout_fold: str = option(
        "", "I/K: train without the videos of fold I of K (a hash of the video id), to make "
            "one of K teachers for --teacher_folds=K.", DATA)
    learning_rate_scales: str = option(
        "", "The learning rate of the structured layers' weights, by kind, as a multiple of the "
            "other weights': KIND=SCALE,... (kinds " + ", ".join(layer_kinds.STRUCTURED) + "; each "
            "scaled kind has its own optimizer).", COMPACT)
    circulant_learning_rate_scale: float = option(
        1.0, "The same as --learning_rate_scales=circulant=SCALE: the learning rate of the "
             "diagonal and circulant vectors as a multiple of the other weights'.", COMPACT)
    recompute_circulant: bool = option(
        False, "Diagonal-circulant layers keep only their input for the backward pass and "
               "compute the rest again there: less memory, more time, the same results.",
        DEVICES)
    num_gpu: int | None = option(None, "Local GPUs to train on (default: all; 0: the CPU). "
                                       "CUDA_VISIBLE_DEVICES chooses which.", DEVICES)
    cpu_devices: int = option(0, "Split the CPU into this many logical devices and mirror over "
                                 "them (to try distribution without GPUs).", DEVICES)
    mixed_precision: str = option(
        "float32", "Compute in float16 (with loss scaling; GPUs) or bfloat16 (recent CPUs, TPUs, "
                   "GPUs); weights, circulant FFTs and class probabilities stay float32.",
        DEVICES, choices=PRECISIONS)
    jit_compile: bool = option(False, "Compile the training and validation steps with XLA.",
                               DEVICES)
    steps_per_loop: int = option(
        10, "Training steps per call of the compiled loop (more: less Python between steps; "
            "progress, checkpoints and signals wait for the end of a call, which stops at every "
            "log, checkpoint and validation step).", DEVICES)

    def __post_init__(self):
        if self.model_flags is not None:  # a model_flags.json dict of any format too
            self.model_flags = model_flags.Description.of(self.model_flags)

    def check(self):
        """A ValueError naming the flag for a setting that cannot work."""
        for name in ("model_flags", "train_dir", "train_data_pattern"):
            if getattr(self, name) is None:
                raise ValueError(f"TrainConfig needs {name}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"unknown --mixed_precision {self.mixed_precision!r}; choose one "
                             f"of {', '.join(PRECISIONS)}")
        if self.steps_per_loop < 1:
            raise ValueError(f"--steps_per_loop must be at least 1, got {self.steps_per_loop}")
        if self.num_gpu is not None and self.num_gpu < 0:
            raise ValueError(f"--num_gpu must be 0 or more, got {self.num_gpu}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        self.kind_scales()
        self.holdout()
        self.teachers()
        if not 0 <= self.distillation_weight <= 1:
            raise ValueError(f"--distillation_weight must be between 0 and 1, got "
                             f"{self.distillation_weight:g}")
        if not self.distillation_temperature > 0:
            raise ValueError(f"--distillation_temperature must be positive, got "
                             f"{self.distillation_temperature:g}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema_decay must be at least 0 and below 1, got "
                             f"{self.ema_decay:g}")
        if self.keep_best_checkpoint and not self.validation_data_pattern:
            raise ValueError("--keep_best_checkpoint keeps the checkpoint of the best "
                             "validation: add --validation_data_pattern (records not trained on)")
        loss = losses.get_loss(self.model_flags.label_loss, self.label_smoothing)
        if self.segment_labels:
            if not self.model_flags.frame_features:
                raise ValueError("--segment_labels trains a frame-level model on segment-rated "
                                 "frame-level records: add --frame_features and a frame model")
            if not loss.takes_weights:
                raise ValueError(f"--segment_labels: {self.model_flags.label_loss} cannot "
                                 "leave the unrated classes out; use --label_loss="
                                 "CrossEntropyLoss or HingeLoss")
            if self.teacher:
                raise ValueError("--segment_labels with --teacher: a teacher scores whole "
                                 "videos, not rated segments; train on segments without one")

    def holdout(self):
        """(fold, folds) of --holdout_fold, or None."""
        if not self.holdout_fold:
            return None
        fold, _, folds = self.holdout_fold.partition("/")
        try:
            fold, folds = int(fold), int(folds)
        except ValueError:
            fold = folds = -1
        if not 0 <= fold < folds:
            raise ValueError(f"--holdout_fold={self.holdout_fold}: give I/K with 0 <= I < K, "
                             "e.g. 0/5")
        return fold, folds

    def teachers(self):
        """([paths], [weights summing to 1]) of --teacher and --teacher_weights."""
        paths = [p.strip() for p in self.teacher.split(",") if p.strip()]
        if not paths and self.unlabelled_data_pattern:
            raise ValueError("--unlabelled_data_pattern needs --teacher: a video without labels "
                             "trains on the teacher's probabilities alone")
        if not paths:
            if self.teacher_weights or self.teacher_folds or self.teacher_cache:
                raise ValueError("--teacher_weights, --teacher_folds and --teacher_cache need "
                                 "--teacher")
            return [], []
        return paths, utils.parse_weights(self.teacher_weights, len(paths), "teacher_weights",
                                          "teacher")

    def kind_scales(self):
        """{kind: learning-rate scale} of the structured kinds whose scale is not 1, from
        --learning_rate_scales and --circulant_learning_rate_scale (ValueError naming the flag
        for a bad one)."""
        scales = {}
        for item in (i.strip() for i in self.learning_rate_scales.split(",") if i.strip()):
            kind, _, value = (part.strip() for part in item.partition("="))
            if kind not in layer_kinds.STRUCTURED:
                raise ValueError(f"--learning_rate_scales={item}: unknown kind {kind!r}; "
                                 f"valid: {', '.join(layer_kinds.STRUCTURED)}")
            try:
                scales[kind] = float(value)
            except ValueError:
                raise ValueError(f"--learning_rate_scales={item}: the scale after '=' is a "
                                 "number, e.g. circulant=3") from None
        if self.circulant_learning_rate_scale != 1:
            if scales.get("circulant", self.circulant_learning_rate_scale) != \
                    self.circulant_learning_rate_scale:
                raise ValueError("--circulant_learning_rate_scale and --learning_rate_scales="
                                 "circulant=... disagree: give one")
            scales["circulant"] = self.circulant_learning_rate_scale
        for kind, scale in scales.items():
            if not scale > 0:
                name = "--circulant_learning_rate_scale" if kind == "circulant" and \
                    "circulant" not in self.learning_rate_scales else \
                    f"--learning_rate_scales={kind}"
                raise ValueError(f"{name} must be positive, got {scale:g}")
        return {kind: scale for kind, scale in scales.items() if scale != 1}
