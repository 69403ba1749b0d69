"""Training, importable: a `Trainer` that builds the input, model, optimizers and checkpoint
from a `train_config.TrainConfig` and runs the loop. No global flags: train.py turns its flags
into a config; benchmarks, experiments and tests build the same Trainer and call the same step.

    config = train_config.TrainConfig(
        train_dir="/tmp/m", train_data_pattern="train*.tfrecord",
        model_flags=model_flags.describe("MoeModel", ...), max_steps=100)
    Trainer(config).run()

Its parts: train_config (the schema and its checks), optimizers (per kind of weights), devices
(the strategy), averaging (--ema_decay), run_dir (the log and the checkpoints as saved).

What a run writes in train_dir: checkpoints (`model.ckpt-<step>`, the last 5), model_flags.json
(with the first checkpoint), model_summary.txt and .json, train_log.jsonl (one line per progress
line), validation.jsonl, TensorBoard events. Non-chief workers of a multi-worker run write
theirs to train_dir/workers/<index>.
"""

import contextlib
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import averaging
import checkpoints
import devices
import distillation
import eval_util
import losses
import model_flags
import model_summary
import model_utils
import optimizers
import readers
import run_dir
import training_data
import utils


class Trainer:
    """A training run of `config`: built on construction (nothing written yet), run by run().

    build_model: for experiments, a function that returns a Keras model of the batch dict to
    train instead of the registered model that config.model_flags names (whose reader and
    label loss are still used). No model_flags.json is written then: nothing could rebuild it.
    """

    def __init__(self, config, build_model=None):
        config.check()
        self.config = c = config
        self.strategy = devices.make_strategy(c.cpu_devices, c.num_gpu)
        self.chief = devices.is_chief_worker(self.strategy)
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
        self.loss_fn = losses.get_loss(c.model_flags.label_loss, c.label_smoothing)
        keras.utils.set_random_seed(c.seed)
        # What the checkpoint to resume from holds (its optimizers, an average of the weights).
        self.saved = set() if c.start_new_model else checkpoints.saved_objects(
            checkpoints.candidates(self.train_dir))
        self._build_models(build_model)
        self.registered_model = build_model is None
        self.best = None  # checkpoints.BestCheckpoint, at the first validation
        self.validated_at = None  # the step of the last validation
        with self.strategy.scope():  # the shares of the loss beside the label loss
            self.terms = [t for t in [distillation.DistillationTerm.from_config(
                c, self.unlabelled)] if t is not None]
        self._build_optimizers()
        self.replica_step = tf.function(self._replica_step, jit_compile=True) \
            if c.jit_compile else self._replica_step
        self.train_step = tf.function(self._train_step)
        self.train_loop = tf.function(self._train_loop)

    def _build_models(self, build_model):
        """The model (the registered one of model_flags, or build_model()) and, with averaged
        weights, its moving average: a second model whose weights start as the first's (or the
        checkpoint's average) and follow them step by step."""
        c = self.config
        policy = keras.mixed_precision.global_policy()
        # The policy of the layers created now (weights stay float32; each layer computes in
        # float16 or bfloat16; the circulant FFTs and the class probabilities in float32).
        keras.mixed_precision.set_global_policy(c.mixed_precision)
        keeps_average = c.ema_decay > 0 or checkpoints.AVERAGED in self.saved

        def new_model():
            if build_model is None:
                return checkpoints.build_model(c.model_flags, self.reader)
            model = build_model()
            model(checkpoints.example_batch(self.reader), training=False)
            return model

        try:
            with self.strategy.scope():
                self.model = new_model()
                self.averaged = new_model() if keeps_average else None
                if keeps_average:
                    averaging.copy_weights(self.averaged, self.model)
                    self.ema_decay = tf.Variable(c.ema_decay, trainable=False, name="ema_decay")
        finally:
            keras.mixed_precision.set_global_policy(policy)

    def _build_optimizers(self):
        """The learning rate, the optimizers and the variables each one updates, built."""
        c = self.config
        with self.strategy.scope():
            model_utils.set_batch_norm_momentum(self.model, c.batch_norm_momentum)
            model_utils.set_circulant_recompute(self.model, c.recompute_circulant)
            self.learning_rate = self._schedule(c.base_learning_rate)
            self.optimizers, self.groups = optimizers.for_kinds(
                c, self.model, self.saved, self.learning_rate, self._schedule)
            # float16 gradients underflow: the loss is scaled (dynamically) and the gradients
            # unscaled. Checkpoints keep the inner optimizers, as in float32 runs, so a run may
            # change precision when it resumes (the loss scale starts again).
            self.loss_scaled = c.mixed_precision == "mixed_float16"
            self.appliers = [keras.optimizers.LossScaleOptimizer(o) if self.loss_scaled else o
                             for o in self.optimizers.values()]
            for applier, variables in zip(self.appliers, self.groups.values()):
                applier.build(variables)

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
        """One step on one device's part of a batch (with the loss terms' inputs): (loss,
        probabilities, labels)."""
        with tf.GradientTape(persistent=len(self.appliers) > 1) as tape:
            probabilities = tf.cast(self.model(batch, training=True), tf.float32)
            # Rated segments: label_weights [B, C], 1 at each segment's rated classes.
            per_example = self.loss_fn(probabilities, batch["labels"], batch.get("label_weights"))
            for term in self.terms:
                per_example = term(per_example, probabilities, batch)
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
        for term in self.terms:  # apart from the (maybe XLA-compiled) step: strings in
            inputs.update(self.strategy.run(term.inputs, args=(batch,)))
        loss, probabilities, labels = self.strategy.run(self.replica_step, args=(inputs,))
        for optimizer, step in zip(self.optimizers.values(), before):
            optimizer.iterations.assign(step + 1)  # a step skipped for overflow counts too
        if self.averaged is not None:
            averaging.update(self.averaged, self.model, self.ema_decay, self.optimizer.iterations)
        return self.strategy.reduce("SUM", loss, axis=None), probabilities, labels

    def sync_average(self):
        """The averaged model's statistics up to date, before it is saved or evaluated."""
        if self.averaged is not None:
            averaging.sync_statistics(self.averaged, self.model)

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
        holdout = c.holdout()
        transforms = ([training_data.Holdout(*holdout)] if holdout else []) + \
            [t for term in self.terms for t in term.transforms]
        dataset = self.reader.dataset(self.files, c.batch_size, num_epochs=c.num_epochs,
                                      shuffle=True, num_readers=c.num_readers, seed=c.seed,
                                      skipped=skipped, transforms=transforms)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def write_summary(self):
        """Print the model summary and the memory training will need, and check the budget;
        the text and JSON files (chief) are kept for write_summary_files, once a step has run
        (a run that fails before leaves those of the run before)."""
        name = self.config.model_flags.model if self.registered_model else self.model.name
        per_device = max(1, self.config.batch_size // self.strategy.num_replicas_in_sync)
        memory = model_summary.training_memory(
            self.model, checkpoints.example_batch(self.reader), per_device,
            [v for o in self.optimizers.values() for v in o.variables]
            + (self.averaged.weights if self.averaged is not None else []))
        summary = (model_summary.format_summary(self.model, name) + "\n"
                   + model_summary.format_memory(memory, per_device))
        print(summary, flush=True)
        in_use = self.in_use()
        if in_use:
            print(f"in use: {'; '.join(in_use)}", flush=True)
        described = model_summary.described(self.model, name, memory, per_device)
        self.summary_files = {"model_summary.txt": summary + "\n",
                              run_dir.SUMMARY_FILE: json.dumps(described, indent=1)}
        model_summary.check_budget(self.model, self.config.max_model_mb)

    def in_use(self):
        """What this run adds to plain training, one phrase each (its first lines say so)."""
        c = self.config
        said = [phrase for term in self.terms for phrase in term.in_use()]
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
            run_dir.move_previous_run(self.train_dir)
        self.write_summary()

        # -- restore the newest readable checkpoint, or prepare a new run --
        saver = self._restore_or_start()

        # -- input, validation, progress --
        skipped = readers.SkipCounts() if c.skip_corrupt_records else None
        batches = self.dataset(skipped)
        validation = readers.resolve_files(c.validation_data_pattern) \
            if c.validation_data_pattern else None
        stop = utils.StopRequests()
        summaries = contextlib.ExitStack()  # TensorBoard's writer, once a step has run
        step = start_step = int(self.optimizer.iterations.numpy())
        progress = self._progress(start_step)
        log = run_dir.ProgressLog(os.path.join(self.out_dir, run_dir.TRAIN_LOG_FILE), start_step)

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
            return self._end(step, validation, stop, skipped)

    def _restore_or_start(self):
        """The newest readable checkpoint restored (or --init_from's weights, or a new model's
        preparation), the average started; returns the run's Saver."""
        c = self.config
        average_state = {checkpoints.AVERAGED: self.averaged, "ema_decay": self.ema_decay} \
            if self.averaged is not None else {}
        # Restored as saved: an average the checkpoint lacks starts at its weights.
        latest = self._restore(tf.train.Checkpoint(
            model=self.model, **self.optimizers,
            **(average_state if checkpoints.AVERAGED in self.saved else {})))
        # Made after the restore, which may rebuild a lost index: the manager keeps the five
        # newest checkpoints of those the index lists.
        checkpoint = tf.train.Checkpoint(model=self.model, **self.optimizers, **average_state)
        manager = tf.train.CheckpointManager(checkpoint, self.out_dir, max_to_keep=5,
                                             checkpoint_name="model.ckpt")
        if latest is None and c.init_from:
            self._initialize_from(c.init_from)
        elif latest is None:
            self._before_first_step()
        if self.averaged is not None:
            self._start_average(latest)
        return run_dir.Saver(manager, self.chief, self.train_dir, self._flags_to_write(latest),
                             saved_step=int(self.optimizer.iterations.numpy()) if latest else None,
                             before_saving=self.sync_average)

    def _end(self, step, validation, stop, skipped):
        """A last validation, and why the run stopped; returns the signal number (0: none)."""
        c = self.config
        # The end validates, unless a validation came within a tenth of the interval (an
        # epoch that ends a step after a validation step: the same weights, nearly).
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
        print(f"done at step {step} ({reason}): {self.train_dir}{run_dir.skip_note(skipped)}",
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
            averaging.copy_weights(self.averaged, self.model)
        print(f"--init_from: the weights of {path}", flush=True)

    def _start_average(self, latest):
        """The average's decay (the one given, else the checkpoint's) and where it starts."""
        if latest is None:  # a new run: the given decay, from its (maybe --init_from) weights
            return
        said = averaging.resume(self.averaged, self.model, self.ema_decay, self.config.ema_decay,
                                checkpoints.AVERAGED in self.saved,
                                int(self.optimizer.iterations.numpy()))
        if said:
            print(said, flush=True)

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
        probabilities = devices.gather(self.strategy, probabilities)
        labels = devices.gather(self.strategy, labels)
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
        run_dir.report_progress(values, progress.status(step), c.num_epochs, skipped)
        run_dir.append_train_log(log.path, values, skipped)

    def validate(self, files, step):
        self.validated_at = step
        self.sync_average()
        results = eval_util.evaluate(self.evaluated_model, self.reader, files, self.loss_fn,
                                     self.config.batch_size, num_readers=self.config.num_readers,
                                     jit_compile=self.config.jit_compile)
        what = "rated segments" if self.reader.segments else "videos"
        print(f"validation at step {step}: {results['videos']:,} {what} | "
              + eval_util.metrics_line(results), flush=True)
        run_dir.append_validation(self.out_dir, results, step)
        if self.config.keep_best_checkpoint:
            if self.best is None:
                self.best = checkpoints.BestCheckpoint(
                    os.path.join(self.out_dir, checkpoints.BEST),
                    {"model": self.model, **({checkpoints.AVERAGED: self.averaged}
                                             if self.averaged is not None else {})})
            if self.best.offer(results["gap"], step):
                print(f"the best validation so far: kept in {self.best.folder}", flush=True)


def finite(loss, step):
    """The loss as a float; stop (keeping the last checkpoint) when it is not finite."""
    loss = float(loss)
    if not np.isfinite(loss):
        raise FloatingPointError(f"the loss is {loss} at step {step}; stopping (the last "
                                 "checkpoint is kept)")
    return loss


