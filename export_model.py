"""Export a trained model as a SavedModel that serves serialized YouTube-8M records.

    python export_model.py --train_dir=/tmp/yt8m_model --output_dir=/tmp/yt8m_export \\
        [--output_tgz=/tmp/yt8m_model.tgz] [--quantize=uint8 --max_bundle_mb=4]

The `serving_default` signature takes a [N] string tensor of serialized `tf.train.Example`s
(video level) or `SequenceExample`s (frame level), as the model was trained on, and returns
`video_id` [N], `class_indexes` and `class_scores` [N, top_k], and `predictions` [N, classes].
A frame-level model's export has a second signature, `segments` (inference.py
--segment_labels): the same records cut into 5-frame segments from frame 0, returning `video_id`
and `segment_start` [S] and `predictions` [S, classes].
Compact models export their structured vectors, not dense matrices. --quantize=float16 or uint8
stores each tensor of at least --quantize_min_elements values in 16 bits, or as uint8 indices
into its own codebook of 256 values (uniform or k-means), decoded inside the graph: readers of
the SavedModel see float32 as from any other export.
"""

from absl import app, flags

import utils

utils.quiet_tensorflow()

import bundles  # noqa: E402
import checkpoints  # noqa: E402
import tool_flags  # noqa: E402

tool_flags.define_train_dir()
flags.DEFINE_string("checkpoint", "", "A checkpoint path, or best: the best validation's "
                    "(train.py --keep_best_checkpoint; default: the latest in train_dir).")
flags.DEFINE_string("output_dir", "", "Folder for the SavedModel (must not exist yet).")
flags.DEFINE_string("output_tgz", "", "Also bundle the SavedModel in this .tgz file.")
tool_flags.define_top_k("Classes returned per video.")
bundles.define_flags()
FLAGS = flags.FLAGS


def run():
    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required")
    bundles.check_outputs(FLAGS.output_dir, FLAGS.output_tgz)
    precision = bundles.precision_of(FLAGS)
    model, reader, description, checkpoint = checkpoints.load(FLAGS.train_dir, FLAGS.checkpoint)
    bundles.write([(model, reader, 1.0)], FLAGS.train_dir,
                  f"{description.model} from {checkpoint}", FLAGS.output_dir,
                  FLAGS.output_tgz, FLAGS.top_k, precision, FLAGS.max_bundle_mb)


if __name__ == "__main__":
    app.run(utils.cli_main(run))
