"""Weight averaging (train.py --ema_decay): a second model whose weights follow the trained
ones as an exponential moving average (the 2018 winners kept one of half-life 2,000 steps).
Validation, the checkpoints' averaged model and every tool after training use the average."""

import numpy as np
import tensorflow as tf


def copy_weights(target, source):
    """Every weight of model `target` set to model `source`'s: an average that starts here."""
    for average, weight in zip(target.weights, source.weights):
        average.assign(weight)


def resume(averaged, model, decay, given_decay, saved_average, step):
    """A resumed run's average: started at the weights when the checkpoint had none, `decay`
    (a variable holding the checkpoint's) set to the given one (0: keep it). Returns what to
    say about it, or None."""
    saved_decay = float(decay.numpy())
    if given_decay:
        decay.assign(given_decay)
    if not saved_average:
        copy_weights(averaged, model)
        return f"--ema_decay: the average of the weights starts at step {step}"
    if not given_decay:
        return f"the average of the weights goes on (decay {saved_decay:g}, as saved)"
    if np.float32(given_decay) != np.float32(saved_decay):
        return (f"--ema_decay={given_decay:g}: the average of the weights goes on with this "
                f"decay (it was {saved_decay:g}; leave the flag out to keep the saved one)")
    return None


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
