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

import readers  # noqa: E402
import segments  # noqa: E402
import tool_flags  # noqa: E402
import trained_models  # noqa: E402

tool_flags.define_train_dir()
tool_flags.define_submission()
flags.DEFINE_string("input_model_tgz", "", "An exported model bundle (export_model.py).")
flags.DEFINE_string("saved_model_dir", "", "An exported SavedModel folder.")
flags.DEFINE_string("output_model_tgz", "", "Not supported: bundle a model with "
                    "export_model.py --output_tgz.")
flags.DEFINE_bool("segment_labels", False, "Score every 5-frame segment of frame-level records "
                  "and write the segment submission (2019): `Class,Segments`.")
tool_flags.define_segment_ranking("listed")
FLAGS = flags.FLAGS
HEADER = "VideoId,LabelConfidencePairs\n"


def format_row(video_id, classes, scores):
    pairs = " ".join(f"{int(c)} {float(s):g}" for c, s in zip(classes, scores))
    return f"{video_id.decode()},{pairs}\n"


def top_classes(batches, top_k):
    """(ids, classes, scores) batches: each video's top_k classes of (ids, probabilities)."""
    for ids, probabilities in batches:
        scores, classes = tf.math.top_k(probabilities, min(top_k, probabilities.shape[-1]))
        yield ids, classes.numpy(), scores.numpy()


def run():
    if FLAGS.output_model_tgz:
        raise ValueError("--output_model_tgz is not supported by inference.py: bundle the "
                         "model with export_model.py --output_tgz=...")
    if not FLAGS.input_data_pattern or not FLAGS.output_file:
        raise ValueError("--input_data_pattern and --output_file are required")
    files = readers.resolve_files(FLAGS.input_data_pattern)
    if FLAGS.segment_labels:
        label_ids = segments.read_label_ids(FLAGS.segment_label_ids_file)
        if FLAGS.segment_max_pred < 1:
            raise ValueError(f"--segment_max_pred must be at least 1, got "
                             f"{FLAGS.segment_max_pred}")
    opened = trained_models.open_model(
        FLAGS.input_model_tgz or FLAGS.saved_model_dir or FLAGS.train_dir, FLAGS.untar_model_dir)
    readers.check_release(files, opened.num_classes)
    if FLAGS.segment_labels:
        return segment_inference(opened, files, label_ids)
    total, exact = readers.estimate_records(files)
    batches = top_classes(opened.videos(files, FLAGS.batch_size, FLAGS.num_readers), FLAGS.top_k)
    videos, seconds = write_submission(FLAGS.output_file, batches,
                                       utils.Progress(total, estimated=not exact),
                                       FLAGS.log_seconds)
    if not videos:
        raise readers.no_records(files)
    print(f"wrote {videos:,} videos to {FLAGS.output_file} in {seconds:.0f}s "
          f"({videos / max(seconds, 1e-9):,.0f} videos/s)")


def segment_inference(opened, files, label_ids):
    """--segment_labels: every segment of `files` scored and the segment CSV of the classes
    label_ids written."""
    batches = opened.segments(files, FLAGS.batch_size, FLAGS.num_readers)
    ranking = segments.Ranking(label_ids, opened.num_classes, FLAGS.segment_max_pred)
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
