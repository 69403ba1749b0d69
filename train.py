"""Train a YouTube-8M model from TFRecords, with the starter code's flags.

    python train.py --train_data_pattern='data/train*.tfrecord' --frame_features \\
        --model=TwoStreamModel --compact_layers=fc,moe --train_dir=/tmp/yt8m_model

One device, all local GPUs (MirroredStrategy), or several machines (MultiWorkerMirroredStrategy,
from the standard TF_CONFIG variable). Checkpoints go to train_dir every --checkpoint_steps, at
the end and on SIGINT/SIGTERM; a restart continues from the latest. train_dir/model_flags.json
keeps the model's settings, which eval.py and inference.py read.
"""

import json
import math
import os
import sys
import time

from absl import app, flags

import utils

utils.quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import checkpoints  # noqa: E402 - also registers every model
import eval_util  # noqa: E402
import losses  # noqa: E402
import model_utils  # noqa: E402
import readers  # noqa: E402

# -- flags: the starter's names and defaults ------------------------------------------------------
flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "Checkpoints, summaries, model_flags.json.")
flags.DEFINE_string("train_data_pattern", "", "Comma-separated globs of training TFRecords.")
flags.DEFINE_string("feature_names", None, "Features to read (default mean_rgb,mean_audio for "
                    "video level, rgb,audio for frame level).")
flags.DEFINE_string("feature_sizes", None, "Their sizes (default 1024,128).")
flags.DEFINE_bool("frame_features", False, "Frame-level SequenceExamples instead of video level.")
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES, "3862 (2018 on) or 4716 (2017).")
flags.DEFINE_integer("max_frames", readers.MAX_FRAMES, "Frames kept per video (frame level).")
flags.DEFINE_string("model", "LogisticModel", "Model class name.")
flags.DEFINE_bool("start_new_model", False, "Start afresh (old checkpoints are moved aside).")
flags.DEFINE_integer("batch_size", 1024, "Global batch size, whatever the number of devices.")
flags.DEFINE_string("label_loss", "CrossEntropyLoss", "CrossEntropyLoss, HingeLoss, SoftmaxLoss.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing (CrossEntropy and Softmax losses).")
flags.DEFINE_float("regularization_penalty", 1.0, "Weight of the models' L2 penalties.")
flags.DEFINE_float("base_learning_rate", 0.01, "Initial learning rate.")
flags.DEFINE_float("learning_rate_decay", 0.95, "Factor applied every decay period.")
flags.DEFINE_float("learning_rate_decay_examples", 4000000, "Examples per decay period.")
flags.DEFINE_integer("num_epochs", 5, "Passes over the training data (in this run).")
flags.DEFINE_integer("max_steps", None, "Stop at this global step.")
flags.DEFINE_integer("num_readers", 8, "Files read in parallel.")
flags.DEFINE_bool("skip_corrupt_records", False, "Drop unreadable records and the damaged ends "
                  "of files instead of stopping; counts are printed with the progress.")
flags.DEFINE_string("optimizer", "AdamOptimizer", "AdamOptimizer, GradientDescentOptimizer, "
                    "MomentumOptimizer, AdagradOptimizer, RMSPropOptimizer.")
flags.DEFINE_float("clip_gradient_norm", 1.0, "Clip each gradient to this norm (0: no clipping).")
flags.DEFINE_integer("export_model_steps", 1000, "Does nothing (accepted for the starter's "
                     "command lines): export with export_model.py.")
flags.DEFINE_bool("log_device_placement", False, "Not supported (accepted for the starter's "
                  "command lines, ignored with a warning).")
flags.DEFINE_bool("segment_labels", False, "Not supported: the 2019 segment-rating task.")
# -- flags of our own ---------------------------------------------------------------------------
flags.DEFINE_integer("seed", 0, "Seeds weights, shuffling and frame sampling.")
flags.DEFINE_integer("checkpoint_steps", 500, "Save a checkpoint every this many steps.")
flags.DEFINE_integer("log_steps", 10, "Print progress every this many steps.")
flags.DEFINE_string("validation_data_pattern", "", "Evaluate on these files as training goes.")
flags.DEFINE_integer("validation_steps", 1000, "Evaluate every this many steps (and at the end).")
flags.DEFINE_float("max_model_mb", 0, "Stop at start when the float32 weights exceed this (0: "
                   "no limit; the 2018 challenge allowed 1024).")
flags.DEFINE_float("batch_norm_momentum", 0.99, "Momentum of the batch-norm layers' moving "
                   "statistics, which evaluation uses. Lower it (0.9) for runs of a few hundred "
                   "steps or at high learning rates, where the weights outpace a 0.99 average.")
flags.DEFINE_float("circulant_learning_rate_scale", 1.0, "The learning rate of the "
                   "diagonal-circulant layers' diagonal and circulant vectors, as a multiple of "
                   "the other weights' (their own optimizer; 1: one optimizer for all).")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices and mirror "
                     "over them (to try distribution without GPUs).")


def define_model_flags():
    """One flag per model hyperparameter; unset, each model keeps its own default."""
    seen = {}
    for name in model_utils.model_names():
        measured = getattr(model_utils.get_model_class(name), "data_settings", ())
        for key, default in model_utils.model_hyperparameters(name).items():
            if key not in measured:
                seen.setdefault(key, {})[name] = default
    definers = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                str: flags.DEFINE_string}
    for key, defaults in sorted(seen.items()):
        kind = type(next(iter(defaults.values())))
        values = sorted({repr(v) for v in defaults.values()})
        definers[kind](key, None, f"Model setting (default: {', '.join(values)} by model).")


define_model_flags()
FLAGS = flags.FLAGS
OPTIMIZERS = {
    "AdamOptimizer": keras.optimizers.Adam,
    "GradientDescentOptimizer": keras.optimizers.SGD,
    "MomentumOptimizer": lambda lr, **kw: keras.optimizers.SGD(lr, momentum=0.9, **kw),
    "AdagradOptimizer": keras.optimizers.Adagrad,
    "RMSPropOptimizer": keras.optimizers.RMSprop,
}


MODEL_FLAGS = ("model", "frame_features", "feature_names", "feature_sizes", "num_classes",
               "max_frames", "label_loss")  # with the model's settings: what model_flags.json keeps


def given(name):
    """Whether flag `name` is on the command line (False for settings without a flag)."""
    return name in FLAGS and FLAGS[name].present > 0


def model_settings(files, model=None, frame_features=None):
    """The model description that the flags give (each model's defaults where unset): what
    model_flags.json records. A model with `data_settings` (a memory of the training videos)
    measures them on `files`."""
    model = model or FLAGS.model
    frame_features = FLAGS.frame_features if frame_features is None else frame_features
    model_class = model_utils.get_model_class(model)  # raises on unknown names
    measured = getattr(model_class, "data_settings", ())
    settings = {key: FLAGS[key].value if FLAGS[key].value is not None else default
                for key, default in model_utils.model_hyperparameters(model).items()
                if key not in measured}
    reader = readers.make_reader(frame_features, FLAGS.num_classes, FLAGS.feature_names,
                                 FLAGS.feature_sizes, FLAGS.max_frames)
    if measured:
        settings.update(model_class.settings_from_data(reader, files))
    return {"model": model, "frame_features": frame_features,
            "feature_names": ",".join(reader.feature_names),
            "feature_sizes": ",".join(map(str, reader.feature_sizes)),
            "num_classes": FLAGS.num_classes, "max_frames": FLAGS.max_frames,
            "label_loss": FLAGS.label_loss, "settings": settings}


def resumed_settings(saved, files, path):
    """The model flags of a run that goes on: those saved, except the ones given on the command
    line, which must agree with them (or --start_new_model)."""
    model = FLAGS.model if given("model") else saved["model"]
    frame_features = FLAGS.frame_features if given("frame_features") else saved["frame_features"]
    from_flags = model_settings(files, model, frame_features)
    measured = getattr(model_utils.get_model_class(model), "data_settings", ())
    settings = {key: from_flags[key] if given(key) else saved[key] for key in MODEL_FLAGS}
    settings["settings"] = {**saved["settings"], **{
        key: value for key, value in from_flags["settings"].items()
        if given(key) or key in measured or model != saved["model"]}}
    old, new = _flat(saved), _flat(settings)
    changed = sorted(k for k in set(old) | set(new)
                     if old.get(k) != new.get(k) and (given(k) or k in measured))
    if changed:
        raise ValueError(f"model flags differ from {path} ({', '.join(changed)}); leave them "
                         "out to go on with the saved model, or add --start_new_model to train "
                         "a new model in this train_dir")
    taken = [k for k in MODEL_FLAGS if not given(k)]
    if taken:
        print(f"model flags not given are taken from {path}", flush=True)
    return settings


def _flat(settings):
    return {**{k: v for k, v in settings.items() if k != "settings"},
            **settings.get("settings", {})}


def warn_about_unused_flags(settings):
    """Flags given that do nothing for this run, each named on stderr."""
    model = settings["model"]
    accepted = model_utils.model_hyperparameters(model)
    for key in sorted(model_utils.all_hyperparameters()):
        if given(key) and key not in accepted:
            utils.warn(f"--{key} is not a setting of {model}: ignored")
    if given("compact_layers") and "compact_layers" in accepted:
        for name in model_utils.unused_compact_layers(model, settings["num_classes"],
                                                      settings["settings"]):
            utils.warn(f"--compact_layers={name}: {model} has no such layer with these "
                       "settings: ignored")
    if given("export_model_steps"):
        utils.warn("--export_model_steps does nothing: export a trained model with "
                   "export_model.py")
    if FLAGS.log_device_placement:
        utils.warn("--log_device_placement is not supported: ignored")


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


def make_strategy():
    if FLAGS.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(FLAGS.cpu_devices)])
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief_worker(strategy):
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def run():
    # -- set-up --------------------------------------------------------------------------------
    if not FLAGS.train_data_pattern:
        raise ValueError("--train_data_pattern is required")
    if FLAGS.segment_labels:
        raise ValueError("--segment_labels (the 2019 segment-rating task) is not supported: "
                         "train on video-level labels without it")
    loss_fn = losses.get_loss(FLAGS.label_loss, FLAGS.label_smoothing)
    if FLAGS.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {FLAGS.optimizer!r}; choose one of "
                         f"{', '.join(OPTIMIZERS)}")
    strategy = make_strategy()
    chief = is_chief_worker(strategy)
    train_dir = utils.prepare_dir(FLAGS.train_dir)
    # Non-chief workers write their (identical) checkpoints and summaries to a scratch folder.
    out_dir = train_dir if chief else utils.prepare_dir(
        os.path.join(train_dir, "workers", str(strategy.cluster_resolver.task_id)))
    files = readers.resolve_files(FLAGS.train_data_pattern)
    flags_path = os.path.join(train_dir, checkpoints.MODEL_FLAGS_FILE)
    # A run is bound to its model flags once it has a checkpoint: until then they may change.
    resuming = not FLAGS.start_new_model and tf.train.latest_checkpoint(train_dir) is not None
    if resuming and tf.io.gfile.exists(flags_path):
        settings = resumed_settings(checkpoints.read_model_flags(train_dir), files, flags_path)
    else:
        settings = model_settings(files)
    readers.check_release(files, settings["num_classes"])
    warn_about_unused_flags(settings)
    reader = checkpoints.make_reader(settings, trained=False)
    keras.utils.set_random_seed(FLAGS.seed)

    # -- input ---------------------------------------------------------------------------------
    skipped = readers.SkipCounts() if FLAGS.skip_corrupt_records else None
    dataset = reader.dataset(files, FLAGS.batch_size, num_epochs=FLAGS.num_epochs, shuffle=True,
                             num_readers=FLAGS.num_readers, seed=FLAGS.seed, skipped=skipped)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(dataset.with_options(options))
    validation = None
    if FLAGS.validation_data_pattern:
        validation = (reader, readers.resolve_files(FLAGS.validation_data_pattern))

    # -- model, optimizer, checkpoint ------------------------------------------------------------
    with strategy.scope():
        model = checkpoints.build_model(settings, reader)
        model_utils.set_batch_norm_momentum(model, FLAGS.batch_norm_momentum)
        decay_steps = max(FLAGS.learning_rate_decay_examples / FLAGS.batch_size, 1e-9)
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            FLAGS.base_learning_rate, decay_steps, FLAGS.learning_rate_decay, staircase=True)
        clip = {"clipnorm": FLAGS.clip_gradient_norm} if FLAGS.clip_gradient_norm > 0 else {}
        optimizer = OPTIMIZERS[FLAGS.optimizer](learning_rate, **clip)
        groups = [model.trainable_variables]  # the variables of each optimizer, in order
        optimizers = [optimizer]
        if FLAGS.circulant_learning_rate_scale <= 0:
            raise ValueError("--circulant_learning_rate_scale must be positive, got "
                             f"{FLAGS.circulant_learning_rate_scale}")
        circulant = {id(v) for v in model_utils.circulant_variables(model)}
        if FLAGS.circulant_learning_rate_scale != 1 and circulant:
            groups = [[v for v in model.trainable_variables if id(v) not in circulant],
                      [v for v in model.trainable_variables if id(v) in circulant]]
            optimizers.append(OPTIMIZERS[FLAGS.optimizer](
                keras.optimizers.schedules.ExponentialDecay(
                    FLAGS.base_learning_rate * FLAGS.circulant_learning_rate_scale,
                    decay_steps, FLAGS.learning_rate_decay, staircase=True), **clip))
        for each, variables in zip(optimizers, groups):
            each.build(variables)
    if FLAGS.start_new_model and chief:
        move_previous_run(train_dir)
    summary = model_utils.format_summary(model, settings["model"])
    print(summary, flush=True)
    if chief:
        utils.atomic_write(os.path.join(train_dir, "model_summary.txt"), summary + "\n")
    model_utils.check_budget(model, FLAGS.max_model_mb)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                     **({"circulant_optimizer": optimizers[1]}
                                        if len(optimizers) > 1 else {}))
    manager = tf.train.CheckpointManager(checkpoint, out_dir, max_to_keep=5,
                                         checkpoint_name="model.ckpt")
    latest = tf.train.latest_checkpoint(train_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resumed from {latest} at step {int(optimizer.iterations.numpy())}")
    elif hasattr(model, "memorize"):
        started = time.time()
        with reader.reraise_data_errors(files):
            model.memorize(reader.dataset(files, 4096, num_readers=FLAGS.num_readers))
        print(f"memorised {model.memory_videos:,} training videos in "
              f"{time.time() - started:.0f}s", flush=True)

    flags_written = resuming and tf.io.gfile.exists(flags_path)

    def save_checkpoint(step, saved_step):
        """save(), the run's model_flags.json written before its first checkpoint."""
        nonlocal flags_written
        if chief and not flags_written and step != saved_step:
            utils.atomic_write(flags_path, json.dumps(settings, indent=2, sort_keys=True))
            flags_written = True
        return save(manager, step, saved_step)

    # -- the training step ------------------------------------------------------------------------
    @tf.function
    def train_step(batch):
        def replica_step(batch):
            with tf.GradientTape(persistent=len(optimizers) > 1) as tape:
                probabilities = model(batch, training=True)
                per_example = loss_fn(probabilities, batch["labels"])
                loss = tf.nn.compute_average_loss(per_example)
                if model.losses:
                    loss += FLAGS.regularization_penalty * tf.nn.scale_regularization_loss(
                        tf.add_n(model.losses))
            for each, variables in zip(optimizers, groups):
                grads = tape.gradient(loss, variables)
                each.apply_gradients(zip(grads, variables))
            return loss, probabilities, batch["labels"]

        loss, probabilities, labels = strategy.run(replica_step, args=(batch,))
        return strategy.reduce("SUM", loss, axis=None), probabilities, labels

    # -- the loop ---------------------------------------------------------------------------------
    stop = utils.StopRequests()
    writer = tf.summary.create_file_writer(out_dir)
    step = int(optimizer.iterations.numpy())
    start_step = step
    last_log, last_log_step = time.time(), step
    videos, exact = readers.estimate_records(files)
    end_step = start_step + math.ceil(FLAGS.num_epochs * videos / FLAGS.batch_size)
    if FLAGS.max_steps is not None:
        end_step = min(end_step, max(FLAGS.max_steps, start_step))
    progress = utils.Progress(end_step, start_step, estimated=not exact)
    saved_step = step if latest else None
    with reader.reraise_data_errors(files), stop, writer.as_default():
        for batch in batches:
            if FLAGS.max_steps is not None and step >= FLAGS.max_steps:
                break
            loss, probabilities, labels = train_step(batch)
            step += 1  # counted here: reading optimizer.iterations would wait for the device
            log_now = step % FLAGS.log_steps == 0 or step == start_step + 1
            save_now = step % FLAGS.checkpoint_steps == 0 or stop.requested
            if log_now or save_now:
                loss = finite(loss, step)
            if log_now:
                predictions = gather(strategy, probabilities)
                truth = gather(strategy, labels)
                now = time.time()
                rate = (step - last_log_step) * FLAGS.batch_size / max(now - last_log, 1e-9)
                last_log, last_log_step = now, step
                batch_metrics = eval_util.EvaluationMetrics()
                batch_metrics.add(predictions, truth)
                gap, hit1 = (batch_metrics.results()[k] for k in ("gap", "hit_at_one"))
                lr = float(learning_rate(step))
                epoch = (step - start_step) * FLAGS.batch_size / max(videos, 1)
                print(f"step {progress.status(step)} | epoch {epoch:.1f}/{FLAGS.num_epochs} | "
                      f"{rate:,.0f} examples/s | loss {loss:.4f} | GAP {gap:.3f} | "
                      f"hit@1 {hit1:.3f} | lr {lr:.2e}{progress.left_text(step, now)}"
                      f"{skip_note(skipped)}", flush=True)
                for name, value in (("loss", loss), ("gap", gap), ("hit_at_one", hit1),
                                    ("learning_rate", lr), ("examples_per_second", rate)):
                    tf.summary.scalar(f"train/{name}", value, step=step)
            if save_now:
                saved_step = save_checkpoint(step, saved_step)
            if validation and step % FLAGS.validation_steps == 0:
                validate(model, validation, loss_fn, step, out_dir)
            if stop.requested:
                print(f"signal {stop.requested}: saving and stopping", flush=True)
                break
        if step > start_step:
            finite(loss, step)
        elif not stop.requested and (FLAGS.max_steps is None or step < FLAGS.max_steps):
            raise readers.no_records(files)
        save_checkpoint(step, saved_step)
    if validation and step % FLAGS.validation_steps != 0 and not stop.requested:
        validate(model, validation, loss_fn, step, out_dir)
    if stop.requested:
        reason = f"stopped by signal {stop.requested}"
    elif FLAGS.max_steps is not None and step >= FLAGS.max_steps:
        reason = f"--max_steps={FLAGS.max_steps} reached"
    else:
        reason = f"--num_epochs={FLAGS.num_epochs} done"
    print(f"done at step {step} ({reason}): {train_dir}{skip_note(skipped)}", flush=True)
    if stop.requested:
        sys.exit(128 + stop.requested)


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


def validate(model, validation, loss_fn, step, out_dir):
    reader, files = validation
    results = eval_util.evaluate(model, reader, files, loss_fn, FLAGS.batch_size,
                                 num_readers=FLAGS.num_readers)
    print(f"validation at step {step}: {results['videos']} videos | GAP {results['gap']:.4f} | "
          f"hit@1 {results['hit_at_one']:.4f} | PERR {results['perr']:.4f} | "
          f"loss {results['loss']:.4f} | {results['seconds']:.0f}s", flush=True)
    for name in ("gap", "hit_at_one", "perr", "loss"):
        tf.summary.scalar(f"validation/{name}", results[name], step=step)
    with open(os.path.join(out_dir, "validation.jsonl"), "a") as log:
        log.write(json.dumps(dict(results, step=step)) + "\n")


if __name__ == "__main__":
    app.run(utils.cli_main(run))
