"""Write YouTube-8M TFRecords, byte-compatible with the real release, for demos and tests.

Two sources:

* synthetic videos whose labels depend on the features through a hidden, seeded structure:
  class frequencies long-tailed like YouTube-8M's, labels grouped into topics (so they co-occur),
  each class seen through one of two prototype directions, a few labels flipped (noise). In
  frame-level videos a label shows only in a contiguous stretch of frames, so pooling that finds
  it (max, VLAD) does better than a plain mean;
* real video-level records expanded into frame-level ones (`--from_video_pattern`): frames spread
  around each video's real `mean_rgb`/`mean_audio`, its id and labels kept.

    python generate_data.py --output_dir=/tmp/yt8m --split=train --num_videos=2000 --frame_level
    python generate_data.py --output_dir=/tmp/yt8m --split=validate --num_videos=500 --frame_level
    python generate_data.py --output_dir=/tmp/yt8m-real-frames --max_frames=60 \\
        --from_video_pattern='../shared/data/yt8m-2018-video/train/*.tfrecord'

Each frame is 1,152 bytes: expanding the 23,091 real training videos at the default
--max_frames=300 (165 frames a video on average) writes about 4.4 GB, at 60 about 1.2 GB.

The hidden structure depends on --seed only, so splits written with the same seed share it.
"""

import itertools
import os
import zlib

import numpy as np

from utils import quiet_tensorflow, run_cli

quiet_tensorflow()
import tensorflow as tf

import quantization
import readers
import segments

RGB_SIZE, AUDIO_SIZE = 1024, 128
_ID_CHARS = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


# -- encoding -----------------------------------------------------------------------------------

def _context(video_id, labels, id_key):
    features = {id_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id]))}
    if labels is not None:
        features["labels"] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(x) for x in labels]))
    return features


def video_record(video_id, labels, mean_rgb, mean_audio, id_key="id"):
    """A video-level record as the 2018 release writes it (its empty field 2 included)."""
    features = _context(video_id, labels, id_key)
    features["mean_rgb"] = tf.train.Feature(float_list=tf.train.FloatList(value=mean_rgb))
    features["mean_audio"] = tf.train.Feature(float_list=tf.train.FloatList(value=mean_audio))
    example = tf.train.SequenceExample(context=tf.train.Features(feature=features))
    example.feature_lists.SetInParent()
    return example.SerializeToString()


def frame_record(video_id, labels, rgb, audio, id_key="id", segments=None):
    """A frame-level SequenceExample: rgb [T, 1024] and audio [T, 128] uint8 frames; segments
    [(class, start, score)]: the ratings of a segment-rated record (2019), in place of labels."""
    context = _context(video_id, labels, id_key)
    if segments is not None:
        columns = list(zip(*segments)) or [(), (), ()]
        context["segment_labels"] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(c) for c in columns[0]]))
        context["segment_start_times"] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(t) for t in columns[1]]))
        context["segment_scores"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[float(v) for v in columns[2]]))
    example = tf.train.SequenceExample(context=tf.train.Features(feature=context))
    for name, frames in (("rgb", rgb), ("audio", audio)):
        feature_list = example.feature_lists.feature_list[name]
        for frame in frames:
            feature_list.feature.add().bytes_list.value.append(frame.tobytes())
    return example.SerializeToString()


def write_shards(records, output_dir, split, num_shards):
    """Write serialized records round-robin into `<split>NNNN.tfrecord` files; returns paths.

    Each shard is written under a temporary name and renamed when complete.
    """
    tf.io.gfile.makedirs(output_dir)
    paths = [os.path.join(output_dir, f"{split}{i:04d}.tfrecord") for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p + ".tmp") for p in paths]
    try:
        for i, record in enumerate(records):
            writers[i % num_shards].write(record)
    finally:
        for writer in writers:
            writer.close()
    for path in paths:
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return paths


# -- the hidden structure ------------------------------------------------------------------------

class HiddenStructure:
    """Seeded class frequencies, topics and prototypes shared by every split of one seed."""

    def __init__(self, num_classes, seed, latent_dim=64, num_topics=None):
        rng = np.random.default_rng([seed, 0])
        self.num_classes = num_classes
        ranks = np.arange(num_classes)
        self.class_prob = (ranks + 2.0) ** -1.1  # long tail: a few classes in many videos
        self.class_prob /= self.class_prob.sum()
        self.num_topics = num_topics or max(1, num_classes // 25)
        self.topic_of = rng.integers(0, self.num_topics, num_classes)
        self.topic_of[: self.num_topics] = np.arange(self.num_topics)  # no empty topic
        topic_mass = np.bincount(self.topic_of, self.class_prob, self.num_topics)
        self.topic_prob = topic_mass / topic_mass.sum()
        # Features live near a low-dimensional subspace, as PCA'd YouTube-8M features do.
        dim = RGB_SIZE + AUDIO_SIZE
        basis = rng.normal(size=(latent_dim, dim)) / np.sqrt(latent_dim)
        # Scaled so that features spread about as real ones do (standard deviation near 0.5).
        self.prototypes = rng.normal(size=(num_classes, 2, latent_dim)) @ basis * 0.3  # (C, 2, D)
        self.prototypes[..., RGB_SIZE:] *= 0.7  # audio carries weaker evidence
        self.topic_background = rng.normal(size=(self.num_topics, latent_dim)) @ basis * 0.2

    def sample_labels(self, rng):
        topic = rng.choice(self.num_topics, p=self.topic_prob)
        count = min(1 + rng.poisson(1.8), 19, self.num_classes)
        in_topic = np.flatnonzero(self.topic_of == topic)
        labels = set()
        while len(labels) < count:
            pool = in_topic if rng.random() < 0.8 and len(labels) < len(in_topic) else None
            if pool is None:
                labels.add(int(rng.choice(self.num_classes, p=self.class_prob)))
            else:
                weights = self.class_prob[pool] / self.class_prob[pool].sum()
                labels.add(int(rng.choice(pool, p=weights)))
        return topic, sorted(labels)

    def signals(self, rng, labels):
        """One (D,) evidence vector per label: a prototype mode at a random strength."""
        modes = rng.integers(0, 2, len(labels))
        strength = rng.uniform(0.6, 1.4, size=(len(labels), 1))
        return self.prototypes[labels, modes] * strength

    def noisy(self, rng, labels):
        """Observed labels: each flipped to a random class with a small probability."""
        flipped = [int(rng.integers(self.num_classes)) if rng.random() < 0.05 else c
                   for c in labels]
        return sorted(set(flipped))


def _random_id(rng, length):
    return "".join(rng.choice(_ID_CHARS, length)).encode()


def rate_segments(rng, stretches, rated_classes, frames, size=readers.SEGMENT_FRAMES):
    """[(class, start, score)]: for each label of `stretches` ({class: (first, end)}) among
    `rated_classes`, up to 3 segments (starts at multiples of `size`) mostly inside its stretch
    rated 1 and up to 2 outside it rated 0, as raters of the 2019 release rated them."""
    ratings = []
    starts = np.arange(0, frames, size)
    for label, (first, end) in sorted(stretches.items()):
        if label not in rated_classes:
            continue
        inside = np.minimum(starts + size, end) - np.maximum(starts, first)  # frames inside
        shown = starts[(inside >= 3) & (starts + size <= frames)]
        hidden = starts[inside <= 0]
        for pool, count, score in ((shown, 3, 1.0), (hidden, 2, 0.0)):
            for start in rng.permutation(pool)[:count]:
                ratings.append((label, int(start), score))
    return ratings


def synthetic_records(structure, num_videos, seed, split, frame_level, id_key="id",
                      labelled=True, min_frames=30, max_frames=300, rated_classes=None):
    """Serialized records of synthetic videos; deterministic in (seed, split). rated_classes
    (frame level): segment-rated records of these classes (rate_segments) in place of the
    video's labels; with labelled False, records without ratings (a segment test split)."""
    rng = np.random.default_rng([seed, 1, zlib.crc32(split.encode())])
    id_length = 4 if id_key == "id" else 11
    for index in range(num_videos):
        video_id = _random_id(rng, id_length) + str(index).encode()  # distinct by construction
        topic, labels = structure.sample_labels(rng)
        signals = structure.signals(rng, labels)  # (L, D)
        background = structure.topic_background[topic]
        observed = structure.noisy(rng, labels) if labelled else None
        if not frame_level:
            features = background + signals.sum(0) + rng.normal(0, 0.15, background.shape)
            features = np.clip(features, -2, 2).astype(np.float32)
            yield video_record(video_id, observed, features[:RGB_SIZE], features[RGB_SIZE:],
                               id_key)
            continue
        length = int(rng.integers(min_frames, max_frames + 1))
        frames = background + rng.normal(0, 0.35, (length, background.size))
        stretches = {}
        for label, signal in zip(labels, signals):  # each label shows in one stretch of 20%
            span = max(1, int(length * rng.uniform(0.2, 0.5)))  # to 50% of the frames
            start = int(rng.integers(0, length - span + 1))
            frames[start:start + span] += 2.0 * signal
            stretches[label] = (start, start + span)
        quantized = quantization.quantize(frames)
        segments = None
        if rated_classes is not None:
            segments = rate_segments(rng, stretches, rated_classes, length) if labelled else None
            observed = None
        yield frame_record(video_id, observed, quantized[:, :RGB_SIZE], quantized[:, RGB_SIZE:],
                           id_key, segments)


def expanded_records(files, seed, min_frames=30, max_frames=300, spread=0.5):
    """Frame-level records made from real video-level ones: same ids and labels.

    Each video's frames are its real mean features plus zero-mean noise (so the frames average
    back to the real means, up to quantization and clipping).
    """
    for path in files:
        for serialized in _records_of(path):
            example = tf.train.SequenceExample.FromString(serialized.numpy())
            context = example.context.feature
            id_key = "id" if "id" in context else "video_id"
            video_id = context[id_key].bytes_list.value[0]
            labels = list(context["labels"].int64_list.value) if "labels" in context else None
            rgb = np.asarray(context["mean_rgb"].float_list.value, np.float32)
            audio = np.asarray(context["mean_audio"].float_list.value, np.float32)
            if rgb.size != RGB_SIZE or audio.size != AUDIO_SIZE:
                raise readers.DataError(f"{path}: a record is not a video-level YouTube-8M record")
            rng = np.random.default_rng([seed, zlib.crc32(video_id)])
            length = int(rng.integers(min_frames, max_frames + 1))
            means = np.concatenate([rgb, audio])
            # Less spread near the ends of [-2, 2], so that clipping rarely moves the mean.
            scale = np.minimum(spread, np.maximum(2.0 - np.abs(means), 0.0) / 3.0)
            noise = rng.normal(0, 1, (length, means.size)) * scale
            noise -= noise.mean(axis=0)
            # Dequantizing adds half a step (4/512) to the quantizer's grid: shift it back so
            # that the frames average to the real means.
            quantized = quantization.quantize(means + noise - 4.0 / 512.0)
            yield frame_record(video_id, labels, quantized[:, :RGB_SIZE],
                               quantized[:, RGB_SIZE:], id_key)


def _records_of(path):
    """The serialized records of one file; a damaged file is a DataError naming it."""
    try:
        yield from tf.data.TFRecordDataset(path)
    except tf.errors.OpError as err:
        raise readers.DataError(f"{path}: {err.message.strip().splitlines()[0]}") from None


# -- command line -------------------------------------------------------------------------------

def main(argv):
    del argv
    run_cli(generate)


def generate():
    from absl import flags
    f = flags.FLAGS
    if f.min_frames < 1 or f.max_frames < f.min_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {f.min_frames} and "
                         f"{f.max_frames}")
    if f.num_shards < 1:
        raise ValueError("num_shards must be at least 1")
    if f.from_video_pattern:
        files = readers.resolve_files(f.from_video_pattern)
        records = expanded_records(files, f.seed, f.min_frames, f.max_frames)
        kind = f"frame-level records expanded from {len(files)} real video-level files"
        if f["num_videos"].present:  # the first videos of the files, in order
            if f.num_videos < 1:
                raise ValueError("num_videos must be at least 1")
            records = itertools.islice(records, f.num_videos)
    else:
        if f.num_videos < 1 or f.num_classes < 2:
            raise ValueError("num_videos must be at least 1 and num_classes at least 2")
        structure = HiddenStructure(f.num_classes, f.seed)
        rated = None
        if f.segment_rated:
            if not f.frame_level:
                raise ValueError("--segment_rated writes frame-level records: add --frame_level")
            rated = {c for c in segments.read_label_ids(f.segment_label_ids_file)
                     if c < f.num_classes}
            if not rated:
                raise ValueError(f"no class of --segment_label_ids_file is below "
                                 f"--num_classes={f.num_classes}: nothing to rate")
        records = synthetic_records(structure, f.num_videos, f.seed, f.split, f.frame_level,
                                    f.id_key, not f.no_labels, f.min_frames, f.max_frames, rated)
        level = "frame" if f.frame_level else "video"
        kind = f"{f.num_videos} synthetic {level}-level videos, {f.num_classes} classes"
        if rated is not None:
            kind += (", segment-rated (" + f"{len(rated)} rated classes)" if not f.no_labels
                     else ", segment test split (no ratings)")
    count = 0

    def counted(records):
        nonlocal count
        for record in records:
            count += 1
            if count % 1000 == 0:
                print(f"  {count:,} videos written", flush=True)
            yield record

    paths = write_shards(counted(records), f.output_dir, f.split, f.num_shards)
    print(f"wrote {count:,} videos ({kind}) to {len(paths)} files: "
          f"{os.path.join(f.output_dir, f.split)}*.tfrecord")


def define_flags():
    from absl import flags
    flags.DEFINE_string("output_dir", None, "Folder for the TFRecord files.", required=True)
    flags.DEFINE_string("split", "train", "File name prefix; also seeds the videos of this split.")
    flags.DEFINE_integer("num_videos", 1000, "Synthetic videos to write (with "
                         "--from_video_pattern: the first this many real videos; all when left "
                         "out).")
    flags.DEFINE_integer("num_shards", 4, "Files to spread the videos over.")
    flags.DEFINE_integer("num_classes", readers.NUM_CLASSES, "Classes of the synthetic labels.")
    flags.DEFINE_integer("seed", 0, "Seeds the hidden structure (shared by all splits).")
    flags.DEFINE_bool("frame_level", False, "Write frame-level SequenceExamples.")
    flags.DEFINE_enum("id_key", "id", ["id", "video_id"], "id (2018 on) or video_id (2017).")
    flags.DEFINE_bool("no_labels", False, "Leave out labels, as in a test split.")
    flags.DEFINE_integer("min_frames", 30, "Fewest frames of a frame-level video.")
    flags.DEFINE_integer("max_frames", 300, "Most frames of a frame-level video.")
    flags.DEFINE_bool("segment_rated", False, "Segment-rated frame-level records (the 2019 "
                      "validate set's format): each video's rated 5-frame segments, positive "
                      "inside the frames where a label shows, negative outside; with "
                      "--no_labels, records without ratings (its test set).")
    flags.DEFINE_string("segment_label_ids_file", segments.LABEL_IDS_FILE, "The classes that "
                        "are rated (those below --num_classes).")
    flags.DEFINE_string("from_video_pattern", "",
                        "Expand these real video-level files into frame-level ones instead.")


if __name__ == "__main__":
    from absl import app
    define_flags()
    app.run(main)
