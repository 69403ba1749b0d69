"""Losses against float64 NumPy references written from the starter's definitions."""

import numpy as np
import pytest
import tensorflow as tf

import losses


def data(seed=0):
    rng = np.random.default_rng(seed)
    predictions = rng.uniform(0, 1, size=(6, 9))
    labels = (rng.random((6, 9)) < 0.3).astype(np.float64)
    labels[0] = 0  # a video without labels
    return predictions, labels


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(smoothing):
    p, y = data()
    target = y * (1 - smoothing) + smoothing / 2
    want = -(target * np.log(p + 1e-5) + (1 - target) * np.log(1 - p + 1e-5)).sum(axis=1)
    got = losses.get_loss("CrossEntropyLoss", smoothing)(tf.constant(p, tf.float32), y)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_hinge():
    p, y = data(1)
    want = np.maximum(0, 1 - (2 * y - 1) * p).sum(axis=1)
    got = losses.get_loss("HingeLoss")(tf.constant(p, tf.float32), y)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softmax(smoothing):
    p, y = data(2)
    scores = p * 4 - 2
    targets = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-7)
    targets = targets * (1 - smoothing) + smoothing / y.shape[1]
    log_softmax = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    want = -(targets * log_softmax).sum(axis=1)
    got = losses.get_loss("SoftmaxLoss", smoothing)(tf.constant(scores, tf.float32), y)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(ValueError, match="CrossEntropyLoss, HingeLoss, SoftmaxLoss"):
        losses.get_loss("L2Loss")
