"""The flags the tools share, declared here once: each tool defines the groups it takes (a group
defined twice in one process, by a tool and by another it imports, is defined once)."""

from absl import flags

import segments


def _define(definer, name, *args):
    if name not in flags.FLAGS:
        definer(name, *args)


def define_train_dir():
    _define(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "The train_dir of train.py.")


def define_reading():
    """How records are read: batch size and files at once."""
    _define(flags.DEFINE_integer, "batch_size", 1024,
            "Videos per batch (--segment_labels: segments).")
    _define(flags.DEFINE_integer, "num_readers", 8, "Files read in parallel.")


def define_top_k(meaning):
    _define(flags.DEFINE_integer, "top_k", 20, meaning)


def define_segment_ranking(ranked):
    """The classes and the length of --segment_labels' per-class rankings; ranked: what a
    ranking is ("ranked", "listed")."""
    _define(flags.DEFINE_string, "segment_label_ids_file", segments.LABEL_IDS_FILE,
            f"--segment_labels: the classes {ranked} (the starter's 1,000 rated classes).")
    _define(flags.DEFINE_integer, "segment_max_pred", segments.MAX_PREDICTIONS,
            f"--segment_labels: segments {ranked} per class (Kaggle's MAP@100,000).")


def define_submission():
    """A submission written from records (inference.py's, ensemble.py's)."""
    _define(flags.DEFINE_string, "input_data_pattern", "", "Comma-separated globs of TFRecords.")
    _define(flags.DEFINE_string, "output_file", "", "The CSV file to write.")
    _define(flags.DEFINE_string, "untar_model_dir", "",
            "Where .tgz bundles are unpacked: each into a new folder inside it, kept (default: "
            "a fresh temporary folder, removed when the run ends).")
    _define(flags.DEFINE_integer, "log_seconds", 10, "Print progress at most this often.")
    define_reading()
    define_top_k("Label/confidence pairs per video.")
