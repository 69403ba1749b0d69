"""One way to open a trained model: a train_dir of train.py (its newest checkpoint that
restores, or its best validation's; the averaged weights where it kept them), an exported
SavedModel folder, or the .tgz bundle of one.

    opened = trained_models.open_model(path)
    opened.description                  # its model_flags.json (None: a SavedModel without one)
    opened(serialized)                  # (ids [B], probabilities [B, C]) tensors, traceable
    opened.videos(files, batch_size)    # (ids, probabilities) NumPy batches of every video
    opened.segments(files, batch_size)  # (ids, starts, probabilities) of every 5-frame segment

inference.py, ensemble.py and distillation's teachers open their models here. Every record is
read once, in a fixed order; a record a model cannot read ends in one line (readers.DataError).
"""

import os

import tensorflow as tf

import bundles
import checkpoints
import eval_util
import model_flags
import readers


class NotATrainedModel(ValueError):
    """A path that is neither a train_dir nor an exported model (callers name their flag)."""


# Videos served at once by an export's segments signature: a 300-frame video is 60 segments.
SEGMENTS_PER_VIDEO = 60


def open_model(path, untar_dir="", checkpoint=""):
    """The trained model at `path`. A .tgz is unpacked into a new folder inside untar_dir (a
    temporary one, removed once the model is loaded, when untar_dir is empty); checkpoint:
    "best" for a train_dir's best validation (train.py --keep_best_checkpoint)."""
    if path.endswith((".tgz", ".tar.gz", ".tar")):
        with bundles.unpacking_folder(untar_dir) as folder:
            return ExportedModel(bundles.safe_untar(path, folder))
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return ExportedModel(path)
    if model_flags.exists(path):
        return CheckpointModel(path, checkpoint)
    raise NotATrainedModel(f"{path} is neither a train_dir of train.py nor an exported model (a "
                           "SavedModel folder or the .tgz of export_model.py)")


class CheckpointModel:
    """A train_dir's Keras model, restored from one of its checkpoints."""

    def __init__(self, train_dir, checkpoint=""):
        self.train_dir = train_dir
        self.model, self.reader, self.description, self.source = checkpoints.load(
            train_dir, checkpoint)
        self.reader.labels_used = False  # predictions only: labels are not read
        self.num_classes = self.reader.num_classes
        self._predict = tf.function(self.__call__)

    def __call__(self, serialized):
        batch = self.reader.parse(serialized)
        return batch["id"], self.model(readers.model_inputs(batch), training=False)

    def predict(self, serialized):
        """NumPy (ids, probabilities) of one batch of serialized records."""
        return tuple(t.numpy() for t in self._predict(serialized))

    def videos(self, files, batch_size, num_readers=8):
        """(ids [B], probabilities [B, C]) NumPy batches of every video of `files`, the
        records parsed by the input pipeline."""
        predict = eval_util.traced_prediction(self.model)
        with self.reader.reraise_data_errors(files):
            for batch in self.reader.dataset(files, batch_size, num_readers=num_readers):
                yield batch["id"].numpy(), predict(readers.model_inputs(batch)).numpy()

    def segments(self, files, batch_size, num_readers=8):
        """(ids [S], starts [S], probabilities [S, C]) NumPy batches of every 5-frame segment
        of the videos of `files` (from frame 0; the last one shorter)."""
        checkpoints.check_scores_segments(self.description, self.train_dir)
        reader = checkpoints.make_reader(self.description, segments="all")
        reader.labels_used = False
        predict = eval_util.traced_prediction(self.model)
        with reader.reraise_data_errors(files):
            for batch in reader.dataset(files, batch_size, num_readers=num_readers):
                yield (batch["id"].numpy(), batch["start"].numpy(),
                       predict(readers.model_inputs(batch)).numpy())


class ExportedModel:
    """An exported SavedModel (export_model.py, ensemble.py --bundle_dir), loaded into memory:
    its folder is not read again."""

    def __init__(self, folder):
        self.source = folder
        self.loaded = tf.saved_model.load(folder)  # kept: it owns the variables
        self.serve = self.loaded.signatures["serving_default"]
        self.description = model_flags.read(folder) if model_flags.exists(folder) else None
        self.num_classes = self.serve.structured_outputs["predictions"].shape[-1]
        self.frame_level = bundles.SEGMENTS_SIGNATURE in self.loaded.signatures

    def __call__(self, serialized):
        out = self.serve(serialized=serialized)
        return out["video_id"], out["predictions"]

    def predict(self, serialized):
        """NumPy (ids, probabilities) of one batch of serialized records; a record the model
        cannot read is one line (bundles.serving_error)."""
        out = self._serve(self.serve, serialized)
        return out["video_id"].numpy(), out["predictions"].numpy()

    def _serve(self, signature, serialized):
        """The signature's outputs; a record the model cannot read is one line."""
        try:
            return signature(serialized=serialized)
        except tf.errors.InvalidArgumentError as err:
            raise bundles.serving_error(self.source, err) from None

    def videos(self, files, batch_size, num_readers=8):
        for serialized in readers.serialized_batches(files, batch_size, num_readers):
            yield self.predict(serialized)

    def segments(self, files, batch_size, num_readers=8):
        """As CheckpointModel.segments, by the export's segments signature (batch_size
        segments: that many over SEGMENTS_PER_VIDEO videos at a time)."""
        if not self.frame_level:
            raise ValueError(f"--segment_labels: {self.source} has no "
                             f"'{bundles.SEGMENTS_SIGNATURE}' signature (a video-level model, or "
                             "exported before segments were served): export a frame-level model "
                             "again with export_model.py, or give its --train_dir")
        serve = self.loaded.signatures[bundles.SEGMENTS_SIGNATURE]
        videos = max(1, batch_size // SEGMENTS_PER_VIDEO)
        for serialized in readers.serialized_batches(files, videos, num_readers):
            out = self._serve(serve, serialized)
            yield (out["video_id"].numpy(), out["segment_start"].numpy(),
                   out["predictions"].numpy())
