"""Weight averaging (train.py --ema_decay): a second model whose weights follow the trained
ones as an exponential moving average (the 2018 winners kept one of half-life 2,000 steps).
Validation, the checkpoints' averaged model and every tool after training use the average."""

import tensorflow as tf


def copy_weights(target, source):
    """Every weight of model `target` set to model `source`'s: an average that starts here."""
    for average, weight in zip(target.weights, source.weights):
        average.assign(weight)


def update(averaged, model, ema_decay, step):
    """average = d * average + (1 - d) * weights after step n, d = min(ema_decay,
    (1 + n) / (10 + n)) (TensorFlow's ExponentialMovingAverage with num_updates: early steps do
    not drag the start along)."""
    step = tf.cast(step, tf.float32)
    decay = tf.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    for average, weight in zip(averaged.trainable_variables, model.trainable_variables):
        average.assign(decay * average + (1.0 - decay) * weight)


def sync_statistics(averaged, model):
    """The averaged model's other variables (batch-norm statistics, a model's memory) set to
    the model's: they are averages or data already. Before it is saved or evaluated."""
    for average, value in zip(averaged.non_trainable_variables, model.non_trainable_variables):
        average.assign(value)
