"""Label losses of the YouTube-8M starter, selectable by name (`--label_loss`).

Each loss maps (predictions [B, C] probabilities, or scores for SoftmaxLoss and HingeLoss, and
multi-hot labels [B, C]) to a per-example loss [B]; the training loop averages over the global
batch (`tf.nn.compute_average_loss`), so the loss means the same on any number of devices.
Rated segments (2019) pass weights [B, C] too, 1 at the rated classes: the other classes count
neither as positives nor as negatives (the sum runs over the rated classes only).
"""

import tensorflow as tf


class LossTerm:
    """A share of the training loss beside the label loss (distillation's). The trainer's step
    calls, on each device's part of a batch, `inputs` (outside the compiled step: it may run
    what XLA cannot, such as a teacher parsing strings) and then, inside it, the term itself."""

    transforms = ()  # the readers.Transforms its batches need (records kept, more videos)

    def inputs(self, batch):
        """More model inputs the term reads back in __call__ (a dict of [B, ...] tensors)."""
        return {}

    def __call__(self, per_example, probabilities, batch):
        """The per-example loss [B] with this term's share, from the one before it [B], the
        student's probabilities [B, C] and the batch (with this term's inputs)."""
        return per_example

    def in_use(self):
        """What the term adds to plain training, one phrase each (a run's first lines)."""
        return []


def weighted(terms, weights):
    """[B, C] per-class terms times the weights, where given."""
    return terms if weights is None else terms * tf.cast(weights, tf.float32)


class CrossEntropyLoss:
    """Binary cross-entropy summed over classes, with the starter's epsilon (1e-5).

    label_smoothing s moves every target towards 1/2: y * (1 - s) + s / 2.
    """

    epsilon = 1e-5
    takes_weights = True

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, predictions, labels, weights=None):
        labels = tf.cast(labels, tf.float32)
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        predictions = tf.cast(predictions, tf.float32)
        log_likelihood = (labels * tf.math.log(predictions + self.epsilon)
                          + (1.0 - labels) * tf.math.log(1.0 - predictions + self.epsilon))
        return -tf.reduce_sum(weighted(log_likelihood, weights), axis=1)


class HingeLoss:
    """sum over classes of max(0, b - (2y - 1) * prediction), b = 1."""

    takes_weights = True

    def __init__(self, label_smoothing=0.0, b=1.0):
        if label_smoothing:
            raise ValueError("HingeLoss takes no label smoothing")
        self.b = b

    def __call__(self, predictions, labels, weights=None):
        signs = 2.0 * tf.cast(labels, tf.float32) - 1.0
        margins = self.b - signs * tf.cast(predictions, tf.float32)
        return tf.reduce_sum(weighted(tf.maximum(0.0, margins), weights), axis=1)


class SoftmaxLoss:
    """Cross-entropy of softmax(predictions) against the labels normalised to sum to one.

    label_smoothing s mixes the normalised labels with the uniform distribution over C classes.
    """

    epsilon = 1e-7

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = label_smoothing

    takes_weights = False  # a softmax over the rated classes alone is not the model's

    def __call__(self, predictions, labels, weights=None):
        if weights is not None:
            raise ValueError("SoftmaxLoss cannot leave the unrated classes of a segment out: "
                             "train on segments with --label_loss=CrossEntropyLoss")
        labels = tf.cast(labels, tf.float32)
        targets = labels / tf.maximum(tf.reduce_sum(labels, axis=1, keepdims=True), self.epsilon)
        if self.label_smoothing:
            classes = tf.cast(tf.shape(labels)[1], tf.float32)
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / classes
        log_softmax = tf.nn.log_softmax(tf.cast(predictions, tf.float32), axis=1)
        return -tf.reduce_sum(targets * log_softmax, axis=1)


LOSSES = {cls.__name__: cls for cls in (CrossEntropyLoss, HingeLoss, SoftmaxLoss)}


def get_loss(name, label_smoothing=0.0):
    """The loss `name`; an unknown name lists the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown label_loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name](label_smoothing=label_smoothing)
