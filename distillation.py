"""Distillation: a frozen teacher's class probabilities as soft targets, on the training batch.

A teacher is one or several trained models (train_dirs of train.py, exported SavedModel folders
or .tgz bundles), averaged with weights; each parses the batch's serialized records with its own
reader, so a teacher may read other features than the student (not records of another level).
The student's loss on a video becomes

    (1 - w) * label_loss(p, labels) + w * T^2 * CE(sigmoid(logit(p) / T), sigmoid(logit(q) / T))

with q the teacher's probabilities, CE the binary cross-entropy summed over classes (the
starter's CrossEntropyLoss with soft targets), w --distillation_weight and T
--distillation_temperature (the 2018 winners: w = 0.5, T = 1).

Small data makes honest teachers hard: a model predicts the videos it was trained on back. A
KnnMoeModel teacher here leaves each video itself out of its neighbours (a memory video of
near-identical features); teachers trained on folds (--teacher_folds) predict each video by the
one teacher that never saw it (train.py --holdout_fold).
"""


import tensorflow as tf

import losses
import readers
import trained_models
import training_data

EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before their logits


def soft_cross_entropy(predictions, targets, temperature=1.0):
    """[B]: T^2 times the binary cross-entropy, summed over classes, of the student's tempered
    probabilities against the teacher's (both [B, C] probabilities)."""
    predictions, targets = tf.cast(predictions, tf.float32), tf.cast(targets, tf.float32)
    if temperature == 1.0:
        return losses.CrossEntropyLoss()(predictions, targets)

    def tempered(p):
        p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
        return tf.sigmoid((tf.math.log(p) - tf.math.log1p(-p)) / temperature)

    return temperature ** 2 * losses.CrossEntropyLoss()(tempered(predictions), tempered(targets))


class PredictionCache:
    """A frozen teacher's probabilities by video id, computed the first time a video comes:
    later epochs cost a lookup. Memory: videos x classes x 4 bytes (0.67 GB for 43,552 videos
    of 3,862 classes): for data sets of that size, not for millions of videos."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.missing = tf.fill([num_classes], -1.0)  # no probability is negative
        self.table = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32,
                                                             self.missing)

    def __call__(self, ids, predict):
        """[B, C] probabilities of the videos `ids` [B]; predict(new [B] bool) gives those of
        the videos not cached yet, [N, C]."""
        found = tf.ensure_shape(self.table.lookup(ids), [None, self.num_classes])  # -1: new
        new = found[:, 0] < 0

        def compute():
            fresh = tf.cast(predict(new), tf.float32)  # (N, C)
            self.table.insert(tf.boolean_mask(ids, new), fresh)
            return tf.tensor_scatter_nd_update(found, tf.where(new), fresh)

        return tf.cond(tf.reduce_any(new), compute, lambda: found)

    def size(self):
        return int(self.table.size())


class Teacher:
    """The weighted mean of the members' probabilities on [B] serialized records: [B, C].

    With folds, member i predicts the videos of fold i only (it was trained without them).
    With cache, each video's probabilities are computed once (PredictionCache)."""

    def __init__(self, paths, weights, num_classes, frame_features, untar_dir, folds=0,
                 cache=False):
        if folds and len(paths) != folds:
            raise ValueError(f"--teacher_folds={folds} needs {folds} teachers (one trained "
                             f"with --holdout_fold=i/{folds} for each fold i), got {len(paths)}")
        self.folds = folds
        self.weights = [float(w) for w in weights]
        self.members = [self._member(path, num_classes, frame_features, untar_dir)
                        for path in paths]
        self.cache = PredictionCache(num_classes) if cache else None

    @staticmethod
    def _member(path, num_classes, frame_features, untar_dir):
        """A function of [B] serialized records -> [B, C] probabilities of one teacher."""
        try:
            opened = trained_models.open_model(path, untar_dir)
        except trained_models.NotATrainedModel:
            raise ValueError(f"--teacher={path} is neither a train_dir of train.py nor an "
                             "exported model (a SavedModel folder or .tgz of export_model.py)") \
                from None
        description = opened.description
        if description is None:
            raise ValueError(f"--teacher={path}: the exported model has no model_flags.json: "
                             "export it with export_model.py")
        if description.frame_features != frame_features:
            levels = {True: "frame-level", False: "video-level"}
            raise ValueError(f"--teacher={path} reads {levels[description.frame_features]} "
                             f"records and the student {levels[frame_features]} ones: a teacher "
                             "must read the student's records")
        if description.num_classes != num_classes:
            raise ValueError(f"--teacher={path} predicts {description.num_classes} classes, "
                             f"the student {num_classes}")
        if isinstance(opened, trained_models.CheckpointModel):  # the averaged weights where kept
            opened.model.trainable = False
            if hasattr(opened.model, "leave_self_out"):
                opened.model.leave_self_out = True  # a KnnMoeModel: not the video itself

        def predict(serialized):
            return opened(serialized)[1]

        return predict

    def __call__(self, serialized, ids=None):
        if self.cache is None:
            return self._predict(serialized, ids)
        return self.cache(ids, lambda new: self._predict(tf.boolean_mask(serialized, new),
                                                         tf.boolean_mask(ids, new)))

    def _predict(self, serialized, ids):
        if self.folds:  # each teacher predicts only the videos of its fold
            fold = readers.fold_of(ids, self.folds)  # (B,)
            parts = tf.dynamic_partition(serialized, fold, self.folds)
            places = tf.dynamic_partition(tf.range(tf.shape(serialized)[0]), fold, self.folds)
            predicted = [tf.cast(member(part), tf.float32)  # (B_i, C)
                         for member, part in zip(self.members, parts)]
            return tf.stop_gradient(tf.dynamic_stitch(places, predicted))
        predictions = [tf.cast(member(serialized), tf.float32) for member in self.members]
        return tf.stop_gradient(tf.add_n([w * p for w, p in zip(self.weights, predictions)]))


class DistillationTerm(losses.LossTerm):
    """The teacher's share of the student's loss: (1 - w) * label loss + w * soft loss, and the
    soft loss alone for a video of --unlabelled_data_pattern (batch["labelled"] 0)."""

    def __init__(self, teacher, weight, temperature, unlabelled=(), said=()):
        self.teacher, self.weight, self.temperature = teacher, weight, temperature
        self.transforms = [training_data.KeepRecords()] + (
            [training_data.Unlabelled(unlabelled)] if unlabelled else [])
        self.said = list(said)

    @classmethod
    def from_config(cls, config, unlabelled):
        """The term of a train_config.TrainConfig with --teacher (built in the strategy's
        scope), or None. A .tgz teacher is unpacked in a temporary folder, gone once loaded."""
        c = config
        paths, weights = c.teachers()
        if not paths:
            return None
        teacher = Teacher(paths, weights, c.model_flags.num_classes, c.model_flags.frame_features,
                          "", c.teacher_folds, c.teacher_cache)
        said = [f"distillation from {', '.join(paths)} (weight {c.distillation_weight:g}, "
                f"temperature {c.distillation_temperature:g}"
                + (f", {c.teacher_folds} folds" if c.teacher_folds else "")
                + (", cached" if c.teacher_cache else "") + ")"]
        if unlabelled:
            said.append(f"the unlabelled videos of {len(unlabelled)} "
                        f"file{'s' if len(unlabelled) > 1 else ''} (--unlabelled_data_pattern)")
        return cls(teacher, c.distillation_weight, c.distillation_temperature, unlabelled, said)

    def inputs(self, batch):
        return {"soft_targets": self.teacher(batch["serialized"], batch["id"])}

    def in_use(self):
        return self.said

    def __call__(self, per_example, probabilities, batch):
        soft = soft_cross_entropy(probabilities, batch["soft_targets"], self.temperature)
        mixed = (1.0 - self.weight) * per_example + self.weight * soft
        if "labelled" in batch:  # (B,): an unlabelled video has the soft loss alone
            mixed = tf.where(batch["labelled"] > 0, mixed, soft)
        return mixed
