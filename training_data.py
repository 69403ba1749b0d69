"""What training adds to the reading of its records, as `readers.Transform`s: the reader parses,
the trainer (or distillation) composes.

    batches = reader.dataset(files, 64, shuffle=True, transforms=[
        Holdout(0, 5),                # --holdout_fold=0/5: fold 0's videos left out
        Unlabelled(extra_files),      # --unlabelled_data_pattern: more videos, labels unused
        KeepRecords()])               # a teacher's: each batch keeps its records as read
"""

import tensorflow as tf

import readers
from data_errors import DataError


class Holdout(readers.Transform):
    """Leave out the videos of fold `fold` of `folds` (readers.fold_of their ids)."""

    def __init__(self, fold, folds):
        self.fold, self.folds = fold, folds

    def records(self, records, reader):
        return records.filter(lambda record, *_: readers.fold_of(
            reader.record_id(record)[None], self.folds)[0] != self.fold)


class Unlabelled(readers.Transform):
    """More files (a pattern or a list), read among the reader's, whose videos train without
    labels (distillation's): each batch holds "labelled", [B] 1.0 for a video of the reader's
    files and 0.0 for one of these, whose labels (if any) are zeroed."""

    def __init__(self, files):
        self.more_files = readers.resolve_files(files) if isinstance(files, str) else list(files)

    def batch(self, batch, serialized, mark):
        batch["labelled"] = mark  # (B,)
        batch["labels"] *= mark[:, None]
        batch["num_labels"] *= tf.cast(mark, tf.int32)
        return batch


class KeepRecords(readers.Transform):
    """Each batch also holds its records as read ("serialized", [B] strings), for a model that
    parses them itself (a teacher)."""

    def records(self, records, reader):
        if reader.segments:
            raise DataError("a teacher reads whole videos: distillation does not take "
                            "--segment_labels")
        return records

    def batch(self, batch, serialized, mark):
        batch["serialized"] = serialized
        return batch
