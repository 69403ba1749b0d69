"""Distillation: the soft loss against NumPy, a teacher's predictions against its own
evaluation, the loss of a training step, folds, a KnnMoeModel teacher leaving the video out."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import run_in_one_process, run_tool

import checkpoints
import distillation
import model_flags
import readers
import run_dir
import train_config
import trainer
import training_data


def numpy_soft_cross_entropy(student, teacher, temperature):
    def tempered(p):
        p = np.clip(p, distillation.EPSILON, 1 - distillation.EPSILON)
        return 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))

    if temperature != 1:
        student, teacher = tempered(student), tempered(teacher)
    eps = 1e-5  # the starter's CrossEntropyLoss
    return -temperature ** 2 * np.sum(teacher * np.log(student + eps)
                                      + (1 - teacher) * np.log(1 - student + eps), axis=1)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_the_soft_loss_against_numpy(temperature):
    rng = np.random.default_rng(0)
    student, teacher = rng.uniform(0.001, 0.999, (2, 4, 7))
    got = distillation.soft_cross_entropy(tf.constant(student, tf.float32),
                                          tf.constant(teacher, tf.float32), temperature)
    np.testing.assert_allclose(got.numpy(), numpy_soft_cross_entropy(student, teacher,
                                                                     temperature), rtol=1e-4)


def train_args(generated_data, folder, *extra):
    return [f"--train_dir={folder}", f"--train_data_pattern={generated_data['video']}",
            "--num_classes=50", "--batch_size=32", "--max_steps=3", *extra]


@pytest.fixture(scope="module")
def teachers(generated_data, tmp_path_factory):
    """A MoE teacher (its train_dir and its export), and a KnnMoeModel one."""
    folder = tmp_path_factory.mktemp("teachers")
    done = run_in_one_process("train", [
        train_args(generated_data, folder / "moe", "--model=MoeModel", "--moe_num_mixtures=2"),
        train_args(generated_data, folder / "knn", "--model=KnnMoeModel", "--knn_k=1",
                   "--knn_weight=1")])
    assert [code for code, _, _ in done] == [0, 0], done
    run_tool("export_model.py", f"--train_dir={folder / 'moe'}",
             f"--output_dir={folder / 'moe_export'}", f"--output_tgz={folder}/moe.tgz")
    return folder


def records(generated_data, count=64):
    return next(iter(tf.data.TFRecordDataset(generated_data["video"].split(",")).batch(count)))


@pytest.mark.slow  # TensorFlow processes
def test_a_teachers_predictions_are_its_own_evaluations(generated_data, teachers, tmp_path):
    serialized = records(generated_data)
    model, reader, _, _ = checkpoints.load(str(teachers / "moe"))
    own = model(readers.model_inputs(reader.parse(serialized)), training=False).numpy()
    for path in ("moe", "moe_export", "moe.tgz"):
        teacher = distillation.Teacher([str(teachers / path)], [1.0], 50, False, str(tmp_path))
        np.testing.assert_allclose(teacher(serialized).numpy(), own, rtol=0, atol=1e-6)
    both = distillation.Teacher([str(teachers / "moe"), str(teachers / "knn")], [0.25, 0.75], 50,
                                False, str(tmp_path))
    knn = distillation.Teacher([str(teachers / "knn")], [1.0], 50, False, str(tmp_path))
    np.testing.assert_allclose(both(serialized).numpy(),
                               0.25 * own + 0.75 * knn(serialized).numpy(), atol=1e-6)


@pytest.mark.slow  # the teachers are trained by TensorFlow processes
def test_a_knn_teacher_leaves_the_video_itself_out(generated_data, teachers, tmp_path):
    """k = 1 and all weight on the neighbours: the memorised video itself would return its
    own labels; left out, its nearest other video answers."""
    serialized = records(generated_data)
    model, reader, _, _ = checkpoints.load(str(teachers / "knn"))
    batch = reader.parse(serialized)
    labels = batch["labels"].numpy()
    itself = model(readers.model_inputs(batch), training=False).numpy()
    np.testing.assert_allclose(itself, labels, atol=1e-5)
    honest = distillation.Teacher([str(teachers / "knn")], [1.0], 50, False, str(tmp_path))
    guessed = honest(serialized).numpy()
    assert (np.abs(guessed - labels).max(axis=1) > 0.5).mean() > 0.5  # most guesses differ


@pytest.mark.slow  # the teachers are trained by TensorFlow processes
def test_folds_split_the_videos_and_each_fold_takes_its_own_teacher(generated_data, teachers,
                                                                   tmp_path):
    description = model_flags.describe("MoeModel", num_classes=50)
    reader = checkpoints.make_reader(description, trained=False)
    files = generated_data["video"].split(",")

    def ids(holdout=None):
        transforms = [training_data.Holdout(*holdout)] if holdout else []
        return {i.decode() for b in reader.dataset(files, 100, transforms=transforms)
                for i in b["id"].numpy()}

    every, kept_0, kept_1 = ids(), ids((0, 2)), ids((1, 2))
    assert kept_0 | kept_1 == every and not kept_0 & kept_1 and len(kept_0) > 200
    fold = readers.fold_of(tf.constant(sorted(every)), 2).numpy()
    assert {v for v, f in zip(sorted(every), fold) if f == 1} == kept_0
    serialized = records(generated_data)
    moe = distillation.Teacher([str(teachers / "moe")], [1.0], 50, False, str(tmp_path))
    knn = distillation.Teacher([str(teachers / "knn")], [1.0], 50, False, str(tmp_path))
    by_fold = distillation.Teacher([str(teachers / "moe"), str(teachers / "knn")], [0.5, 0.5],
                                   50, False, str(tmp_path), folds=2)
    video_ids = reader.parse(serialized)["id"]
    chosen = by_fold(serialized, video_ids).numpy()
    which = readers.fold_of(video_ids, 2).numpy()
    assert 0 < which.sum() < len(which)
    np.testing.assert_allclose(chosen[which == 0], moe(serialized).numpy()[which == 0], atol=1e-6)
    np.testing.assert_allclose(chosen[which == 1], knn(serialized).numpy()[which == 1], atol=1e-6)
    # A batch of one fold only: the other teacher gets no videos.
    only = tf.boolean_mask(serialized, which == 0)
    np.testing.assert_allclose(by_fold(only, tf.boolean_mask(video_ids, which == 0)).numpy(),
                               moe(only).numpy(), atol=1e-6)


@pytest.mark.slow  # the teachers are trained by TensorFlow processes
def test_a_cached_teacher_predicts_each_video_once_and_the_same_as_without_the_cache(
        generated_data, teachers, tmp_path):
    description = model_flags.describe("MoeModel", num_classes=50)
    reader = checkpoints.make_reader(description, trained=False)
    serialized = records(generated_data)  # 64 videos
    ids = reader.parse(serialized)["id"]
    paths = [str(teachers / "moe"), str(teachers / "knn")]
    plain = distillation.Teacher(paths, [0.5, 0.5], 50, False, str(tmp_path))
    cached = distillation.Teacher(paths, [0.5, 0.5], 50, False, str(tmp_path), cache=True)
    member, seen = cached.members[0], []

    def counted(batch):
        seen.append(int(tf.shape(batch)[0]))
        return member(batch)

    cached.members[0] = counted
    expected = plain(serialized, ids).numpy()
    np.testing.assert_allclose(cached(serialized[:40], ids[:40]).numpy(), expected[:40],
                               atol=1e-6)
    # Videos 24-63: 24 of them new; then all 64 again, none new.
    np.testing.assert_allclose(cached(serialized[24:], ids[24:]).numpy(), expected[24:],
                               atol=1e-6)
    np.testing.assert_allclose(cached(serialized, ids).numpy(), expected, atol=1e-6)
    assert seen == [40, 24] and cached.cache.size() == 64
    with pytest.raises(ValueError, match="--teacher_cache need --teacher"):
        train_config.TrainConfig(train_dir=str(tmp_path / "s"), model_flags=description,
                            train_data_pattern=generated_data["video"],
                            teacher_cache=True).check()


@pytest.mark.slow  # the teachers are trained by TensorFlow processes
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_a_training_step_mixes_the_label_loss_and_the_soft_loss(generated_data, teachers,
                                                                tmp_path, temperature):
    description = model_flags.describe("LogisticModel", num_classes=50)
    config = train_config.TrainConfig(
        train_dir=str(tmp_path / "student"), model_flags=description, batch_size=32,
        train_data_pattern=generated_data["video"], teacher=str(teachers / "moe"),
        distillation_weight=0.3, distillation_temperature=temperature,
        regularization_penalty=0.0)
    run = trainer.Trainer(config)
    batch = next(iter(run.reader.dataset(generated_data["video"], 32,
                                         transforms=[training_data.KeepRecords()])))
    soft = run.terms[0].teacher(batch["serialized"], batch["id"]).numpy()
    loss, probabilities, labels = run.train_step(batch)
    p = probabilities.numpy().astype(np.float64)
    eps = 1e-5
    label_loss = -np.sum(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps), axis=1)
    expected = np.mean(0.7 * label_loss + 0.3 * numpy_soft_cross_entropy(p, soft, temperature))
    assert float(loss) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow  # the teachers are trained by TensorFlow processes
def test_an_unlabelled_video_trains_on_the_soft_loss_alone(generated_data, teachers, tmp_path):
    *labelled, unlabelled = generated_data["video"].split(",")  # 3 shards of 200 videos
    config = train_config.TrainConfig(
        train_dir=str(tmp_path / "student"),
        model_flags=model_flags.describe("LogisticModel", num_classes=50), batch_size=64,
        train_data_pattern=",".join(labelled), unlabelled_data_pattern=unlabelled,
        teacher=str(teachers / "moe"), distillation_weight=0.3, regularization_penalty=0.0)
    run = trainer.Trainer(config)
    batch = next(iter(run.reader.dataset(labelled, 64, shuffle=True, seed=2,
                                         transforms=run.terms[0].transforms)))
    flags = batch["labelled"].numpy()
    assert 0 < flags.sum() < 64  # both kinds in the batch
    soft = run.terms[0].teacher(batch["serialized"], batch["id"]).numpy()
    loss, probabilities, labels = run.train_step(batch)
    p = probabilities.numpy().astype(np.float64)
    eps = 1e-5
    label_loss = -np.sum(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps), axis=1)
    soft_loss = numpy_soft_cross_entropy(p, soft, 1.0)
    expected = np.where(flags > 0, 0.7 * label_loss + 0.3 * soft_loss, soft_loss)
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-4)


@pytest.mark.slow  # TensorFlow processes
def test_distillation_on_two_cpu_devices_trains_as_on_one(generated_data, teachers, tmp_path):
    """Mirrored over two logical CPUs, with cached teachers by fold and unlabelled videos."""
    *labelled, unlabelled = generated_data["video"].split(",")
    flags = [f"--train_data_pattern={','.join(labelled)}",
             f"--unlabelled_data_pattern={unlabelled}", "--num_classes=50", "--batch_size=32",
             "--max_steps=6", "--log_steps=1",
             "--model=MoeModel", f"--teacher={teachers / 'moe'},{teachers / 'knn'}",
             "--teacher_folds=2", "--teacher_cache"]
    for folder, devices in (("one", []), ("two", ["--cpu_devices=2"])):
        run_tool("train.py", f"--train_dir={tmp_path / folder}", *flags, *devices)
    one, two = (run_dir.read_train_log(str(tmp_path / folder)) for folder in ("one", "two"))
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 4, 5, 6]
    for first, second in zip(one, two):
        assert first["loss"] == pytest.approx(second["loss"], rel=1e-4), first["step"]


@pytest.mark.slow  # TensorFlow processes
def test_a_distilled_run_trains_and_bad_teachers_are_one_line(generated_data, teachers,
                                                              tmp_path):
    trained = [f"--train_dir={tmp_path / 'student'}",
               f"--train_data_pattern={generated_data['video']}", "--num_classes=50",
               "--batch_size=32", "--max_steps=4", f"--teacher={teachers}/moe.tgz",
               "--holdout_fold=0/3", "--jit_compile", "--teacher_cache"]
    cases = [
        (["--frame_features", "--max_frames=40", "--model=FrameLevelLogisticModel",
          f"--teacher={teachers / 'moe'}"],
         f"--teacher={teachers / 'moe'} reads video-level records and the student frame-level "
         "ones: a teacher must read the student's records"),
        ([f"--teacher={tmp_path}"], "is neither a train_dir of train.py nor an exported"),
        ([f"--teacher={teachers / 'moe'}", "--teacher_folds=2"],
         "--teacher_folds=2 needs 2 teachers"),
        ([f"--teacher={teachers / 'moe'}", "--teacher_weights=1,2"],
         "--teacher_weights needs 1 non-negative numbers"),
        (["--holdout_fold=3/2"], "--holdout_fold=3/2: give I/K with 0 <= I < K"),
        ([f"--teacher={teachers / 'moe'}", "--distillation_weight=2"],
         "--distillation_weight must be between 0 and 1"),
        ([f"--unlabelled_data_pattern={generated_data['video']}"],
         "--unlabelled_data_pattern needs --teacher"),
        ([f"--teacher={teachers / 'moe'}", f"--unlabelled_data_pattern={tmp_path}/none*"],
         "no file matches")]
    arguments = []
    for flags, _ in cases:
        data = generated_data["frames" if "--frame_features" in flags else "video"]
        arguments.append([f"--train_dir={tmp_path / 's'}", f"--train_data_pattern={data}",
                          "--num_classes=50", "--max_steps=1", *flags])
    *labelled, unlabelled = generated_data["video"].split(",")  # 3 shards of 200 videos
    with_unlabelled = [f"--train_dir={tmp_path / 'unlabelled'}",
                       f"--train_data_pattern={','.join(labelled)}",
                       f"--unlabelled_data_pattern={unlabelled}", "--num_classes=50",
                       "--batch_size=32", "--num_epochs=1", f"--teacher={teachers / 'knn'}",
                       "--teacher_cache"]
    temporary = tmp_path / "temporary"  # where the .tgz teacher is unpacked
    temporary.mkdir()
    (code, out, err), (code_u, out_u, err_u), *refused = run_in_one_process(
        "train", [trained, with_unlabelled, *arguments], env={"TMPDIR": str(temporary)})
    assert list(temporary.iterdir()) == []  # removed once loaded, and by every refused run
    assert code == 0 and "done at step 4" in out, err[-2000:]
    assert f"\nin use: distillation from {teachers}/moe.tgz (weight " in out
    assert ", cached)\n" in out
    assert "; the unlabelled videos of 1 file (--unlabelled_data_pattern)\n" in out_u
    # an epoch of 400 + 200 videos in batches of 32: 19 steps (13 for the labelled alone)
    assert code_u == 0 and "done at step 19 (--num_epochs=1 done)" in out_u, err_u[-2000:]
    for (flags, message), (code, _, err) in zip(cases, refused):
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and message in lines[0], (flags, err[-1000:])
