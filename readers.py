"""Readers for YouTube-8M TFRecords: video-level `Example`s and frame-level `SequenceExample`s.

Both readers turn comma-separated file globs into `tf.data` batches, each a dict:

    id          [B] string   the video id (`id` from 2018 on, `video_id` in 2017)
    features    [B, F] or [B, max_frames, F] float32, the configured features concatenated
                (uint8 as stored, padding 0, from FrameReader(quantized=True))
    num_frames  [B] int32    real frames (capped at max_frames); 1 for video-level records
    labels      [B, C] float32 multi-hot
    num_labels  [B] int32    0 for every video of an unlabelled (test) split

FrameReader(segments="rated") reads segment-rated records (the 2019 release) as one example per
rated 5-frame segment, and FrameReader(segments="all") cuts every video into 5-frame segments
(starts 0, 5, 10, ...; the last one shorter) for inference; their batches hold

    id            [S] string  the segment's video id
    start         [S] int32   its first frame (segment name: "<id>:<start>")
    features      [S, 5, F]   its frames (zero beyond the video's end)
    num_frames    [S] int32   its real frames, 1 to 5
    labels        [S, C]      1 where a rated class is positive
    label_weights [S, C]      1 where the class is rated for the segment (0 in "all")

Records are parsed a whole batch at a time. The fast pipeline does not carry file names; when it
fails, `reraise_data_errors` re-reads the files one at a time to name the bad file and record.
"""

import contextlib
import functools
import os
import struct

import tensorflow as tf

import data_errors
import quantization
from data_errors import DataError

NUM_CLASSES = 3862  # 2018 release onwards; the 2017 release has 4,716
MAX_FRAMES = 300

_SENTINEL_ID = "\x00end of stream"


def split_feature_spec(feature_names, feature_sizes):
    """Comma-separated (or list) feature names and sizes -> (list of names, list of ints)."""
    names = _as_list(feature_names)
    try:
        sizes = [int(s) for s in _as_list(feature_sizes)]
    except ValueError as err:
        raise DataError(f"feature_sizes must be integers: {feature_sizes!r}") from err
    if not names or len(names) != len(sizes):
        raise DataError(f"feature_names {names} and feature_sizes {sizes} must be non-empty "
                        "and of equal length")
    if any(s <= 0 for s in sizes):
        raise DataError(f"feature_sizes must be positive: {sizes}")
    return names, sizes


def _as_list(value):
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


SEGMENT_FRAMES = 5  # a rated segment: this many frames (seconds) from its start time
_VIDEOS_PER_SEGMENT_PARSE = 16  # videos parsed at once before they are cut into segments
_SEGMENT_KEY = 2 ** 32  # (video row, start) -> one int64


def model_inputs(batch, labels=False):
    """The tensors of a batch that models read (and its labels, for segments their weights, and
    which videos have labels), without the string ids, which XLA cannot take."""
    keys = ("features", "num_frames", "labels") if labels else ("features", "num_frames")
    if labels:
        keys += tuple(k for k in ("label_weights", "labelled") if k in batch)
    return {k: batch[k] for k in keys}


def fold_of(ids, folds):
    """[B] int32: the fold (0 ... folds - 1) of each video id, a hash of the id: the same on
    every machine and in every run (train.py --holdout_fold, --teacher_folds)."""
    return tf.cast(tf.strings.to_hash_bucket_fast(ids, folds), tf.int32)


def resolve_files(pattern):
    """Comma-separated globs (local or `gs://`) -> sorted list of files; every glob must match."""
    files = []
    for glob in _as_list(pattern):
        matched = tf.io.gfile.glob(glob)
        if not matched:
            raise DataError(f"no file matches {glob!r}")
        for path in matched:
            _check_readable(path, glob)
        files.extend(matched)
    if not files:
        raise DataError("empty data pattern")
    return sorted(set(files))


def _check_readable(path, glob):
    if tf.io.gfile.isdir(path):
        if glob.rstrip("/") == path.rstrip("/"):
            raise DataError(f"{path} is a folder: add /*.tfrecord to the pattern "
                            f"({os.path.join(path, '*.tfrecord')!r})")
        raise DataError(f"{glob!r} matches the folder {path}: make it match files only "
                        "(end it in *.tfrecord)")
    if "://" not in path and not os.access(path, os.R_OK):
        raise DataError(f"{path} cannot be read (permission denied)")


RELEASES = {"video_id": ("2017", 4716), "id": ("2018", NUM_CLASSES)}  # id key -> release


def check_release(files, num_classes):
    """Refuse records of one YouTube-8M release for a model of the other release's classes.

    The releases number their classes differently (2017: 4,716, keyed `video_id`; 2018 on:
    3,862, keyed `id`), so predictions would name other labels. Other class counts (generated
    data) are not checked.
    """
    known = {classes: year for year, classes in RELEASES.values()}
    if num_classes not in known or not files:
        return
    key = id_key(files[0])
    if key in RELEASES and RELEASES[key][1] != num_classes:
        year, classes = RELEASES[key]
        raise DataError(
            f"{files[0]} is the {year} release (records keyed '{key}', {classes:,} classes) but "
            f"the model has the {known[num_classes]} release's {num_classes:,} classes: its "
            f"class indexes would name other labels; use a model trained with "
            f"--num_classes={classes} on {year} data")


def id_key(path):
    """'id' or 'video_id': the key of the first record's video id (None if neither, or if the
    file cannot be read: the reader names the bad file and record later)."""
    try:
        for record in tf.data.TFRecordDataset(path).take(1):
            context = tf.train.SequenceExample.FromString(record.numpy()).context.feature
            return next((key for key in RELEASES if key in context), None)
    except Exception:  # noqa: BLE001 - a damaged file (tf.errors) or record (protobuf errors)
        return None
    return None


def serialized_batches(files, batch_size, num_readers=8):
    """Batches of the records of `files` as stored (serialized), every record once, in a fixed
    order: the input of an exported model's signature."""
    return tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        tf.data.TFRecordDataset, cycle_length=max(1, num_readers), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size).prefetch(
        tf.data.AUTOTUNE)


def count_records(path):
    """The records of one TFRecord file, read from their length fields alone."""
    count = position = 0
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        while position + 16 <= size:
            f.seek(position)
            (length,) = struct.unpack("<Q", f.read(8))
            position += 16 + length  # length, its CRC, the record, its CRC
            count += 1
    return count


def estimate_records(files, sample=64):
    """(records in `files`, exact?): all files counted, or `sample` of them spread over the list
    and scaled by size."""
    files = list(files)
    if len(files) <= sample:
        return sum(count_records(path) for path in files), True
    chosen = files[::max(1, len(files) // sample)][:sample]
    counted = sum(count_records(path) for path in chosen)
    size = sum(tf.io.gfile.stat(path).length for path in chosen)
    total = sum(tf.io.gfile.stat(path).length for path in files)
    return round(counted * total / max(size, 1)), False


def no_records(files):
    """The DataError for input files that hold no record at all."""
    return DataError(f"no records in {named(files)}")


def named(files):
    """'a.tfrecord' or 'a.tfrecord and 3 more'."""
    files = [files] if isinstance(files, str) else list(files)
    return files[0] + (f" and {len(files) - 1} more" if len(files) > 1 else "")


def _has_records(files):
    try:
        return any(True for _ in tf.data.TFRecordDataset(list(files)).take(1))
    except tf.errors.OpError:  # a damaged file: the reader has named it already
        return False


def video_ids(context):
    """[B] the video ids of parsed record contexts: `id`, or `video_id` in 2017 files."""
    return tf.where(tf.strings.length(context["id"]) > 0, context["id"], context["video_id"])


def ids_and_labels(serialized):
    """(ids [B], labels: a [B, None] SparseTensor of class ids) of [B] serialized records of
    either level, nothing else parsed."""
    context = tf.io.parse_example(serialized, _Reader._context_spec())
    return video_ids(context), context["labels"]


class SkipCounts:
    """What a tolerant dataset (`dataset(..., skipped=SkipCounts())`) has dropped so far."""

    def __init__(self):
        self.records = tf.Variable(0, dtype=tf.int64, trainable=False)  # each time read
        # the files found damaged, each counted once however many epochs read it
        self.damaged = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, 0)

    @property
    def damaged_files(self):
        return self.damaged.size()

    def __str__(self):
        return (f"{int(self.records.numpy()):,} bad records and the damaged ends of "
                f"{int(self.damaged_files.numpy()):,} files skipped")


class Transform:
    """A step the caller adds to the reading of `_Reader.dataset` (readers parse; training
    composes: train.py's folds, unlabelled videos and records kept for a teacher are these).
    Every hook is optional; the defaults change nothing."""

    more_files = ()  # files read among dataset()'s; a record is then marked 1.0 (of those) or
    # 0.0 (of these), and the mark reaches `batch`

    def records(self, records, reader):
        """The stream of records (or of (record, mark)) as read, before shuffling."""
        return records

    def batch(self, batch, serialized, mark):
        """A parsed batch, given its [B] serialized records and their [B] marks (None without
        more_files): the batch to yield."""
        return batch


class _Reader:
    """Shared pipeline: files -> records -> shuffle/repeat -> batch -> parse -> prefetch."""

    def __init__(self, num_classes, feature_names, feature_sizes):
        self.num_classes = int(num_classes)
        self.feature_names, self.feature_sizes = split_feature_spec(feature_names, feature_sizes)
        self.feature_dim = sum(self.feature_sizes)
        self.segments = None  # FrameReader's: segment-rated records, "rated" or "all"
        # False where only predictions are made (inference, serving): a label outside the
        # classes is then no error, and is left out of `labels`
        self.labels_used = True
        self.label_hint = "; 2017 data? its 4,716 classes need --num_classes=4716" \
            if self.num_classes == NUM_CLASSES else ""

    def dataset(self, files, batch_size, num_epochs=1, shuffle=False, num_readers=8, seed=None,
                shuffle_buffer=None, drop_remainder=False, skipped=None,
                parallel_calls=tf.data.AUTOTUNE, transforms=()):
        """Batches from `files` (a pattern or a list of paths).

        Evaluation (shuffle=False) reads every record exactly once per epoch in a fixed order and
        keeps the final partial batch. num_epochs=None repeats forever.

        With `skipped` (a `SkipCounts`), bad records are dropped instead of stopping the
        pipeline, and counted there; a damaged file (bad length or CRC, cut short) is read up to
        the damage, which is counted once per file per epoch. Records are then parsed one at a
        time, which is slower. parallel_calls: files read and batches parsed at once (default:
        tf.data's tuning). transforms: what the caller adds to the reading (`Transform`s, in
        order: training's folds, unlabelled videos, records kept for a teacher).
        """
        def parse(serialized, mark=None):
            batch = self.parse(serialized)
            for transform in transforms:
                batch = transform.batch(batch, serialized, mark)
            return batch

        if isinstance(files, str):
            files = resolve_files(files)
        more = [path for transform in transforms for path in transform.more_files]
        paths = list(files) + more
        columns = [paths]  # of file_ds: path (, size) (, mark)
        read_file = tf.data.TFRecordDataset
        if skipped is not None:
            columns.append([tf.io.gfile.stat(path).length for path in paths])
            read_file = functools.partial(_tolerant_records, damaged=skipped.damaged)
        if more:  # a record becomes (record, mark)
            columns.append([1.0] * len(files) + [0.0] * len(more))
            read_file = functools.partial(_marked_records, read_file)
        file_ds = tf.data.Dataset.from_tensor_slices(tuple(columns) if len(columns) > 1
                                                     else paths)
        if shuffle:
            file_ds = file_ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        records = file_ds.repeat(num_epochs).interleave(
            read_file, cycle_length=max(1, num_readers), block_length=1,
            num_parallel_calls=parallel_calls, deterministic=True)
        for transform in transforms:
            records = transform.records(records, self)
        if shuffle:
            buffer = shuffle_buffer or max(10 * batch_size, 1024)
            records = records.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        if skipped is not None:
            batches = self._parse_tolerantly(records, skipped.records, parse,
                                             paired=bool(more)).batch(
                batch_size, drop_remainder=drop_remainder)
        elif self.segments:  # a few videos at a time, then their segments into batches
            batches = records.batch(_VIDEOS_PER_SEGMENT_PARSE).map(
                parse, num_parallel_calls=parallel_calls, deterministic=True).unbatch()
            if shuffle:
                batches = batches.shuffle(max(4 * batch_size, 1024), seed=seed,
                                          reshuffle_each_iteration=True)
            batches = batches.batch(batch_size, drop_remainder=drop_remainder)
        else:
            batches = records.batch(batch_size, drop_remainder=drop_remainder)
            batches = batches.map(parse, num_parallel_calls=parallel_calls, deterministic=True)
        return batches.prefetch(tf.data.AUTOTUNE)

    def estimate_examples(self, files, sample=256):
        """(examples a pass over `files` yields, exact?): the records (estimate_records); for
        segments, the records times the mean segments of the first `sample` records."""
        records, exact = estimate_records(files)
        if not self.segments or not records:
            return records, exact
        with self.reraise_data_errors(files):
            first = next(iter(tf.data.TFRecordDataset(list(files)).take(sample).batch(sample)))
            found = int(tf.size(self.parse(first)["start"]))
        read = int(tf.size(first))
        return round(records * found / read), exact and read == records

    def _parse_tolerantly(self, records, skipped, parse, paired=False):
        """Records (paired: (record, mark) pairs) -> parsed examples, dropping those that
        fail; `skipped` counts them.

        Records are numbered before parsing, so the gap between a survivor's number and the
        count of survivors is the number dropped; a valid sentinel record closes the stream so
        that failures after the last good record are counted too.
        """
        sentinel = self.sentinel_record()
        if paired:
            sentinel = (sentinel, tf.constant(1.0))
        records = records.concatenate(tf.data.Dataset.from_tensors(sentinel))
        parsed = records.enumerate().map(
            lambda index, element: (index, parse(*[t[None] for t in tf.nest.flatten(element)])),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()

        def count(kept, item):
            index, example = item
            skipped.assign(index - kept)
            return kept + 1, example

        parsed = parsed.scan(tf.constant(0, tf.int64), count)
        # (a record of no rated segment parses to no example: kept, it unbatches to nothing)
        parsed = parsed.filter(lambda example: tf.reduce_all(example["id"] != _SENTINEL_ID))
        return parsed.unbatch()

    def sentinel_record(self):
        """A serialized record that parses, marked with an id no real video has."""
        raise NotImplementedError

    def no_examples(self, files):
        """The DataError for `files` that gave no example: no record at all, or records
        without rated segments where they are read (--segment_labels)."""
        if self.segments == "rated" and _has_records(files):
            return DataError(
                f"{named(files)} hold no rated segments (no segment_labels, "
                "segment_start_times and segment_scores): --segment_labels reads the "
                "segment-rated records of the 2019 release; leave it out to use whole videos")
        return no_records(files)

    def record_id(self, record):
        """The video id of one serialized record ('id', or 'video_id' in 2017 files)."""
        spec = {k: v for k, v in self._context_spec().items() if k != "labels"}
        return video_ids(self._parse_context(record, spec))

    @staticmethod
    def _parse_context(record, spec):
        raise NotImplementedError

    def find_bad_record(self, files, batch_size=1024):
        """Re-read `files` one at a time with named records; the first problem as a DataError.

        The fast pipeline does not carry file names; this slow pass runs only after it failed.
        """
        for path in files:
            batches = _named_records(path).batch(batch_size).map(lambda n, s: self.parse(s, n))
            try:
                for _ in batches:
                    pass
            except (tf.errors.OpError, UnicodeDecodeError) as err:
                return data_errors.describe_named_error(err, path, self.missing_feature_hint,
                                                        self.label_hint)
        return None

    @contextlib.contextmanager
    def reraise_data_errors(self, files):
        """Inside this block, input failures of our datasets over `files` become a DataError."""
        try:
            yield
        except (tf.errors.OpError, UnicodeDecodeError) as err:
            if not data_errors.is_input_error(err):
                raise
            raise (self.find_bad_record(files) or DataError(
                data_errors.first_line(data_errors.error_message(err)))) from None

    def parse(self, serialized, names=None):
        """A [B] string tensor of serialized records -> the batch dict."""
        raise NotImplementedError

    # -- pieces both formats share ------------------------------------------------------------

    @staticmethod
    def _context_spec():
        return {
            "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "labels": tf.io.VarLenFeature(tf.int64),
        }

    def _ids_and_labels(self, context, names):
        ids = video_ids(context)
        data_errors.assert_all(tf.strings.length(ids) > 0, names,
                               "record has neither 'id' nor 'video_id'")
        labels = context["labels"]
        rows, values = labels.indices[:, 0], labels.values
        in_range = (values >= 0) & (values < self.num_classes)
        if self.labels_used:
            data_errors.assert_all(in_range, tf.gather(names, rows),
                                   f"label id outside [0, {self.num_classes})", values)
        batch = tf.shape(ids, out_type=tf.int64)[0]
        values = tf.where(in_range, values, 0)  # keep the scatter valid; the assert reports it
        multi_hot = tf.scatter_nd(tf.stack([rows, values], axis=1),
                                  tf.cast(in_range, tf.float32),
                                  tf.stack([batch, self.num_classes]))
        multi_hot = tf.minimum(multi_hot, 1.0)  # a label listed twice is still one label
        num_labels = tf.cast(tf.reduce_sum(multi_hot, axis=1), tf.int32)
        return ids, multi_hot, num_labels


class VideoReader(_Reader):
    """Video-level `tf.train.Example` records (`mean_rgb` [1024], `mean_audio` [128], ...)."""

    missing_feature_hint = " (frame-level data? then add --frame_features)"

    def __init__(self, num_classes=NUM_CLASSES, feature_names="mean_rgb,mean_audio",
                 feature_sizes="1024,128"):
        super().__init__(num_classes, feature_names, feature_sizes)

    @staticmethod
    def _parse_context(record, spec):
        return tf.io.parse_single_example(record, spec)

    def sentinel_record(self):
        features = {"id": _bytes_feature([_SENTINEL_ID.encode()])}
        for name, size in zip(self.feature_names, self.feature_sizes):
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[0.0] * size))
        return tf.train.Example(
            features=tf.train.Features(feature=features)).SerializeToString()

    def parse(self, serialized, names=None):
        spec = self._context_spec()
        for name, size in zip(self.feature_names, self.feature_sizes):
            spec[name] = tf.io.FixedLenFeature([size], tf.float32)
        names = _default_names(serialized, names)
        parsed = tf.io.parse_example(serialized, spec, example_names=names)
        ids, labels, num_labels = self._ids_and_labels(parsed, names)
        features = tf.concat([parsed[n] for n in self.feature_names], axis=1)  # (B, F)
        data_errors.assert_all(tf.reduce_all(tf.math.is_finite(features), axis=1), names,
                    "feature values are not all finite")
        return {
            "id": ids,
            "features": features,
            "num_frames": tf.ones_like(num_labels),
            "labels": labels,
            "num_labels": num_labels,
        }


class FrameReader(_Reader):
    """Frame-level `tf.train.SequenceExample` records: one uint8 byte string per frame."""

    missing_feature_hint = " (video-level data? then leave out --frame_features)"

    def __init__(self, num_classes=NUM_CLASSES, feature_names="rgb,audio",
                 feature_sizes="1024,128", max_frames=MAX_FRAMES, quantized=False,
                 segments=None):
        super().__init__(num_classes, feature_names, feature_sizes)
        if segments not in (None, "rated", "all"):
            raise DataError(f"segments must be None, 'rated' or 'all', not {segments!r}")
        self.segments = segments
        # quantized=True: features stay uint8 (padding 0) for a model that dequantizes the
        # frames it uses (our frame-level models sample 30 of 300): a quarter of the bytes.
        self.quantized = bool(quantized)
        self.max_frames = int(max_frames)
        if self.max_frames <= 0:
            raise DataError(f"max_frames must be positive, not {max_frames}")

    @staticmethod
    def _parse_context(record, spec):
        return tf.io.parse_single_sequence_example(record, context_features=spec)[0]

    def sentinel_record(self):
        lists = {name: tf.train.FeatureList(feature=[_bytes_feature([bytes(size)])])
                 for name, size in zip(self.feature_names, self.feature_sizes)}
        return tf.train.SequenceExample(
            context=tf.train.Features(feature={"id": _bytes_feature([_SENTINEL_ID.encode()])}),
            feature_lists=tf.train.FeatureLists(feature_list=lists)).SerializeToString()

    @staticmethod
    def _context_spec():
        return {**_Reader._context_spec(),
                "segment_labels": tf.io.VarLenFeature(tf.int64),
                "segment_start_times": tf.io.VarLenFeature(tf.int64),
                "segment_scores": tf.io.VarLenFeature(tf.float32)}

    def parse(self, serialized, names=None):
        names = _default_names(serialized, names)
        batch, context = self._parse_videos(serialized, names)
        if self.segments == "rated":
            return self._rated_segments(batch, context, names)
        if self.segments == "all":
            return self._every_segment(batch)
        return batch

    def _parse_videos(self, serialized, names):
        """(the batch dict of whole videos, the parsed context)."""
        sequence_spec = {n: tf.io.FixedLenSequenceFeature([], tf.string)
                         for n in self.feature_names}
        context, lists, lengths = tf.io.parse_sequence_example(
            serialized, context_features=self._context_spec(),
            sequence_features=sequence_spec, example_names=names)
        ids, labels, num_labels = self._ids_and_labels(context, names)

        num_frames = None
        streams = []
        for name, size in zip(self.feature_names, self.feature_sizes):
            frames = lists[name][:, :self.max_frames]  # (B, T) byte strings, T <= max_frames
            length = tf.minimum(tf.cast(lengths[name], tf.int32), self.max_frames)
            real = tf.sequence_mask(length, tf.shape(frames)[1])  # (B, T)
            right_size = tf.equal(tf.strings.length(frames), size) | ~real
            data_errors.assert_all(tf.reduce_all(right_size, axis=1), names,
                        f"a '{name}' frame is not {size} bytes long")
            quantized = tf.io.decode_raw(frames, tf.uint8, fixed_length=size)  # (B, T, F)
            pad = self.max_frames - tf.shape(quantized)[1]
            streams.append(tf.pad(quantized, [[0, 0], [0, pad], [0, 0]]))
            num_frames = length if num_frames is None else tf.minimum(num_frames, length)

        real = tf.sequence_mask(num_frames, self.max_frames)[:, :, None]  # (B, max_frames, 1)
        features = tf.concat(streams, axis=2)
        if self.quantized:  # frames beyond the shortest stream are padding: zero them
            features = tf.where(real, features, tf.zeros([], tf.uint8))
        else:
            features = tf.where(real, quantization.dequantize(features), 0.0)
        features = tf.ensure_shape(features, [None, self.max_frames, self.feature_dim])
        return {
            "id": ids,
            "features": features,
            "num_frames": num_frames,
            "labels": labels,
            "num_labels": num_labels,
        }, context

    def _rated_segments(self, videos, context, names):
        """One example per rated (video, start time): its 5 frames, the rated classes' scores
        as labels and a weight of 1 at each rated class."""
        row, classes, starts, scores, known = self._checked_ratings(
            context, names, videos["num_frames"])
        keys, segment = tf.unique(row * _SEGMENT_KEY + starts)  # (S,), (N,)
        found = self._segments(videos, keys // _SEGMENT_KEY, keys % _SEGMENT_KEY)
        at = tf.stack([tf.cast(segment, tf.int64), tf.where(known, classes, 0)], axis=1)
        shape = tf.stack([tf.size(keys, out_type=tf.int64), self.num_classes])
        found["labels"] = tf.scatter_nd(at, tf.cast(scores > 0, tf.float32), shape)
        found["label_weights"] = tf.minimum(tf.scatter_nd(at, tf.ones_like(scores), shape), 1.0)
        found["labels"] = tf.minimum(found["labels"], 1.0)
        found["num_labels"] = tf.cast(tf.reduce_sum(found["labels"], axis=1), tf.int32)
        return found

    def _checked_ratings(self, context, names, num_frames):
        """(row, class, start, score [N]: each rating with the batch row of its record, and
        whether its class is one of the model's), each bad rating failing the pipeline with its
        record named: lists of different lengths, a class outside the classes, a start past
        the record's num_frames [B]."""
        rated = _rating_lists(context)
        lengths = [r.row_lengths() for r in rated]
        same = data_errors.assert_all(
            tf.equal(lengths[0], lengths[1]) & tf.equal(lengths[0], lengths[2]), names,
            "segment_labels, segment_start_times and segment_scores are of different lengths")
        with tf.control_dependencies([same]):
            row = tf.identity(rated[0].value_rowids())  # (N,) the record of each rating
            classes, starts, scores = (tf.identity(r.values) for r in rated)
        known = (classes >= 0) & (classes < self.num_classes)
        data_errors.assert_all(known, tf.gather(names, row),
                               f"segment label id outside [0, {self.num_classes})", classes)
        frames = tf.cast(tf.gather(num_frames, row), tf.int64)
        data_errors.assert_all((starts >= 0) & (starts < frames), tf.gather(names, row),
                               f"segment start time past the video's end (its frames, at most "
                               f"max_frames={self.max_frames})", starts)
        return row, classes, starts, scores, known

    def _every_segment(self, videos):
        """Every video cut into 5-frame segments from frame 0 (the last one shorter), unrated."""
        counts = (videos["num_frames"] + SEGMENT_FRAMES - 1) // SEGMENT_FRAMES  # (B,)
        rows = tf.repeat(tf.range(tf.size(counts, out_type=tf.int64)), counts)
        starts = tf.cast(tf.ragged.range(counts).flat_values * SEGMENT_FRAMES, tf.int64)
        found = self._segments(videos, rows, starts)
        zeros = tf.zeros([tf.size(rows), self.num_classes])
        found.update(labels=zeros, label_weights=zeros,
                     num_labels=tf.zeros([tf.size(rows)], tf.int32))
        return found

    def _segments(self, videos, rows, starts):
        """id, start, features [S, 5, F] and num_frames of the segments (video row, start)."""
        positions = tf.cast(starts[:, None], tf.int32) + tf.range(SEGMENT_FRAMES)  # (S, 5)
        frames = tf.gather(videos["num_frames"], rows)  # (S,)
        real = positions < frames[:, None]
        features = tf.gather(videos["features"], rows)  # (S, max_frames, F)
        features = tf.gather(features, tf.minimum(positions, self.max_frames - 1), batch_dims=1)
        features = tf.where(real[:, :, None], features, tf.zeros([], features.dtype))
        return {"id": tf.gather(videos["id"], rows), "start": tf.cast(starts, tf.int32),
                "features": tf.ensure_shape(features,
                                            [None, SEGMENT_FRAMES, self.feature_dim]),
                "num_frames": tf.reduce_sum(tf.cast(real, tf.int32), axis=1)}

    def ratings(self, files, batch_size=1024, num_readers=8):
        """Batches of the ratings alone (no frames decoded): id, start, class, score [N]."""
        spec = {k: v for k, v in self._context_spec().items() if k != "labels"}

        # The frames' bytes are read (for each record's frame count), not decoded.
        sequence_spec = {n: tf.io.FixedLenSequenceFeature([], tf.string)
                         for n in self.feature_names}

        def parse(serialized):
            names = _default_names(serialized, None)
            context, _, lengths = tf.io.parse_sequence_example(
                serialized, context_features=spec, sequence_features=sequence_spec,
                example_names=names)
            num_frames = tf.minimum(tf.reduce_min(tf.stack(
                [tf.cast(lengths[n], tf.int32) for n in self.feature_names]), axis=0),
                self.max_frames)
            row, classes, starts, scores, _ = self._checked_ratings(context, names, num_frames)
            ids = video_ids(context)
            return {"id": tf.gather(ids, row), "start": starts, "class": classes,
                    "score": scores}

        records = tf.data.Dataset.from_tensor_slices(list(files)).interleave(
            tf.data.TFRecordDataset, cycle_length=max(1, num_readers),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return records.batch(batch_size).map(parse).prefetch(tf.data.AUTOTUNE)


def _rating_lists(context):
    """The ratings of parsed segment-rated contexts: segment_labels, segment_start_times and
    segment_scores, each a [B, None] RaggedTensor (one row per record)."""
    return [tf.RaggedTensor.from_sparse(context[k])
            for k in ("segment_labels", "segment_start_times", "segment_scores")]


def make_reader(frame_features, num_classes=NUM_CLASSES, feature_names=None, feature_sizes=None,
                max_frames=MAX_FRAMES, quantized=False, segments=None):
    """The reader the starter's `--frame_features` flag asks for (default features per level);
    segments ("rated" or "all", frame level only): FrameReader's."""
    if frame_features:
        return FrameReader(num_classes, feature_names or "rgb,audio",
                           feature_sizes or "1024,128", max_frames, quantized, segments)
    if segments:
        raise DataError("--segment_labels reads frame-level records: add --frame_features (the "
                        "segment-rated records of the 2019 release are frame level)")
    return VideoReader(num_classes, feature_names or "mean_rgb,mean_audio",
                       feature_sizes or "1024,128")


# -- record names and checks --------------------------------------------------------------------

def _named_records(path):
    """(name, serialized) for each record of one file; the name is "<path> record <index>"."""
    records = tf.data.TFRecordDataset(path).enumerate()
    return records.map(
        lambda i, record: (tf.strings.join([path, " record ", tf.strings.as_string(i)]), record))


def _tolerant_records(path, size, damaged):
    """The records of one file up to any damage; the path of a file that ends early goes into
    `damaged` (a MutableHashTable).

    TFRecord frames a record of n bytes in n + 16, so a file read without damage adds up to its
    size; a sentinel after the last record compares the two.
    """
    records = tf.data.TFRecordDataset(path).map(lambda record: (record, False)).ignore_errors()
    records = records.concatenate(tf.data.Dataset.from_tensors((tf.constant(""), True)))

    def account(consumed, item):
        record, end = item
        length = tf.cast(tf.strings.length(record), tf.int64) + 16
        consumed += tf.where(end, tf.constant(0, tf.int64), length)
        cut = tf.reshape(end & (consumed != tf.cast(size, tf.int64)), [1])
        damaged.insert(tf.boolean_mask(tf.reshape(path, [1]), cut),
                       tf.boolean_mask(tf.ones([1], tf.int64), cut))
        return consumed, item

    records = records.scan(tf.constant(0, tf.int64), account)
    return records.filter(lambda record, end: ~end).map(lambda record, end: record)


def _marked_records(read_file, *path_and_mark):
    """read_file's records of one file (its arguments but the last), each as (record, mark):
    the last argument, 1.0 or 0.0."""
    *arguments, mark = path_and_mark
    return read_file(*arguments).map(lambda record: (record, mark))


def _bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _default_names(serialized, names):
    if names is not None:
        return names
    return tf.strings.join(["record ", tf.strings.as_string(
        tf.range(tf.shape(serialized, out_type=tf.int64)[0]))])


