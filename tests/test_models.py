import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import frame_level_models as flm
import layer_kinds
import model_flags
import model_summary
import model_utils
import models
import quantization

SMALL = dict(dbof_cluster_size=16, dbof_hidden_size=8, netvlad_cluster_size=4,
             netvlad_hidden_size=8, fv_cluster_size=4, fv_hidden_size=8, lstm_cells=8,
             lstm_layers=2, gru_cells=8, gru_layers=1, video_clusters=16, audio_clusters=8,
             fc_size=8, iterations=5, moe_num_mixtures=2)
VIDEO_LEVEL = {n for n in models.model_names()
               if not models.get_model_class(n).frame_level}
ALL_COMPACT = "embedding,fc,moe,gating"


def batch_for(name):
    rng = np.random.default_rng(0)
    if name in VIDEO_LEVEL:
        return {"features": tf.constant(rng.normal(size=(3, 1152)), tf.float32),
                "num_frames": tf.ones([3], tf.int32)}
    features = rng.normal(size=(3, 10, 1152))
    features[1, 4:] = features[2, 1:] = 0  # padding, as the reader gives it
    return {"features": tf.constant(features, tf.float32), "num_frames": tf.constant([10, 4, 1])}


@pytest.mark.parametrize("name", models.model_names())
def test_every_model_trains_and_its_compact_variant_is_smaller(name):
    counts = {}
    for compact in ("", ALL_COMPACT):
        model = models.build_model(name, 20, compact_layers=compact, **SMALL)
        with tf.GradientTape() as tape:
            probabilities = model(batch_for(name), training=True)
            loss = tf.reduce_mean(probabilities)
        grads = tape.gradient(loss, model.trainable_variables)
        assert probabilities.shape == (3, 20)
        assert float(tf.reduce_min(probabilities)) >= 0 and float(tf.reduce_max(probabilities)) <= 1
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
        counts[compact] = model.count_params()
    assert counts[ALL_COMPACT] < counts[""]


_DENSE_WEIGHTS = {}


@pytest.mark.parametrize("kind", layer_kinds.STRUCTURED)
@pytest.mark.parametrize("name", models.model_names())
def test_every_model_with_every_kind_at_every_site_trains_saves_and_restores(name, kind,
                                                                             tmp_path):
    sites = ",".join(f"{site}={kind}" for site in model_utils.SITES)
    settings = dict(SMALL, compact_layers=sites, low_rank=2, monarch_blocks=2,
                    bottleneck_size=6)
    model = models.build_model(name, 20, **settings)
    batch = batch_for(name)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    structured = [layer for layer in model_utils.all_layers(model)
                  if layer_kinds.kind_of(layer) == kind]
    assert structured, f"{name} has no {kind} layer"
    if name not in _DENSE_WEIGHTS:  # once a model, whichever kind comes first
        dense = models.build_model(name, 20, **dict(settings, compact_layers=""))
        dense(batch)
        _DENSE_WEIGHTS[name] = dense.count_params()
    assert model.count_params() < _DENSE_WEIGHTS[name]
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    restored = models.build_model(name, 20, **settings)
    restored(batch, training=False)
    tf.train.Checkpoint(model=restored).read(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored(batch, training=False).numpy(),
                                  model(batch, training=False).numpy())


@pytest.mark.parametrize("name", ["FrameLevelLogisticModel", "LstmModel", "NetVLADModelLF",
                                  "NetFVModelLF", "SoftDbofModelLF", "GatedDbofModelLF"])
def test_padding_frames_do_not_change_the_output(name):
    settings = dict(SMALL, iterations=0)  # pool over every real frame, no sampling
    model = models.build_model(name, 20, **settings)
    batch = batch_for(name)
    noisy = batch["features"].numpy()
    noisy[1, 4:] = 5.0
    noisy[2, 1:] = -3.0
    clean = model(batch, training=False).numpy()
    dirty = model({"features": tf.constant(noisy), "num_frames": batch["num_frames"]},
                  training=False).numpy()
    np.testing.assert_allclose(dirty, clean, rtol=1e-5, atol=1e-6)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'Nope'; choose one of .*DbofModel"):
        models.build_model("Nope", 10)
    with pytest.raises(ValueError,
                       match="valid: embedding, fc, bottleneck, moe, moe_gates, moe_experts, "
                       "classifier, gating \\(each may be SITE=KIND or SITE=KIND:SIZE\\)"):
        models.build_model("MoeModel", 10, compact_layers="fc,experts")


def test_paper_weight_counts():
    """Araujo et al. 2018 count every weight, batch-norm statistics (4 per unit) included."""
    def bn(units):
        return 4 * units

    gating = 3862 * 3862 + bn(3862)
    moe = lambda d: d * 3862 * 5 + d * 3862 * 4 + 3862 * 4  # gates (no bias), experts  # noqa: E731
    video = 1024 * 8192 + bn(8192) + 8192 * 512 + bn(512)
    audio = 128 * 4096 + bn(4096) + 4096 * 512 + bn(512)
    assert video + audio + moe(1024) + gating == 65_795_732
    assert video + moe(512) + gating == 45_359_764

    features = {"features": tf.zeros([1, 40, 1152]), "num_frames": tf.constant([40])}
    both = models.build_model("TwoStreamModel", 3862)
    both(features)
    assert both.count_params() == 65_795_732
    layers = {path.split("/", 1)[1]: (w, d) for path, _, w, d in model_summary.summarize(both)[0]}
    assert layers["video_dbof/clusters"][0] == 1024 * 8192
    assert layers["audio_fc"][0] == 4096 * 512
    assert layers["moe/gates"][0] == 1024 * 19310
    assert layers["moe/experts"][0] == 1024 * 15448 + 15448
    assert layers["gating/gating_weights"][0] == 3862 * 3862
    del both
    video_only = models.build_model("TwoStreamModel", 3862, use_audio=False)
    video_only(features)
    assert video_only.count_params() == 45_359_764


def test_summary_compression_and_budget():
    features = {"features": tf.zeros([1, 40, 1152]), "num_frames": tf.constant([40])}
    model = models.build_model("TwoStreamModel", 3862, compact_layers="fc,moe,gating",
                                    k_factor=1)
    model(features)
    rows, totals = model_summary.summarize(model)
    assert totals["dense_weights"] == 65_795_732
    assert totals["weights"] == model.count_params() < 10_000_000
    assert totals["compression"] == pytest.approx(65_795_732 / totals["weights"])
    text = model_summary.format_summary(model, "TwoStreamModel")
    assert "DiagonalCirculant" in text and "compression" in text
    model_summary.check_budget(model, 1000)
    with pytest.raises(ValueError, match="over --max_model_mb=10"):
        model_summary.check_budget(model, 10)


# -- layers against NumPy references ---------------------------------------------------------

def _bn_inference(x, layer):
    gamma, beta, mean, var = (w.numpy().astype(np.float64) for w in layer.weights)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _l2n(x, axis):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def _frames(rng):
    x = rng.normal(size=(2, 6, 5))
    mask = np.ones((2, 6, 1))
    mask[1, 3:] = 0
    return x, mask


def _perturb_batch_norm(layer, rng):
    for weight in layer.weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))


def test_netvlad_matches_numpy():
    rng = np.random.default_rng(1)
    x, mask = _frames(rng)
    layer = flm.NetVLAD(3)
    layer(tf.constant(x, tf.float32), tf.constant(mask, tf.float32))
    _perturb_batch_norm(layer.norm, rng)
    got = layer(tf.constant(x, tf.float32), tf.constant(mask, tf.float32)).numpy()
    w, c = layer.assign.kernel.numpy(), layer.centre.numpy()
    a = _softmax(_bn_inference(x @ w, layer.norm)) * mask
    v = np.einsum("btk,btd->bdk", a, x) - a.sum(axis=1)[:, None, :] * c
    want = _l2n(_l2n(v, 1).reshape(2, -1), 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_netfv_matches_numpy():
    rng = np.random.default_rng(2)
    x, mask = _frames(rng)
    layer = flm.NetFV(3, couple_weights=True)
    layer(tf.constant(x, tf.float32), tf.constant(mask, tf.float32))
    _perturb_batch_norm(layer.norm, rng)
    got = layer(tf.constant(x, tf.float32), tf.constant(mask, tf.float32)).numpy()
    w = layer.assign.kernel.numpy().astype(np.float64)
    c, sigma = 0.01 * w, layer.scale.numpy().astype(np.float64) ** 2 + 1e-6
    a = _softmax(_bn_inference(x @ w, layer.norm)) * mask
    a_sum = a.sum(axis=1)[:, None, :]
    ax, ax2 = np.einsum("btk,btd->bdk", a, x), np.einsum("btk,btd->bdk", a, x ** 2)
    first = (ax - a_sum * c) / sigma
    second = (ax2 + a_sum * c ** 2 - 2 * c * ax) / sigma ** 2 - a_sum
    want = np.concatenate([_l2n(_l2n(v, 1).reshape(2, -1), 1) for v in (first, second)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_context_gating_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 7))
    layer = model_utils.ContextGating()
    layer(tf.constant(x, tf.float32))
    _perturb_batch_norm(layer.norm, rng)
    got = layer(tf.constant(x, tf.float32), training=False).numpy()
    gates = _bn_inference(x @ layer.transform.kernel.numpy(), layer.norm)
    np.testing.assert_allclose(got, x / (1 + np.exp(-gates)), rtol=1e-5, atol=1e-6)


def test_moe_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 7))
    layer = model_utils.MoeClassifier(5, num_mixtures=3)
    got = layer(tf.constant(x, tf.float32)).numpy()
    gates = _softmax((x @ layer.gates.kernel.numpy()).reshape(4, 5, 4))
    expert_logits = x @ layer.experts.kernel.numpy() + layer.experts.bias.numpy()
    experts = 1 / (1 + np.exp(-expert_logits.reshape(4, 5, 3)))
    np.testing.assert_allclose(got, (gates[:, :, :3] * experts).sum(axis=2), rtol=1e-5)


def test_frame_sampling_stays_within_real_frames():
    features = tf.reshape(tf.range(2 * 8, dtype=tf.float32), [2, 8, 1])
    num_frames = tf.constant([8, 3])
    # 400 uniform draws from 8 frames miss one with probability under 8 * (7/8)**400, 5e-23
    sampled = model_utils.sample_frames(features, num_frames, 400, random=True).numpy()
    assert set(sampled[1, :, 0]) <= {8.0, 9.0, 10.0} and len(set(sampled[0, :, 0])) == 8
    even = model_utils.sample_frames(features, num_frames, 4, random=False).numpy()
    assert even[0, :, 0].tolist() == [1.0, 3.0, 5.0, 7.0]  # the middles of 4 equal stretches
    assert even[1, :, 0].tolist() == [8.0, 9.0, 9.0, 10.0]


def test_robust_dbof_averages_max_pools_of_frame_subsets():
    model = models.build_model("TwoStreamModel", 20, **dict(SMALL, n_bagging=3))
    batch = batch_for("TwoStreamModel")
    first = model(batch, training=False).numpy()
    np.testing.assert_array_equal(model(batch, training=False).numpy(), first)  # deterministic
    pool = model.video_pool
    frames, _ = model.frames(batch, False, count=15)
    video = frames[:, :, :1024]
    subsets = [pool(video[:, 5 * i:5 * (i + 1)], tf.ones_like(video[:, :5, :1])) for i in range(3)]
    np.testing.assert_allclose(model._pool(pool, video, None, False).numpy(),
                               np.mean([s.numpy() for s in subsets], axis=0), rtol=1e-5)


@pytest.mark.parametrize("name, classifier", [(n, "MoeModel") for n in models.model_names()]
                         + [("DbofModel", "LogisticModel")])
def test_a_checkpoint_restores_every_weight(name, classifier, tmp_path):
    """Batch-norm statistics included: a restored model predicts exactly as the saved one."""
    settings = dict(SMALL, compact_layers="fc", video_level_classifier_model=classifier)
    model = models.build_model(name, 20, **settings)
    batch = batch_for(name)
    model(batch, training=False)
    rng = np.random.default_rng(5)
    for weight in model.weights:
        weight.assign((rng.uniform(0.5, 1.5, weight.shape) * 0.1).astype(weight.dtype))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    restored = models.build_model(name, 20, **settings)
    restored(batch, training=False)
    tf.train.Checkpoint(model=restored).read(path).assert_existing_objects_matched()
    assert len(restored.weights) == len(model.weights)
    np.testing.assert_array_equal(restored(batch, training=False).numpy(),
                                  model(batch, training=False).numpy())


def test_knn_moe_neighbours_match_numpy():
    rng = np.random.default_rng(6)
    memory, labels = rng.normal(size=(40, 12)), (rng.random((40, 7)) < 0.3).astype(np.float32)
    model = models.build_model("KnnMoeModel", 7, video_size=8, audio_weight=0.5, knn_k=5,
                                    knn_temperature=3.0, knn_weight=0.25, memory_videos=40,
                                    memory_labels=int(labels.sum()))
    batches = [{"features": tf.constant(memory[i:i + 16], tf.float32),
                "labels": tf.constant(labels[i:i + 16])} for i in (0, 16, 32)]
    model({"features": batches[0]["features"]})
    model.memorize(batches)
    queries = rng.normal(size=(6, 12))

    def features(x):
        return np.concatenate([x[:, :8] / np.linalg.norm(x[:, :8], axis=1, keepdims=True),
                               0.5 * x[:, 8:] / np.linalg.norm(x[:, 8:], axis=1, keepdims=True)],
                              axis=1)

    similarity = features(queries) @ features(memory).astype(np.float16).astype(np.float64).T
    nearest = np.argsort(-similarity, axis=1)[:, :5]
    weights = np.exp(3.0 * np.take_along_axis(similarity, nearest, 1))
    knn = np.einsum("nk,nkc->nc", weights / weights.sum(axis=1, keepdims=True), labels[nearest])
    batch = {"features": tf.constant(queries, tf.float32)}
    moe = model.moe(tf.constant(features(queries), tf.float32)).numpy()
    np.testing.assert_allclose(model(batch, training=False).numpy(), 0.75 * moe + 0.25 * knn,
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="the training data changed"):
        model.memorize(batches[:2])


@pytest.mark.parametrize("iterations", [0, 5])
def test_quantized_frames_give_the_float_readers_output(iterations):
    rng = np.random.default_rng(7)
    quantized = rng.integers(0, 256, size=(3, 10, 1152), dtype=np.uint8)
    num_frames = tf.constant([10, 4, 1])
    quantized[1, 4:] = quantized[2, 1:] = 0  # padding, as FrameReader(quantized=True) gives it
    real = np.arange(10)[None, :, None] < num_frames.numpy()[:, None, None]
    floats = np.where(real, quantization.dequantize(quantized).numpy(), 0.0).astype(np.float32)
    model = models.build_model("TwoStreamModel", 20, **dict(SMALL, iterations=iterations))
    from_floats = model({"features": tf.constant(floats), "num_frames": num_frames}).numpy()
    from_bytes = model({"features": tf.constant(quantized), "num_frames": num_frames}).numpy()
    np.testing.assert_array_equal(from_bytes, from_floats)


def test_moe_gates_or_experts_alone_can_be_compact():
    x = tf.constant(np.random.default_rng(8).normal(size=(2, 16)), tf.float32)
    kinds = {}
    for compact in ("", "moe_gates", "moe_experts", "moe", "moe,moe_gates=low_rank",
                    "moe_gates=monarch,moe_experts=dense"):
        model = models.build_model("MoeModel", 10, compact_layers=compact, low_rank=3)
        layer = model.moe
        assert model({"features": x}).shape == (2, 10)
        kinds[compact] = (layer_kinds.kind_of(layer.gates), layer_kinds.kind_of(layer.experts))
    assert kinds == {"": ("dense", "dense"), "moe_gates": ("circulant", "dense"),
                     "moe_experts": ("dense", "circulant"), "moe": ("circulant", "circulant"),
                     "moe,moe_gates=low_rank": ("low_rank", "circulant"),
                     "moe_gates=monarch,moe_experts=dense": ("monarch", "dense")}


def test_batch_norm_momentum_reaches_every_batch_norm_layer():
    model = models.build_model("TwoStreamModel", 20, **{
        k: v for k, v in SMALL.items() if k in ("video_clusters", "audio_clusters", "fc_size",
                                                 "iterations", "moe_num_mixtures")})
    batch = batch_for("TwoStreamModel")
    model(batch)
    model_utils.set_batch_norm_momentum(model, 0.25)
    norms = [layer for layer in model_utils.all_layers(model)
             if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(norms) == 5  # both streams' DBoF and FC, Context Gating
    assert {layer.momentum for layer in norms} == {0.25}
    fc_norm = next(layer for layer in norms if layer.name == "video_fc_bn")
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(64, fc_norm.moving_mean.shape[0]))
    fc_norm(tf.constant(x, tf.float32), training=True)
    np.testing.assert_allclose(fc_norm.moving_mean.numpy(), 0.75 * x.mean(axis=0), rtol=1e-5)
    with pytest.raises(ValueError, match="batch_norm_momentum"):
        model_utils.set_batch_norm_momentum(model, 1.0)


@pytest.mark.parametrize("settings, paper", [
    (dict(use_audio=False, compact_layers="embedding"), 36_987_540),
    (dict(use_audio=False, compact_layers="fc"), 41_181_844),
    (dict(embedding="netvlad", video_clusters=64, audio_clusters=32), 86_333_460),
    (dict(embedding="netvlad", video_clusters=64, audio_clusters=32, compact_layers="fc"),
     50_821_140),
    (dict(embedding="netfv", video_clusters=64, audio_clusters=32, fv_couple_weights=False),
     122_054_676),
    (dict(embedding="netfv", video_clusters=64, audio_clusters=32, fv_couple_weights=False,
          compact_layers="fc"), 51_030_036)])
def test_paper_scale_variants_have_the_papers_weight_counts(settings, paper):
    """experiments/paper.py's paper-scale models, counted as the paper counts them."""
    model = models.build_model("TwoStreamModel", 3862, **settings)
    size = 1024 if settings.get("use_audio") is False else 1152
    model({"features": tf.zeros([1, 40, size]), "num_frames": tf.constant([40])})
    assert model.count_params() == paper


def bn_weights(units):
    return 4 * units  # gamma, beta, moving mean and variance


@pytest.mark.parametrize("settings, want", [
    (dict(bottleneck_size=19), 1152 * 19 + bn_weights(19) + 19 * 3862 + 3862),
    (dict(bottleneck_size=0, low_rank=19), 19 * (1152 + 3862) + 3862),
    (dict(bottleneck_size=24, compact_layers="fc"),  # one 1152 x 1152 product, 24 outputs kept
     2 * 1152 + bn_weights(24) + 24 * 3862 + 3862),
    (dict(bottleneck_size=76, compact_layers="moe", circulant_expansion="blocks"),
     1152 * 76 + bn_weights(76) + 2 * 49 * 80 + 3862),  # 49 blocks of fft_size(76) = 80
    (dict(bottleneck_size=128, wide_layers=1, wide_size=4096, compact_layers="fc",
          circulant_expansion="blocks"),  # 4 blocks of 1152, then 4096 -> 128
     2 * 4 * 1152 + bn_weights(4096) + 2 * 4096 + bn_weights(128) + 128 * 3862 + 3862),
    (dict(bottleneck_size=0, video_level_classifier_model="MoeModel", moe_num_mixtures=1,
          low_rank=10), 10 * (1152 + 2 * 3862) + 10 * (1152 + 3862) + 3862),
    (dict(bottleneck_size=10, linear_bottleneck=True), 1152 * 10 + 10 * 3862 + 3862),
    (dict(bottleneck_size=0, low_rank=10, output_gating=True, compact_layers="gating",
          k_factor=2), 10 * (1152 + 3862) + 3862 + 2 * 2 * 3888 + bn_weights(3862)),
    (dict(bottleneck_size=0, output_gating=True), 1152 * 3862 + 3862 + 3862**2 + bn_weights(3862)),
])
def test_bottleneck_model_weight_counts(settings, want):
    model = models.build_model("BottleneckModel", 3862, **settings)
    model(batch_for("BottleneckModel"), training=False)
    assert model.count_params() == want


def test_bottleneck_model_matches_numpy():
    model = models.build_model("BottleneckModel", 20, bottleneck_size=6, wide_layers=1,
                                    wide_size=10, low_rank=3)
    batch = batch_for("BottleneckModel")
    model(batch, training=False)
    rng = np.random.default_rng(8)
    for weight in model.weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32") * 0.3)
    x = batch["features"].numpy().astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for i in range(2):
        gamma, beta, mean, variance = (getattr(model, f"hidden_{i}_bn").get_weights())
        x = x @ getattr(model, f"hidden_{i}").kernel.numpy()
        x = np.maximum((x - mean) / np.sqrt(variance + 1e-3) * gamma + beta, 0)
    logistic = model.classifier.logits
    logits = x @ logistic.down.kernel.numpy() @ logistic.up.kernel.numpy()
    logits += logistic.up.bias.numpy()
    np.testing.assert_allclose(model(batch, training=False).numpy(), 1 / (1 + np.exp(-logits)),
                               rtol=1e-5)


def test_circulant_settings_reach_every_circulant_layer_and_default_to_the_settings_default():
    import circulant_ops

    def layers(model):
        return [layer for layer in model_utils.all_layers(model)
                if isinstance(layer, circulant_ops.DiagonalCirculant)]

    settings = dict(SMALL, compact_layers=ALL_COMPACT)
    default = models.build_model("TwoStreamModel", 20, **settings)
    first = models.build_model("TwoStreamModel", 20, **settings,
                               **model_flags.FIRST_CIRCULANT_FORM)
    new = models.build_model("TwoStreamModel", 20, circulant_diagonal_side="input",
                             circulant_expansion="blocks", circulant_leaky_slope=0.2,
                             k_factor=2, **settings)
    for model in (default, first, new):
        model(batch_for("TwoStreamModel"), training=False)
    assert len(layers(default)) == len(layers(first)) == len(layers(new)) >= 6
    forms = [{(la.diagonal_side, la.expansion, la.leaky_slope, la.k_factors)
              for la in layers(model)} for model in (default, first, new)]
    assert forms == [{("input", "blocks", 1.0, 1)}, {("output", "pad", 1.0, 1)},
                     {("input", "blocks", 0.2, 2)}]
    defaults = models.get_model_class("TwoStreamModel").Settings()
    assert (defaults.circulant_diagonal_side, defaults.circulant_expansion) == \
        (circulant_ops.DEFAULT_DIAGONAL_SIDE, circulant_ops.DEFAULT_EXPANSION) == \
        (circulant_ops.DiagonalCirculant(4).diagonal_side,
         circulant_ops.DiagonalCirculant(4).expansion) == ("input", "blocks")


def test_circulant_regularized_false_drops_only_the_circulant_penalties():
    settings = dict(bottleneck_size=8, compact_layers="fc", l2_penalty=0.5)
    penalties = {}
    for regularized in (True, False):
        model = models.build_model("BottleneckModel", 20, circulant_regularized=regularized,
                                        **settings)
        model(batch_for("BottleneckModel"), training=False)
        penalties[regularized] = float(tf.add_n(model.losses))
        hidden, logits = model.hidden_0, model.classifier.logits.kernel
    want_dense = 0.5 * float(tf.reduce_sum(logits ** 2))
    want_circulant = 0.5 * float(tf.reduce_sum(hidden.diagonals ** 2)
                                 + tf.reduce_sum(hidden.circulants ** 2))
    np.testing.assert_allclose(penalties[False], want_dense, rtol=1e-5)
    assert penalties[True] > penalties[False] and want_circulant > 0


def test_every_model_setting_says_what_it_means():
    missing = [(name, key) for name in models.model_names()
               for key in models.given_settings(name) if not models.setting_help(name, key)]
    assert not missing


def test_a_setting_shared_by_models_has_one_type_and_one_meaning():
    seen = {}
    for name in models.model_names():
        for key in models.model_hyperparameters(name):
            seen.setdefault(key, set()).add((models.setting_type(name, key),
                                             models.setting_help(name, key),
                                             models.setting_choices(name, key)))
    assert {key: found for key, found in seen.items() if len(found) > 1} == {}
    assert len(seen) > 40


def test_settings_are_typed_and_checked():
    settings = models.settings_class("MoeModel")(moe_l2=0, moe_num_mixtures=3)
    assert settings.moe_l2 == 0.0 and isinstance(settings.moe_l2, float)
    with pytest.raises(ValueError, match="moe_num_mixtures must be int, got 'two'"):
        models.build_model("MoeModel", 10, moe_num_mixtures="two")
    with pytest.raises(ValueError, match="moe_prob_gating must be bool"):
        models.build_model("MoeModel", 10, moe_prob_gating=1)
    with pytest.raises(ValueError, match="embedding must be one of dbof, netvlad, netfv"):
        models.build_model("TwoStreamModel", 10, embedding="vlad")
    with pytest.raises(ValueError, match="circulant_expansion must be one of blocks, pad"):
        models.build_model("MoeModel", 10, circulant_expansion="tile")
    with pytest.raises(TypeError, match="MoeModel takes MoeModel.Settings"):
        models.get_model_class("MoeModel")(10, models.settings_class("GatedMoeModel")())
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.moe_l2 = 1.0


def test_a_model_keeps_its_settings_and_builds_from_them_alone():
    model = models.build_model("BottleneckModel", 20, bottleneck_size=6, wide_layers=1,
                               wide_size=12, compact_layers="fc", k_factor=2)
    assert model.settings == models.settings_class("BottleneckModel")(
        bottleneck_size=6, wide_layers=1, wide_size=12, compact_layers="fc", k_factor=2)
    again = type(model)(20, model.settings)
    batch = batch_for("BottleneckModel")
    model(batch), again(batch)
    assert [v.shape for v in model.weights] == [v.shape for v in again.weights]
    assert model.hidden_0.k_factors == 2 and model.hidden_1.units == 6


def test_expected_training_memory_counts_what_the_backward_pass_keeps():
    import checkpoints
    import readers

    example = checkpoints.example_batch(readers.make_reader(False, 3862))
    model = models.build_model("LogisticModel", 3862)
    model(example)
    memory = model_summary.training_memory(model, example, 10)
    # Kept per video, by hand: the layer's input (1,152 normalised features, for the weights'
    # gradient) and its sigmoid output (3,862, for the sigmoid's); the input batch itself
    # (1,152 features and the frame count).
    assert memory["activations"] == 10 * ((1152 + 3862) * 4 + (1152 * 4 + 4))
    weights = (1152 * 3862 + 3862) * 4
    assert memory["weights"] == memory["gradients"] == weights
    assert memory["total"] == 2 * weights + memory["activations"]
    assert "expected peak training memory 34.2 MB" in model_summary.format_memory(memory, 10)

    kept = {}
    for name, compact, recompute in (("dense", "", False), ("compact", "moe", False),
                                     ("recomputed", "moe", True)):
        # The layers' first form (one padded product), for which the factors below hold.
        model = models.build_model("MoeModel", 3862, compact_layers=compact,
                                   **model_flags.FIRST_CIRCULANT_FORM)
        model(example)
        model_utils.set_circulant_recompute(model, recompute)
        kept[name] = model_summary.training_memory(model, example, 100)["activations"]
    # The circulant layers keep two [videos, n] values a factor; recomputed, only their input.
    assert kept["compact"] > 1.8 * kept["dense"]
    assert kept["recomputed"] <= 1.05 * kept["dense"]
