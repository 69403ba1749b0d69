"""Segment-level records (2019): rated segments and every segment from hand-built records, the
masked loss against NumPy, the segment metric against a brute-force one, the ranking and its
CSV."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import run_in_one_process, run_tool
from records import frame_example, write

import losses
import readers
import segments


def frames(count, offset=0):
    """rgb frames whose bytes say their index (frame i is all i + offset), and audio ones."""
    return ([np.full(1024, i + offset, np.uint8) for i in range(count)],
            [np.full(128, i + offset, np.uint8) for i in range(count)])


def batches(reader, files, size=64):
    with reader.reraise_data_errors(files):
        return [{k: v.numpy() for k, v in b.items()} for b in reader.dataset(files, size)]


def test_rated_segments_are_one_example_each_with_their_rated_classes(tmp_path):
    path = write(tmp_path / "validate.tfrecord", [
        frame_example(b"vid1", None, *frames(12), segments=([3, 7, 3], [0, 0, 10], [1, 0, 1])),
        frame_example(b"vid2", None, *frames(6, 100), segments=([], [], [])),
        frame_example(b"vid3", None, *frames(8, 50), segments=([9], [5], [0]))])
    reader = readers.FrameReader(12, max_frames=20, quantized=True, segments="rated")
    [batch] = batches(reader, [path])
    assert [f"{i.decode()}:{s}" for i, s in zip(batch["id"], batch["start"])] == \
        ["vid1:0", "vid1:10", "vid3:5"]
    assert batch["features"].shape == (3, 5, 1152)
    np.testing.assert_array_equal(batch["features"][0, :, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(batch["features"][1, :, 0], [10, 11, 0, 0, 0])  # 2 real
    np.testing.assert_array_equal(batch["features"][2, :, 1100], [55, 56, 57, 0, 0])
    np.testing.assert_array_equal(batch["num_frames"], [5, 2, 3])
    expected_weights = np.zeros((3, 12))
    expected_weights[0, [3, 7]] = expected_weights[1, 3] = expected_weights[2, 9] = 1
    expected_labels = np.zeros((3, 12))
    expected_labels[0, 3] = expected_labels[1, 3] = 1
    np.testing.assert_array_equal(batch["label_weights"], expected_weights)
    np.testing.assert_array_equal(batch["labels"], expected_labels)
    np.testing.assert_array_equal(batch["num_labels"], [1, 1, 0])
    # The ratings alone, as segment_eval.py reads them.
    rated = segments.rated_segments(reader, [path])
    assert rated.scores == {("vid1:0", 3): 1.0, ("vid1:0", 7): 0.0, ("vid1:10", 3): 1.0,
                            ("vid3:5", 9): 0.0}
    assert rated.positives == {3: 2, 7: 0, 9: 0}


def test_every_segment_of_a_test_video_from_frame_0(tmp_path):
    path = write(tmp_path / "test.tfrecord", [frame_example(b"t1", None, *frames(12)),
                                             frame_example(b"t2", None, *frames(5))])
    reader = readers.FrameReader(12, max_frames=20, segments="all")
    found = batches(reader, [path], size=2)
    starts = [(i.decode(), s) for b in found for i, s in zip(b["id"], b["start"])]
    assert starts == [("t1", 0), ("t1", 5), ("t1", 10), ("t2", 0)]
    assert [n for b in found for n in b["num_frames"]] == [5, 5, 2, 5]
    assert all(not b["label_weights"].any() for b in found)


@pytest.mark.parametrize("rated, fragment", [
    (([3, 4], [0], [1, 0]), "segment_labels, segment_start_times and segment_scores are of "
                            "different lengths"),
    (([12], [0], [1]), "segment label id outside [0, 12)"),
    (([3], [10], [1]), "segment start time past the video's end"),
])
def test_bad_ratings_are_one_line_naming_the_record(tmp_path, rated, fragment):
    path = write(tmp_path / "bad.tfrecord", [
        frame_example(b"ok", None, *frames(10), segments=([1], [0], [1])),
        frame_example(b"bad", None, *frames(10), segments=rated)])
    reader = readers.FrameReader(12, max_frames=20, segments="rated")
    for read in (batches, segments.rated_segments):  # frames decoded; the ratings alone
        with pytest.raises(readers.DataError) as caught:
            read(reader, [path])
        message = str(caught.value)
        assert "\n" not in message and "bad.tfrecord record 1" in message and fragment in message


def test_the_masked_loss_leaves_the_unrated_classes_out():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, (4, 6))
    y = (rng.random((4, 6)) < 0.3).astype(np.float64)
    w = (rng.random((4, 6)) < 0.5).astype(np.float64)
    expected = -np.sum(w * (y * np.log(p + 1e-5) + (1 - y) * np.log(1 - p + 1e-5)), axis=1)
    got = losses.CrossEntropyLoss()(tf.constant(p, tf.float32), tf.constant(y), tf.constant(w))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # No gradient reaches an unrated class.
    predictions = tf.Variable(p, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.CrossEntropyLoss()(predictions, y, w))
    gradient = tape.gradient(loss, predictions).numpy()
    assert not gradient[w == 0].any() and gradient[w == 1].all()
    with pytest.raises(ValueError, match="SoftmaxLoss cannot leave the unrated classes"):
        losses.SoftmaxLoss()(predictions, y, w)


def brute_force_map(submission, ratings, top_n):
    """The starter's definition, written out: per class, walk its list (cut to top_n), keep
    the rated (segment, class) pairs, add precision at each positive; divide by the class's
    rated positives; mean over the classes with positives."""
    positives = {}
    for (_, label), score in ratings.items():
        positives[label] = positives.get(label, 0) + (score > 0)
    values = []
    for label, names in submission.items():
        if not positives.get(label):
            continue
        kept = [n for n in (names[:top_n] if top_n else names) if (n, label) in ratings]
        hits, total = 0, 0.0
        for rank, name in enumerate(kept, 1):
            if ratings[(name, label)] > 0:
                hits += 1
                total += hits / rank
        values.append(total / positives[label])
    return sum(values) / len(values)


@pytest.mark.parametrize("top_n", [0, 3, 7])
def test_the_segment_metric_against_a_brute_force_one(top_n):
    rng = np.random.default_rng(top_n)
    names = [f"v{v}:{5 * s}" for v in range(6) for s in range(4)]
    ratings = {(n, c): float(rng.random() < 0.5) for n in names for c in (1, 2, 3, 4)
               if rng.random() < 0.4}
    ratings[("v0:0", 4)] = 1.0
    submission = {c: list(rng.permutation(names)[:int(rng.integers(0, 15))]) for c in (1, 2, 3)}
    submission[4] = []  # a class with positives and nothing submitted: AP 0
    submission[9] = ["v0:0"]  # a class no segment is rated for: left out of the mean
    rated = segments.RatedSegments()
    rated.add([n for n, _ in ratings], [c for _, c in ratings], list(ratings.values()))
    got, classes = segments.segment_map(submission, rated, top_n)
    assert classes == 4
    assert got == pytest.approx(brute_force_map(submission, ratings, top_n), abs=1e-12)


def test_the_ranking_keeps_each_segments_top_classes_and_caps_each_class(tmp_path):
    ranking = segments.Ranking([1, 3, 4], num_classes=5, max_predictions=2,
                               classes_per_segment=2)
    probabilities = np.array([[0.9, 0.1, 0.9, 0.2, 0.3],   # a: classes 4, 3 (1 not in top 2)
                              [0.0, 0.8, 0.0, 0.7, 0.1],   # b: 1, 3
                              [0.0, 0.8, 0.0, 0.9, 0.2],   # c: 3, 1
                              [0.0, 0.5, 0.0, 0.7, 0.6]])  # d: 3, 4
    ranking.add(["a:0", "b:0"], probabilities[:2])
    ranking.add(["c:5", "d:0"], probabilities[2:])  # ties: b and c for class 1 at 0.8
    assert ranking.ranked() == {1: ["b:0", "c:5"], 3: ["c:5", "b:0"], 4: ["d:0", "a:0"]}
    path = tmp_path / "segments.csv"
    assert segments.write_submission(str(path), ranking) == 3
    assert path.read_text() == ("Class,Segments\n1,b:0 c:5\n3,c:5 b:0\n4,d:0 a:0\n")
    assert segments.read_submission(str(path)) == ranking.ranked()
    assert list(segments.Ranking([1, 7], num_classes=5).label_ids) == [1]
    with pytest.raises(ValueError, match="no class of the segment classes is below the model's "
                                         "5 classes"):
        segments.Ranking([7], num_classes=5)


def test_the_shipped_segment_classes_are_the_starters_1000():
    ids = segments.read_label_ids()
    assert len(ids) == 1000 and ids[:3] == [3, 7, 8] and max(ids) < readers.NUM_CLASSES


@pytest.mark.slow  # TensorFlow processes
def test_segment_eval_scores_a_submission_csv_as_the_brute_force_does(tmp_path):
    rated = ([3, 7, 3], [0, 0, 10], [1, 0, 1])
    path = write(tmp_path / "validate.tfrecord", [
        frame_example(b"vid1", None, *frames(12), segments=rated),
        frame_example(b"vid3", None, *frames(8), segments=([7, 3], [5, 5], [1, 0]))])
    csv = tmp_path / "segments.csv"
    csv.write_text("Class,Segments\n3,vid3:5 vid1:10 vid9:0 vid1:0\n7,vid1:0 vid3:5\n5,\n")
    ratings = {("vid1:0", 3): 1, ("vid1:0", 7): 0, ("vid1:10", 3): 1, ("vid3:5", 7): 1,
               ("vid3:5", 3): 0}
    submission = {3: ["vid3:5", "vid1:10", "vid9:0", "vid1:0"], 7: ["vid1:0", "vid3:5"], 5: []}
    *scored, (bad, _, bad_err) = run_in_one_process("segment_eval", [
        *[[f"--submission_file={csv}", f"--eval_data_pattern={path}", "--num_classes=12",
           f"--top_n={top_n}"] for top_n in (0, 2)],
        [f"--submission_file={csv}", f"--eval_data_pattern={csv}"]])
    for top_n, (code, out, err) in zip((0, 2), scored, strict=True):
        assert code == 0, err
        expected = brute_force_map(submission, ratings, top_n)
        assert f"| segment MAP@{top_n or 'all'} {expected:.6f}" in out, out
        assert "5 rated (segment, class) pairs; 2 of the 3 submitted classes" in out
    assert bad == 1 and len(bad_err.strip().splitlines()) == 1, bad_err


@pytest.mark.slow  # TensorFlow processes
def test_eval_scores_rated_segments_as_a_submission_of_them_would_score(frame_model, tmp_path):
    """eval.py --segment_labels: its segment MAP equals the brute-force metric of the ranking
    built here from the model's own probabilities (each segment's top 20 rated classes, each
    class by descending score), and its GAP takes the unrated classes as 0."""
    import checkpoints
    import eval_util
    import generate_data

    structure = generate_data.HiddenStructure(50, seed=0)
    rated_classes = {c for c in segments.read_label_ids() if c < 50}
    validate = generate_data.write_shards(generate_data.synthetic_records(
        structure, 60, 0, "segments", frame_level=True, min_frames=10, max_frames=40,
        rated_classes=rated_classes), str(tmp_path), "segments", 1)
    done = run_tool("eval.py", f"--train_dir={frame_model}", f"--eval_data_pattern={validate[0]}",
                    "--run_once", "--segment_labels", f"--results_dir={tmp_path}")
    model, _, description, _ = checkpoints.load(str(frame_model))
    reader = checkpoints.make_reader(description, segments="rated")
    ids = sorted(rated_classes)
    scored, ratings, order = {c: [] for c in ids}, {}, 0
    all_scores, all_labels = [], []
    for batch in batches(reader, validate):
        probabilities = model(readers.model_inputs(
            {k: tf.constant(v) for k, v in batch.items()}), training=False).numpy()
        all_scores.append(probabilities * batch["label_weights"])
        all_labels.append(batch["labels"])
        for row, (video, start) in enumerate(zip(batch["id"], batch["start"])):
            name = f"{video.decode()}:{start}"
            top = sorted(ids, key=lambda c: -probabilities[row, c])[:20]
            for c in top:
                scored[c].append((-probabilities[row, c], order, name))
            order += 1
            for c in np.flatnonzero(batch["label_weights"][row]):
                ratings[(name, int(c))] = float(batch["labels"][row, c])
    submission = {c: [name for _, _, name in sorted(found)] for c, found in scored.items()}
    expected = brute_force_map(submission, ratings, 0)
    assert f"segment MAP@100,000 {expected:.6f}" in done.stdout, done.stdout
    metrics = eval_util.EvaluationMetrics(20)
    metrics.add(np.concatenate(all_scores), np.concatenate(all_labels))
    assert f"rated segments | GAP@20 {metrics.gap():.4f}" in done.stdout


@pytest.fixture(scope="module")
def frame_model(generated_data, tmp_path_factory):
    """A frame-level model trained on video-level labels (generated, 50 classes)."""
    train_dir = tmp_path_factory.mktemp("segments") / "video_model"
    run_tool("train.py", f"--train_dir={train_dir}",
             f"--train_data_pattern={generated_data['frames']}", "--frame_features",
             "--model=FrameLevelLogisticModel", "--num_classes=50", "--max_frames=40",
             "--num_epochs=10", "--batch_size=32")
    return train_dir


@pytest.mark.slow  # TensorFlow processes
def test_inference_lists_each_class_by_descending_score_as_a_brute_force_ranking(frame_model,
                                                                                tmp_path):
    """inference.py --segment_labels on hand-built test records (both id keys, no ratings):
    the file a brute-force ranking of the model's own probabilities writes, with the class
    whitelist and the per-class cap; the exported model writes the same file."""
    import checkpoints

    rng = np.random.default_rng(0)

    def noise(count):  # frames far apart: no near-ties between the segments' scores
        return ([rng.integers(0, 256, 1024, np.uint8) for _ in range(count)],
                [rng.integers(0, 256, 128, np.uint8) for _ in range(count)])

    path = write(tmp_path / "test.tfrecord", [
        frame_example(b"vid1", None, *noise(12)),
        frame_example(b"old2", None, *noise(7), id_key="video_id"),
        frame_example(b"vid3", None, *noise(5))])
    whitelist = tmp_path / "classes.csv"
    whitelist.write_text("Index\n7\n1\n3\n99\n")  # 99: past the model's 50 classes
    common = [f"--input_data_pattern={path}", "--segment_labels",
              f"--segment_label_ids_file={whitelist}", "--segment_max_pred=4"]
    run_tool("export_model.py", f"--train_dir={frame_model}",
             f"--output_dir={tmp_path / 'export'}")
    (code, _, err), (exported, exported_out, exported_err) = run_in_one_process("inference", [
        [f"--train_dir={frame_model}", *common, f"--output_file={tmp_path / 'segments.csv'}"],
        [f"--saved_model_dir={tmp_path / 'export'}", *common,
         f"--output_file={tmp_path / 'exported.csv'}"]])
    assert code == 0 == exported, err + exported_err

    model, _, description, _ = checkpoints.load(str(frame_model))
    reader = checkpoints.make_reader(description, segments="all")
    scored = {c: [] for c in (1, 3, 7)}
    names = []
    for batch in batches(reader, [path]):
        probabilities = model(readers.model_inputs(
            {k: tf.constant(v) for k, v in batch.items()}), training=False).numpy()
        for row, (video, start) in enumerate(zip(batch["id"], batch["start"])):
            names.append(f"{video.decode()}:{start}")
            for c in scored:  # 3 classes: every segment's top 20 holds all of them
                scored[c].append((-float(probabilities[row, c]), len(names), names[-1]))
    assert names == ["vid1:0", "vid1:5", "vid1:10", "old2:0", "old2:5", "vid3:0"]
    expected = "Class,Segments\n" + "".join(
        f"{c},{' '.join(name for _, _, name in sorted(scored[c])[:4])}\n" for c in (1, 3, 7))
    assert (tmp_path / "segments.csv").read_text() == expected

    assert "wrote 3 classes (6 segments scored)" in exported_out
    assert (tmp_path / "exported.csv").read_text() == expected


@pytest.mark.slow  # TensorFlow processes
def test_fine_tuning_on_rated_segments_beats_the_video_level_start(frame_model, tmp_path):
    """train.py --segment_labels --init_from: the video-level model fine-tuned on rated
    segments scores a better segment MAP on other rated videos; inference.py's CSV scored by
    segment_eval.py gives exactly eval.py's segment MAP."""
    import generate_data

    structure = generate_data.HiddenStructure(50, seed=0)  # the world of generated_data
    rated_classes = {c for c in segments.read_label_ids() if c < 50}
    shards = {split: generate_data.write_shards(generate_data.synthetic_records(
        structure, count, 0, split, frame_level=True, min_frames=10, max_frames=40,
        rated_classes=rated_classes), str(tmp_path), split, 1)[0]
        for split, count in (("rated_train", 240), ("rated_validate", 80))}

    tuned = tmp_path / "tuned"
    done = run_tool("train.py", f"--train_dir={tuned}", f"--init_from={frame_model}",
                    f"--train_data_pattern={shards['rated_train']}", "--segment_labels",
                    f"--validation_data_pattern={shards['rated_validate']}", "--num_epochs=5",
                    "--batch_size=32")
    assert f"--init_from: the weights of {frame_model}" in done.stdout
    assert "rated segments | GAP" in done.stdout  # validation counts segments
    before, after = [float(out.split("segment MAP@100,000 ")[1].split()[0])
                     for _, out, _ in run_in_one_process("eval", [
                         [f"--train_dir={train_dir}", "--run_once", "--segment_labels",
                          f"--eval_data_pattern={shards['rated_validate']}",
                          f"--results_dir={tmp_path / 'results' / train_dir.name}"]
                         for train_dir in (frame_model, tuned)])]
    assert after > before + 0.01, (before, after)

    csv = tmp_path / "segments.csv"
    run_tool("inference.py", f"--train_dir={tuned}", "--segment_labels",
             f"--input_data_pattern={shards['rated_validate']}", f"--output_file={csv}")
    # segment_eval.py's own computation (its command line is tested above)
    rated = segments.rated_segments(readers.FrameReader(50, segments="rated"),
                                    [shards["rated_validate"]])
    scored, _ = segments.segment_map(segments.read_submission(str(csv)), rated,
                                     segments.MAX_PREDICTIONS)
    assert f"{scored:.6f}" == f"{after:.6f}", (scored, after)


@pytest.mark.slow  # TensorFlow processes
def test_segment_inference_refuses_what_it_cannot_score_in_one_line(frame_model, generated_data,
                                                                    tmp_path):
    video_dir = tmp_path / "video_model"
    run_tool("train.py", f"--train_dir={video_dir}", "--max_steps=2", "--num_classes=50",
             f"--train_data_pattern={generated_data['video']}")
    run_tool("export_model.py", f"--train_dir={video_dir}", f"--output_dir={tmp_path / 'e'}")
    data = f"--input_data_pattern={generated_data['frames'].split(',')[0]}"
    cases = [([f"--train_dir={video_dir}"], "holds a video-level model; give a frame-level one"),
             ([f"--saved_model_dir={tmp_path / 'e'}"], "has no 'segments' signature"),
             ([f"--train_dir={frame_model}", "--segment_max_pred=0"],
              "--segment_max_pred must be at least 1"),
             ([f"--train_dir={frame_model}", f"--segment_label_ids_file={tmp_path}/none.csv"],
              "none.csv: No such file or directory")]
    arguments = [[*flags, data, f"--output_file={tmp_path / 'x.csv'}", "--segment_labels"]
                 for flags, _ in cases]
    for (_, expected), (code, _, stderr) in zip(cases, run_in_one_process("inference", arguments),
                                                strict=True):
        assert code == 1 and len(stderr.strip().splitlines()) == 1, stderr
        assert expected in stderr, stderr
    assert not (tmp_path / "x.csv").exists()


SMALL_FRAME_SETTINGS = dict(
    video_clusters=16, audio_clusters=8, fc_size=16, iterations=10, moe_num_mixtures=2,
    dbof_cluster_size=16, dbof_hidden_size=16, netvlad_cluster_size=4, netvlad_hidden_size=16,
    fv_cluster_size=4, fv_hidden_size=16, lstm_cells=16, lstm_layers=1, gru_cells=16,
    gru_layers=1)


def frame_model_names():
    import frame_level_models
    import models

    return [n for n in models.model_names()
            if issubclass(models.get_model_class(n), frame_level_models.FrameModel)]


@pytest.mark.parametrize("name", frame_model_names())
def test_every_frame_model_scores_5_frame_segments(tmp_path, name):
    """Sampling and pooling on segments of 5 frames and of fewer (a video's last one), in
    training and inference: probabilities of the right shape, finite, in [0, 1], and a
    segment's scores do not depend on the other segments of its batch."""
    import checkpoints
    import model_flags
    import models

    settings = {k: v for k, v in SMALL_FRAME_SETTINGS.items() if k in models.given_settings(name)}
    description = model_flags.describe(name, num_classes=12, frame_features=True, max_frames=20,
                                       **settings)
    reader = checkpoints.make_reader(description, segments="all")
    model = checkpoints.build_model(description, reader)
    rng = np.random.default_rng(1)
    path = write(tmp_path / "test.tfrecord", [frame_example(
        b"v%d" % i, None, [rng.integers(0, 256, 1024, np.uint8) for _ in range(n)],
        [rng.integers(0, 256, 128, np.uint8) for _ in range(n)]) for i, n in enumerate((12, 5))])
    batch = {k: tf.constant(v) for k, v in batches(reader, [path])[0].items()}
    assert batch["num_frames"].numpy().tolist() == [5, 5, 2, 5]
    for training in (False, True):
        probabilities = model(readers.model_inputs(batch), training=training).numpy()
        assert probabilities.shape == (4, 12)
        assert np.isfinite(probabilities).all()
        assert (probabilities >= 0).all() and (probabilities <= 1).all()
    alone = model(readers.model_inputs({k: v[2:3] for k, v in batch.items()}),
                  training=False).numpy()
    together = model(readers.model_inputs(batch), training=False).numpy()
    np.testing.assert_allclose(alone[0], together[2], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # TensorFlow processes
def test_segment_flags_on_records_or_models_they_cannot_use_say_what_to_do(
        frame_model, generated_data, tmp_path):
    """Records without ratings, a video-level model, video-level records: one line each that
    names what to change with flags the tool has; and --init_from may change the loss."""
    import generate_data

    unrated = generated_data["frames"]  # frame level, no segment ratings
    no_ratings = ("hold no rated segments (no segment_labels, segment_start_times and "
                  "segment_scores): --segment_labels reads the segment-rated records of the "
                  "2019 release; leave it out to use whole videos")
    video_dir = tmp_path / "video_model"
    trained = run_in_one_process("train", [
        [f"--train_dir={tmp_path / 'on_unrated'}", f"--train_data_pattern={unrated}",
         "--segment_labels", "--frame_features", "--model=FrameLevelLogisticModel",
         "--num_classes=50", "--max_frames=40", "--max_steps=2"],
        [f"--train_dir={video_dir}", "--max_steps=1", "--num_classes=50",
         f"--train_data_pattern={generated_data['video']}"]])
    assert trained[0][0] == 1 and trained[0][2].strip().splitlines() == [
        f"error: {unrated.split(',')[0]} and 1 more {no_ratings}"], trained[0]
    assert trained[1][0] == 0, trained[1]
    evaluated = run_in_one_process("eval", [
        [f"--train_dir={d}", "--run_once", "--segment_labels", f"--eval_data_pattern={data}",
         f"--results_dir={tmp_path / 'results' / d.name}"]
        for d, data in ((frame_model, unrated), (video_dir, unrated))])
    assert [e[2].strip().splitlines() for e in evaluated] == [
        [f"error: {unrated.split(',')[0]} and 1 more {no_ratings}"],
        [f"error: --segment_labels scores 5-frame segments: {video_dir} holds a video-level "
         "model; give a frame-level one (train.py --frame_features)"]], evaluated

    submission = tmp_path / "segments.csv"
    submission.write_text("Class,Segments\n3,abcd:0\n")
    scored = run_tool("segment_eval.py", f"--submission_file={submission}",
                      f"--eval_data_pattern={generated_data['video'].split(',')[0]}",
                      check=False)
    assert scored.returncode == 1 and "--frame_features" not in scored.stderr, scored.stderr
    assert scored.stderr.strip().endswith(
        "(video-level records? segments are rated in the 2019 release's frame-level records)")

    structure = generate_data.HiddenStructure(50, seed=0)
    rated = generate_data.write_shards(generate_data.synthetic_records(
        structure, 40, 0, "rated", frame_level=True, min_frames=10, max_frames=40,
        rated_classes=set(range(50))), str(tmp_path), "rated", 1)[0]
    common = [f"--init_from={frame_model}", f"--train_data_pattern={rated}", "--segment_labels",
              "--max_steps=2", "--batch_size=16"]
    hinge, other_model = run_in_one_process("train", [
        [f"--train_dir={tmp_path / 'hinge'}", "--label_loss=HingeLoss", *common],
        [f"--train_dir={tmp_path / 'other'}", "--max_frames=20", *common]])
    assert hinge[0] == 0, hinge
    import model_flags
    assert model_flags.read(str(tmp_path / "hinge")).label_loss == "HingeLoss"
    assert other_model[0] == 1 and other_model[2].strip().splitlines() == [
        f"error: model flags differ from {frame_model}/model_flags.json (max_frames): "
        "--init_from loads those weights, so only --label_loss may change; leave the others "
        "out"], other_model
