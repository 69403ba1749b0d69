"""train.py end to end, in subprocesses, on small generated data (the Trainer's own behaviour
is tested in-process in test_trainer.py)."""

import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from helpers import checkpoint_step, run_in_one_process, run_tool

import checkpoints
import layer_kinds
import run_dir
from utils import REPO_DIR

pytestmark = pytest.mark.slow  # every test here starts TensorFlow processes

TRAIN = os.path.join(REPO_DIR, "train.py")


@pytest.fixture(scope="module")
def data(generated_data):
    return generated_data


def args_for(data, folder, frame=False, **flags):
    base = {"train_data_pattern": data.get("frames" if frame else "video"), "num_classes": 50,
            "train_dir": str(folder), "batch_size": 32, "log_steps": 1,
            "base_learning_rate": 0.01, "num_epochs": 100}
    if frame:
        base.update(frame_features=True, max_frames=40)
    base.update(flags)
    return [f"--{k}={v}" if not isinstance(v, bool) else (f"--{k}" if v else f"--no{k}")
            for k, v in base.items()]


def train(args, env=None):
    return run_tool("train.py", *args, check=False, env=env)


def losses_of(train_dir):
    """{step: loss} of the progress records of train_dir (train_log.jsonl, every run's)."""
    return {r["step"]: r["loss"] for r in run_dir.read_train_log(str(train_dir))}


def ok(done):
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_knn_moe_memorises_the_training_videos_once(data, tmp_path):
    (first, out, err), (resumed, resumed_out, _), (changed, _, changed_err) = \
        train_in_one_process([
            args_for(data, tmp_path, model="KnnMoeModel", max_steps=20,
                     validation_data_pattern=data["video"], validation_steps=20),
            args_for(data, tmp_path, model="KnnMoeModel", max_steps=25),
            args_for(data, tmp_path, model="KnnMoeModel", max_steps=30,
                     train_data_pattern=data["video"].split(",")[0])])
    assert first == 0 and "memorised 600 training videos" in out, err
    settings = json.loads((tmp_path / "model_flags.json").read_text())["settings"]
    assert settings["memory_videos"] == 600 and settings["knn_k"] == 30
    assert settings["memory_labels"] > 600
    validated = json.loads((tmp_path / "validation.jsonl").read_text().splitlines()[0])
    assert validated["gap"] > 0.9  # the training videos themselves: their nearest neighbours
    assert resumed == 0 and "resumed from" in resumed_out and "memorised" not in resumed_out
    assert changed == 1 and "(memory_labels, memory_videos)" in changed_err


def start(args):
    return subprocess.Popen([sys.executable, TRAIN, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def read_until(process, pattern, limit=180):
    deadline, seen = time.time() + limit, ""
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        match = re.search(pattern, line)
        if match:
            return match, seen
    process.kill()
    raise AssertionError(f"never saw {pattern!r}:\n{seen[-2000:]}")


def test_repeated_sigkill_at_random_moments_never_costs_a_checkpoint(data, tmp_path):
    chance = random.Random(0)
    flags = dict(model="LogisticModel", checkpoint_steps=3)
    last_saved = 0
    for round in range(4):
        process = start(args_for(data, tmp_path, max_steps=100000, **flags))
        _, seen = read_until(process, r"^saved " if round == 0 else r"^step \d")
        resumed = re.search(r"resumed from .* at step (\d+)", seen)
        if round:
            assert int(resumed[1]) >= last_saved, seen
        time.sleep(chance.uniform(0.0, 1.5))
        process.send_signal(signal.SIGKILL)
        seen += process.stdout.read()
        process.wait()
        saved = [int(s) for s in re.findall(r"saved .*model\.ckpt-(\d+)$", seen, re.M)]
        latest = tf.train.latest_checkpoint(str(tmp_path))
        assert latest is not None and checkpoint_step(latest) == int(latest.rsplit("-", 1)[1])
        assert int(latest.rsplit("-", 1)[1]) >= max(saved + [last_saved])
        last_saved = int(latest.rsplit("-", 1)[1])
    # A kill after a checkpoint's files were written but before the index named it leaves a
    # complete checkpoint newer than the index: training resumes from the newest on disk.
    newest = max(int(p.name[len("model.ckpt-"):-len(".index")])
                 for p in tmp_path.glob("model.ckpt-*.index"))
    assert newest >= last_saved
    done = train(args_for(data, tmp_path, max_steps=newest + 3, **flags))
    out = ok(done)
    resumed = int(re.search(r"resumed from .*model\.ckpt-(\d+) at step (\d+)", out)[2])
    assert resumed == newest or f"model.ckpt-{newest} is damaged" in done.stderr, out
    assert resumed >= last_saved
    assert run_dir.read_train_log(str(tmp_path))[-1]["step"] == newest + 3
    evaluated = run_tool("eval.py", f"--train_dir={tmp_path}",
                         f"--eval_data_pattern={data['video']}", "--run_once")
    assert re.search(rf"^step {newest + 3}: 600 videos \| GAP@20 0\.\d+", evaluated.stdout,
                     re.M), evaluated.stdout


def limit_file_size(size):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return preexec


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(data, tmp_path):
    flags = dict(model="LogisticModel", checkpoint_steps=5)
    ok(train(args_for(data, tmp_path, max_steps=5, **flags)))
    first = str(tmp_path / "model.ckpt-5")
    done = subprocess.run([sys.executable, TRAIN, *args_for(data, tmp_path, max_steps=10,
                                                            **flags)],
                          capture_output=True, text=True, timeout=240,
                          preexec_fn=limit_file_size(64 * 1024))
    assert done.returncode == 1, done.stderr[-2000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert re.match(r"error: could not save the checkpoint of step 10 in .*disk full\?\); "
                    rf".*{re.escape(first)} is kept$", last_line), last_line
    assert tf.train.latest_checkpoint(str(tmp_path)) == first
    out = ok(train(args_for(data, tmp_path, max_steps=10, **flags)))
    assert f"resumed from {first} at step 5" in out and checkpoint_step(
        str(tmp_path / "model.ckpt-10")) == 10


@pytest.mark.parametrize("loop", [{}, {"log_steps": 50, "steps_per_loop": 20}],
                         ids=["one_step_a_call", "in_compiled_loops"])
def test_sigterm_saves_a_checkpoint_before_exit(data, tmp_path, loop):
    process = start(args_for(data, tmp_path, model="MoeModel", max_steps=100000,
                             checkpoint_steps=1000, **loop))
    match, _ = read_until(process, r"^step ([\d,]+)/")
    while int(match[1].replace(",", "")) < 3:
        match, _ = read_until(process, r"^step ([\d,]+)/")
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait() == 128 + signal.SIGTERM
    assert "saving and stopping" in rest and "(stopped by signal 15)" in rest
    latest = tf.train.latest_checkpoint(str(tmp_path))
    last = max([int(match[1].replace(",", ""))] + list(losses_of(tmp_path)))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= last


def test_model_flags_bind_a_run_once_it_has_a_checkpoint(data, tmp_path):
    """A failed first run leaves nothing binding; a resumed run takes the saved model flags
    that are not given and refuses only those given that differ."""
    def run(**flags):
        return args_for(data, tmp_path, **flags)

    model = dict(model="MoeModel", moe_num_mixtures=3, compact_layers="moe")
    (misspelt, _, misspelt_err), (wrong_level, _, _), (first, first_out, _), \
        (resumed, resumed_out, _), (same, _, _), (changed, _, changed_err), \
        (other_model, _, other_model_err) = train_in_one_process([
            run(**{**model, "compact_layers": "mo"}, max_steps=2),
            run(**model, max_steps=2, frame_features=True),
            run(**model, max_steps=2),
            run(max_steps=4),  # nothing but the new end: every model flag from the saved run
            run(max_steps=5, moe_num_mixtures=3),
            run(max_steps=6, moe_num_mixtures=2, batch_size=16),
            run(max_steps=6, model="LogisticModel")])
    assert misspelt == 1 and "unknown compact layer(s) mo" in misspelt_err
    assert wrong_level == 1
    assert (first, resumed, same) == (0, 0, 0)
    assert "model flags not given are taken from" in resumed_out
    assert "resumed from" in resumed_out and "done at step 4" in resumed_out
    assert re.search(r"^model MoeModel: [\d,]+ weights", resumed_out, re.M)
    assert first_out.splitlines()[0] == resumed_out.splitlines()[1]  # the same summary line
    saved = json.loads((tmp_path / "model_flags.json").read_text())
    assert saved["settings"]["moe_num_mixtures"] == 3
    assert saved["settings"]["compact_layers"] == "moe"
    assert changed == 1
    last = changed_err.strip().splitlines()[-1]
    assert "model flags differ" in last and "(moe_num_mixtures)" in last  # batch_size is not one
    assert "--start_new_model" in last
    assert other_model == 1 and "model_flags.json (model); " in other_model_err


def test_start_new_model_moves_the_whole_previous_run(data, tmp_path):
    ok(train(args_for(data, tmp_path, model="MoeModel", max_steps=2)))
    evaluate = ["eval.py", "--run_once", f"--eval_data_pattern={data['video']}"]
    run_tool(*evaluate, f"--train_dir={tmp_path}")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert {"model_flags.json", "checkpoint", "eval_results.jsonl", "eval",
            "model_summary.txt"} <= set(before)
    out = ok(train(args_for(data, tmp_path, model="MoeModel", moe_num_mixtures=3, max_steps=4,
                            start_new_model=True)))
    old = [p for p in tmp_path.iterdir() if p.name.startswith("old-")]
    assert len(old) == 1 and f"moved the previous run to {old[0]}" in out
    assert sorted(p.name for p in old[0].iterdir()) == before
    assert not (tmp_path / "eval_results.jsonl").exists()
    assert json.loads((tmp_path / "model_flags.json").read_text())["settings"][
        "moe_num_mixtures"] == 3
    again = run_tool(*evaluate, f"--train_dir={old[0]}")
    assert re.search(r"^step 2: 600 videos", again.stdout, re.M), again.stdout


def test_progress_counts_to_the_end_and_says_why_it_stopped(data, tmp_path):
    (epochs, epochs_out, _), (steps, steps_out, warnings) = train_in_one_process([
        args_for(data, tmp_path / "epochs", num_epochs=2, log_steps=10),
        args_for(data, tmp_path / "steps", num_epochs=2, max_steps=12, log_steps=4,
                 model="MoeModel", compact_layers="fc,moe", dbof_cluster_size=64,
                 export_model_steps=10, log_device_placement=True)])
    assert (epochs, steps) == (0, 0)
    lines = [line for line in epochs_out.splitlines() if line.startswith("step ")]
    total = -(-2 * 600 // 32)  # 2 epochs of 600 videos in batches of 32, the last one partial
    assert lines[0].startswith(f"step 1/{total} (3%) | epoch 0.1/2 | ")
    assert "left" not in lines[0]  # the first step's warm-up is no rate to go by
    assert all(line.endswith(" left") for line in lines[1:])
    assert re.match(rf"step 30/{total} \(79%\) \| epoch 1\.6/2 \|", lines[-1])
    assert f"done at step {total} (--num_epochs=2 done)" in epochs_out
    log = [json.loads(line) for line in (tmp_path / "epochs" / "train_log.jsonl").open()]
    assert [r["step"] for r in log] == [1, 10, 20, 30]
    assert [f"{r['loss']:.4f}" for r in log] == [line.split("| loss ")[1].split()[0]
                                                  for line in lines]
    assert log[0]["seconds_left"] is None and log[-1]["total_steps"] == total
    summary = json.loads((tmp_path / "steps" / "model_summary.json").read_text())
    assert summary["model"] == "MoeModel" and summary["weights"] == sum(
        layer["weights"] for layer in summary["layers"])
    assert f"MoeModel: {summary['weights']:,} weights" in steps_out
    assert "step 12/12 (100%)" in steps_out
    assert "\n  moe_model/moe/gates " in steps_out  # the check of compact_layers names no model
    assert "done at step 12 (--max_steps=12 reached)" in steps_out
    assert warnings.splitlines() == [
        "warning: --dbof_cluster_size is not a setting of MoeModel: ignored",
        "warning: --compact_layers=fc: MoeModel has no such layer with these settings: ignored",
        "warning: --export_model_steps does nothing: export a trained model with "
        "export_model.py",
        "warning: --log_device_placement is not supported: ignored"]


def test_two_cpu_devices_train_as_one(shared_data, tmp_path):
    """On real 2018 records, which train.py reads (the release check) before it splits the CPU;
    with an average of the weights, which the checkpoint keeps. Steps 2-3 and 5-7 run inside
    compiled loops (several steps per call)."""
    pattern = os.path.join(shared_data, "yt8m-2018-video", "validate", "validate008[01].tfrecord")
    flags = dict(model="MoeModel", max_steps=8, log_steps=4, steps_per_loop=4, ema_decay=0.9,
                 train_data_pattern=pattern, num_classes=3862)
    ok(train(args_for({}, tmp_path / "one", **flags)))
    ok(train(args_for({}, tmp_path / "two", cpu_devices=2, **flags)))
    one, two = losses_of(tmp_path / "one"), losses_of(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 4, 8]
    for step in one:
        assert one[step] == pytest.approx(two[step], rel=1e-4), step
    assert checkpoints.restore(checkpoints.load(str(tmp_path / "two"))[0],
                               str(tmp_path / "two" / "model.ckpt-8")) == "averaged_model"


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_workers_under_tf_config_train_together(data, tmp_path):
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    args = args_for(data, tmp_path, model="MoeModel", max_steps=4)
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen([sys.executable, TRAIN, *args], text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=dict(os.environ, TF_CONFIG=config)))
    outputs = [w.communicate(timeout=240) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    first, second = losses_of(tmp_path), losses_of(tmp_path / "workers" / "1")
    assert first == second and max(first) == 4  # one model, trained in step
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-4")
    assert (tmp_path / "workers" / "1").is_dir()


def train_in_one_process(arguments):
    return run_in_one_process("train", arguments)


def test_bad_flags_end_in_one_line(data, tmp_path):
    done = train(args_for(data, tmp_path / "model", model="NoSuchModel"))
    assert done.returncode == 1 and "choose one of" in done.stderr.strip().splitlines()[-1]
    a_file = tmp_path / "file"
    a_file.write_text("")
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    frame_data = {"train_data_pattern": data["frames"]}
    cases = [({"label_loss": "L1"}, "unknown label_loss"),
             ({"train_dir": str(a_file)}, "is a file"),
             ({"train_dir": str(a_file / "sub")}, "cannot write in"),
             ({"train_data_pattern": str(tmp_path / "none*")}, "no file matches"),
             ({"train_data_pattern": str(empty)}, "no records in"),
             ({"train_data_pattern": str(tmp_path)}, "is a folder: add /*.tfrecord"),
             ({"feature_sizes": "1024"}, "must be non-empty and of equal length"),
             ({"model": "DbofModel"}, "add --frame_features"),
             ({"model": "MoeModel", "frame_features": True, **frame_data},
              "leave out --frame_features"),
             ({"model": "DbofModel", "frame_features": True},
              "is missing (video-level data? then leave out --frame_features)"),
             ({"model": "MoeModel", "max_model_mb": 0.5}, "over --max_model_mb"),
             ({"batch_norm_momentum": 1.5}, "batch_norm_momentum must be in [0, 1)"),
             ({"circulant_learning_rate_scale": 0}, "must be positive"),
             ({"segment_labels": True}, "--segment_labels trains a frame-level model on "
                                        "segment-rated frame-level records: add "
                                        "--frame_features"),
             ({"init_from": str(tmp_path)}, "no model_flags.json there; give the train_dir"),
             ({"model": "BottleneckModel", "bottleneck_size": 0, "output_gating": True,
               "compact_layers": "gating=btt", "btt_blocks": 99},
              "btt_blocks=99 is more than the smaller side of a 50 -> 50 layer: use at most 50"),
             ({"model": "BottleneckModel", "classifier_rank": -3},
              "--classifier_rank must be 0 (a dense classifier) or more, got -3")]
    arguments = [args_for(data, tmp_path / re.sub(r"\W", "_", expected), **flags)
                 for flags, expected in cases]
    for (flags, expected), (code, _, stderr) in zip(cases, train_in_one_process(arguments),
                                                     strict=True):
        assert code == 1, (flags, stderr[-1000:])
        assert expected in stderr.strip().splitlines()[-1], (flags, stderr[-1000:])
        if "btt_blocks" in flags:  # raised inside Keras' call: its wrapping and guesses gone
            assert stderr.strip() == f"error: {expected}", stderr[-1000:]


def test_a_setting_outside_its_valid_values_is_refused_when_flags_are_read():
    done = run_tool("train.py", "--circulant_diagonal_side=left", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("FATAL Flags parsing error: flag --circulant_diagonal_side=left: "
                                  "value should be one of <input|output>")


def test_skip_corrupt_records_trains_past_bad_data_and_counts_it(data, tmp_path):
    shard = data["video"].split(",")[0]
    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(open(shard, "rb").read()[:-300])
    pattern = f"{data['video']},{damaged}"
    done = train(args_for(data, tmp_path / "strict", train_data_pattern=pattern, num_epochs=1))
    assert done.returncode == 1
    assert re.search(r"damaged.tfrecord: corrupt or truncated record.*after \d+ good records$",
                     done.stderr.strip().splitlines()[-1])
    out = ok(train(args_for(data, tmp_path / "tolerant", train_data_pattern=pattern,
                            num_epochs=1, skip_corrupt_records=True)))
    assert out.strip().splitlines()[-1].endswith(
        "0 bad records and the damaged ends of 1 files skipped")


def test_help_groups_the_flags_and_says_what_each_setting_means():
    done = run_tool("train.py", "--help", check=False)
    overview, details = done.stdout.split("\nflags:\n", 1)  # absl exits 1 after --help
    grouped = re.findall(r"--(\w+)", overview)
    defined = set(re.findall(r"^  --(?:\[no\])?(\w+):", details, re.M))
    assert grouped and set(grouped) <= defined  # every flag named in a group exists
    assert "models (--model): BottleneckModel, DbofModel" in overview
    assert re.search(r"    MoeModel: --moe_l2, --moe_num_mixtures, --moe_prob_gating\n", overview)
    assert "--embedding: <dbof|netvlad|netfv>: Each stream's embedding." in details
    flowing = " ".join(details.split())  # compact_layers' sites and kinds, however wrapped
    assert ("sites embedding, fc, bottleneck, moe, moe_gates, moe_experts, classifier, gating"
            in flowing) and "kinds " + ", ".join(layer_kinds.KINDS) in flowing
    assert "Model setting" not in details  # every setting has a meaning of its own


def test_a_resumed_run_on_data_of_the_other_level_fails_saying_so_and_changes_nothing(data,
                                                                                      tmp_path):
    ok(train(args_for(data, tmp_path, frame=True, model="FrameLevelLogisticModel",
                      max_steps=2)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    done = train([f"--train_dir={tmp_path}", f"--train_data_pattern={data['video']}",
                  "--max_steps=4"])  # the level comes from model_flags.json, not a flag
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "this model reads frame-level records" in last, last
    assert "--frame_features" not in last
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # no event file, model_summary.txt as it was
    assert not (tmp_path / "damaged").exists()
