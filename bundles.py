"""SavedModel bundles of trained models: one model or several averaged in one graph, their
weights stored at a precision (quantization.WeightPrecision) and decoded in the graph, written
as a folder and optionally a .tgz, refused over a size budget. export_model.py and ensemble.py
write them; inference.py, ensemble.py and TensorFlow Serving read them as any SavedModel.
"""

import contextlib
import copy
import gzip
import os
import re
import shutil
import tarfile
import tempfile
import zlib

import tensorflow as tf
from absl import flags

import checkpoints
import data_errors
import model_flags
import quantization
import readers


def define_flags():
    """The flags of how a bundle is stored and its budget (export_model.py, ensemble.py)."""
    flags.DEFINE_enum("quantize", "float32", quantization.PRECISIONS, "How the weights are "
                      "stored: float32 (as trained), float16, or uint8 indices into a 256-value "
                      "codebook per tensor.")
    flags.DEFINE_enum("quantize_codebook", "uniform", quantization.CODEBOOKS, "uint8: the "
                      "codebook evenly spaced from each tensor's minimum to its maximum, or "
                      "k-means (less error, slower to export).")
    flags.DEFINE_integer("quantize_min_elements", quantization.MIN_ELEMENTS, "Tensors of fewer "
                         "values (biases, batch-norm statistics) stay float32.")
    flags.DEFINE_float("max_bundle_mb", 0, "Refuse a bundle (the .tgz, or the SavedModel folder "
                       "without a .tgz) larger than this many MB (0: no limit; the 2018 "
                       "challenge allowed 1024).")


def precision_of(values):
    """The WeightPrecision that the flags (absl FlagValues) ask for; ValueError for a bad one."""
    if values.max_bundle_mb < 0:
        raise ValueError(f"--max_bundle_mb must be 0 (no limit) or more, got "
                         f"{values.max_bundle_mb:g}")
    return quantization.WeightPrecision(values.quantize, values.quantize_codebook,
                                        values.quantize_min_elements)


FLOAT32 = quantization.WeightPrecision()  # the weights as trained
SEGMENTS_SIGNATURE = "segments"  # frame-level exports: every 5-frame segment scored


class _Held:
    """A model the SavedModel must not track (its weights are stored as the precision says)."""

    def __init__(self, model):
        self.model = model


class StoredWeight(tf.Module):
    """One weight as a precision stores it (float32, float16, or uint8 indices + codebook)."""

    def __init__(self, value, precision, name):
        super().__init__(name=name)
        self.dtype = tf.as_dtype(value.dtype)
        self.parts = {key: tf.Variable(array, trainable=False, name=key)
                      for key, array in precision.encode(value).items()}

    def value(self):
        return quantization.decode({k: v.read_value() for k, v in self.parts.items()},
                                   self.dtype)


class ServingModule(tf.Module):
    """Parses serialized records with each member's training reader and returns the weighted
    mean of the members' probabilities; every member's weights stored as `precision` says and
    decoded in the graph (Keras' stateless_call runs a model on given weight values)."""

    def __init__(self, members, top_k, precision=FLOAT32):
        super().__init__()
        self.readers = [copy.copy(reader) for _, reader, _ in members]
        for reader in self.readers:
            reader.labels_used = False  # a served record's labels are not read
        self.held = [_Held(model) for model, _, _ in members]
        self.shares = [float(weight) for _, _, weight in members]
        self.trainable = [[StoredWeight(v.numpy(), precision, f"m{i}_t{j}")
                           for j, v in enumerate(model.trainable_variables)]
                          for i, (model, _, _) in enumerate(members)]
        self.non_trainable = [[StoredWeight(v.numpy(), precision, f"m{i}_n{j}")
                               for j, v in enumerate(model.non_trainable_variables)]
                              for i, (model, _, _) in enumerate(members)]
        self.top_k = min(top_k, min(reader.num_classes for reader in self.readers))

    def _mean_probabilities(self, readers_of_members, serialized):
        """(the members' weighted mean probabilities [N, classes], the first member's batch)
        of the records as each reader parses them."""
        predictions, first = 0.0, None
        for i, reader in enumerate(readers_of_members):
            batch = reader.parse(serialized)
            first = batch if first is None else first
            probabilities, _ = self.held[i].model.stateless_call(
                [w.value() for w in self.trainable[i]], [w.value() for w in self.non_trainable[i]],
                batch, training=False)
            predictions += self.shares[i] * tf.cast(probabilities, tf.float32)
        return predictions, first

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized")])
    def serve(self, serialized):
        predictions, batch = self._mean_probabilities(self.readers, serialized)
        scores, indexes = tf.math.top_k(predictions, self.top_k)
        return {"video_id": batch["id"], "class_indexes": indexes, "class_scores": scores,
                "predictions": predictions}

    def serve_segments(self, serialized):
        """Frame-level members: every video of the records cut into 5-frame segments (from
        frame 0), each scored: video_id and segment_start [S], predictions [S, classes]."""
        segment_readers = []
        for reader in self.readers:
            reader = copy.copy(reader)
            reader.segments = "all"
            segment_readers.append(reader)
        predictions, batch = self._mean_probabilities(segment_readers, serialized)
        return {"video_id": batch["id"], "segment_start": batch["start"],
                "predictions": predictions}

    def signatures(self):
        """serving_default, and for frame-level members "segments" (inference.py
        --segment_labels)."""
        found = {"serving_default": self.serve}
        if all(isinstance(reader, readers.FrameReader) for reader in self.readers):
            found[SEGMENTS_SIGNATURE] = tf.function(self.serve_segments, input_signature=[
                tf.TensorSpec([None], tf.string, name="serialized")])
        return found


def export(model, reader, output_dir, top_k=20, precision=FLOAT32):
    """Write the SavedModel of one model; returns its size on disk in bytes."""
    return export_members([(model, reader, 1.0)], output_dir, top_k, precision)


def export_members(members, output_dir, top_k=20, precision=FLOAT32):
    """Write one SavedModel that serves the weighted mean of (model, reader, weight) members
    (weights summing to 1); returns its size on disk in bytes."""
    module = ServingModule(members, top_k, precision)
    tf.saved_model.save(module, output_dir, signatures=module.signatures())
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


def check_writable(path, flag):
    """One line naming the flag when `path`'s folder is missing or read-only (before any work);
    remote paths (gs://...) are left to the writing itself."""
    if "://" in path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--{flag}={path}: {folder} is a file, not a folder")
    if not os.path.isdir(folder):
        raise ValueError(f"--{flag}={path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--{flag}={path}: {folder} is not writable; choose another place")


def refuse_over_budget(size, max_mb, what, written, precision=FLOAT32):
    """Remove what was `written` and raise when `size` bytes exceed max_mb (0: no limit); the
    advice names a smaller precision than `precision` where there is one."""
    if max_mb and size > max_mb * 2**20:
        for path in written:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        smaller = quantization.PRECISIONS[quantization.PRECISIONS.index(precision.name) + 1:]
        advice = f"try --quantize={smaller[-1]} or a smaller model" if smaller else \
            "try a smaller model"
        raise ValueError(f"{what} is {size / 2**20:.2f} MB, over --max_bundle_mb={max_mb:g}: "
                         f"nothing was kept; {advice}")


def check_outputs(output_dir, output_tgz, dir_flag="output_dir", tgz_flag="output_tgz"):
    """One line naming the flag for an output that cannot be written, before any work."""
    if tf.io.gfile.exists(output_dir):
        raise ValueError(f"--{dir_flag}={output_dir} exists already; export to a new folder")
    check_writable(output_dir, dir_flag)
    if output_tgz:
        check_writable(output_tgz, tgz_flag)


def write(members, flags_folder, description, output_dir, output_tgz, top_k, precision,
          max_mb=0):
    """The bundle of `members` ((model, reader, weight)): the SavedModel in output_dir with
    flags_folder's model_flags.json, the .tgz when output_tgz, refused (nothing kept) over
    max_mb; prints what was written."""
    size = export_members(members, output_dir, top_k, precision)
    model_flags.copy(flags_folder, output_dir)
    weights = sum(model.count_params() for model, _, _ in members)
    if output_tgz:
        bundle(output_dir, output_tgz)
        refuse_over_budget(os.path.getsize(output_tgz), max_mb, f"the bundle {output_tgz}",
                           [output_tgz, output_dir], precision)
    else:
        refuse_over_budget(size, max_mb, f"the SavedModel {output_dir}", [output_dir], precision)
    print(f"exported {description} to {output_dir}: {weights:,} weights at "
          f"{precision.name}, {size / 2**20:.2f} MB on disk", flush=True)
    if output_tgz:
        print(f"bundled in {output_tgz} ({os.path.getsize(output_tgz) / 2**20:.2f} MB)",
              flush=True)


def serving_error(model_dir, err):
    """One line (a DataError) for an exported model that failed on the records: the record and
    what is wrong, and which level of records the model reads where its model_flags.json says
    (data of the other level is the usual cause)."""
    message = data_errors.error_message(err)
    named = re.search(r"Name: ([^,]*), Feature(?: list '|: )(\w+)'?(?: \(data type: \w+\))? is "
                      r"required but could not be found", message)
    if named:
        what = f"{named[1]}: feature '{named[2]}' is missing"
        if model_flags.exists(model_dir):
            what += checkpoints.make_reader(model_flags.read(model_dir)).missing_feature_hint
    else:
        lines = [line for line in message.splitlines()
                 if line.strip() and not line.startswith(("Graph execution", "Detected at",
                                                          "<stack", "\t"))]
        what = data_errors.first_line(lines[-1] if lines else message)
    return readers.DataError(f"the exported model {model_dir} on these records: {what}")


@contextlib.contextmanager
def unpacking_folder(named=""):
    """Where a run unpacks its bundles: inside `named` when the user gave a folder (kept), else
    a fresh temporary folder, removed when the run ends, whatever way it ends."""
    if named:
        tf.io.gfile.makedirs(named)
        yield named
        return
    folder = tempfile.mkdtemp(prefix="yt8m_unpacked_")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def safe_untar(tgz_path, folder):
    """Unpack an archive that someone sent into a new folder of its own inside `folder`, so
    that nothing another run left there can be taken for it; refuses members that would land
    outside it (absolute paths, '..', links out of it) and special files. Returns the folder of
    the archive's own SavedModel."""
    tf.io.gfile.makedirs(folder)
    name = re.sub(r"\.(tgz|tar\.gz|tar)$", "", os.path.basename(tgz_path)) or "bundle"
    target = tempfile.mkdtemp(prefix=f"{name}-", dir=folder)
    try:
        return os.path.join(target, _unpack(tgz_path, target))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _unpack(tgz_path, target):
    """The archive unpacked into the empty folder `target`; returns the folder of its
    saved_model.pb relative to `target` (from the archive's member list, not from the disk)."""
    if not os.path.isfile(tgz_path):
        raise ValueError(f"{tgz_path} does not exist: give the bundle that export_model.py "
                         "--output_tgz wrote")
    try:
        with tarfile.open(tgz_path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                problem = _unsafe(member)
                if problem:
                    raise ValueError(f"{tgz_path}: refused member {member.name!r}: {problem}")
            tar.extractall(target, filter="data")  # checks again as it writes
    except tarfile.ReadError as err:
        if isinstance(err.__context__, (EOFError, zlib.error)):
            raise _cut_short(tgz_path) from None
        # its message ends in a colon with nothing after it
        raise ValueError(f"{tgz_path} is not a .tgz (or .tar) archive: give the bundle that "
                         "export_model.py --output_tgz wrote, or the SavedModel folder") from None
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise _cut_short(tgz_path) from None
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"{tgz_path}: refused or unreadable archive: {err}") from None
    found = [os.path.dirname(m.name) for m in members
             if m.isfile() and os.path.basename(m.name) == "saved_model.pb"]
    if len(found) != 1:
        what = f"{len(found)} SavedModels" if found else "no SavedModel"
        raise ValueError(f"{tgz_path} holds {what}: give the bundle that export_model.py "
                         "--output_tgz wrote (one model)")
    return os.path.normpath(found[0])


def _cut_short(tgz_path):
    return ValueError(f"{tgz_path} is damaged or cut short (its compressed data ends early): "
                      "copy the bundle again, or export it again with export_model.py")


def _unsafe(member):
    """Why a tar member may not be unpacked, or None."""
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
        return "absolute path"
    if ".." in parts:
        return "'..' in its path"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "not a regular file or folder"
    if member.issym() or member.islnk():
        link = member.linkname
        base = os.path.dirname(member.name) if member.issym() else ""
        resolved = os.path.normpath(os.path.join(base, link))
        if os.path.isabs(link) or resolved.startswith(".."):
            return f"link to {link!r}, outside the folder"
    return None
