"""Score a segment submission (the 2019 task) against segment-rated records, as the starter's
segment_eval_inference.py does.

    python segment_eval.py --submission_file=segments.csv \\
        --eval_data_pattern='validate*.tfrecord' [--top_n=100000]

The submission is the Kaggle CSV `Class,Segments`: one line per class, its segments
`<video id>:<start frame>` best first. Per class, the list is cut to its first --top_n, only the
segments rated for that class are kept, and the average precision over them has the class's
rated positives as its denominator; the result is the mean over the submitted classes that have
rated positives (segments.py).
"""

from absl import app, flags

import utils

utils.quiet_tensorflow()
import readers  # noqa: E402
import segments  # noqa: E402

flags.DEFINE_string("submission_file", "", "The segment submission CSV (Class,Segments).")
flags.DEFINE_string("eval_data_pattern", "", "Comma-separated globs of segment-rated "
                    "frame-level records.")
flags.DEFINE_integer("top_n", segments.MAX_PREDICTIONS, "Segments of each class that count "
                     "(0: all; Kaggle's MAP@100,000).")
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES, "Classes of the records' release.")
FLAGS = flags.FLAGS


def run():
    if not FLAGS.submission_file or not FLAGS.eval_data_pattern:
        raise ValueError("--submission_file and --eval_data_pattern are required")
    if FLAGS.top_n < 0:
        raise ValueError(f"--top_n must be 0 (all) or more, got {FLAGS.top_n}")
    submission = segments.read_submission(FLAGS.submission_file)
    files = readers.resolve_files(FLAGS.eval_data_pattern)
    reader = readers.FrameReader(FLAGS.num_classes, segments="rated")
    reader.missing_feature_hint = (" (video-level records? segments are rated in the 2019 "
                                   "release's frame-level records)")
    rated = segments.rated_segments(reader, files)
    if not len(rated):
        raise ValueError(f"no record of {FLAGS.eval_data_pattern} has rated segments: give "
                         "the segment-rated validate records (segment_labels, "
                         "segment_start_times, segment_scores)")
    value, classes = segments.segment_map(submission, rated, FLAGS.top_n)
    cut = f"{FLAGS.top_n:,}" if FLAGS.top_n else "all"
    print(f"{len(rated):,} rated (segment, class) pairs; {classes} of the {len(submission)} "
          f"submitted classes have rated positives | segment MAP@{cut} {value:.6f}")


if __name__ == "__main__":
    app.run(utils.cli_main(run))
