"""Average several models or submissions into one Kaggle submission (weights per input).

    python ensemble.py --inputs=/tmp/model_a,/tmp/model_b.tgz --weights=0.6,0.4 \\
        --input_data_pattern='test*.tfrecord' --output_file=/tmp/ensemble.csv
    python ensemble.py --inputs=a.csv,b.csv,c.csv --output_file=/tmp/ensemble.csv
    python ensemble.py --inputs=/tmp/model_a,/tmp/model_b --bundle_dir=/tmp/ensemble_export \\
        --bundle_tgz=/tmp/ensemble.tgz --quantize=uint8

An input is a train_dir of train.py (its latest checkpoint; --checkpoint=best: its best
validation's), an exported model (a SavedModel folder or the .tgz of export_model.py) or a
submission CSV. Each video's score for a class is the weighted mean of the inputs' scores (a
submission scores the classes it does not list 0), and its top_k classes are written. Models see
every record of --input_data_pattern (video- and frame-level models can be mixed: each parses the
records itself); when the records have labels, the ensemble's GAP, hit@1, PERR and MAP are printed.
Submissions alone need no data: the videos are those of the first submission, then those only the
others have; with --input_data_pattern they are the records' videos, as for models. One model
alone (an exported bundle, quantized or not) on labelled records gives its GAP by the same code
as eval.py.
--bundle_dir writes the ensemble of train_dirs as one SavedModel (the weighted mean inside the
graph, stored at --quantize like any export), which serves like a single model.
"""

import csv
import json
import os
import time

from absl import app, flags

import utils

utils.quiet_tensorflow()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import bundles  # noqa: E402
import checkpoints  # noqa: E402
import eval_util  # noqa: E402
import inference  # noqa: E402
import model_flags  # noqa: E402
import readers  # noqa: E402
import tool_flags  # noqa: E402
import trained_models  # noqa: E402

flags.DEFINE_string("inputs", "", "Comma-separated train_dirs, exported models (SavedModel "
                    "folders or .tgz bundles) and submission CSVs.")
flags.DEFINE_string("weights", "", "Comma-separated weight of each input (default: equal).")
flags.DEFINE_string("bundle_dir", "", "Write the ensemble of the inputs (train_dirs) as one "
                    "SavedModel here (a new folder); --output_file is then optional.")
flags.DEFINE_string("bundle_tgz", "", "Also bundle that SavedModel in this .tgz file.")
flags.DEFINE_string("checkpoint", "", "best: each train_dir's best-validation checkpoint "
                    "(train.py --keep_best_checkpoint), to score or to bundle; default: the "
                    "latest.")
flags.DEFINE_string("metrics_file", "", "With labelled records: also write the metrics (GAP, "
                    "hit@1, PERR, MAP, videos) here as one JSON object.")
bundles.define_flags()
tool_flags.define_submission()
for _name in ("input_data_pattern", "output_file", "top_k", "batch_size", "num_readers",
              "untar_model_dir", "log_seconds"):  # the shared ones, in this tool's --help
    flags.declare_key_flag(_name)
FLAGS = flags.FLAGS


def load_model(path, untar_dir):
    """A trained model of the inputs (trained_models.open_model), at --checkpoint."""
    try:
        return trained_models.open_model(path, untar_dir, FLAGS.checkpoint)
    except trained_models.NotATrainedModel:
        raise ValueError(f"{path} is neither a submission (.csv), an exported model (.tgz or a "
                         "SavedModel folder) nor a train_dir of train.py") from None


def read_submission(path):
    """{video id: (classes, scores)} of a submission CSV, in file order."""
    rows = {}
    try:
        with open(path, newline="") as f:
            table = csv.reader(f)
            header = next(table, None)
            if header != inference.HEADER.strip().split(","):
                raise ValueError(f"{path}: not a submission (the first line must be "
                                 f"{inference.HEADER.strip()!r})")
            first_line = {}
            for line, row in enumerate(table, start=2):
                if row and row[0] in first_line:
                    raise ValueError(f"{path} line {line}: video {row[0]} is listed twice (line "
                                     f"{first_line[row[0]]} too); give one row per video")
                first_line[row[0] if row else ""] = line
                pairs = row[1].split() if len(row) == 2 else None
                if not pairs or len(pairs) % 2:
                    raise ValueError(f"{path} line {line}: expected 'id,class score class "
                                     "score ...'")
                try:
                    rows[row[0]] = (np.array(pairs[0::2], np.int64),
                                    np.array(pairs[1::2], np.float64))
                except ValueError:
                    raise ValueError(f"{path} line {line}: classes must be integers and scores "
                                     "numbers") from None
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None
    if not rows:
        raise ValueError(f"{path} has no videos")
    return rows


def check_same_videos(paths, tables):
    """Submissions of the same test set: none without a video in common with the first (the
    2017 and 2018 test sets, say), and a warning for videos some of them lack (scored 0)."""
    if len(tables) < 2:
        return
    first = set(tables[0])
    for path, rows in zip(paths[1:], tables[1:]):
        common = first & set(rows)
        if not common:
            raise ValueError(f"{path} and {paths[0]} have no video in common: submissions of "
                             "different test sets (2017 and 2018?) cannot be averaged")
        if len(common) < max(len(first), len(rows)):
            utils.warn(f"{path} and {paths[0]} share {len(common):,} videos of {len(rows):,} "
                       f"and {len(first):,}: a video missing from a submission scores 0 there")


def add_submissions(scores, ids, submissions, num_classes):
    """scores [B, C] += each (weight, rows) submission's scores of the videos `ids`."""
    missing = 0
    for weight, rows in submissions:
        for row, video in enumerate(ids):
            found = rows.get(video.decode())
            if found is None:
                missing += 1
                continue
            classes, values = found
            if (classes >= num_classes).any() or (classes < 0).any():
                raise ValueError(f"a submission lists a class outside [0, {num_classes}) for "
                                 f"video {video.decode()}")
            scores[row, classes] += weight * values
    return missing


def record_batches(models, submissions, files, num_classes, top_k, batch_size, num_readers,
                   metrics):
    """(ids, classes, scores) batches of the weighted ensemble over every record of `files`
    (the models', and the submissions' scores of those videos); labelled videos go into
    `metrics`."""
    records = readers.serialized_batches(files, batch_size, num_readers)
    missing = 0
    for serialized in records:
        ids, labels = readers.ids_and_labels(serialized)
        ids = ids.numpy()
        scores = np.zeros([len(ids), num_classes])
        for weight, model in models:
            _, probabilities = model.predict(serialized)
            scores += weight * probabilities.astype(np.float64)
        missing += add_submissions(scores, ids, submissions, num_classes)
        if tf.size(labels.values) and int(tf.reduce_max(labels.values)) >= num_classes:
            raise readers.DataError(f"{readers.named(files)}: a record has a label outside [0, "
                                    f"{num_classes}), the classes of the ensemble")
        labels = tf.sparse.to_indicator(labels, num_classes).numpy()
        if labels.any():
            metrics.add(scores, labels)
        top, classes = tf.math.top_k(scores, min(top_k, num_classes))
        yield ids, classes.numpy(), top.numpy()
    if missing:
        utils.warn(f"{missing} video rows were not in a submission: scored 0 there")


def submissions_classes(files, submissions):
    """The classes of an ensemble of submissions alone on records: their release's (3,862 or
    4,716, by the records' id key), else one past the highest class listed."""
    highest = max(int(classes.max()) for _, rows in submissions
                  for classes, _ in rows.values() if len(classes))
    release = readers.RELEASES.get(readers.id_key(files[0]))
    if release and highest < release[1]:
        return release[1]
    return highest + 1


def submission_batches(submissions, top_k, batch_size=1024):
    """(ids, classes, scores) batches of the weighted mean of submissions alone."""
    order = list(dict.fromkeys(video for _, rows in submissions for video in rows))
    for start in range(0, len(order), batch_size):
        ids, classes, scores = [], [], []
        for video in order[start:start + batch_size]:
            total = {}
            for weight, rows in submissions:
                for c, value in zip(*rows.get(video, ((), ()))):
                    total[int(c)] = total.get(int(c), 0.0) + weight * value
            best = sorted(total.items(), key=lambda item: (-item[1], item[0]))[:top_k]
            ids.append(video.encode())
            classes.append([c for c, _ in best])
            scores.append([s for _, s in best])
        yield ids, classes, scores


def write_bundle(inputs, weights):
    """One SavedModel of the train_dirs `inputs`, averaged with `weights` inside its graph."""
    bundles.check_outputs(FLAGS.bundle_dir, FLAGS.bundle_tgz, "bundle_dir", "bundle_tgz")
    precision = bundles.precision_of(FLAGS)
    members, levels = [], set()
    for path, weight in zip(inputs, weights):
        if path.endswith(".csv") or not model_flags.exists(path) \
                or tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"--bundle_dir: {path} is not a train_dir of train.py; a bundle is "
                             "made from trained checkpoints (export each model, or list its "
                             "train_dir)")
        model, reader, description, checkpoint = checkpoints.load(path, FLAGS.checkpoint)
        print(f"member {len(members) + 1}: {description.model} from {checkpoint}")
        levels.add(description.frame_features)
        members.append((model, reader, weight))
    if len(levels) > 1:
        raise ValueError("--bundle_dir: the models read records of both levels (video and frame); "
                         "one SavedModel reads one kind of record: bundle each level apart")
    if len({reader.num_classes for _, reader, _ in members}) > 1:
        raise ValueError("--bundle_dir: the models predict different numbers of classes")
    bundles.write(members, inputs[0], f"an ensemble of {len(members)} models (weights "
                  f"{', '.join(f'{w:g}' for w in weights)})", FLAGS.bundle_dir, FLAGS.bundle_tgz,
                  FLAGS.top_k, precision, FLAGS.max_bundle_mb)


def run():
    inputs = [i.strip() for i in FLAGS.inputs.split(",") if i.strip()]
    if FLAGS.checkpoint not in ("", checkpoints.BEST):
        raise ValueError(f"--checkpoint={FLAGS.checkpoint}: give best (each train_dir's best "
                         "validation) or leave it out (each one's latest)")
    if FLAGS.bundle_dir:
        if not inputs:
            raise ValueError("--inputs is required: the train_dirs to bundle")
        write_bundle(inputs, utils.parse_weights(FLAGS.weights, len(inputs), "weights", "input"))
        if not FLAGS.output_file:
            return
    if not inputs or not FLAGS.output_file:
        raise ValueError("--inputs and --output_file are required")
    if len(inputs) == 1 and inputs[0].endswith(".csv"):
        raise ValueError("one submission is already an ensemble of itself: give two or more, "
                         "or a model (one model alone is evaluated on labelled records)")
    for name in ("train_dir", "saved_model_dir", "input_model_tgz"):
        if FLAGS[name].present:
            raise ValueError(f"--{name} is inference.py's: list every model in --inputs")
    weights = utils.parse_weights(FLAGS.weights, len(inputs), "weights", "input")
    models, submissions = [], []
    for path, weight in zip(inputs, weights):
        if path.endswith(".csv"):
            submissions.append((weight, read_submission(path)))
        else:
            models.append((weight, load_model(path, FLAGS.untar_model_dir)))
    check_same_videos([path for path in inputs if path.endswith(".csv")],
                      [rows for _, rows in submissions])
    started = time.time()
    metrics = eval_util.EvaluationMetrics(FLAGS.top_k)
    pattern, files, num_classes = FLAGS.input_data_pattern, [], 0
    if models and not pattern:
        raise ValueError("--input_data_pattern is required when an input is a model")
    if pattern:  # the records' videos, scored by the models and the submissions
        files = readers.resolve_files(pattern)
        classes = {model.num_classes for _, model in models}
        if len(classes) > 1:
            raise ValueError(f"the models predict different numbers of classes "
                             f"({', '.join(map(str, sorted(classes)))}): they cannot be averaged")
        num_classes = classes.pop() if classes else submissions_classes(files, submissions)
        readers.check_release(files, num_classes)
        total, exact = readers.estimate_records(files)
        batches = record_batches(models, submissions, files, num_classes, FLAGS.top_k,
                                 FLAGS.batch_size, FLAGS.num_readers, metrics)
    else:  # the submissions' videos
        total, exact = len({v for _, rows in submissions for v in rows}), True
        batches = submission_batches(submissions, FLAGS.top_k)
    try:
        videos, _ = inference.write_submission(FLAGS.output_file, batches,
                                               utils.Progress(total, estimated=not exact),
                                               FLAGS.log_seconds)
    except tf.errors.OpError as err:
        raise readers.DataError(f"reading {pattern}: {err.message.strip().splitlines()[0]}") \
            from None
    if not videos:
        raise readers.no_records(files)
    print(f"wrote {videos:,} videos to {FLAGS.output_file} in {time.time() - started:.0f}s "
          f"(weights {', '.join(f'{w:g}' for w in weights)})")
    report(metrics, inputs, weights, pattern, "" if models else f" (over {num_classes:,} classes)")


def report(metrics, inputs, weights, pattern, classes):
    """The ensemble's metrics line on the labelled videos, and --metrics_file."""
    if metrics.videos:
        results = metrics.results()
        print(f"ensemble on {results['labelled']:,} labelled videos: "
              f"{eval_util.metrics_line(results, FLAGS.top_k)}{classes}")
        if FLAGS.metrics_file:
            utils.atomic_write(FLAGS.metrics_file, json.dumps(
                {**{k: float(v) for k, v in results.items()}, "inputs": inputs,
                 "weights": weights, "data": pattern}) + "\n")
    elif FLAGS.metrics_file:
        print(f"no labelled videos in {pattern or 'the submissions'}: --metrics_file "
              f"{FLAGS.metrics_file} was not written")


if __name__ == "__main__":
    app.run(utils.cli_main(run))
