"""Write a Kaggle submission: each video's top-k classes with their confidences.

    python inference.py --train_dir=/tmp/yt8m_model --input_data_pattern='test*.tfrecord' \\
        --output_file=/tmp/submission.csv
    python inference.py --input_model_tgz=/tmp/yt8m_model.tgz --input_data_pattern=... \\
        --output_file=...

From the latest checkpoint of a train_dir, or from an exported model (export_model.py): a
SavedModel folder (--saved_model_dir) or its .tgz bundle (--input_model_tgz, unpacked into
--untar_model_dir). The CSV has the header `VideoId,LabelConfidencePairs` and one row per
video; it is written under a temporary name and renamed when complete.
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

flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "The train_dir of train.py.")
flags.DEFINE_string("input_model_tgz", "", "An exported model bundle (export_model.py).")
flags.DEFINE_string("untar_model_dir", "/tmp/yt8m_model_untarred/", "Where --input_model_tgz "
                    "(and ensemble.py's .tgz inputs) are unpacked.")
flags.DEFINE_string("saved_model_dir", "", "An exported SavedModel folder.")
flags.DEFINE_string("input_data_pattern", "", "Comma-separated globs of TFRecords.")
flags.DEFINE_string("output_file", "", "The CSV file to write.")
flags.DEFINE_integer("top_k", 20, "Label/confidence pairs per video.")
flags.DEFINE_integer("batch_size", 1024, "Videos per batch.")
flags.DEFINE_integer("num_readers", 8, "Files read in parallel.")
flags.DEFINE_integer("log_seconds", 10, "Print progress at most this often.")
flags.DEFINE_string("output_model_tgz", "", "Not supported: bundle a model with "
                    "export_model.py --output_tgz.")
flags.DEFINE_bool("segment_labels", False, "Not supported: the 2019 segment-rating task.")
FLAGS = flags.FLAGS
HEADER = "VideoId,LabelConfidencePairs\n"


def format_row(video_id, classes, scores):
    pairs = " ".join(f"{int(c)} {float(s):g}" for c, s in zip(classes, scores))
    return f"{video_id.decode()},{pairs}\n"


def checkpoint_predictions(files, top_k, batch_size, num_readers):
    """(classes of the model, iterator of (ids, classes, scores) batches) from the latest
    checkpoint of --train_dir."""
    model, reader, _, _ = checkpoints.load(FLAGS.train_dir)
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
    records = readers.serialized_batches(files, batch_size, num_readers)

    def batches():
        for serialized in records:
            try:
                out = serve(serialized=serialized)
            except tf.errors.InvalidArgumentError as err:
                raise bundles.serving_error(model_dir, err) from None
            yield (out["video_id"].numpy(), out["class_indexes"].numpy()[:, :top_k],
                   out["class_scores"].numpy()[:, :top_k])

    return serve.structured_outputs["predictions"].shape[-1], batches()


def run():
    if FLAGS.output_model_tgz:
        raise ValueError("--output_model_tgz is not supported by inference.py: bundle the "
                         "model with export_model.py --output_tgz=...")
    if FLAGS.segment_labels:
        raise ValueError("--segment_labels (the 2019 segment-rating task) is not supported")
    if not FLAGS.input_data_pattern or not FLAGS.output_file:
        raise ValueError("--input_data_pattern and --output_file are required")
    files = readers.resolve_files(FLAGS.input_data_pattern)
    if FLAGS.input_model_tgz:
        model_dir = bundles.safe_untar(FLAGS.input_model_tgz, FLAGS.untar_model_dir)
    else:
        model_dir = FLAGS.saved_model_dir
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
