"""A trained model back from its train_dir: model_flags.json, the reader, a checkpoint."""

import tensorflow as tf

import model_flags as model_flags_file
import models
import readers


def make_reader(model_flags, trained=True):
    """The model's reader; frame-level frames stay quantized (our frame models dequantize the
    frames they sample, which gives the same values for a quarter of the input bytes).

    trained: the model exists already, so data of the other level is the wrong data (not a
    flag to change, as when training starts).
    """
    reader = readers.make_reader(model_flags["frame_features"], model_flags["num_classes"],
                                 model_flags["feature_names"], model_flags["feature_sizes"],
                                 model_flags["max_frames"], quantized=True)
    if trained:
        level, other = ("frame", "video") if model_flags["frame_features"] else ("video", "frame")
        reader.missing_feature_hint = (f" ({other}-level data? this model reads {level}-level "
                                       "records)")
    return reader


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
    if models.get_model_class(model_flags["model"]).frame_level != frame_level:
        raise ValueError(
            f"{model_flags['model']} is a {'video' if frame_level else 'frame'}-level model: "
            f"{'leave out' if frame_level else 'add'} --frame_features, with "
            f"{'video' if frame_level else 'frame'}-level data")
    model = models.build_model(model_flags["model"], model_flags["num_classes"],
                                    **model_flags["settings"])
    model(example_batch(reader), training=False)
    return model


def step_of(path):
    return int(path.rsplit("-", 1)[1])


def restore(model, path):
    """The model's weights from a training checkpoint (the optimizer's state is not needed)."""
    tf.train.Checkpoint(model=model).restore(path).expect_partial()


def load(train_dir, checkpoint=None):
    """(model, reader, model_flags, checkpoint path) of the latest (or given) checkpoint."""
    model_flags = model_flags_file.read(train_dir)
    checkpoint = checkpoint or tf.train.latest_checkpoint(train_dir)
    if not checkpoint:
        raise ValueError(f"no checkpoint in {train_dir}")
    reader = make_reader(model_flags)
    model = build_model(model_flags, reader)
    restore(model, checkpoint)
    return model, reader, model_flags, checkpoint
