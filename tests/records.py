"""Hand-built YouTube-8M records for tests, written with the protobuf classes directly."""

import numpy as np
import tensorflow as tf


def _bytes(*values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def video_example(video_id, labels=None, rgb=None, audio=None, id_key="id", extra=None):
    feature = {id_key: _bytes(video_id)}
    if labels is not None:
        feature["labels"] = _ints(labels)
    if rgb is not None:
        feature["mean_rgb"] = _floats(rgb)
    if audio is not None:
        feature["mean_audio"] = _floats(audio)
    feature.update(extra or {})
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def frame_example(video_id, labels, rgb_frames, audio_frames, id_key="id", segments=None):
    """rgb_frames / audio_frames: lists of uint8 arrays (or raw bytes), one per frame;
    segments: (classes, start times, scores) of a segment-rated record."""
    context = {id_key: _bytes(video_id)}
    if labels is not None:
        context["labels"] = _ints(labels)
    if segments is not None:
        classes, starts, scores = segments
        context.update(segment_labels=_ints(classes), segment_start_times=_ints(starts),
                       segment_scores=_floats(scores))
    lists = {}
    for name, frames in (("rgb", rgb_frames), ("audio", audio_frames)):
        lists[name] = tf.train.FeatureList(feature=[
            _bytes(f if isinstance(f, bytes) else np.asarray(f, np.uint8).tobytes())
            for f in frames])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=lists)).SerializeToString()


def write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)
