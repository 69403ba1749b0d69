"""trainer.Trainer in-process: the training of train.py without flags (train.py's command
line and what only it does are in test_train.py)."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import checkpoint_step

import checkpoints
import devices
import eval_util
import losses
import model_flags
import optimizers
import run_dir
import train_config
import trainer

FRAME_SETTINGS = dict(video_clusters=32, audio_clusters=16, fc_size=32, iterations=10,
                      moe_num_mixtures=2)


def config_for(generated_data, train_dir, model="MoeModel", frame=False, settings=None,
               **changes):
    """A short run on the generated data: MoeModel with 3 mixtures unless told."""
    settings = settings if settings is not None else {"moe_num_mixtures": 3}
    description = model_flags.describe(model, num_classes=50, frame_features=frame,
                                       max_frames=40 if frame else 300, **settings)
    run = dict(batch_size=32, max_steps=4, log_steps=2, checkpoint_steps=2, num_epochs=100)
    return train_config.TrainConfig(
        train_dir=str(train_dir), model_flags=description,
        train_data_pattern=generated_data["frames" if frame else "video"],
        **{**run, **changes})


def losses_of(train_dir):
    return {r["step"]: r["loss"] for r in run_dir.read_train_log(str(train_dir))}


def test_a_run_from_python_writes_what_train_py_writes(generated_data, tmp_path):
    config = config_for(generated_data, tmp_path)
    run = trainer.Trainer(config)
    assert not list(tmp_path.iterdir())  # built, nothing written before run()
    assert run.run() == 0
    assert model_flags.read(str(tmp_path)) == config.model_flags
    log = run_dir.read_train_log(str(tmp_path))
    assert [r["step"] for r in log] == [1, 2, 4] and log[-1]["total_steps"] == 4
    summary = json.loads((tmp_path / run_dir.SUMMARY_FILE).read_text())
    assert summary["weights"] == run.model.count_params()
    memory = summary["expected_memory_bytes"]  # Adam: two moments a weight
    assert 2 * memory["gradients"] <= memory["optimizer"] < 2 * memory["gradients"] + 100
    assert "expected peak training memory" in (tmp_path / "model_summary.txt").read_text()
    again = trainer.Trainer(config_for(generated_data, tmp_path, max_steps=6))
    again.run()
    assert int(again.optimizer.iterations.numpy()) == 6  # resumed at 4


def test_a_config_that_cannot_work_is_refused(generated_data, tmp_path):
    with pytest.raises(ValueError, match="unknown optimizer 'Adamm'"):
        trainer.Trainer(config_for(generated_data, tmp_path, optimizer="Adamm"))
    with pytest.raises(ValueError, match="circulant_learning_rate_scale must be positive"):
        trainer.Trainer(config_for(generated_data, tmp_path, circulant_learning_rate_scale=0))
    with pytest.raises(ValueError, match=re.escape(
            "--keep_best_checkpoint keeps the checkpoint of the best validation: add "
            "--validation_data_pattern (records not trained on)")):
        trainer.Trainer(config_for(generated_data, tmp_path, keep_best_checkpoint=True))


def test_a_learning_rate_scale_for_weights_the_model_lacks_is_named(generated_data, tmp_path,
                                                                     capsys):
    trainer.Trainer(config_for(generated_data, tmp_path, learning_rate_scales="monarch=2"))
    assert ("warning: --learning_rate_scales=monarch: this model has no monarch weights: "
            "ignored") in capsys.readouterr().err


def test_only_the_epochs_end_is_shown_as_estimated(generated_data, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.setattr(trainer.readers, "estimate_records", lambda files: (600, False))
    trainer.Trainer(config_for(generated_data, tmp_path / "steps")).run()
    assert "\nstep 1/4 (25%) | " in capsys.readouterr().out  # max_steps: exact
    trainer.Trainer(config_for(generated_data, tmp_path / "epochs", max_steps=None,
                               num_epochs=1, log_steps=100)).run()
    assert "\nstep 1/~19 (5%) | " in capsys.readouterr().out  # 600 videos in batches of 32


def test_an_experiment_trains_its_own_model_with_the_same_step(generated_data, tmp_path):
    import keras

    class Linear(keras.Model):
        def __init__(self):
            super().__init__(name="linear_probe")
            self.dense = keras.layers.Dense(50, activation="sigmoid")

        def call(self, inputs, training=False):
            return self.dense(inputs["features"])

    run = trainer.Trainer(config_for(generated_data, tmp_path), build_model=Linear)
    first = run.model.dense.kernel.numpy().copy()
    assert run.run() == 0
    assert int(run.optimizer.iterations.numpy()) == 4
    assert (run.model.dense.kernel.numpy() != first).any()
    assert json.loads((tmp_path / run_dir.SUMMARY_FILE).read_text())["model"] == "linear_probe"
    assert not model_flags.exists(str(tmp_path))  # no registered model could be rebuilt from it
    assert len(run_dir.read_train_log(str(tmp_path))) == 3


@pytest.mark.parametrize("model, compact", [("MoeModel", ""), ("MoeModel", "moe,gating"),
                                            ("GatedMoeModel", "moe")])
def test_video_level_training_lowers_the_loss(generated_data, tmp_path, model, compact):
    trainer.Trainer(config_for(generated_data, tmp_path, model, settings={
        "compact_layers": compact}, max_steps=40, log_steps=1)).run()
    losses = losses_of(tmp_path)
    assert losses[40] < 0.75 * losses[1], losses
    assert (tmp_path / "model_summary.txt").exists()


@pytest.mark.parametrize("compact", ["", "embedding,fc,moe,gating"])
def test_frame_level_training_lowers_the_loss(generated_data, tmp_path, compact):
    trainer.Trainer(config_for(generated_data, tmp_path, "TwoStreamModel", frame=True,
                               settings=dict(FRAME_SETTINGS, compact_layers=compact),
                               max_steps=30, log_steps=1)).run()
    losses = losses_of(tmp_path)
    assert losses[30] < 0.8 * losses[1], losses


def test_resume_continues_at_the_saved_step_with_the_optimizer_state(generated_data, tmp_path,
                                                                      capsys):
    trainer.Trainer(config_for(generated_data, tmp_path, max_steps=10, checkpoint_steps=5,
                               log_steps=1)).run()
    assert checkpoint_step(str(tmp_path / "model.ckpt-10")) == 10
    trainer.Trainer(config_for(generated_data, tmp_path, max_steps=15, checkpoint_steps=5,
                               log_steps=1)).run()
    assert f"resumed from {tmp_path}/model.ckpt-10 at step 10" in capsys.readouterr().out
    steps = [r["step"] for r in run_dir.read_train_log(str(tmp_path))]
    assert steps == list(range(1, 16))  # the second run logged steps 11 to 15
    assert checkpoint_step(str(tmp_path / "model.ckpt-15")) == 15
    saved = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-10"))
    moments = [k for k in saved.get_variable_to_shape_map() if k.startswith("optimizer/_variables")]
    assert moments and any(abs(saved.get_tensor(k)).max() > 0 for k in moments)


def test_a_non_finite_loss_stops_the_run(generated_data, tmp_path):
    config = config_for(generated_data, tmp_path, "LogisticModel", settings={}, max_steps=20,
                        optimizer="GradientDescentOptimizer", base_learning_rate=1e38,
                        clip_gradient_norm=0)
    with pytest.raises(FloatingPointError) as stopped:
        trainer.Trainer(config).run()
    assert re.match(r"the loss is (inf|nan) at step \d+", str(stopped.value))


@pytest.mark.parametrize("scales, expected", [
    (dict(circulant_learning_rate_scale=3.0), {"circulant": 3.0}),
    (dict(learning_rate_scales="circulant=3,low_rank=0.5"), {"circulant": 3.0, "low_rank": 0.5}),
])
def test_learning_rate_scales_scale_only_the_structured_variables_of_their_kind(
        generated_data, tmp_path, scales, expected):
    """One plain-SGD step from the same start: the structured variables of each scaled kind
    move `scale` times as far as with one optimizer, every other weight the same."""
    settings = dict(bottleneck_size=8, compact_layers="fc,moe=low_rank:3")
    common = dict(optimizer="GradientDescentOptimizer", clip_gradient_norm=0,
                  base_learning_rate=0.5, seed=3)
    runs = {"start": dict(max_steps=0), "one": dict(max_steps=1),
            "scaled": dict(max_steps=1, **scales)}
    for name, changes in runs.items():
        run = trainer.Trainer(config_for(generated_data, tmp_path / name, "BottleneckModel",
                                         settings=settings, **common, **changes))
        run.run()
    assert sorted(run.optimizers) == sorted(["optimizer", *(f"{k}_optimizer" for k in expected)])

    def weights(name):
        model = checkpoints.load(str(tmp_path / name))[0]
        return {w.path.split("/", 1)[1]: w.numpy() for w in model.weights}

    start, one, scaled = weights("start"), weights("one"), weights("scaled")
    kinds = {k: "circulant" for k in start if "diagonals" in k or "circulants" in k}
    kinds.update({k: "low_rank" for k in start if "classifier" in k and k.endswith("kernel")})
    assert sorted(kinds.values()) == ["circulant"] * 2 + ["low_rank"] * 2  # U and V
    others = [k for k in start if k not in kinds and "moving" not in k]
    assert others
    for key, kind in kinds.items():
        step = one[key] - start[key]
        assert np.abs(step).max() > 0, key
        np.testing.assert_allclose(scaled[key] - start[key], expected.get(kind, 1.0) * step,
                                   rtol=1e-4, atol=1e-6)
    for key in others:
        np.testing.assert_allclose(scaled[key], one[key], rtol=1e-5, atol=1e-7)


def test_a_resumed_run_keeps_the_optimizers_its_checkpoint_was_saved_with(generated_data,
                                                                          tmp_path):
    settings = dict(bottleneck_size=8, compact_layers="fc=monarch:2,moe=low_rank:3")

    def run(folder, **changes):
        return trainer.Trainer(config_for(generated_data, folder, "BottleneckModel",
                                          settings=settings, **changes))

    scaled = run(tmp_path / "scaled", max_steps=2, learning_rate_scales="monarch=2")
    scaled.run()
    again = run(tmp_path / "scaled", max_steps=4)  # the scale not given again: 1
    assert sorted(again.optimizers) == ["monarch_optimizer", "optimizer"]
    again.run()
    assert int(again.optimizer.iterations.numpy()) == 4
    run(tmp_path / "plain", max_steps=2).run()
    with pytest.raises(ValueError, match="trained its low_rank weights with the others' "
                                         "optimizer: a learning-rate scale for them cannot "
                                         "start on resume"):
        run(tmp_path / "plain", max_steps=4, learning_rate_scales="low_rank=2")
    fresh = run(tmp_path / "plain", max_steps=2, learning_rate_scales="low_rank=2",
                start_new_model=True)
    assert sorted(fresh.optimizers) == ["low_rank_optimizer", "optimizer"]


@pytest.mark.parametrize("scales, message", [
    ("dense=2", "--learning_rate_scales=dense=2: unknown kind 'dense'; valid: circulant, "
                "low_rank, monarch, btt"),
    ("monarch=fast", "--learning_rate_scales=monarch=fast: the scale after '=' is a number"),
    ("low_rank=-1", "--learning_rate_scales=low_rank must be positive, got -1"),
])
def test_bad_learning_rate_scales_are_one_line_naming_the_flag(generated_data, tmp_path, scales,
                                                               message):
    with pytest.raises(ValueError, match=re.escape(message)):
        trainer.Trainer(config_for(generated_data, tmp_path, learning_rate_scales=scales))
    with pytest.raises(ValueError, match="disagree: give one"):
        trainer.Trainer(config_for(generated_data, tmp_path, circulant_learning_rate_scale=2,
                                   learning_rate_scales="circulant=3"))


SMALL_MODELS = [  # (model, frame level, settings): every kind of layer, compact ones included
    ("MoeModel", False, {"compact_layers": "moe_gates"}),
    ("BottleneckModel", False, {"compact_layers": "fc", "output_gating": True,
                                "bottleneck_size": 16}),
    ("TwoStreamModel", True, dict(FRAME_SETTINGS, compact_layers="embedding,fc,moe,gating")),
    ("DbofModel", True, dict(dbof_cluster_size=32, dbof_hidden_size=16, iterations=10)),
    ("NetVLADModelLF", True, dict(netvlad_cluster_size=8, netvlad_hidden_size=16, iterations=10)),
    ("NetFVModelLF", True, dict(fv_cluster_size=8, fv_hidden_size=16, iterations=10)),
    ("LstmModel", True, dict(lstm_cells=16, lstm_layers=1)),
    ("KnnMoeModel", False, {"input_dropout": 0.0}),
]


def one_step(generated_data, train_dir, model, frame, settings, **changes):
    """(loss, probabilities, weight change, trainer) of one plain-SGD step on the first batch."""
    run = trainer.Trainer(config_for(generated_data, train_dir, model, frame, settings,
                                     optimizer="GradientDescentOptimizer", max_steps=1,
                                     base_learning_rate=0.1, **changes))
    before = [v.numpy() for v in run.model.trainable_variables]
    loss, probabilities, _ = run.train_step(next(iter(run.dataset())))
    change = np.concatenate([(v.numpy() - b).ravel()
                             for v, b in zip(run.model.trainable_variables, before)])
    return float(loss), probabilities.numpy(), change, run


# Stated tolerances against float32: the loss and class probabilities (both computed in float32
# from the low-precision layers), and the first step's change of the weights (relative norm).
PRECISION_TOLERANCE = {"mixed_float16": (1e-3, 2e-3, 0.05), "mixed_bfloat16": (5e-3, 1e-2, 0.15)}


@pytest.mark.parametrize("model, frame, settings", SMALL_MODELS, ids=[m[0] for m in SMALL_MODELS])
def test_a_step_under_mixed_precision_matches_float32(generated_data, tmp_path, model, frame,
                                                      settings):
    loss, probabilities, change, _ = one_step(generated_data, tmp_path / "float32", model,
                                              frame, settings)
    for precision, (loss_tol, probability_tol, change_tol) in PRECISION_TOLERANCE.items():
        low = one_step(generated_data, tmp_path / precision, model, frame, settings,
                       mixed_precision=precision)
        assert abs(low[0] - loss) <= loss_tol * loss, precision
        assert np.abs(low[1] - probabilities).max() <= probability_tol, precision
        assert low[1].dtype == np.float32
        if precision == "mixed_float16" and not np.any(low[2]):
            # Loss scaling skipped the step (gradients overflowed at the first scale): the
            # scale halves and the step counts. The update is compared on a model that fits.
            assert float(low[3].appliers[0].dynamic_scale) == 2.0 ** 14
            continue
        assert np.linalg.norm(low[2] - change) <= change_tol * np.linalg.norm(change), precision


def test_a_distilled_frame_level_step_under_mixed_precision_matches_float32(generated_data,
                                                                          tmp_path):
    """A frame-level teacher of the student's records: its probabilities (float32, whatever
    the student computes in) take part in the loss at every precision."""
    teacher = config_for(generated_data, tmp_path / "teacher", "FrameLevelLogisticModel", True,
                         {}, max_steps=2)
    assert trainer.Trainer(teacher).run() == 0
    model, settings = SMALL_MODELS[3][0], SMALL_MODELS[3][2]  # DbofModel
    distilled = dict(teacher=str(tmp_path / "teacher"), distillation_weight=0.5)
    alone = one_step(generated_data, tmp_path / "alone", model, True, settings)[0]
    loss, probabilities, change, _ = one_step(generated_data, tmp_path / "float32", model, True,
                                              settings, **distilled)
    assert abs(loss - alone) > 0.05 * alone  # the teacher's share is in the loss
    for precision, (loss_tol, probability_tol, change_tol) in PRECISION_TOLERANCE.items():
        low = one_step(generated_data, tmp_path / precision, model, True, settings,
                       mixed_precision=precision, **distilled)
        assert abs(low[0] - loss) <= loss_tol * loss, precision
        assert np.abs(low[1] - probabilities).max() <= probability_tol, precision
        if precision == "mixed_float16" and not np.any(low[2]):
            continue  # loss scaling skipped the first step (see the test above)
        assert np.linalg.norm(low[2] - change) <= change_tol * np.linalg.norm(change), precision


def test_float16_training_updates_and_keeps_float32_checkpoints(generated_data, tmp_path):
    config = config_for(generated_data, tmp_path, "MoeModel", settings={"compact_layers": "moe"},
                        mixed_precision="mixed_float16", max_steps=6, checkpoint_steps=3)
    run = trainer.Trainer(config)
    assert run.model.layers[0].compute_dtype == "float16"
    assert run.run() == 0
    losses = losses_of(tmp_path)
    assert losses[6] < losses[1]
    saved = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-6")).get_variable_to_dtype_map()
    assert {dtype for dtype in saved.values() if dtype.is_floating} == {tf.float32}
    assert len(saved) > len(run.model.weights)  # the weights and the optimizer's moments
    assert checkpoint_step(str(tmp_path / "model.ckpt-6")) == 6  # skipped steps count too
    # The same run goes on in float32 (the checkpoint does not depend on the precision).
    again = trainer.Trainer(config_for(generated_data, tmp_path, "MoeModel",
                                       settings={"compact_layers": "moe"}, max_steps=8))
    again.run()
    assert int(again.optimizer.iterations.numpy()) == 8


def test_compiled_and_eager_steps_agree(generated_data, tmp_path):
    # Frames evenly spaced: XLA draws other random numbers than TensorFlow from the same seed.
    settings = dict(FRAME_SETTINGS, compact_layers="embedding,fc,moe,gating",
                    sample_random_frames=False)
    eager = one_step(generated_data, tmp_path / "eager", "TwoStreamModel", True, settings)
    compiled = one_step(generated_data, tmp_path / "xla", "TwoStreamModel", True, settings,
                        jit_compile=True)
    assert abs(compiled[0] - eager[0]) <= 1e-5 * eager[0]
    np.testing.assert_allclose(compiled[1], eager[1], atol=1e-5)
    np.testing.assert_allclose(compiled[2], eager[2], atol=1e-5)
    assert np.any(eager[2])
    run = eager[3]  # validation's prediction step, compiled and not, on the same weights
    files = run.files[:1]
    results = [eval_util.evaluate(run.model, run.reader, files, run.loss_fn, 64,
                                  jit_compile=jit) for jit in (False, True)]
    assert results[0]["videos"] == results[1]["videos"] > 0
    assert abs(results[0]["gap"] - results[1]["gap"]) < 1e-6
    assert abs(results[0]["loss"] - results[1]["loss"]) < 1e-4 * results[0]["loss"]


def test_several_steps_per_loop_train_the_same_as_one(generated_data, tmp_path, capsys):
    weights, logs = {}, {}
    for steps in (1, 4, 100):
        folder = tmp_path / str(steps)
        run = trainer.Trainer(config_for(generated_data, folder, steps_per_loop=steps,
                                         max_steps=13, log_steps=5, checkpoint_steps=6))
        run.run()
        weights[steps] = [v.numpy() for v in run.model.weights]
        logs[steps] = [r["step"] for r in run_dir.read_train_log(str(folder))]
        assert sorted(p.name for p in folder.glob("model.ckpt-*.index")) == [
            "model.ckpt-12.index", "model.ckpt-13.index", "model.ckpt-6.index"]
    assert logs[1] == logs[4] == logs[100] == [1, 5, 10]
    for steps in (4, 100):
        for a, b in zip(weights[1], weights[steps], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The data ending inside a loop: one epoch of 600 videos is 19 steps of 32.
    folder = tmp_path / "epoch"
    trainer.Trainer(config_for(generated_data, folder, steps_per_loop=100, max_steps=None,
                               num_epochs=1, log_steps=100)).run()
    assert "done at step 19 (--num_epochs=1 done)" in capsys.readouterr().out


def test_num_gpu_beyond_the_machine_warns_and_uses_what_there_is(capsys):
    strategy = devices.make_strategy(num_gpu=2)
    assert strategy.num_replicas_in_sync == max(1, len(tf.config.list_physical_devices("GPU")))
    if not tf.config.list_physical_devices("GPU"):
        assert "--num_gpu=2: this machine has 0 GPUs; using 0" in capsys.readouterr().err


def test_the_fused_adam_update_is_keras_adam():
    import keras

    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype(np.float32) for shape in ((7, 5), (5,))]
    grads = [[tf.constant(rng.normal(size=w.shape).astype(np.float32)) for w in start]
             for _ in range(5)]
    final = {}
    for optimizer in (keras.optimizers.Adam(0.1, clipnorm=1.0),
                      optimizers.FusedAdam(0.1, clipnorm=1.0)):
        weights = [keras.Variable(w) for w in start]
        for step in grads:
            optimizer.apply_gradients(zip(step, weights))
        final[type(optimizer).__name__] = [w.numpy() for w in weights]
    # Keras writes m + (g - m)(1 - beta_1), the kernel beta_1 m + (1 - beta_1) g: the same
    # number up to float32 rounding, here 1e-5 after five steps of 0.1.
    for ours, keras_adam in zip(final["FusedAdam"], final["Adam"], strict=True):
        np.testing.assert_allclose(ours, keras_adam, rtol=0, atol=1e-5)
        assert np.abs(ours - start[0 if ours.ndim == 2 else 1]).max() > 0.1


def test_the_moving_average_of_the_weights_follows_its_recurrence_across_a_resume(
        generated_data, tmp_path):
    """a_n = d_n a_(n-1) + (1 - d_n) w_n, d_n = min(decay, (1 + n) / (10 + n)), from a_0 = w_0;
    a run resumed without --ema_decay goes on with the saved decay; eval and export read a."""
    settings = dict(bottleneck_size=8, compact_layers="fc")
    common = dict(optimizer="GradientDescentOptimizer", base_learning_rate=0.5, seed=3,
                  checkpoint_steps=1)

    def run(folder, **changes):
        trainer.Trainer(config_for(generated_data, tmp_path / folder, "BottleneckModel",
                                   settings=settings, **common, **changes)).run()

    run("start", max_steps=0)
    run("ema", max_steps=2, ema_decay=0.2)
    run("ema", max_steps=3, validation_data_pattern=generated_data["video"],
        validation_steps=3)  # resumed: the decay as saved

    model = checkpoints.load(str(tmp_path / "start"))[0]

    def weights(step, averaged, folder="ema"):
        path = str(tmp_path / folder / f"model.ckpt-{step}")
        assert checkpoints.restore(model, path, averaged) == \
            ("averaged_model" if averaged else "model")
        return [v.numpy().astype(np.float64) for v in model.trainable_variables]

    average = weights(0, False, "start")
    for n in (1, 2, 3):
        decay = min(0.2, (1 + n) / (10 + n))
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights(n, False))]
        for got, expected in zip(weights(n, True), average):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(weights(3, True)[0], weights(3, False)[0])
    # eval.py, inference.py and export_model.py load the average.
    loaded, reader, description, _ = checkpoints.load(str(tmp_path / "ema"))
    for got, expected in zip(loaded.trainable_variables, average):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
    # Validation as training goes evaluates the average too.
    validated = json.loads((tmp_path / "ema" / "validation.jsonl").read_text().splitlines()[-1])
    evaluated = eval_util.evaluate(loaded, reader, generated_data["video"].split(","),
                                   losses.get_loss(description.label_loss), 32)
    assert validated["step"] == 3 and validated["gap"] == pytest.approx(evaluated["gap"], abs=1e-6)
    with pytest.raises(ValueError, match="--ema_decay must be at least 0 and below 1, got 1"):
        trainer.Trainer(config_for(generated_data, tmp_path / "bad", ema_decay=1.0))


def test_the_best_validation_checkpoint_is_kept_and_loads_as_validated(generated_data, tmp_path):
    """best/ holds one checkpoint, of the validation with the highest GAP (the first such), also
    across a resume; loading it evaluates to that GAP."""
    config = dict(validation_data_pattern=generated_data["video"], validation_steps=1,
                  keep_best_checkpoint=True, base_learning_rate=0.05)
    trainer.Trainer(config_for(generated_data, tmp_path, max_steps=3, **config)).run()
    trainer.Trainer(config_for(generated_data, tmp_path, max_steps=6, **config)).run()
    validations = [json.loads(line) for line in
                   (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert [v["step"] for v in validations] == [1, 2, 3, 4, 5, 6]
    top = max(validations, key=lambda v: v["gap"])  # max keeps the first of equals
    best = json.loads((tmp_path / "best" / checkpoints.BEST_FILE).read_text())
    assert (best["step"], best["gap"]) == (top["step"], top["gap"])
    assert {p.name.split(".")[1] for p in (tmp_path / "best").glob("model.ckpt-*")} == \
        {f"ckpt-{top['step']}"}
    model, reader, description, path = checkpoints.load(str(tmp_path), "best")
    assert path.endswith(f"model.ckpt-{top['step']}")
    evaluated = eval_util.evaluate(model, reader, generated_data["video"].split(","),
                                   losses.get_loss(description.label_loss), 32)
    assert evaluated["gap"] == pytest.approx(top["gap"], abs=1e-6)
    trainer.Trainer(config_for(generated_data, tmp_path / "plain", max_steps=1)).run()
    with pytest.raises(ValueError, match="has no best checkpoint .* --keep_best_checkpoint"):
        checkpoints.load(str(tmp_path / "plain"), "best")


def test_the_end_validates_unless_a_validation_came_just_before(generated_data, tmp_path,
                                                                capsys):
    config = dict(validation_data_pattern=generated_data["video"], validation_steps=20)
    for steps in (21, 25):
        trainer.Trainer(config_for(generated_data, tmp_path / str(steps), max_steps=steps,
                                   **config)).run()
    steps_of = {n: [json.loads(line)["step"] for line in
                    (tmp_path / str(n) / "validation.jsonl").read_text().splitlines()]
                for n in (21, 25)}
    assert steps_of == {21: [20], 25: [20, 25]}
    assert "validated at step 20, 1 step(s) before the end: not again" in capsys.readouterr().out


def test_a_changed_decay_on_resume_is_said(generated_data, tmp_path, capsys):
    def run(**changes):
        trainer.Trainer(config_for(generated_data, tmp_path, checkpoint_steps=1,
                                   **changes)).run()
        return capsys.readouterr().out

    assert ("\nin use: a moving average of the weights (decay 0.2), used by validation and "
            "every tool\n") in run(max_steps=1, ema_decay=0.2)
    assert ("--ema_decay=0.5: the average of the weights goes on with this decay (it was 0.2; "
            "leave the flag out to keep the saved one)") in run(max_steps=2, ema_decay=0.5)
    assert "the average of the weights goes on (decay 0.5, as saved)" in run(max_steps=3)
    assert "--ema_decay=0.2: the average" in run(max_steps=4, ema_decay=0.2)
    assert "goes on with this decay" not in run(max_steps=5, ema_decay=0.2)  # as saved


def test_repeated_validations_trace_the_prediction_once_for_every_batch_size(generated_data):
    """The last partial batch and every later validation reuse one traced function (TensorFlow
    warns of retracing past five traces in eleven calls)."""
    import readers

    model = checkpoints.build_model(model_flags.describe("MoeModel", num_classes=50),
                                    readers.VideoReader(50))
    files = generated_data["video"].split(",")
    results = [eval_util.evaluate(model, readers.VideoReader(50), files, losses.get_loss(
        "CrossEntropyLoss"), batch_size=64) for _ in range(6)]  # 600 videos: 9 full, 1 of 24
    assert all(r["gap"] == results[0]["gap"] for r in results)
    assert eval_util._PREDICTORS[model][False].experimental_get_tracing_count() <= 2
