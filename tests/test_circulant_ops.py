"""circulant_ops against float64 NumPy references built from explicit matrices."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import circulant_ops as co


def circ(c):
    """The n x n circulant matrix with first column c: C[i, j] = c[(i - j) mod n]."""
    n = len(c)
    i, j = np.indices((n, n))
    return c[(i - j) % n]


def reference(x, diagonals, circulants, units, bias=None):
    """x @ A[:units, :n_in].T, A = D1 C1 ... Dk Ck, with explicit float64 matrices."""
    x = np.asarray(x, np.float64)
    n = circulants.shape[1]
    padded = np.zeros((*x.shape[:-1], n))
    padded[..., : x.shape[-1]] = x
    for d, c in reversed(list(zip(diagonals.astype(np.float64), circulants.astype(np.float64)))):
        padded = (padded @ circ(c).T) * d  # row vectors: (C x)^T = x^T C^T, then diag(d)
    y = padded[..., :units]
    return y if bias is None else y + bias


def relative_error(got, want):
    return np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)


def random_layer(n_in, units, k, seed=0, initializer="araujo2020", side="output"):
    """By default a layer of the first form, which `reference` computes: output-side
    diagonals, one padded product."""
    layer = co.DiagonalCirculant(units, k_factors=k, initializer=initializer, seed=seed,
                                 diagonal_side=side, expansion="pad")
    layer.build((None, n_in))
    rng = np.random.default_rng(seed + 1)
    layer.bias.assign(rng.normal(size=units).astype(np.float32))
    return layer


def test_circulant_matmul_is_circular_convolution():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 8, 64, 1000, 1024):
        c, x = rng.normal(size=n), rng.normal(size=(5, n))
        got = co.circulant_matmul(tf.constant(x, tf.float32), tf.constant(c, tf.float32))
        assert relative_error(got, x @ circ(c).T) < 1e-5, n


@pytest.mark.parametrize("n_in, units", [(n, n) for n in (1, 2, 3, 7, 8, 64, 1000, 1024)]
                         + [(1152, 512), (64, 1000), (1024, 3862)])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_layer_matches_explicit_matrices(n_in, units, k):
    layer = random_layer(n_in, units, k)
    diagonals, circulants = layer.diagonals.numpy(), layer.circulants.numpy()
    assert diagonals.shape == circulants.shape == (k, co.fft_size(max(n_in, units)))
    rng = np.random.default_rng(2)
    x2 = rng.normal(size=(6, n_in)).astype(np.float32)
    x3 = rng.normal(size=(3, 4, n_in)).astype(np.float32)
    bias = layer.bias.numpy().astype(np.float64)
    for x in (x2, x3):
        got = layer(x).numpy()
        assert got.shape == (*x.shape[:-1], units)
        assert relative_error(got, reference(x, diagonals, circulants, units, bias)) < 1e-5


@pytest.mark.parametrize("n_in, units, k", [(7, 5, 2), (16, 16, 1), (24, 40, 4)])
def test_dense_matrix_is_the_explicit_product(n_in, units, k):
    layer = random_layer(n_in, units, k)
    d = layer.diagonals.numpy().astype(np.float64)
    c = layer.circulants.numpy().astype(np.float64)
    explicit = np.eye(layer.n)
    for i in range(k):
        explicit = explicit @ np.diag(d[i]) @ circ(c[i])
    got = layer.dense_matrix().numpy()
    assert got.shape == (units, n_in)
    assert relative_error(got, explicit[:units, :n_in]) < 1e-5


@pytest.mark.parametrize("n_in, units, k", [(8, 8, 1), (12, 7, 2), (20, 33, 4)])
def test_gradients_equal_those_of_the_dense_matrix(n_in, units, k):
    layer = random_layer(n_in, units, k, seed=3)
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(5, n_in)), tf.float32)
    weights = tf.constant(rng.normal(size=(5, units)), tf.float32)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = tf.reduce_sum(weights * layer(x))
    ours_grads = tape.gradient(ours, [x, layer.diagonals, layer.circulants, layer.bias])

    # The same map through explicit float64 matrices, differentiated by TensorFlow.
    n = layer.n
    index = tf.constant((np.arange(n)[:, None] - np.arange(n)[None, :]) % n)
    d64 = tf.Variable(tf.cast(layer.diagonals, tf.float64))
    c64 = tf.Variable(tf.cast(layer.circulants, tf.float64))
    b64 = tf.Variable(tf.cast(layer.bias, tf.float64))
    x64 = tf.cast(x, tf.float64)
    with tf.GradientTape(persistent=True) as tape64:
        tape64.watch(x64)
        a = tf.eye(n, dtype=tf.float64)
        for i in range(k):
            a = a @ tf.linalg.diag(d64[i]) @ tf.gather(c64[i], index)
        y = x64 @ tf.transpose(a[:units, :n_in]) + b64
        dense = tf.reduce_sum(tf.cast(weights, tf.float64) * y)
    dense_grads = tape64.gradient(dense, [x64, d64, c64, b64])

    for name, got, want in zip(("x", "diagonals", "circulants", "bias"), ours_grads, dense_grads):
        assert relative_error(got.numpy(), want.numpy()) < 1e-5, name


def test_save_and_load_gives_identical_outputs(tmp_path):
    inputs = keras.Input((3, 20))
    hidden = co.DiagonalCirculant(30, k_factors=2, activation="relu")(inputs)
    outputs = keras.layers.Dense(4)(hidden)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(5).normal(size=(2, 3, 20)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    layer = loaded.layers[1]
    assert isinstance(layer, co.DiagonalCirculant)
    assert (layer.units, layer.k_factors, layer.n, layer.blocks) == (30, 2, 20, 2)  # 20 -> 30


@pytest.mark.parametrize("side", ["output", "input"])
def test_tiny_regression_fits_a_diagonal_circulant_target(side):
    rng = np.random.default_rng(6)
    target = random_layer(48, 48, 1, seed=7, side=side)
    x = rng.normal(size=(512, 48)).astype(np.float32)
    y = target(x).numpy()
    layer = co.DiagonalCirculant(48, k_factors=1, seed=8, diagonal_side=side)
    optimizer = keras.optimizers.Adam(0.01)
    layer.build((None, 48))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((layer(x) - y) ** 2)
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply_gradients(zip(grads, layer.trainable_variables))
        return loss

    first = float(step())
    for _ in range(1500):
        last = float(step())
    assert last < 1e-4 * first, (first, last)


def test_mixed_precision_computes_the_fft_in_float32():
    layer = co.DiagonalCirculant(64, k_factors=2, seed=9, dtype="mixed_float16",
                                 diagonal_side="output")
    x = np.random.default_rng(10).normal(size=(4, 64)).astype(np.float32)
    y = layer(x)
    assert y.dtype == tf.float16 and layer.circulants.dtype == tf.float32
    want = reference(x, layer.diagonals.numpy(), layer.circulants.numpy(), 64)
    assert relative_error(y.numpy(), want) < 2e-3  # float16 output rounding only


def test_weight_counts_and_initializers():
    layer = random_layer(1024, 19310, 1)
    assert layer.n == co.fft_size(19310) == 19440  # 2^4 * 3^5 * 5
    assert layer.count_params() == 2 * 19440 + 19310 == \
        co.weight_count(1024, 19310, expansion="pad")
    assert layer.dense_weight_count() == 1024 * 19310 + 19310

    fixed = random_layer(16, 16, 2, initializer="cheng2015")
    assert [w.name for w in fixed.trainable_weights] == ["circulants", "bias"]
    assert set(np.unique(fixed.diagonals.numpy())) == {-1.0, 1.0}

    d, c = co.initial_values("araujo2018", 3, 4096, 512, seed=0)
    assert abs(d.var() * 512 - 1) < 0.05 and abs(c.var() * 512 - 1) < 0.05
    d, c = co.initial_values("araujo2020", 3, 4096, 512, seed=0)
    assert set(np.unique(d)) == {-1.0, 1.0} and abs(c.var() * 4096 / 2 - 1) < 0.05
    d, c = co.initial_values("fan_in", 3, 4096, 512, seed=0, n_in=1024)
    assert set(np.unique(d)) == {-1.0, 1.0}
    assert abs(c[-1].var() * 1024 / 2 - 1) < 0.1 and abs(c[:-1].var() * 4096 - 1) < 0.05
    with pytest.raises(ValueError, match="fan_in, araujo2020, araujo2018, cheng2015"):
        co.DiagonalCirculant(4, initializer="glorot")


def test_fft_size():
    assert [co.fft_size(m) for m in (1, 7, 11, 1000, 1024, 3862, 19310, 15448)] == \
        [1, 7, 12, 1000, 1024, 3888, 19440, 15552]
    assert co.fft_size(262144 + 4096) == 268800


@pytest.mark.parametrize("k", [1, 3])
def test_fan_in_initialisation_doubles_the_variance_whatever_k_and_padding(k):
    layer = co.DiagonalCirculant(2000, k_factors=k, use_bias=False, initializer="fan_in", seed=0)
    x = np.random.default_rng(11).normal(size=(256, 500)).astype(np.float32)
    assert abs(layer(x).numpy().var() / 2 - 1) < 0.15


# -- the options: factor order, expanding by blocks, leaky ReLU between factors ------------------

def reference_options(x, diagonals, circulants, units, side, blocks, slope):
    """The layer's map by explicit float64 matrices, block by block, factor by factor."""
    x = np.asarray(x, np.float64)
    k, total = circulants.shape
    n = total // blocks
    padded = np.zeros((*x.shape[:-1], n))
    padded[..., : x.shape[-1]] = x
    outputs = []
    for b in range(blocks):
        h = padded
        for i in reversed(range(k)):
            d = diagonals[i, b * n:(b + 1) * n].astype(np.float64)
            c = circ(circulants[i, b * n:(b + 1) * n].astype(np.float64))
            h = (h * d) @ c.T if side == "input" else (h @ c.T) * d
            if i > 0:
                h = np.where(h > 0, h, slope * h)
        outputs.append(h)
    return np.concatenate(outputs, axis=-1)[..., :units]


OPTIONS = [  # (n_in, units, k, side, expansion, slope)
    (12, 7, 1, "input", "pad", 1.0), (12, 7, 3, "input", "pad", 1.0),
    (8, 20, 2, "output", "blocks", 1.0), (8, 20, 2, "input", "blocks", 1.0),
    (7, 30, 1, "input", "blocks", 1.0),  # blocks of fft_size(7) = 7, the last one cut
    (10, 10, 3, "output", "pad", 0.1), (10, 10, 3, "input", "pad", 0.1),
    (6, 25, 4, "input", "blocks", 0.3), (20, 33, 2, "output", "pad", 0.0),
    (1152, 512, 2, "input", "pad", 0.1), (128, 1000, 2, "input", "blocks", 0.1),
]


def option_layer(n_in, units, k, side, expansion, slope, seed=0):
    layer = co.DiagonalCirculant(units, k_factors=k, diagonal_side=side, expansion=expansion,
                                 leaky_slope=slope, seed=seed)
    layer.build((None, n_in))
    rng = np.random.default_rng(seed + 1)
    layer.bias.assign(rng.normal(size=units).astype(np.float32))
    # Diagonals away from +-1 so that their order matters.
    layer.diagonals.assign(rng.normal(size=layer.diagonals.shape).astype(np.float32))
    return layer


@pytest.mark.parametrize("n_in, units, k, side, expansion, slope", OPTIONS)
def test_options_match_explicit_matrices(n_in, units, k, side, expansion, slope):
    layer = option_layer(n_in, units, k, side, expansion, slope)
    blocks, n = co.block_layout(n_in, units, expansion)
    assert (layer.blocks, layer.n) == (blocks, n)
    assert layer.diagonals.shape == (k, blocks * n)
    assert layer.count_params() == co.weight_count(n_in, units, k, expansion=expansion)
    x = np.random.default_rng(2).normal(size=(3, 4, n_in)).astype(np.float32)
    want = reference_options(x, layer.diagonals.numpy(), layer.circulants.numpy(), units, side,
                             blocks, slope) + layer.bias.numpy()
    got = layer(x).numpy()
    assert got.shape == (3, 4, units)
    assert relative_error(got, want) < 1e-5


def test_the_options_change_the_map():
    x = np.random.default_rng(3).normal(size=(4, 12)).astype(np.float32)
    base = option_layer(12, 12, 2, "output", "pad", 1.0)
    other = option_layer(12, 12, 2, "input", "pad", 1.0)
    other.set_weights(base.get_weights())
    assert relative_error(other(x).numpy(), base(x).numpy().astype(np.float64)) > 0.1
    leaky = option_layer(12, 12, 2, "output", "pad", 0.2)
    leaky.set_weights(base.get_weights())
    assert relative_error(leaky(x).numpy(), base(x).numpy().astype(np.float64)) > 0.05
    assert co.block_layout(8, 20, "blocks") == (3, 8) and co.block_layout(8, 20, "pad") == (1, 20)
    assert co.block_layout(1024, 8192, "blocks") == (8, 1024)
    assert co.weight_count(1024, 8192, 1, False, "blocks") == co.weight_count(1024, 8192, 1, False)


def dense_reference_tf64(x, diagonals, circulants, bias, units, side, blocks, slope):
    """The same map in float64 TensorFlow ops on explicit matrices (autodiff gives gradients)."""
    k, total = circulants.shape
    n = total // blocks
    index = tf.constant((np.arange(n)[:, None] - np.arange(n)[None, :]) % n)
    padded = tf.pad(x, [[0, 0], [0, n - x.shape[-1]]])
    outputs = []
    for b in range(blocks):
        h = padded
        for i in reversed(range(k)):
            d = diagonals[i, b * n:(b + 1) * n]
            c = tf.gather(circulants[i, b * n:(b + 1) * n], index)
            h = (h * d) @ tf.transpose(c) if side == "input" else (h @ tf.transpose(c)) * d
            if i > 0:
                h = tf.where(h > 0, h, slope * h)
        outputs.append(h)
    return tf.concat(outputs, axis=-1)[:, :units] + bias


@pytest.mark.parametrize("recompute", [False, True], ids=["kept", "recomputed"])
@pytest.mark.parametrize("n_in, units, k, side, expansion, slope",
                         [o for o in OPTIONS if o[0] < 100])
def test_option_gradients_equal_those_of_explicit_matrices(n_in, units, k, side, expansion,
                                                           slope, recompute):
    layer = option_layer(n_in, units, k, side, expansion, slope, seed=5)
    layer.recompute = recompute
    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(size=(5, n_in)), tf.float32)
    weights = tf.constant(rng.normal(size=(5, units)), tf.float32)
    variables = [layer.diagonals, layer.circulants, layer.bias]

    @tf.function  # as in training: a graph, where the recomputation must not be merged away
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            ours = tf.reduce_sum(weights * layer(x))
        return tape.gradient(ours, [x, *variables])

    ours_grads = gradients(x)

    x64 = tf.cast(x, tf.float64)
    v64 = [tf.Variable(tf.cast(v, tf.float64)) for v in variables]
    with tf.GradientTape() as tape64:
        tape64.watch(x64)
        y = dense_reference_tf64(x64, *v64, units, side, layer.blocks, slope)
        dense = tf.reduce_sum(tf.cast(weights, tf.float64) * y)
    dense_grads = tape64.gradient(dense, [x64, *v64])
    for name, got, want in zip(("x", "diagonals", "circulants", "bias"), ours_grads, dense_grads):
        assert relative_error(got.numpy(), want.numpy()) < 1e-5, name


def test_options_survive_save_and_load(tmp_path):
    inputs = keras.Input((9,))
    outputs = co.DiagonalCirculant(40, k_factors=2, diagonal_side="input", expansion="blocks",
                                   leaky_slope=0.1)(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(7).normal(size=(2, 9)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    layer = loaded.layers[1]
    assert (layer.diagonal_side, layer.expansion, layer.leaky_slope, layer.blocks) == \
        ("input", "blocks", 0.1, 5)  # ceil(40 / 9)
    with pytest.raises(ValueError, match="no matrix"):
        layer.dense_matrix()
    with pytest.raises(ValueError, match="diagonal_side must be one of input, output"):
        co.DiagonalCirculant(4, diagonal_side="left")
    with pytest.raises(ValueError, match="expansion must be one of blocks, pad"):
        co.DiagonalCirculant(4, expansion="tile")
    # A layer saved before the options existed has neither key: it keeps its first form.
    config = {k: v for k, v in layer.get_config().items()
              if k not in ("diagonal_side", "expansion")}
    assert (co.DiagonalCirculant.from_config(config).diagonal_side,
            co.DiagonalCirculant.from_config(config).expansion) == ("output", "pad")
