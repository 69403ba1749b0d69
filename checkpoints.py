"""A trained model back from its train_dir: model_flags.json, the reader, a checkpoint."""

import json
import os
import re
import warnings

import tensorflow as tf

import model_flags as model_flags_file
import models
import readers
import utils

CHECKPOINT_NAME = "model.ckpt"  # train.py's checkpoints: model.ckpt-<step>.index and .data-*
BEST = "best"  # train_dir/best/: the checkpoint of the best validation (--keep_best_checkpoint)
BEST_FILE = "best.json"


def make_reader(model_flags, trained=True, segments=None):
    """The model's reader; frame-level frames stay quantized (our frame models dequantize the
    frames they sample, which gives the same values for a quarter of the input bytes).
    segments: "rated" or "all", readers.FrameReader's (segment-level records).

    trained: the model exists already, so data of the other level is the wrong data (not a
    flag to change, as when training starts).
    """
    reader = readers.make_reader(model_flags.frame_features, model_flags.num_classes,
                                 model_flags.feature_names, model_flags.feature_sizes,
                                 model_flags.max_frames, quantized=True,
                                 segments=segments)
    if trained:
        level, other = ("frame", "video") if model_flags.frame_features else ("video", "frame")
        reader.missing_feature_hint = (f" ({other}-level data? this model reads {level}-level "
                                       "records)")
    return reader


def check_scores_segments(model_flags, train_dir):
    """A ValueError unless the model of `train_dir` (its model_flags) is a frame-level one, the
    kind that scores 5-frame segments (--segment_labels)."""
    if not model_flags.frame_features:
        raise ValueError(f"--segment_labels scores 5-frame segments: {train_dir} holds a "
                         "video-level model; give a frame-level one (train.py --frame_features)")


def example_batch(reader):
    """A one-video batch of the reader's shapes, to create a model's weights."""
    if isinstance(reader, readers.FrameReader):
        features = tf.zeros((1, reader.max_frames, reader.feature_dim),
                            tf.uint8 if reader.quantized else tf.float32)
    else:
        features = tf.zeros((1, reader.feature_dim))
    return {"features": features, "num_frames": tf.ones([1], tf.int32)}


def build_model(model_flags, reader):
    """The model that model_flags describe, its weights created."""
    frame_level = isinstance(reader, readers.FrameReader)
    if models.get_model_class(model_flags.model).frame_level != frame_level:
        raise ValueError(
            f"{model_flags.model} is a {'video' if frame_level else 'frame'}-level model: "
            f"{'leave out' if frame_level else 'add'} --frame_features, with "
            f"{'video' if frame_level else 'frame'}-level data")
    model = models.build_model(model_flags.model, model_flags.num_classes,
                                    **model_flags.settings)
    with warnings.catch_warnings():  # Keras' guess at why a build fails; the error says why
        warnings.filterwarnings("ignore", message=".*looks like it has unbuilt state")
        model(example_batch(reader), training=False)
    return model


def step_of(path):
    return int(path.rsplit("-", 1)[1])


def candidates(train_dir):
    """The checkpoints of train_dir, newest first: those its `checkpoint` index lists and every
    model.ckpt-<step> whose files are there (the index lost, damaged or left behind by a copy)."""
    paths = set()
    try:
        state = tf.train.get_checkpoint_state(train_dir)
    except (tf.errors.OpError, ValueError):  # an unreadable index: the files still count
        state = None
    if state:  # its relative paths come joined to train_dir already
        paths.update([*state.all_model_checkpoint_paths, state.model_checkpoint_path])
    pattern = re.compile(re.escape(CHECKPOINT_NAME) + r"-\d+$")
    for index in tf.io.gfile.glob(os.path.join(train_dir, CHECKPOINT_NAME + "-*.index")):
        paths.add(index[:-len(".index")])
    paths = {os.path.normpath(p) if "://" not in p else p for p in paths}
    return sorted((p for p in paths if pattern.search(p)), key=step_of, reverse=True)


def saved_objects(paths):
    """The top-level objects ("model", "optimizer", "circulant_optimizer", ...) of the newest of
    `paths` that can be read; empty if none can."""
    for path in paths:
        try:
            return {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}
        except DAMAGE:
            continue
    return set()


# What reading a damaged checkpoint raises: files missing or cut short (OpError, IndexError from
# the bundle reader), a wrong or garbled index (DataLossError, ValueError).
DAMAGE = (tf.errors.OpError, IndexError, ValueError, AssertionError)


def warn_if_index_lost(train_dir, paths):
    """A one-line warning when checkpoints `paths` were found by their files alone."""
    if paths and tf.train.latest_checkpoint(train_dir) is None:
        utils.warn(f"the checkpoint index of {train_dir} (its file 'checkpoint') is missing or "
                   f"names none there: found {len(paths)} checkpoint(s) by their files")


def rebuild_index(train_dir, paths):
    """A lost `checkpoint` index written anew, listing `paths` (newest first), so that saving
    goes on rotating the old checkpoints away; an index that names a checkpoint is kept."""
    if paths and tf.train.latest_checkpoint(train_dir) is None:
        # The CheckpointState text proto that tf.train.CheckpointManager reads; it rotates
        # away only the checkpoints with a timestamp (their files' times here).
        oldest_first = list(reversed(paths))
        lines = [f'model_checkpoint_path: "{os.path.basename(paths[0])}"'] + [
            f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in oldest_first] + [
            f"all_model_checkpoint_timestamps: {tf.io.gfile.stat(p + '.index').mtime_nsec / 1e9}"
            for p in oldest_first]
        utils.atomic_write(os.path.join(train_dir, "checkpoint"), "\n".join(lines) + "\n")


def restore_newest(restore, train_dir, paths=None):
    """The path of the newest of `paths` (default: candidates(train_dir)) that restore(path)
    reads; each damaged one passed over is named in a one-line warning. ValueError when none
    restores."""
    if paths is None:
        paths = candidates(train_dir)
        warn_if_index_lost(train_dir, paths)
    if not paths:
        raise ValueError(f"no checkpoint in {train_dir}")
    for path in paths:
        try:
            restore(path)
            return path
        except DAMAGE as error:
            utils.warn(f"checkpoint {path} is damaged ({utils.first_line(error)[:160]}): "
                       + ("trying the one before it" if path != paths[-1] else "none left"))
    raise ValueError(f"none of the {len(paths)} checkpoint(s) in {train_dir} restores (each "
                     "named above): train again with --start_new_model, or restore the folder "
                     "from a copy")


def move_aside(paths, train_dir):
    """Checkpoints (their .index and .data-* files) into train_dir/damaged/: a damaged one newer
    than the checkpoint a run resumed from would otherwise come first again after a crash."""
    if not paths:
        return
    folder = os.path.join(train_dir, "damaged")
    tf.io.gfile.makedirs(folder)
    for path in paths:
        for name in tf.io.gfile.glob(path + ".*"):
            tf.io.gfile.rename(name, os.path.join(folder, os.path.basename(name)), overwrite=True)
    print(f"moved {len(paths)} damaged checkpoint(s) to {folder}", flush=True)


AVERAGED = "averaged_model"  # the checkpoint's moving average of the weights (--ema_decay)


def restore(model, path, averaged=True):
    """The model's weights from a training checkpoint (the optimizer's state is not needed):
    the moving average of the weights where the run kept one and `averaged`. Returns which
    ("averaged_model" or "model")."""
    key = AVERAGED if averaged and AVERAGED in saved_objects([path]) else "model"
    tf.train.Checkpoint(**{key: model}).restore(path).expect_partial()
    return key


class BestCheckpoint:
    """train_dir/best/: the checkpoint of the best validation GAP so far (the model, and its
    average where the run keeps one) and best.json naming it with its step and GAP. A new best
    is written whole before best.json points to it and the old one goes: a crash leaves one."""

    def __init__(self, folder, objects):
        self.folder = folder
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.best = read_best(folder) or {"gap": float("-inf"), "checkpoint": None}

    def offer(self, gap, step):
        """Keep the weights as they are now if `gap` beats the best so far; True if so."""
        if not gap > self.best["gap"]:
            return False
        name = f"{CHECKPOINT_NAME}-{step}"
        self.checkpoint.write(os.path.join(self.folder, name))
        old, self.best = self.best["checkpoint"], {"checkpoint": name, "step": step,
                                                    "gap": float(gap)}
        utils.atomic_write(os.path.join(self.folder, BEST_FILE), json.dumps(self.best))
        if old and old != name:
            for path in tf.io.gfile.glob(os.path.join(self.folder, old) + ".*"):
                tf.io.gfile.remove(path)
        return True


def read_best(folder):
    """best.json of a best/ folder ({checkpoint, step, gap}), or None."""
    path = os.path.join(folder, BEST_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def best_checkpoint(train_dir):
    """The path of train_dir's best-validation checkpoint; ValueError when it kept none."""
    folder = os.path.join(train_dir, BEST)
    best = read_best(folder)
    if best is None:
        raise ValueError(f"{train_dir} has no best checkpoint ({folder}/{BEST_FILE}): train "
                         "with --keep_best_checkpoint, or give a checkpoint path")
    return os.path.join(folder, best["checkpoint"])


def load(train_dir, checkpoint=None):
    """(model, reader, model_flags, checkpoint path) of the given checkpoint ("best": the best
    validation's, --keep_best_checkpoint) or else the newest that restores."""
    model_flags = model_flags_file.read(train_dir)
    if checkpoint == BEST:
        checkpoint = best_checkpoint(train_dir)
    reader = make_reader(model_flags)
    model = build_model(model_flags, reader)
    checkpoint = restore_newest(lambda path: restore(model, path), train_dir,
                                [checkpoint] if checkpoint else None)
    return model, reader, model_flags, checkpoint
