"""Each kind of linear layer (layer_kinds) against its matrix built in float64 from the kind's
definition, forward and gradients, at square, expanding and reducing shapes, eagerly, inside
tf.function and under XLA; weight counts exact."""

import numpy as np
import pytest
import tensorflow as tf

import layer_kinds
import models

SHAPES = [(24, 24), (10, 36), (36, 10)]  # square, expanding, reducing
STRUCTURES = {
    "dense": layer_kinds.KINDS["dense"](),
    "circulant k=2": layer_kinds.KINDS["circulant"](k_factor=2),
    "circulant output side, padded": layer_kinds.KINDS["circulant"](
        k_factor=2, diagonal_side="output", expansion="pad"),
    "low_rank 3": layer_kinds.KINDS["low_rank"](rank=3),
    "monarch 4 blocks": layer_kinds.KINDS["monarch"](blocks=4),
    "monarch, automatic blocks": layer_kinds.KINDS["monarch"](),
    "btt rank 2, 3 blocks": layer_kinds.KINDS["btt"](rank=2, blocks=3),
    "btt, automatic blocks": layer_kinds.KINDS["btt"](),
}


def block_diagonal(blocks):
    """[b, rows, cols] -> the [b*rows, b*cols] block-diagonal matrix (float64 TF)."""
    b, rows, cols = blocks.shape
    eye = tf.eye(b, dtype=tf.float64)
    return tf.reshape(tf.einsum("ij,irc->irjc", eye, blocks), [b * rows, b * cols])


def monarch_reference(first, second, n_in, units):
    """Q L P R, cut to [units, n_in]: R, L block-diagonal; P sends value f of the b*q middle
    values to block f mod b, place f div b; Q sends place t of output block i to t*b + i."""
    b, q, p = first.shape
    s = second.shape[1]
    perm = np.zeros((b * q, b * q))
    for f in range(b * q):
        perm[(f % b) * q + f // b, f] = 1
    out = np.zeros((b * s, b * s))
    for i in range(b):
        for t in range(s):
            out[t * b + i, i * s + t] = 1
    full = out @ block_diagonal(second) @ perm @ block_diagonal(first)
    return full[:units, :n_in]


def circulant_reference(diagonals, circulants, n_in, units, side, blocks):
    """Per block the product of factors C_i D_i (input side) or D_i C_i, with
    C_i[r, s] = c_i[(r - s) mod n]; blocks stacked, cut to [units, n_in]."""
    k, n = circulants.shape[0], circulants.shape[1] // blocks
    index = (np.arange(n)[:, None] - np.arange(n)[None, :]) % n
    stacked = []
    for block in range(blocks):
        a = tf.eye(n, dtype=tf.float64)
        for i in range(k):
            d = diagonals[i, block * n:(block + 1) * n]
            c = tf.gather(circulants[i, block * n:(block + 1) * n], index)
            a = a @ (c * d[None, :] if side == "input" else d[:, None] * c)
        stacked.append(a)
    return tf.concat(stacked, axis=0)[:units, :n_in]


def btt_reference(first, second, n_in, units):
    """A[(k, a), (j, i)] = sum_t L[k, a, j, t] R[j, k, t, i] (R: first [b, b, r, p], L: second
    [b, s, b, r]), rows k*s + a and columns j*p + i, cut to [units, n_in]."""
    b, _, _, p = first.shape
    s = second.shape[1]
    full = tf.reshape(tf.einsum("kajt,jkti->kaji", second, first), [b * s, b * p])
    return full[:units, :n_in]


def reference_matrix(layer, variables, n_in, units):
    """The layer's [units, n_in] matrix from float64 copies of its structure variables."""
    kind = layer_kinds.kind_of(layer)
    if kind == "dense":
        return tf.transpose(variables[0])
    if kind == "low_rank":
        return tf.transpose(variables[0] @ variables[1])
    if kind == "monarch":
        return monarch_reference(*variables, n_in, units)
    if kind == "btt":
        return btt_reference(*variables, n_in, units)
    return circulant_reference(*variables, n_in, units, layer.diagonal_side, layer.blocks)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("n_in, units", SHAPES)
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_each_kind_against_its_float64_matrix(name, n_in, units, mode):
    structure = STRUCTURES[name]
    rng = np.random.default_rng(n_in * 100 + units)
    layer = structure.build(units, bias=0.25, l2=1e-3, name="layer")
    x = tf.constant(rng.normal(size=(5, n_in)), tf.float32)
    layer(x)
    assert layer.count_params() == structure.weight_count(n_in, units)
    variables = [layer.kernel] if structure.name == "dense" else layer.structured_variables()
    weights = tf.constant(rng.normal(size=(5, units)), tf.float32)

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(weights * layer(x))
        return (layer(x), *tape.gradient(loss, [x, *variables]))

    if mode != "eager":
        step = tf.function(step, jit_compile=mode == "xla")
    y, grad_x, *grads = step(x)

    copies = [tf.Variable(v.numpy().astype(np.float64)) for v in variables]
    x64, w64 = x.numpy().astype(np.float64), weights.numpy().astype(np.float64)
    with tf.GradientTape() as tape:
        matrix = reference_matrix(layer, copies, n_in, units)
        y_ref = x64 @ tf.transpose(matrix) + 0.25
        loss = tf.reduce_sum(w64 * y_ref)
    grads_ref = tape.gradient(loss, copies)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_x.numpy(), w64 @ matrix.numpy(), rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.dense_matrix(), matrix.numpy(), rtol=1e-4, atol=1e-5)
    assert layer.dense_weight_count() == n_in * units + units
    assert len(layer.losses) == len(variables)  # the L2 penalty reaches every factor


def test_monarch_keeps_two_n_sqrt_n_weights_when_square():
    structure = layer_kinds.KINDS["monarch"]()
    assert structure.weight_count(1024, 1024, use_bias=False) == 2 * 1024 * 32
    assert layer_kinds.KINDS["monarch"](blocks=8).weight_count(
        1152, 3862, use_bias=False) == 8 * 144 * (144 + 483)
    with pytest.raises(ValueError, match="monarch_blocks=40 is more than the smaller side"):
        layer_kinds.KINDS["monarch"](blocks=40).build(10)(tf.zeros([1, 30]))


def test_btt_keeps_two_r_n_sqrt_n_weights_when_square_and_one_block_is_rank_r():
    assert layer_kinds.KINDS["btt"](rank=3).weight_count(1024, 1024, use_bias=False) == \
        2 * 3 * 1024 * 32
    assert layer_kinds.KINDS["btt"](rank=2, blocks=4).weight_count(1152, 3862) == \
        2 * 16 * (288 + 966) + 3862
    one_block = layer_kinds.KINDS["btt"](rank=3, blocks=1).build(20)
    one_block(tf.zeros([1, 30]))
    assert np.linalg.matrix_rank(one_block.dense_matrix(), tol=1e-4) == 3  # float32 noise
    with pytest.raises(ValueError, match="btt_blocks=40 is more than the smaller side"):
        layer_kinds.KINDS["btt"](blocks=40).build(10)(tf.zeros([1, 30]))
    with pytest.raises(ValueError, match="--btt_blocks must be 0 \\(automatic\\) or more, got -1"):
        models.build_model("MoeModel", 10, compact_layers="moe=btt", btt_blocks=-1)


def test_a_btt_layer_saves_and_restores_its_matrix(tmp_path):
    layer = layer_kinds.KINDS["btt"](rank=2, blocks=3).build(10, name="btt")
    x = tf.random.normal([4, 36], seed=1)
    layer(x)
    path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
    restored = layer_kinds.KINDS["btt"](rank=2, blocks=3).build(10, name="btt")
    restored(x)
    tf.train.Checkpoint(layer=restored).read(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("value, message", [
    ("fc=sparse", "unknown layer kind\\(s\\) sparse in --compact_layers; valid: dense, "
                  "circulant, low_rank, monarch, btt"),
    ("head=dense", "unknown compact layer\\(s\\) head; valid: embedding, fc"),
    ("moe_gates=low_rank", "a low_rank layer needs --low_rank of at least 1, got 0"),
    ("gating=low_rank:0", "gating=low_rank:0: the size after ':' is a whole number of at least "
                          "1, the site's own k_factor for circulant, low_rank for low_rank"),
    ("gating=dense:3", "dense layers have no size"),
    ("gating=btt:0", "monarch_blocks for monarch, btt_rank for btt"),
    ("gating=monarch:two", "gating=monarch:two: the size after ':' is a whole number"),
])
def test_unknown_sites_and_kinds_are_one_line_naming_the_valid_ones(value, message):
    with pytest.raises(ValueError, match=message):
        models.build_model("MoeModel", 10, compact_layers=value)


def test_a_kind_per_site_reaches_each_layer_of_the_model():
    model = models.build_model(
        "BottleneckModel", 20, bottleneck_size=8, wide_layers=1, wide_size=16,
        video_level_classifier_model="MoeModel", output_gating=True, low_rank=2,
        monarch_blocks=2,
        compact_layers="fc=monarch,bottleneck=dense,moe_gates=circulant,moe_experts=low_rank,"
                       "gating")
    model({"features": tf.zeros([2, 12])})
    kinds = {name: layer_kinds.kind_of(getattr(model, name)) for name in ("hidden_0", "hidden_1")}
    kinds.update(gates=layer_kinds.kind_of(model.classifier.gates),
                 experts=layer_kinds.kind_of(model.classifier.experts),
                 gating=layer_kinds.kind_of(model.output_gating.transform))
    assert kinds == {"hidden_0": "monarch", "hidden_1": "dense", "gates": "circulant",
                     "experts": "low_rank", "gating": "circulant"}


def test_a_size_after_the_kind_is_that_sites_own_and_the_others_keep_the_settings():
    model = models.build_model(
        "BottleneckModel", 20, bottleneck_size=0, video_level_classifier_model="MoeModel",
        moe_num_mixtures=1, output_gating=True, low_rank=3, k_factor=2,
        compact_layers="moe_gates=low_rank:4,moe_experts=low_rank,gating=circulant:1")
    model({"features": tf.zeros([2, 12])})
    gates, experts = model.classifier.gates, model.classifier.experts
    assert (gates.rank, experts.rank) == (4, 3)
    assert model.output_gating.transform.k_factors == 1
    # 12 -> 40 gates of rank 4, 12 -> 20 experts of rank 3 (+ bias), a 20 x 20 k=1 circulant
    # gate (2 * 20 weights, its bias, batch norm's 4 * 20).
    assert gates.count_params() == (12 + 40) * 4
    assert experts.count_params() == (12 + 20) * 3 + 20


def test_low_rank_makes_only_the_classifier_sites_that_compact_layers_leaves_unnamed_low_rank():
    named_dense = models.build_model("BottleneckModel", 20, bottleneck_size=0, low_rank=3,
                                     compact_layers="classifier=dense")
    unnamed = models.build_model("BottleneckModel", 20, bottleneck_size=0, low_rank=3)
    for model in (named_dense, unnamed):
        model({"features": tf.zeros([2, 12])})
    assert layer_kinds.kind_of(named_dense.classifier.logits) == "dense"
    assert layer_kinds.kind_of(unnamed.classifier.logits) == "low_rank"
