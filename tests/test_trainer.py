"""trainer.Trainer in-process: the training of train.py without flags."""

import json

import pytest

import model_flags
import trainer


def config_for(generated_data, train_dir, **changes):
    settings = dict(batch_size=32, max_steps=4, log_steps=2, checkpoint_steps=2)
    return trainer.TrainConfig(
        train_dir=str(train_dir), train_data_pattern=generated_data["video"],
        model_flags=model_flags.describe("MoeModel", num_classes=50, moe_num_mixtures=3),
        **{**settings, **changes})


def test_a_run_from_python_writes_what_train_py_writes(generated_data, tmp_path):
    config = config_for(generated_data, tmp_path)
    run = trainer.Trainer(config)
    assert not list(tmp_path.iterdir())  # built, nothing written before run()
    assert run.run() == 0
    assert model_flags.read(str(tmp_path)) == config.model_flags
    log = trainer.read_train_log(str(tmp_path))
    assert [r["step"] for r in log] == [1, 2, 4] and log[-1]["total_steps"] == 4
    summary = json.loads((tmp_path / trainer.SUMMARY_FILE).read_text())
    assert summary["weights"] == run.model.count_params()
    again = trainer.Trainer(config_for(generated_data, tmp_path, max_steps=6))
    again.run()
    assert int(again.optimizers[0].iterations.numpy()) == 6  # resumed at 4


def test_a_config_that_cannot_work_is_refused(generated_data, tmp_path):
    with pytest.raises(ValueError, match="unknown optimizer 'Adamm'"):
        trainer.Trainer(config_for(generated_data, tmp_path, optimizer="Adamm"))
    with pytest.raises(ValueError, match="circulant_learning_rate_scale must be positive"):
        trainer.Trainer(config_for(generated_data, tmp_path, circulant_learning_rate_scale=0))


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
    assert int(run.optimizers[0].iterations.numpy()) == 4
    assert (run.model.dense.kernel.numpy() != first).any()
    assert json.loads((tmp_path / trainer.SUMMARY_FILE).read_text())["model"] == "linear_probe"
    assert not model_flags.exists(str(tmp_path))  # no registered model could be rebuilt from it
    assert len(trainer.read_train_log(str(tmp_path))) == 3
