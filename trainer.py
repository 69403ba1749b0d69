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

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import checkpoints
import eval_util
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
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TRAIN_LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "model_summary.json"


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs besides the data (train.py's flags of the same names)."""

    train_dir: str
    train_data_pattern: str
    model_flags: dict  # the model description that model_flags.json keeps
    start_new_model: bool = False  # move the previous run of train_dir aside first
    batch_size: int = 1024  # global, whatever the number of devices
    label_smoothing: float = 0.0
    regularization_penalty: float = 1.0
    base_learning_rate: float = 0.01
    learning_rate_decay: float = 0.95
    learning_rate_decay_examples: float = 4000000
    num_epochs: int = 5  # passes over the data in this run
    max_steps: int | None = None  # stop at this global step
    num_readers: int = 8
    skip_corrupt_records: bool = False
    optimizer: str = "AdamOptimizer"
    clip_gradient_norm: float = 1.0  # 0: no clipping
    seed: int = 0
    checkpoint_steps: int = 500
    log_steps: int = 10
    validation_data_pattern: str = ""
    validation_steps: int = 1000
    max_model_mb: float = 0  # 0: no limit
    batch_norm_momentum: float = 0.99
    circulant_learning_rate_scale: float = 1.0
    cpu_devices: int = 0  # > 1: mirror over this many logical CPU devices
    num_gpu: int | None = None  # local GPUs to mirror over (None: all; 0: none)
    mixed_precision: str = "float32"  # or mixed_float16 (with loss scaling), mixed_bfloat16
    jit_compile: bool = False  # XLA for the training and validation steps
    steps_per_loop: int = 10  # training steps per call of the compiled loop
    recompute_circulant: bool = False  # circulant layers: memory for time in the backward pass

    def check(self):
        """A ValueError naming the flag for a setting that cannot work."""
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
        if self.circulant_learning_rate_scale <= 0:
            raise ValueError("--circulant_learning_rate_scale must be positive, got "
                             f"{self.circulant_learning_rate_scale}")
        losses.get_loss(self.model_flags["label_loss"], self.label_smoothing)


def make_strategy(cpu_devices=0, num_gpu=None):
    """N logical CPUs (cpu_devices > 1), several workers (TF_CONFIG), num_gpu local GPUs (None:
    all; 0: the CPU), or one device."""
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
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
        self.reader = checkpoints.make_reader(c.model_flags, trained=False)
        self.loss_fn = losses.get_loss(c.model_flags["label_loss"], c.label_smoothing)
        keras.utils.set_random_seed(c.seed)
        policy = keras.mixed_precision.global_policy()
        # The policy of the layers created now (weights stay float32; each layer computes in
        # float16 or bfloat16; the circulant FFTs and the class probabilities in float32).
        keras.mixed_precision.set_global_policy(c.mixed_precision)
        try:
            with self.strategy.scope():
                if build_model is None:
                    self.model = checkpoints.build_model(c.model_flags, self.reader)
                else:
                    self.model = build_model()
                    self.model(checkpoints.example_batch(self.reader), training=False)
        finally:
            keras.mixed_precision.set_global_policy(policy)
        self.registered_model = build_model is None
        with self.strategy.scope():
            model_utils.set_batch_norm_momentum(self.model, c.batch_norm_momentum)
            model_utils.set_circulant_recompute(self.model, c.recompute_circulant)
            self.learning_rate = self._schedule(c.base_learning_rate)
            clip = {"clipnorm": c.clip_gradient_norm} if c.clip_gradient_norm > 0 else {}
            self.optimizers = [OPTIMIZERS[c.optimizer](self.learning_rate, **clip)]
            self.groups = [self.model.trainable_variables]  # the variables of each optimizer
            circulant = {id(v) for v in model_utils.structured_variables(self.model,
                                                                          "circulant")}
            if c.circulant_learning_rate_scale != 1 and circulant:
                trainable = self.model.trainable_variables
                self.groups = [[v for v in trainable if id(v) not in circulant],
                               [v for v in trainable if id(v) in circulant]]
                self.optimizers.append(OPTIMIZERS[c.optimizer](
                    self._schedule(c.base_learning_rate * c.circulant_learning_rate_scale),
                    **clip))
            # float16 gradients underflow: the loss is scaled (dynamically) and the gradients
            # unscaled. Checkpoints keep the inner optimizers, as in float32 runs, so a run may
            # change precision when it resumes (the loss scale starts again).
            self.loss_scaled = c.mixed_precision == "mixed_float16"
            self.appliers = [keras.optimizers.LossScaleOptimizer(o) if self.loss_scaled else o
                             for o in self.optimizers]
            for applier, variables in zip(self.appliers, self.groups):
                applier.build(variables)
        self.replica_step = tf.function(self._replica_step, jit_compile=True) \
            if c.jit_compile else self._replica_step
        self.train_step = tf.function(self._train_step)
        self.train_loop = tf.function(self._train_loop)

    def _schedule(self, rate):
        c = self.config
        decay_steps = max(c.learning_rate_decay_examples / c.batch_size, 1e-9)
        return keras.optimizers.schedules.ExponentialDecay(rate, decay_steps,
                                                           c.learning_rate_decay, staircase=True)

    def _replica_step(self, batch):
        """One step on one device's part of a batch: (loss, probabilities, labels)."""
        with tf.GradientTape(persistent=len(self.optimizers) > 1) as tape:
            probabilities = tf.cast(self.model(batch, training=True), tf.float32)
            per_example = self.loss_fn(probabilities, batch["labels"])
            loss = tf.nn.compute_average_loss(per_example)
            if self.model.losses:
                penalty = tf.add_n([tf.cast(x, tf.float32) for x in self.model.losses])
                loss += self.config.regularization_penalty * \
                    tf.nn.scale_regularization_loss(penalty)
            targets = [a.scale_loss(loss) for a in self.appliers] if self.loss_scaled \
                else [loss] * len(self.appliers)
        for applier, variables, target in zip(self.appliers, self.groups, targets):
            grads = tape.gradient(target, variables)
            applier.apply_gradients(zip(grads, variables))
        return loss, probabilities, batch["labels"]

    def _train_step(self, batch):
        """One step on a (distributed) batch: (summed loss, probabilities, labels)."""
        before = [tf.identity(o.iterations.value) for o in self.optimizers] \
            if self.loss_scaled else []
        batch = readers.model_inputs(batch, labels=True)
        loss, probabilities, labels = self.strategy.run(self.replica_step, args=(batch,))
        for optimizer, step in zip(self.optimizers, before):
            optimizer.iterations.assign(step + 1)  # a step skipped for overflow counts too
        return self.strategy.reduce("SUM", loss, axis=None), probabilities, labels

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

    def steps_before_event(self, step, start_step, validating):
        """How many of the next steps (at most steps_per_loop; 0 with one step per call) are
        plain: before the next one that logs, saves, validates or is the last. Those run in
        one call of the compiled loop; the others one at a time, with their outputs."""
        c = self.config
        if c.steps_per_loop == 1:
            return 0
        for plain in range(c.steps_per_loop):
            s = step + plain + 1
            if any(self.due(s, start_step, validating)) or (c.max_steps is not None
                                                             and s >= c.max_steps):
                return plain
        return c.steps_per_loop

    def dataset(self, skipped=None):
        """The training batches, shuffled, num_epochs passes, distributed over the devices."""
        c = self.config
        dataset = self.reader.dataset(self.files, c.batch_size, num_epochs=c.num_epochs,
                                      shuffle=True, num_readers=c.num_readers, seed=c.seed,
                                      skipped=skipped)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def write_summary(self):
        """Print the model summary and the memory training will need; write them as text and
        JSON (chief); check the budget."""
        name = self.config.model_flags["model"] if self.registered_model else self.model.name
        per_device = max(1, self.config.batch_size // self.strategy.num_replicas_in_sync)
        memory = model_summary.training_memory(
            self.model, checkpoints.example_batch(self.reader), per_device,
            [v for o in self.optimizers for v in o.variables])
        summary = (model_summary.format_summary(self.model, name) + "\n"
                   + model_summary.format_memory(memory, per_device))
        print(summary, flush=True)
        if self.chief:
            utils.atomic_write(os.path.join(self.train_dir, "model_summary.txt"), summary + "\n")
            rows, totals = model_summary.summarize(self.model)
            utils.atomic_write(os.path.join(self.train_dir, SUMMARY_FILE), json.dumps({
                "model": name, **totals, "expected_memory_bytes": memory,
                "batch_per_device": per_device,
                "layers": [{"path": path, "kind": kind, "weights": weights, "dense": dense}
                           for path, kind, weights, dense in rows]}, indent=1))
        model_summary.check_budget(self.model, self.config.max_model_mb)

    def run(self):
        """Train until max_steps, num_epochs or a signal; returns the signal number (0: none)."""
        c = self.config
        if c.start_new_model and self.chief:
            move_previous_run(self.train_dir)
        self.write_summary()
        optimizer = self.optimizers[0]
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=optimizer,
                                         **({"circulant_optimizer": self.optimizers[1]}
                                            if len(self.optimizers) > 1 else {}))
        manager = tf.train.CheckpointManager(checkpoint, self.out_dir, max_to_keep=5,
                                             checkpoint_name="model.ckpt")
        latest, found = None, checkpoints.candidates(self.train_dir)
        if found:
            checkpoints.warn_if_index_lost(self.train_dir, found)
            latest = checkpoints.restore_newest(
                lambda path: checkpoint.restore(path).assert_existing_objects_matched(),
                self.train_dir, found)
            if self.chief:  # the damaged ones newer than it, passed over
                checkpoints.move_aside(found[:found.index(latest)], self.train_dir)
            print(f"resumed from {latest} at step {int(optimizer.iterations.numpy())}")
        elif self.registered_model:  # an experiment's own model has no such hook
            with self.reader.reraise_data_errors(self.files):
                said = self.model.before_first_step(lambda: self.reader.dataset(
                    self.files, 4096, num_readers=c.num_readers))
            if said:
                print(said, flush=True)
        flags_written = not self.registered_model or (latest is not None
                                                      and model_flags.exists(self.train_dir))

        def save_checkpoint(step, saved_step):
            """save(), the run's model_flags.json written before its first checkpoint."""
            nonlocal flags_written
            if self.chief and not flags_written and step != saved_step:
                model_flags.write(self.train_dir, c.model_flags)
                flags_written = True
            return save(manager, step, saved_step)

        skipped = readers.SkipCounts() if c.skip_corrupt_records else None
        batches = self.dataset(skipped)
        validation = readers.resolve_files(c.validation_data_pattern) \
            if c.validation_data_pattern else None
        stop = utils.StopRequests()
        writer = tf.summary.create_file_writer(self.out_dir)
        log_path = os.path.join(self.out_dir, TRAIN_LOG_FILE)
        step = start_step = int(optimizer.iterations.numpy())
        last_log, last_log_step = time.time(), step
        videos, exact = readers.estimate_records(self.files)
        epochs_end = start_step + math.ceil(c.num_epochs * videos / c.batch_size)
        end_step = epochs_end if c.max_steps is None else min(epochs_end,
                                                               max(c.max_steps, start_step))
        # Only the end of the epochs is estimated (from a sample of the files), not max_steps.
        progress = utils.Progress(end_step, start_step,
                                  estimated=not exact and end_step == epochs_end)
        saved_step = step if latest else None
        with self.reader.reraise_data_errors(self.files), stop, writer.as_default():
            iterator = iter(batches)
            while c.max_steps is None or step < c.max_steps:
                plain = self.steps_before_event(step, start_step, bool(validation))
                if plain:
                    done = int(self.train_loop(iterator, tf.constant(plain)))
                    step += done
                    if done < plain or stop.requested:  # the data ended, or saved below
                        break
                    continue
                batch = next(iterator, None)
                if batch is None:
                    break
                loss, probabilities, labels = self.train_step(batch)
                step += 1  # counted here: reading optimizer.iterations would wait for the device
                log_now, save_now, validate_now = self.due(step, start_step, bool(validation))
                save_now = save_now or stop.requested
                if log_now or save_now:
                    loss = finite(loss, step)
                if log_now:
                    now = time.time()
                    metrics = eval_util.EvaluationMetrics()
                    metrics.add(gather(self.strategy, probabilities),
                                gather(self.strategy, labels))
                    values = {
                        "step": step, "total_steps": end_step,
                        "epoch": (step - start_step) * c.batch_size / max(videos, 1),
                        "examples_per_second":
                            (step - last_log_step) * c.batch_size / max(now - last_log, 1e-9),
                        "loss": loss, "gap": metrics.gap(), "hit_at_one": metrics.hit_at_one(),
                        "learning_rate": float(self.learning_rate(step)),
                        "seconds_left": progress.left(step, now)}
                    last_log, last_log_step = now, step
                    self._report(values, progress, skipped)
                    append_train_log(log_path, values, skipped)
                if save_now:
                    saved_step = save_checkpoint(step, saved_step)
                if validate_now:
                    self.validate(validation, step)
                if stop.requested:
                    break
            if stop.requested:
                print(f"signal {stop.requested}: saving and stopping", flush=True)
            if step > start_step:
                finite(loss, step)
            elif not stop.requested and (c.max_steps is None or step < c.max_steps):
                raise readers.no_records(self.files)
            save_checkpoint(step, saved_step)
        if validation and step % c.validation_steps != 0 and not stop.requested:
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
        results = eval_util.evaluate(self.model, self.reader, files, self.loss_fn,
                                     self.config.batch_size, num_readers=self.config.num_readers,
                                     jit_compile=self.config.jit_compile)
        print(f"validation at step {step}: {results['videos']} videos | GAP {results['gap']:.4f} "
              f"| hit@1 {results['hit_at_one']:.4f} | PERR {results['perr']:.4f} | "
              f"loss {results['loss']:.4f} | {results['seconds']:.0f}s", flush=True)
        for name in ("gap", "hit_at_one", "perr", "loss"):
            tf.summary.scalar(f"validation/{name}", results[name], step=step)
        with open(os.path.join(self.out_dir, "validation.jsonl"), "a") as log:
            log.write(json.dumps(dict(results, step=step)) + "\n")


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


def save(manager, step, saved_step):
    """A checkpoint for `step` unless it has one already; returns the step saved."""
    if step != saved_step:
        try:
            path = manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as err:
            kept = manager.latest_checkpoint
            reason = (getattr(err, "message", None) or str(err)).strip() or "no reason given"
            raise OSError(f"could not save the checkpoint of step {step} in {manager.directory} "
                          f"({reason.splitlines()[0]}; disk full?); "
                          + (f"{kept} is kept" if kept else "no earlier checkpoint")) from None
        print(f"saved {path}", flush=True)
    return step
