"""Write a Kaggle submission: each video's top-k classes with their confidences.

    python inference.py --train_dir=/tmp/yt8m_model --input_data_pattern='test*.tfrecord' \\
        --output_file=/tmp/submission.csv
    python inference.py --input_model_tgz=/tmp/yt8m_model.tgz --input_data_pattern=... \\
        --output_file=...

    python inference.py --train_dir=/tmp/frame_model --input_data_pattern='test*.tfrecord' \\
        --segment_labels --output_file=/tmp/segments.csv

From the latest checkpoint of a train_dir, or from an exported model (export_model.py): a
SavedModel folder (--saved_model_dir) or its .tgz bundle (--input_model_tgz, unpacked into a
fresh folder: nothing another run left can be taken for it). The CSV has the header
`VideoId,LabelConfidencePairs` and one row per video; it is written under a temporary name and
renamed when complete.

--segment_labels (frame-level models, the 2019 task): every video cut into 5-frame segments
(starts 0, 5, 10, ...), each scored; the CSV has the header `Class,Segments` and a line per
class of --segment_label_ids_file: `<video id>:<start>` segments by descending score, at most
--segment_max_pred of them. Each segment enters the lists of its top 20 classes; each list is
cut to its best --segment_max_pred as it grows, so memory does not grow with the test set
beyond a name per segment.
"""

import os
import time

from absl import app, flags

import utils

utils.quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import bundles  # noqa: E402
import checkpoints  # noqa: E402
import readers  # noqa: E402
import segments  # noqa: E402

flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "The train_dir of train.py.")
flags.DEFINE_string("input_model_tgz", "", "An exported model bundle (export_model.py).")
flags.DEFINE_string("untar_model_dir", "", "Where --input_model_tgz (and ensemble.py's .tgz "
                    "inputs) are unpacked: each bundle into a new folder inside it, kept "
                    "(default: a fresh temporary folder, removed when the run ends).")
flags.DEFINE_string("saved_model_dir", "", "An exported SavedModel folder.")
flags.DEFINE_string("input_data_pattern", "", "Comma-separated globs of TFRecords.")
flags.DEFINE_string("output_file", "", "The CSV file to write.")
flags.DEFINE_integer("top_k", 20, "Label/confidence pairs per video.")
flags.DEFINE_integer("batch_size", 1024, "Videos per batch (--segment_labels: segments).")
flags.DEFINE_integer("num_readers", 8, "Files read in parallel.")
flags.DEFINE_integer("log_seconds", 10, "Print progress at most this often.")
flags.DEFINE_string("output_model_tgz", "", "Not supported: bundle a model with "
                    "export_model.py --output_tgz.")
flags.DEFINE_bool("segment_labels", False, "Score every 5-frame segment of frame-level records "
                  "and write the segment submission (2019): `Class,Segments`.")
flags.DEFINE_string("segment_label_ids_file", segments.LABEL_IDS_FILE, "--segment_labels: the "
                    "classes of the submission (default: the starter's 1,000 rated classes).")
flags.DEFINE_integer("segment_max_pred", segments.MAX_PREDICTIONS, "--segment_labels: segments "
                     "listed per class (Kaggle's MAP@100,000).")
FLAGS = flags.FLAGS
HEADER = "VideoId,LabelConfidencePairs\n"


def format_row(video_id, classes, scores):
    pairs = " ".join(f"{int(c)} {float(s):g}" for c, s in zip(classes, scores))
    return f"{video_id.decode()},{pairs}\n"


def checkpoint_predictions(files, top_k, batch_size, num_readers):
    """(classes of the model, iterator of (ids, classes, scores) batches) from the latest
    checkpoint of --train_dir."""
    model, reader, _, _ = checkpoints.load(FLAGS.train_dir)
    reader.labels_used = False
    k = min(top_k, reader.num_classes)

    @tf.function
    def predict(batch):
        scores, classes = tf.math.top_k(model(batch, training=False), k)
        return batch["id"], classes, scores

    def batches():
        with reader.reraise_data_errors(files):
            for batch in reader.dataset(files, batch_size, num_readers=num_readers):
                yield (t.numpy() for t in predict(batch))

    return reader.num_classes, batches()


def saved_model_predictions(model_dir, files, top_k, batch_size, num_readers):
    """(classes of the model, iterator of (ids, classes, scores) batches) from an exported
    SavedModel."""
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    batches = ((out["video_id"].numpy(), out["class_indexes"].numpy()[:, :top_k],
                out["class_scores"].numpy()[:, :top_k])
               for out in served(serve, model_dir, files, batch_size, num_readers))
    return serve.structured_outputs["predictions"].shape[-1], batches


def served(serve, model_dir, files, batch_size, num_readers):
    """The outputs of an exported model's signature `serve` on batches of the records; a
    record it cannot parse is one line (bundles.serving_error)."""
    for serialized in readers.serialized_batches(files, batch_size, num_readers):
        try:
            yield serve(serialized=serialized)
        except tf.errors.InvalidArgumentError as err:
            raise bundles.serving_error(model_dir, err) from None


def run():
    if FLAGS.output_model_tgz:
        raise ValueError("--output_model_tgz is not supported by inference.py: bundle the "
                         "model with export_model.py --output_tgz=...")
    if not FLAGS.input_data_pattern or not FLAGS.output_file:
        raise ValueError("--input_data_pattern and --output_file are required")
    files = readers.resolve_files(FLAGS.input_data_pattern)
    with bundles.unpacking_folder(FLAGS.untar_model_dir) as untar:
        model_dir = FLAGS.saved_model_dir
        if FLAGS.input_model_tgz:
            model_dir = bundles.safe_untar(FLAGS.input_model_tgz, untar)
        predict(model_dir, files)


def predict(model_dir, files):
    """The submission of the model in model_dir (an exported one), else of --train_dir."""
    if FLAGS.segment_labels:
        return segment_inference(model_dir, files)
    if model_dir:
        num_classes, batches = saved_model_predictions(model_dir, files, FLAGS.top_k,
                                                       FLAGS.batch_size, FLAGS.num_readers)
    else:
        num_classes, batches = checkpoint_predictions(files, FLAGS.top_k, FLAGS.batch_size,
                                                      FLAGS.num_readers)
    readers.check_release(files, num_classes)

    total, exact = readers.estimate_records(files)
    videos, seconds = write_submission(FLAGS.output_file, batches,
                                       utils.Progress(total, estimated=not exact),
                                       FLAGS.log_seconds)
    if not videos:
        raise readers.no_records(files)
    print(f"wrote {videos:,} videos to {FLAGS.output_file} in {seconds:.0f}s "
          f"({videos / max(seconds, 1e-9):,.0f} videos/s)")


def checkpoint_segment_scores(files, batch_size, num_readers):
    """(classes of the model, iterator of (ids, starts, probabilities) batches of segments)
    from the latest checkpoint of --train_dir."""
    model, _, description, _ = checkpoints.load(FLAGS.train_dir)
    if not description["frame_features"]:
        raise ValueError(f"--segment_labels scores 5-frame segments: {FLAGS.train_dir} holds a "
                         "video-level model; give a frame-level one (train.py --frame_features)")
    reader = checkpoints.make_reader(description, segments="all")
    reader.labels_used = False

    @tf.function
    def predict(batch):
        return batch["id"], batch["start"], model(readers.model_inputs(batch), training=False)

    def batches():
        with reader.reraise_data_errors(files):
            for batch in reader.dataset(files, batch_size, num_readers=num_readers):
                yield (t.numpy() for t in predict(batch))

    return reader.num_classes, batches()


# Videos served at once by an export's segments signature: a 300-frame video is 60 segments.
SEGMENTS_PER_VIDEO = 60


def saved_model_segment_scores(model_dir, files, batch_size, num_readers):
    """(classes of the model, iterator of (ids, starts, probabilities) batches of segments)
    from an exported frame-level SavedModel's segments signature."""
    loaded = tf.saved_model.load(model_dir)
    if bundles.SEGMENTS_SIGNATURE not in loaded.signatures:
        raise ValueError(f"--segment_labels: {model_dir} has no '{bundles.SEGMENTS_SIGNATURE}' "
                         "signature (a video-level model, or exported before segments were "
                         "served): export a frame-level model again with export_model.py, or "
                         "give its --train_dir")
    serve = loaded.signatures[bundles.SEGMENTS_SIGNATURE]
    videos = max(1, batch_size // SEGMENTS_PER_VIDEO)
    batches = ((out["video_id"].numpy(), out["segment_start"].numpy(), out["predictions"].numpy())
               for out in served(serve, model_dir, files, videos, num_readers))
    return serve.structured_outputs["predictions"].shape[-1], batches


def segment_inference(model_dir, files):
    """--segment_labels: every segment of `files` scored and the segment CSV written."""
    label_ids = segments.read_label_ids(FLAGS.segment_label_ids_file)
    if FLAGS.segment_max_pred < 1:
        raise ValueError(f"--segment_max_pred must be at least 1, got {FLAGS.segment_max_pred}")
    if model_dir:
        num_classes, batches = saved_model_segment_scores(model_dir, files, FLAGS.batch_size,
                                                          FLAGS.num_readers)
    else:
        num_classes, batches = checkpoint_segment_scores(files, FLAGS.batch_size,
                                                         FLAGS.num_readers)
    readers.check_release(files, num_classes)
    ranking = segments.Ranking(label_ids, num_classes, FLAGS.segment_max_pred)
    videos, _ = readers.estimate_records(files)
    scored, seconds = rank_segments(ranking, batches, videos, FLAGS.log_seconds)
    if not scored:
        raise readers.no_records(files)
    classes = segments.write_submission(FLAGS.output_file, ranking)
    print(f"wrote {classes:,} classes ({scored:,} segments scored) to {FLAGS.output_file} in "
          f"{seconds:.0f}s ({scored / max(seconds, 1e-9):,.0f} segments/s)")


def rank_segments(ranking, batches, videos, log_seconds=10):
    """Each batch of (ids, starts, probabilities) into the ranking, with progress in
    segments: the total is the records' count times the segments per video of the first
    batch (a video's first segment starts at 0). Returns (segments, seconds)."""
    printer, done, started = None, 0, time.time()
    try:
        for ids, starts, probabilities in batches:
            ranking.add([segments.segment_name(v, s) for v, s in zip(ids, starts)],
                        probabilities)
            if printer is None and len(ids):
                per_video = len(ids) / max(int((starts == 0).sum()), 1)
                printer = utils.ProgressPrinter(
                    utils.Progress(videos * per_video, estimated=True), "segments",
                    log_seconds)
            done += len(ids)
            if printer:
                printer.update(done, done / max(time.time() - started, 1e-9))
    finally:
        if printer:
            printer.close()
    return done, time.time() - started


def write_submission(output_file, batches, progress, log_seconds=10):
    """The Kaggle CSV of (ids, classes, scores) batches, written under a temporary name and
    renamed once complete (not at all without videos); returns (videos, seconds)."""
    utils.prepare_dir(os.path.dirname(os.path.abspath(output_file)))
    temporary = f"{output_file}.tmp-{os.getpid()}"
    printer = utils.ProgressPrinter(progress, seconds=log_seconds)
    videos, started = 0, time.time()
    try:
        with open(temporary, "w") as out:
            out.write(HEADER)
            for ids, classes, scores in batches:
                out.writelines(format_row(*row) for row in zip(ids, classes, scores))
                videos += len(ids)
                printer.update(videos, videos / max(time.time() - started, 1e-9))
        printer.close()
        if videos:
            os.replace(temporary, output_file)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return videos, time.time() - started


if __name__ == "__main__":
    app.run(utils.cli_main(run))
