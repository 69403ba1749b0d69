"""Export a trained model as a SavedModel that serves serialized YouTube-8M records.

    python export_model.py --train_dir=/tmp/yt8m_model --output_dir=/tmp/yt8m_export \\
        [--output_tgz=/tmp/yt8m_model.tgz]

The `serving_default` signature takes a [N] string tensor of serialized `tf.train.Example`s
(video level) or `SequenceExample`s (frame level), as the model was trained on, and returns
`video_id` [N], `class_indexes` and `class_scores` [N, top_k], and `predictions` [N, classes].
Compact models export their diagonal-circulant vectors, not dense matrices.
"""

import os
import tarfile

from absl import app, flags

import utils

utils.quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import checkpoints  # noqa: E402
import model_flags  # noqa: E402
import model_summary  # noqa: E402

flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "The train_dir of train.py.")
flags.DEFINE_string("checkpoint", "", "A checkpoint path (default: the latest in train_dir).")
flags.DEFINE_string("output_dir", "", "Folder for the SavedModel (must not exist yet).")
flags.DEFINE_string("output_tgz", "", "Also bundle the SavedModel in this .tgz file.")
flags.DEFINE_integer("top_k", 20, "Classes returned per video.")
FLAGS = flags.FLAGS


class ServingModule(tf.Module):
    """Parses serialized records with the training reader and runs the model."""

    def __init__(self, model, reader, top_k):
        super().__init__()
        self.model, self.reader, self.top_k = model, reader, min(top_k, reader.num_classes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized")])
    def serve(self, serialized):
        batch = self.reader.parse(serialized)
        predictions = self.model(batch, training=False)
        scores, indexes = tf.math.top_k(predictions, self.top_k)
        return {"video_id": batch["id"], "class_indexes": indexes, "class_scores": scores,
                "predictions": predictions}


def export(model, reader, output_dir, top_k=20):
    """Write the SavedModel; returns its size on disk in bytes."""
    module = ServingModule(model, reader, top_k)
    tf.saved_model.save(module, output_dir, signatures={"serving_default": module.serve})
    return folder_size(output_dir)


def folder_size(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def bundle(folder, tgz_path):
    """folder -> .tgz whose members sit under the folder's name; written whole or not at all."""
    temporary = f"{tgz_path}.tmp-{os.getpid()}"
    with tarfile.open(temporary, "w:gz") as tar:
        tar.add(folder, arcname=os.path.basename(os.path.normpath(folder)))
    os.replace(temporary, tgz_path)


def run():
    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required")
    if tf.io.gfile.exists(FLAGS.output_dir):
        raise ValueError(f"{FLAGS.output_dir} exists already; export to a new folder")
    model, reader, description, checkpoint = checkpoints.load(FLAGS.train_dir, FLAGS.checkpoint)
    size = export(model, reader, FLAGS.output_dir, FLAGS.top_k)
    model_flags.copy(FLAGS.train_dir, FLAGS.output_dir)
    _, totals = model_summary.summarize(model)
    print(f"exported {description['model']} from {checkpoint} to {FLAGS.output_dir}: "
          f"{totals['weights']:,} weights, {size / 2**20:.1f} MB on disk")
    if FLAGS.output_tgz:
        bundle(FLAGS.output_dir, FLAGS.output_tgz)
        print(f"bundled in {FLAGS.output_tgz} ({os.path.getsize(FLAGS.output_tgz) / 2**20:.1f} MB)")


if __name__ == "__main__":
    app.run(utils.cli_main(run))
