"""Evaluate the checkpoints of a train_dir: GAP@k, hit@1, PERR, mean AP, loss.

    python eval.py --train_dir=/tmp/yt8m_model --eval_data_pattern='validate*.tfrecord' --run_once
    python eval.py --train_dir=/tmp/frame_model --eval_data_pattern='validate*.tfrecord' \
        --run_once --segment_labels

--segment_labels evaluates a frame-level model on segment-rated records (2019): each rated
5-frame segment scored, GAP and hit@1 over them with the unrated classes at 0 (the starter's
eval), and the segment MAP (segment_eval.py's) of the ranking a submission would list.

The model and its input come from train_dir/model_flags.json. Without --run_once it watches
train_dir and evaluates each new checkpoint once, as training writes them. Results go to
train_dir/eval_results.jsonl (one line per checkpoint step) and TensorBoard (train_dir/eval), or
to --results_dir.
"""

import functools
import json
import os
import time

from absl import app, flags

import utils

utils.quiet_tensorflow()
import tensorflow as tf  # noqa: E402

import checkpoints  # noqa: E402
import eval_util  # noqa: E402
import losses  # noqa: E402
import model_flags  # noqa: E402
import readers  # noqa: E402
import segments  # noqa: E402
import tool_flags  # noqa: E402

tool_flags.define_train_dir()
tool_flags.define_reading()
tool_flags.define_top_k("Predictions per video for GAP.")
flags.DEFINE_string("eval_data_pattern", "", "Comma-separated globs of labelled TFRecords.")
flags.DEFINE_bool("run_once", False, "Evaluate the latest checkpoint once and stop.")
flags.DEFINE_integer("poll_seconds", 30, "How often to look for a new checkpoint.")
flags.DEFINE_bool("mean_ap", False, "Also report mAP(all): the mean AP over the classes with "
                  "positives, each ranking every video (keeps every prediction in memory). "
                  "MAP, the starter's figure, is always reported.")
flags.DEFINE_bool("segment_labels", False, "Segment-rated records (2019): GAP and hit@1 over "
                  "the rated 5-frame segments (unrated classes scored 0) and the segment MAP "
                  "of the per-class ranking a submission of them would list.")
tool_flags.define_segment_ranking("ranked")
flags.DEFINE_string("results_dir", "", "Where eval_results.jsonl and the TensorBoard events "
                    "(eval/) go (default: --train_dir): for a train_dir eval.py may only read.")
FLAGS = flags.FLAGS
RESULTS_FILE = "eval_results.jsonl"


def evaluated_steps(train_dir):
    path = os.path.join(train_dir, RESULTS_FILE)
    if not tf.io.gfile.exists(path):
        return set()
    with tf.io.gfile.GFile(path) as f:
        return {json.loads(line)["step"] for line in f if line.strip()}


def wait_for_first_checkpoint(train_dir):
    """Until train.py has written a checkpoint and model_flags.json, saying so once."""
    said = False
    while not (model_flags.exists(train_dir) and checkpoints.candidates(train_dir)):
        if not said:
            print(f"waiting for the first checkpoint of train.py in {train_dir} (looking every "
                  f"{FLAGS.poll_seconds}s; Ctrl-C to stop)", flush=True)
            said = True
        time.sleep(FLAGS.poll_seconds)


def results_dir():
    """The folder of eval_results.jsonl and eval/, checked writable before any work."""
    folder = FLAGS.results_dir or FLAGS.train_dir
    try:
        utils.prepare_dir(os.path.join(folder, "eval"))
    except ValueError as err:
        if FLAGS.results_dir:
            raise
        raise ValueError(f"{err}; give --results_dir=FOLDER for eval.py's results") from None
    return folder


def run():
    if not FLAGS.eval_data_pattern:
        raise ValueError("--eval_data_pattern is required")
    files = readers.resolve_files(FLAGS.eval_data_pattern)
    out_dir = results_dir()
    if not FLAGS.run_once:
        wait_for_first_checkpoint(FLAGS.train_dir)
    description = model_flags.read(FLAGS.train_dir)
    if FLAGS.segment_labels:
        checkpoints.check_scores_segments(description, FLAGS.train_dir)
    reader = checkpoints.make_reader(description,
                                     segments="rated" if FLAGS.segment_labels else None)
    label_ids = segments.read_label_ids(FLAGS.segment_label_ids_file) \
        if FLAGS.segment_labels else None
    readers.check_release(files, description.num_classes)
    model = checkpoints.build_model(description, reader)
    loss_fn = losses.get_loss(description.label_loss)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "eval"))
    done = evaluated_steps(out_dir)
    with reader.reraise_data_errors(files):
        examples, exact = reader.estimate_examples(files)  # videos, or rated segments
    checkpoints.warn_if_index_lost(FLAGS.train_dir, checkpoints.candidates(FLAGS.train_dir))
    waiting_after = None  # the step the last "waiting" line named
    passed_over = set()  # damaged checkpoints, named once
    while True:
        # Watching: only checkpoints newer than the newest evaluated (older ones are passed).
        paths = [p for p in checkpoints.candidates(FLAGS.train_dir) if p not in passed_over
                 and (FLAGS.run_once or checkpoints.step_of(p) > max(done, default=-1))]
        if not paths and FLAGS.run_once:
            raise ValueError(f"no checkpoint in {FLAGS.train_dir}")
        if paths:
            try:
                latest = checkpoints.restore_newest(lambda path: checkpoints.restore(model, path),
                                                    FLAGS.train_dir, paths)
            except ValueError:
                if FLAGS.run_once:
                    raise
                latest = None
            passed_over.update(paths[:paths.index(latest)] if latest else paths)
        if paths and latest:
            print(f"evaluating {latest} on {len(files)} files", flush=True)
            results = evaluate(model, reader, files, loss_fn, description, label_ids,
                               utils.Progress(examples, estimated=not exact))
            step = checkpoints.step_of(latest)
            report(step, results, writer, out_dir)
            done.add(step)
        if FLAGS.run_once:
            return
        newest = max(done | {checkpoints.step_of(p) for p in passed_over}, default=None)
        if newest != waiting_after:
            already = "" if paths or newest not in done else (
                f" (step {newest} is in {RESULTS_FILE} already: --run_once evaluates it again)")
            print(f"waiting for a checkpoint after step {newest}{already}, looking every "
                  f"{FLAGS.poll_seconds}s; Ctrl-C to stop", flush=True)
            waiting_after = newest
        time.sleep(FLAGS.poll_seconds)


def evaluate(model, reader, files, loss_fn, description, label_ids, progress):
    """The metrics of the restored model on `files` (with the segment MAP of the rated
    segments' ranking where label_ids are given), its progress printed."""
    printer = utils.ProgressPrinter(progress, "rated segments" if reader.segments else "videos")
    ranking = rated = None
    if label_ids is not None:
        ranking = segments.Ranking(label_ids, description.num_classes, FLAGS.segment_max_pred)
        rated = segments.RatedSegments()
    try:
        results = eval_util.evaluate(
            model, reader, files, loss_fn, FLAGS.batch_size, FLAGS.top_k, FLAGS.mean_ap,
            FLAGS.num_readers, on_batch=printer.update,
            on_predictions=functools.partial(segments.add_rated, ranking, rated)
            if ranking else None)
    finally:
        printer.close()
    if ranking is not None:
        results["segment_map"], results["segment_classes"] = segments.segment_map(
            ranking.ranked(), rated, FLAGS.segment_max_pred)
    if not results["labelled"]:
        hint = " (segment-rated records? add --segment_labels)" if \
            description.frame_features and not FLAGS.segment_labels else ""
        raise ValueError(f"no video of {FLAGS.eval_data_pattern} has labels{hint}")
    return results


def report(step, results, writer, out_dir):
    what = "rated segments" if "segment_map" in results else "videos"
    print(f"step {step}: {results['videos']:,} {what} | "
          + eval_util.metrics_line(results, FLAGS.top_k, FLAGS.segment_max_pred), flush=True)
    with tf.io.gfile.GFile(os.path.join(out_dir, RESULTS_FILE), "a") as out:
        out.write(json.dumps(dict(results, step=step)) + "\n")
    with writer.as_default():
        for name in ("gap", "hit_at_one", "perr", "map", "map_all", "segment_map", "loss"):
            if name in results:
                tf.summary.scalar(f"eval/{name}", results[name], step=step)
    writer.flush()


if __name__ == "__main__":
    app.run(utils.cli_main(run))
