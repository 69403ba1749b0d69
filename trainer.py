"""Training, importable: a `TrainConfig` and a `Trainer` that builds the input, model,
optimizers and checkpoint from it and runs the loop. No global flags: train.py turns its flags
into a config; benchmarks, experiments and tests build the same Trainer and call the same step.

    config = TrainConfig(train_dir="/tmp/m", train_data_pattern="train*.tfrecord",
                         model_flags=model_flags.describe("MoeModel", ...), max_steps=100)
    Trainer(config).run()

What a run writes in train_dir: checkpoints (`model.ckpt-<step>`, the last 5), model_flags.json
(with the first checkpoint), model_summary.txt and .json, train_log.jsonl (one line per progress
line), validation.jsonl, TensorBoard events. Non-chief workers of a multi-worker run write
theirs to train_dir/workers/<index>.
"""

import contextlib
import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import checkpoints
import distillation
import eval_util
import layer_kinds
import losses
import model_flags
import model_summary
import model_utils
import readers
import utils


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable's update one TensorFlow kernel (ResourceApplyAdam): one pass
    over the weight and its two moments instead of Keras' several, the same formula (Kingma &
    Ba's, epsilon outside the square root). On the 2-core CPU the update of the 22M weights of
    the video-level MoE took 32 ms instead of 76 (BENCHMARKS.md)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=beta_1 ** step,
            beta2_power=beta_2 ** step, lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


OPTIMIZERS = {
    "AdamOptimizer": FusedAdam,
    "GradientDescentOptimizer": keras.optimizers.SGD,
    "MomentumOptimizer": lambda lr, **kw: keras.optimizers.SGD(lr, momentum=0.9, **kw),
    "AdagradOptimizer": keras.optimizers.Adagrad,
    "RMSPropOptimizer": keras.optimizers.RMSprop,
}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # the Keras policies' names
TRAIN_LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "model_summary.json"


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

    model_flags: dict = None  # the model description that model_flags.json keeps (required)
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
            "other weights': KIND=SCALE,... (kinds circulant, low_rank, monarch; each scaled "
            "kind has its own optimizer).", COMPACT)
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
        loss = losses.get_loss(self.model_flags["label_loss"], self.label_smoothing)
        if self.segment_labels:
            if not self.model_flags["frame_features"]:
                raise ValueError("--segment_labels trains a frame-level model on segment-rated "
                                 "frame-level records: add --frame_features and a frame model")
            if not loss.takes_weights:
                raise ValueError(f"--segment_labels: {self.model_flags['label_loss']} cannot "
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
            if kind not in layer_kinds.SIZE_OPTION:
                raise ValueError(f"--learning_rate_scales={item}: unknown kind {kind!r}; "
                                 f"valid: {', '.join(layer_kinds.SIZE_OPTION)}")
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


def split_cpu(cpu_devices):
    """The CPU as `cpu_devices` logical devices. TensorFlow allows it only before its first
    op: a tool calls this first (train.py reads records before it builds the Trainer)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * cpu_devices
    if len(tf.config.get_logical_device_configuration(cpu) or []) == cpu_devices:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        raise RuntimeError(f"--cpu_devices={cpu_devices}: TensorFlow started before the CPU "
                           "was split; call trainer.split_cpu first") from None


def make_strategy(cpu_devices=0, num_gpu=None):
    """N logical CPUs (cpu_devices > 1), several workers (TF_CONFIG), num_gpu local GPUs (None:
    all; 0: the CPU), or one device."""
    if cpu_devices > 1:
        split_cpu(cpu_devices)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_devices)])
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = len(tf.config.list_physical_devices("GPU"))
    if num_gpu is not None and num_gpu > gpus:
        utils.warn(f"--num_gpu={num_gpu}: this machine has {gpus} GPUs; using {gpus}")
    used = gpus if num_gpu is None else min(num_gpu, gpus)
    if used > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(used)])
    if used == 0 and gpus:
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.get_strategy()


def is_chief_worker(strategy):
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def move_previous_run(train_dir):
    """Everything of train_dir into old-<time>/, a train_dir again; not earlier old-* folders,
    nor the other workers' scratch folders, in use by them already."""
    previous = [f for f in tf.io.gfile.listdir(train_dir)
                if not f.startswith("old-") and f.rstrip("/") != "workers"]
    if not previous:
        return
    aside = os.path.join(train_dir, f"old-{time.strftime('%Y%m%d-%H%M%S')}")
    tf.io.gfile.makedirs(aside)
    for name in previous:
        tf.io.gfile.rename(os.path.join(train_dir, name.rstrip("/")),
                           os.path.join(aside, name.rstrip("/")))
    print(f"--start_new_model: moved the previous run to {aside}", flush=True)


class Trainer:
    """A training run of `config`: built on construction (nothing written yet), run by run().

    build_model: for experiments, a function that returns a Keras model of the batch dict to
    train instead of the registered model that config.model_flags names (whose reader and
    label loss are still used). No model_flags.json is written then: nothing could rebuild it.
    """

    def __init__(self, config, build_model=None):
        config.check()
        self.config = c = config
        self.strategy = make_strategy(c.cpu_devices, c.num_gpu)
        self.chief = is_chief_worker(self.strategy)
        self.train_dir = utils.prepare_dir(c.train_dir)
        # Non-chief workers write their (identical) checkpoints and summaries to a scratch folder.
        self.out_dir = self.train_dir if self.chief else utils.prepare_dir(os.path.join(
            self.train_dir, "workers", str(self.strategy.cluster_resolver.task_id)))
        self.files = readers.resolve_files(c.train_data_pattern)
        self.unlabelled = readers.resolve_files(c.unlabelled_data_pattern) \
            if c.unlabelled_data_pattern else []
        self.read_files = self.files + self.unlabelled  # every file the training steps read
        # A run that goes on (or starts from another's weights) has its level from
        # model_flags.json: data of the other level is the wrong data, not a flag to drop.
        goes_on = bool(c.init_from) or (not c.start_new_model
                                        and bool(checkpoints.candidates(self.train_dir)))
        self.reader = checkpoints.make_reader(c.model_flags, trained=goes_on,
                                              segments="rated" if c.segment_labels else None)
        self.loss_fn = losses.get_loss(c.model_flags["label_loss"], c.label_smoothing)
        keras.utils.set_random_seed(c.seed)
        policy = keras.mixed_precision.global_policy()
        # The policy of the layers created now (weights stay float32; each layer computes in
        # float16 or bfloat16; the circulant FFTs and the class probabilities in float32).
        keras.mixed_precision.set_global_policy(c.mixed_precision)
        # What the checkpoint to resume from holds (its optimizers, an average of the weights).
        self.saved = set() if c.start_new_model else checkpoints.saved_objects(
            checkpoints.candidates(self.train_dir))
        averaging = c.ema_decay > 0 or checkpoints.AVERAGED in self.saved

        def new_model():
            if build_model is None:
                return checkpoints.build_model(c.model_flags, self.reader)
            model = build_model()
            model(checkpoints.example_batch(self.reader), training=False)
            return model

        try:
            with self.strategy.scope():
                self.model = new_model()
                # The moving average of the weights: a second model, whose weights start as
                # the first's (or the checkpoint's average) and follow them step by step.
                self.averaged = new_model() if averaging else None
                if averaging:
                    for target, source in zip(self.averaged.weights, self.model.weights):
                        target.assign(source)
                    self.ema_decay = tf.Variable(c.ema_decay, trainable=False, name="ema_decay")
        finally:
            keras.mixed_precision.set_global_policy(policy)
        self.registered_model = build_model is None
        self.teacher = None
        self.best = None  # checkpoints.BestCheckpoint, at the first validation
        self.validated_at = None  # the step of the last validation
        paths, weights = c.teachers()
        if paths:  # a .tgz teacher is unpacked in a temporary folder, gone once it is loaded
            with self.strategy.scope():
                self.teacher = distillation.Teacher(
                    paths, weights, c.model_flags["num_classes"], c.model_flags["frame_features"],
                    "", c.teacher_folds, c.teacher_cache)
        with self.strategy.scope():
            model_utils.set_batch_norm_momentum(self.model, c.batch_norm_momentum)
            model_utils.set_circulant_recompute(self.model, c.recompute_circulant)
            self.learning_rate = self._schedule(c.base_learning_rate)
            self.optimizers, self.groups = self._optimizers()
            # float16 gradients underflow: the loss is scaled (dynamically) and the gradients
            # unscaled. Checkpoints keep the inner optimizers, as in float32 runs, so a run may
            # change precision when it resumes (the loss scale starts again).
            self.loss_scaled = c.mixed_precision == "mixed_float16"
            self.appliers = [keras.optimizers.LossScaleOptimizer(o) if self.loss_scaled else o
                             for o in self.optimizers.values()]
            for applier, variables in zip(self.appliers, self.groups.values()):
                applier.build(variables)
        self.replica_step = tf.function(self._replica_step, jit_compile=True) \
            if c.jit_compile else self._replica_step
        self.train_step = tf.function(self._train_step)
        self.train_loop = tf.function(self._train_loop)

    def _optimizers(self):
        """({name: optimizer}, {name: its variables}): "optimizer" for the weights at the base
        learning rate, and "<kind>_optimizer" for the structured variables of each kind that
        the config scales (the names of their slots in checkpoints).

        A resumed run keeps the optimizers of its checkpoint, whose slots are laid out by
        them: a kind that had its own keeps it (at scale 1 if none is given now; Keras clips
        and updates each variable alone, so that is the same training), and a kind that had
        none cannot get one."""
        c = self.config
        clip = {"clipnorm": c.clip_gradient_norm} if c.clip_gradient_norm > 0 else {}
        trainable = self.model.trainable_variables
        optimizers = {"optimizer": OPTIMIZERS[c.optimizer](self.learning_rate, **clip)}
        groups = {"optimizer": trainable}
        scales = c.kind_scales()
        saved = self.saved
        if saved:
            had = {kind for kind in layer_kinds.SIZE_OPTION if f"{kind}_optimizer" in saved}
            for kind in sorted(set(scales) - had):
                if model_utils.structured_variables(self.model, kind):
                    raise ValueError(
                        f"{c.train_dir} trained its {kind} weights with the others' optimizer: "
                        f"a learning-rate scale for them cannot start on resume; leave out "
                        f"--learning_rate_scales={kind} (or --circulant_learning_rate_scale), "
                        "or train afresh with --start_new_model")
            scales = {kind: scales.get(kind, 1.0) for kind in had}
        for kind, scale in sorted(scales.items()):
            scaled = {id(v) for v in model_utils.structured_variables(self.model, kind)}
            if not scaled:
                utils.warn(f"--learning_rate_scales={kind}: this model has no {kind} weights: "
                           "ignored")
                continue
            name = f"{kind}_optimizer"
            optimizers[name] = OPTIMIZERS[c.optimizer](
                self._schedule(c.base_learning_rate * scale), **clip)
            groups[name] = [v for v in trainable if id(v) in scaled]
            groups["optimizer"] = [v for v in groups["optimizer"] if id(v) not in scaled]
        return optimizers, groups

    @property
    def optimizer(self):
        """The optimizer of the unscaled weights: its iterations are the global step."""
        return self.optimizers["optimizer"]

    def _schedule(self, rate):
        c = self.config
        decay_steps = max(c.learning_rate_decay_examples / c.batch_size, 1e-9)
        return keras.optimizers.schedules.ExponentialDecay(rate, decay_steps,
                                                           c.learning_rate_decay, staircase=True)

    def _replica_step(self, batch):
        """One step on one device's part of a batch: (loss, probabilities, labels). With a
        teacher, batch["soft_targets"] holds its probabilities."""
        c = self.config
        with tf.GradientTape(persistent=len(self.appliers) > 1) as tape:
            probabilities = tf.cast(self.model(batch, training=True), tf.float32)
            # Rated segments: label_weights [B, C], 1 at each segment's rated classes.
            per_example = self.loss_fn(probabilities, batch["labels"], batch.get("label_weights"))
            if "soft_targets" in batch:
                soft = distillation.soft_cross_entropy(probabilities, batch["soft_targets"],
                                                       c.distillation_temperature)
                per_example = (1.0 - c.distillation_weight) * per_example + \
                    c.distillation_weight * soft
                if "labelled" in batch:  # a video of --unlabelled_data_pattern: the soft loss
                    per_example = tf.where(batch["labelled"] > 0, per_example, soft)
            loss = tf.nn.compute_average_loss(per_example)
            if self.model.losses:
                penalty = tf.add_n([tf.cast(x, tf.float32) for x in self.model.losses])
                loss += self.config.regularization_penalty * \
                    tf.nn.scale_regularization_loss(penalty)
            targets = [a.scale_loss(loss) for a in self.appliers] if self.loss_scaled \
                else [loss] * len(self.appliers)
        for applier, variables, target in zip(self.appliers, self.groups.values(), targets):
            grads = tape.gradient(target, variables)
            applier.apply_gradients(zip(grads, variables))
        return loss, probabilities, batch["labels"]

    def _train_step(self, batch):
        """One step on a (distributed) batch: (summed loss, probabilities, labels)."""
        before = [tf.identity(o.iterations.value) for o in self.optimizers.values()] \
            if self.loss_scaled else []
        inputs = readers.model_inputs(batch, labels=True)
        if self.teacher is not None:  # apart from the (maybe XLA-compiled) step: strings in
            inputs["soft_targets"] = self.strategy.run(self.teacher,
                                                       args=(batch["serialized"], batch["id"]))
        loss, probabilities, labels = self.strategy.run(self.replica_step, args=(inputs,))
        for optimizer, step in zip(self.optimizers.values(), before):
            optimizer.iterations.assign(step + 1)  # a step skipped for overflow counts too
        if self.averaged is not None:
            self._update_average()
        return self.strategy.reduce("SUM", loss, axis=None), probabilities, labels

    def _update_average(self):
        """average = d * average + (1 - d) * weights after step n, d = min(ema_decay,
        (1 + n) / (10 + n)) (TensorFlow's ExponentialMovingAverage with num_updates: early
        steps do not drag the start along)."""
        step = tf.cast(self.optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.averaged.trainable_variables,
                                   self.model.trainable_variables):
            average.assign(decay * average + (1.0 - decay) * weight)

    def sync_average(self):
        """The averaged model's other variables (batch-norm statistics, a model's memory) set
        to the model's: they are averages or data already. Before it is saved or evaluated."""
        if self.averaged is not None:
            for average, value in zip(self.averaged.non_trainable_variables,
                                      self.model.non_trainable_variables):
                average.assign(value)

    @property
    def evaluated_model(self):
        """The model validation evaluates: the average of the weights where there is one."""
        return self.averaged if self.averaged is not None else self.model

    def _train_loop(self, iterator, steps):
        """Up to `steps` steps without outputs (fewer when the data ends): the steps done."""
        done = tf.constant(0)
        for _ in tf.range(steps):
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            self._train_step(batch.get_value())
            done += 1
        return done

    def due(self, step, start_step, validating):
        """(log, save, validate): what global step `step` does after training (a signal saves
        too, whatever the step)."""
        c = self.config
        return (step % c.log_steps == 0 or step == start_step + 1, step % c.checkpoint_steps == 0,
                validating and step % c.validation_steps == 0)

    def dataset(self, skipped=None):
        """The training batches, shuffled, num_epochs passes, distributed over the devices."""
        c = self.config
        dataset = self.reader.dataset(self.files, c.batch_size, num_epochs=c.num_epochs,
                                      shuffle=True, num_readers=c.num_readers, seed=c.seed,
                                      skipped=skipped, keep_serialized=self.teacher is not None,
                                      holdout=c.holdout(), unlabelled=self.unlabelled)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def write_summary(self):
        """Print the model summary and the memory training will need, and check the budget;
        the text and JSON files (chief) are kept for write_summary_files, once a step has run
        (a run that fails before leaves those of the run before)."""
        name = self.config.model_flags["model"] if self.registered_model else self.model.name
        per_device = max(1, self.config.batch_size // self.strategy.num_replicas_in_sync)
        memory = model_summary.training_memory(
            self.model, checkpoints.example_batch(self.reader), per_device,
            [v for o in self.optimizers.values() for v in o.variables]
            + (self.averaged.weights if self.averaged is not None else []))
        summary = (model_summary.format_summary(self.model, name) + "\n"
                   + model_summary.format_memory(memory, per_device))
        print(summary, flush=True)
        if self.in_use():
            print(f"in use: {'; '.join(self.in_use())}", flush=True)
        rows, totals = model_summary.summarize(self.model)
        self.summary_files = {"model_summary.txt": summary + "\n", SUMMARY_FILE: json.dumps({
            "model": name, **totals, "expected_memory_bytes": memory,
            "batch_per_device": per_device,
            "layers": [{"path": path, "kind": kind, "weights": weights, "dense": dense}
                       for path, kind, weights, dense in rows]}, indent=1)}
        model_summary.check_budget(self.model, self.config.max_model_mb)

    def in_use(self):
        """What this run adds to plain training, one phrase each (its first lines say so)."""
        c = self.config
        said = []
        if self.teacher is not None:
            paths, _ = c.teachers()
            said.append(f"distillation from {', '.join(paths)} (weight "
                        f"{c.distillation_weight:g}, temperature {c.distillation_temperature:g}"
                        + (f", {c.teacher_folds} folds" if c.teacher_folds else "")
                        + (", cached" if c.teacher_cache else "") + ")")
        if self.unlabelled:
            files = len(self.unlabelled)
            said.append(f"the unlabelled videos of {files} file{'s' if files > 1 else ''} "
                        "(--unlabelled_data_pattern)")
        if self.averaged is not None:
            decay = f"decay {c.ema_decay:g}" if c.ema_decay else "the saved decay"
            said.append(f"a moving average of the weights ({decay}), used by validation and "
                        "every tool")
        return said

    def write_summary_files(self):
        if self.chief:
            for name, text in self.summary_files.items():
                utils.atomic_write(os.path.join(self.train_dir, name), text)
        self.summary_files = None

    def run(self):
        """Train until max_steps, num_epochs or a signal; returns the signal number (0: none)."""
        c = self.config
        # -- the run's folder and summary --
        if c.start_new_model and self.chief:
            move_previous_run(self.train_dir)
        self.write_summary()

        # -- restore the newest readable checkpoint, or prepare a new run --
        averaging = {checkpoints.AVERAGED: self.averaged, "ema_decay": self.ema_decay} \
            if self.averaged is not None else {}
        # Restored as saved: an average the checkpoint lacks starts at its weights.
        latest = self._restore(tf.train.Checkpoint(
            model=self.model, **self.optimizers,
            **(averaging if checkpoints.AVERAGED in self.saved else {})))
        # Made after the restore, which may rebuild a lost index: the manager keeps the five
        # newest checkpoints of those the index lists.
        checkpoint = tf.train.Checkpoint(model=self.model, **self.optimizers, **averaging)
        manager = tf.train.CheckpointManager(checkpoint, self.out_dir, max_to_keep=5,
                                             checkpoint_name="model.ckpt")
        if latest is None and c.init_from:
            self._initialize_from(c.init_from)
        elif latest is None:
            self._before_first_step()
        if self.averaged is not None:
            self._start_average(latest)
        saver = Saver(manager, self.chief, self.train_dir, self._flags_to_write(latest),
                      saved_step=int(self.optimizer.iterations.numpy()) if latest else None,
                      before_saving=self.sync_average)

        # -- input, validation, progress --
        skipped = readers.SkipCounts() if c.skip_corrupt_records else None
        batches = self.dataset(skipped)
        validation = readers.resolve_files(c.validation_data_pattern) \
            if c.validation_data_pattern else None
        stop = utils.StopRequests()
        summaries = contextlib.ExitStack()  # TensorBoard's writer, once a step has run
        step = start_step = int(self.optimizer.iterations.numpy())
        progress = self._progress(start_step)
        log = ProgressLog(os.path.join(self.out_dir, TRAIN_LOG_FILE), start_step)

        with summaries:
            # -- the loop: rounds of steps, each ending at a step that logs, saves, validates or is
            # the last (or after steps_per_loop steps) --
            outputs = None
            with self.reader.reraise_data_errors(self.read_files), stop:
                iterator = iter(batches)
                while c.max_steps is None or step < c.max_steps:
                    steps = self.steps_in_round(step, start_step, bool(validation))
                    log_now, save_now, validate_now = self.due(step + steps, start_step,
                                                               bool(validation))
                    done, last = self.advance(iterator, steps, with_outputs=log_now or save_now)
                    step += done  # counted here: reading the iterations would wait for the device
                    outputs = last or outputs
                    if done:
                        self._open_summaries(summaries)
                    if done < steps:  # the data ended
                        break
                    if log_now:
                        self._log(log, step, outputs, progress, skipped)
                    if stop.requested:
                        print(f"signal {stop.requested}: saving and stopping", flush=True)
                    if save_now or stop.requested:
                        finite(outputs[0], step)  # never save weights gone NaN
                        saver.save(step)
                    if validate_now:
                        self.validate(validation, step)
                    if stop.requested:
                        break
                if step == start_step and not stop.requested and (c.max_steps is None
                                                                 or step < c.max_steps):
                    raise self.reader.no_examples(self.read_files)
                if outputs is not None:
                    finite(outputs[0], step)
                saver.save(step)
            self._open_summaries(summaries)  # no step ran (max_steps reached): validation's

            # -- the end: a last validation, and why the run stopped --
            # The end validates, unless a validation came within a tenth of the interval
            # (an epoch that ends a step after a validation step: the same weights, nearly).
            recent = self.validated_at is not None and \
                step - self.validated_at <= c.validation_steps // 10
            if validation and step % c.validation_steps != 0 and not stop.requested:
                if recent:
                    print(f"validated at step {self.validated_at}, {step - self.validated_at} "
                          "step(s) before the end: not again", flush=True)
                else:
                    self.validate(validation, step)
            if stop.requested:
                reason = f"stopped by signal {stop.requested}"
            elif c.max_steps is not None and step >= c.max_steps:
                reason = f"--max_steps={c.max_steps} reached"
            else:
                reason = f"--num_epochs={c.num_epochs} done"
            print(f"done at step {step} ({reason}): {self.train_dir}{skip_note(skipped)}",
                  flush=True)
            return stop.requested

    def _open_summaries(self, summaries):
        """Once: the summary files of write_summary, and TensorBoard's writer as the default
        until `summaries` (an ExitStack) closes. A run that fails before its first step leaves
        no empty event file and the summary files of the run before."""
        if self.summary_files is None:
            return
        self.write_summary_files()
        summaries.enter_context(tf.summary.create_file_writer(self.out_dir).as_default())

    def _restore(self, checkpoint):
        """Restore the newest checkpoint of train_dir that can be read (the damaged ones newer
        than it moved aside); its path, or None for a new run."""
        found = checkpoints.candidates(self.train_dir)
        if not found:
            return None
        checkpoints.warn_if_index_lost(self.train_dir, found)
        latest = checkpoints.restore_newest(
            lambda path: checkpoint.restore(path).assert_existing_objects_matched(),
            self.train_dir, found)
        if self.chief:
            checkpoints.move_aside(found[:found.index(latest)], self.train_dir)
            checkpoints.rebuild_index(self.train_dir, found[found.index(latest):])
        print(f"resumed from {latest} at step {int(self.optimizer.iterations.numpy())}")
        return latest

    def _initialize_from(self, train_dir):
        """A new run's weights (and average) from another run's newest checkpoint."""
        path = checkpoints.restore_newest(
            lambda p: checkpoints.restore(self.model, p), train_dir)
        if self.averaged is not None:
            for average, weight in zip(self.averaged.weights, self.model.weights):
                average.assign(weight)
        print(f"--init_from: the weights of {path}", flush=True)

    def _start_average(self, latest):
        """The average's decay (the one given, else the checkpoint's) and where it starts."""
        c = self.config
        saved_decay = float(self.ema_decay.numpy())  # the checkpoint's, where it had an average
        if c.ema_decay:
            self.ema_decay.assign(c.ema_decay)
        if latest is not None and checkpoints.AVERAGED not in self.saved:
            for average, weight in zip(self.averaged.weights, self.model.weights):
                average.assign(weight)
            print(f"--ema_decay: the average of the weights starts at step "
                  f"{int(self.optimizer.iterations.numpy())}", flush=True)
        elif latest is not None and not c.ema_decay:
            print(f"the average of the weights goes on (decay {saved_decay:g}, as saved)",
                  flush=True)
        elif latest is not None and np.float32(c.ema_decay) != np.float32(saved_decay):
            print(f"--ema_decay={c.ema_decay:g}: the average of the weights goes on with this "
                  f"decay (it was {saved_decay:g}; leave the flag out to keep the saved one)",
                  flush=True)

    def _before_first_step(self):
        """The model's work before a new run's first step (BeforeTraining); an experiment's
        own model has no such hook."""
        if not self.registered_model:
            return
        with self.reader.reraise_data_errors(self.files):
            said = self.model.before_first_step(lambda: self.reader.dataset(
                self.files, 4096, num_readers=self.config.num_readers))
        if said:
            print(said, flush=True)

    def _flags_to_write(self, latest):
        """The model description to write as model_flags.json with the first checkpoint; None
        when train_dir has it already or nothing could rebuild the model from it."""
        if not self.registered_model or (latest is not None
                                          and model_flags.exists(self.train_dir)):
            return None
        return self.config.model_flags

    def _progress(self, start_step):
        """The Progress of this run, to its last step: the end of its epochs (estimated from a
        sample of the files where their records are not counted) or max_steps."""
        c = self.config
        # videos, or rated segments (estimated from a sample of records)
        self.videos, exact = self.reader.estimate_examples(self.read_files)
        if c.holdout():  # about (K - 1) / K of the videos are trained on
            folds = c.holdout()[1]
            self.videos, exact = round(self.videos * (folds - 1) / folds), False
        epochs_end = start_step + math.ceil(c.num_epochs * self.videos / c.batch_size)
        self.end_step = epochs_end if c.max_steps is None else min(
            epochs_end, max(c.max_steps, start_step))
        return utils.Progress(self.end_step, start_step,
                              estimated=not exact and self.end_step == epochs_end)

    def steps_in_round(self, step, start_step, validating):
        """How many steps the next round takes (at least 1, at most steps_per_loop): up to and
        including the next one that logs, saves, validates or is the last."""
        c = self.config
        for steps in range(1, c.steps_per_loop):
            s = step + steps
            if any(self.due(s, start_step, validating)) or (c.max_steps is not None
                                                            and s >= c.max_steps):
                return steps
        return c.steps_per_loop

    def advance(self, iterator, steps, with_outputs):
        """`steps` training steps: (steps done, fewer when the data ended; the last step's
        (summed loss, probabilities, labels) when with_outputs, else None). The steps without
        outputs run in one call of the compiled loop."""
        plain = steps - 1 if with_outputs else steps
        done = int(self.train_loop(iterator, tf.constant(plain))) if plain else 0
        if done < plain or not with_outputs:
            return done, None
        batch = next(iterator, None)
        if batch is None:
            return done, None
        return done + 1, self.train_step(batch)

    def _log(self, log, step, outputs, progress, skipped):
        """The progress line of `step`, its TensorBoard scalars and its train_log.jsonl line."""
        c = self.config
        loss, probabilities, labels = outputs
        probabilities, labels = gather(self.strategy, probabilities), gather(self.strategy, labels)
        if self.unlabelled:  # the batch's GAP over its labelled videos (the others have none)
            labelled = labels.any(axis=1)
            probabilities, labels = probabilities[labelled], labels[labelled]
        metrics = eval_util.EvaluationMetrics()
        metrics.add(probabilities, labels)
        now = time.time()
        values = {
            "step": step, "total_steps": self.end_step,
            "epoch": (step - log.start_step) * c.batch_size / max(self.videos, 1),
            "examples_per_second": log.rate(step, now, c.batch_size),
            "loss": finite(loss, step), "gap": metrics.gap(),
            "hit_at_one": metrics.hit_at_one(),
            "learning_rate": float(self.learning_rate(step)),
            "seconds_left": progress.left(step, now)}
        self._report(values, progress, skipped)
        append_train_log(log.path, values, skipped)

    def _report(self, values, progress, skipped):
        v = values
        left = f" | {utils.duration(v['seconds_left'])} left" \
            if v["seconds_left"] is not None else ""
        print(f"step {progress.status(v['step'])} | epoch {v['epoch']:.1f}/"
              f"{self.config.num_epochs} | {v['examples_per_second']:,.0f} examples/s | "
              f"loss {v['loss']:.4f} | GAP {v['gap']:.3f} | hit@1 {v['hit_at_one']:.3f} | "
              f"lr {v['learning_rate']:.2e}{left}{skip_note(skipped)}", flush=True)
        for name in ("loss", "gap", "hit_at_one", "learning_rate", "examples_per_second"):
            tf.summary.scalar(f"train/{name}", v[name], step=v["step"])

    def validate(self, files, step):
        self.validated_at = step
        self.sync_average()
        results = eval_util.evaluate(self.evaluated_model, self.reader, files, self.loss_fn,
                                     self.config.batch_size, num_readers=self.config.num_readers,
                                     jit_compile=self.config.jit_compile)
        what = "rated segments" if self.reader.segments else "videos"
        print(f"validation at step {step}: {results['videos']:,} {what} | GAP {results['gap']:.4f} "
              f"| hit@1 {results['hit_at_one']:.4f} | PERR {results['perr']:.4f} | "
              f"loss {results['loss']:.4f} | {results['seconds']:.0f}s", flush=True)
        for name in ("gap", "hit_at_one", "perr", "loss"):
            tf.summary.scalar(f"validation/{name}", results[name], step=step)
        with open(os.path.join(self.out_dir, "validation.jsonl"), "a") as log:
            log.write(json.dumps(dict(results, step=step)) + "\n")
        if self.config.keep_best_checkpoint:
            if self.best is None:
                self.best = checkpoints.BestCheckpoint(
                    os.path.join(self.out_dir, checkpoints.BEST),
                    {"model": self.model, **({checkpoints.AVERAGED: self.averaged}
                                             if self.averaged is not None else {})})
            if self.best.offer(results["gap"], step):
                print(f"the best validation so far: kept in {self.best.folder}", flush=True)


def append_train_log(path, values, skipped=None):
    """One line of train_log.jsonl: a progress line's values, as JSON, with the wall-clock time
    (a resumed run appends to the same file)."""
    record = dict(values, time=time.time())
    if skipped is not None:
        record.update(skipped_records=int(skipped.records.numpy()),
                      damaged_files=int(skipped.damaged_files.numpy()))
    with tf.io.gfile.GFile(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_train_log(train_dir):
    """The records of train_dir/train_log.jsonl, in order."""
    with tf.io.gfile.GFile(os.path.join(train_dir, TRAIN_LOG_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def finite(loss, step):
    """The loss as a float; stop (keeping the last checkpoint) when it is not finite."""
    loss = float(loss)
    if not np.isfinite(loss):
        raise FloatingPointError(f"the loss is {loss} at step {step}; stopping (the last "
                                 "checkpoint is kept)")
    return loss


def skip_note(skipped):
    if skipped is None or not (skipped.records.numpy() or skipped.damaged_files.numpy()):
        return ""
    return f" | {skipped}"


def gather(strategy, values):
    return np.concatenate([v.numpy() for v in strategy.experimental_local_results(values)])


class ProgressLog:
    """train_log.jsonl of a run, and the training rate since the last progress line."""

    def __init__(self, path, start_step):
        self.path, self.start_step = path, start_step
        self.last_time, self.last_step = time.time(), start_step

    def rate(self, step, now, batch_size):
        """Examples a second since the last call (or the start)."""
        rate = (step - self.last_step) * batch_size / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        return rate


class Saver:
    """The run's checkpoints: one per step at most, model_flags.json written (by the chief)
    before the first, a failed save one line that names the checkpoint kept."""

    def __init__(self, manager, chief, train_dir, flags_to_write, saved_step=None,
                 before_saving=lambda: None):
        self.manager, self.chief, self.train_dir = manager, chief, train_dir
        self.flags_to_write, self.saved_step = flags_to_write, saved_step
        self.before_saving = before_saving

    def save(self, step):
        if step == self.saved_step:
            return
        self.before_saving()
        if self.chief and self.flags_to_write is not None:
            model_flags.write(self.train_dir, self.flags_to_write)
            self.flags_to_write = None
        try:
            path = self.manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as err:
            kept = self.manager.latest_checkpoint
            reason = (getattr(err, "message", None) or str(err)).strip() or "no reason given"
            raise OSError(f"could not save the checkpoint of step {step} in "
                          f"{self.manager.directory} ({reason.splitlines()[0]}; disk full?); "
                          + (f"{kept} is kept" if kept else "no earlier checkpoint")) from None
        self.saved_step = step
        print(f"saved {path}", flush=True)
