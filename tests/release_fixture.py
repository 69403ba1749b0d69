"""Make the release fixture: small trained models of today's code (train_dirs, bundles) with
what they evaluate and predict, so that tests/test_release.py can check that a later version
reads them and gives the same figures and submissions to the last digit.

    .venv/bin/python tests/release_fixture.py --out tests/fixtures/release

Run it once for a release, never to make a failing test pass: the fixture is the promise that
old train_dirs, model_flags.json files, checkpoints and bundles keep working. The records are
generated (generate_data.py, seeded) and not stored; the manifest keeps their SHA-256, so that a
changed generator is told apart from a changed model.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(HERE)
MANIFEST = "manifest.json"
CLASSES = 50

# (split, videos, frame level): the records each model trains on and is scored on
DATA = {"video_train": (400, False), "video_validate": (150, False),
        "frames_train": (120, True), "frames_validate": (40, True)}
AUDIO = ["--feature_names=mean_audio", "--feature_sizes=128"]  # small models: audio alone
COMMON = [f"--num_classes={CLASSES}", "--batch_size=32", "--seed=1"]
# name -> (records, train.py flags): every kind of layer, averaged weights, distillation
TRAIN_DIRS = {
    "moe_averaged": ("video", [*AUDIO, "--model=MoeModel", "--moe_num_mixtures=2",
                               "--compact_layers=moe_experts=circulant", "--ema_decay=0.9",
                               "--max_steps=30"]),
    "bottleneck": ("video", [*AUDIO, "--model=BottleneckModel", "--bottleneck_size=16",
                             "--compact_layers=fc=monarch", "--low_rank=4", "--max_steps=30"]),
    "distilled": ("video", [*AUDIO, "--model=LogisticModel", "--teacher={moe_averaged}",
                            "--max_steps=20"]),
    "frames": ("frames", ["--frame_features", "--feature_names=audio", "--feature_sizes=128",
                          "--model=DbofModel", "--dbof_cluster_size=16",
                          "--dbof_hidden_size=16", "--iterations=10", "--max_frames=30",
                          "--compact_layers=embedding", "--max_steps=20"]),
}
# name -> (records, tool, flags): bundles written from the train_dirs
BUNDLES = {
    "moe_uint8.tgz": ("video", "export_model.py", [
        "--train_dir={moe_averaged}", "--output_dir={work}/moe_uint8", "--quantize=uint8",
        "--output_tgz={out}/moe_uint8.tgz"]),
    "ensemble.tgz": ("video", "ensemble.py", [
        "--inputs={moe_averaged},{bottleneck}", "--weights=1,2", "--quantize=float16",
        "--bundle_dir={work}/ensemble", "--bundle_tgz={out}/ensemble.tgz"]),
}
KEPT = ("model_flags.json",)  # of a train_dir, beside its newest checkpoint


def generate(folder):
    """The records of DATA in `folder`: {split: path}."""
    import generate_data

    structure = generate_data.HiddenStructure(CLASSES, seed=0)
    paths = {}
    for split, (videos, frame_level) in DATA.items():
        records = generate_data.synthetic_records(structure, videos, 0, split, frame_level,
                                                  min_frames=10, max_frames=30)
        paths[split] = generate_data.write_shards(records, folder, split, 1)[0]
    return paths


def digest(path):
    """SHA-256 of the records' contents (a protobuf map is written in no fixed order, so the
    bytes of one record vary from process to process)."""
    import tensorflow as tf

    total = hashlib.sha256()
    for record in tf.data.TFRecordDataset(path):
        parsed = tf.train.SequenceExample.FromString(record.numpy())
        total.update(parsed.SerializeToString(deterministic=True))
    return total.hexdigest()


def tool(script, *args):
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, script), *args],
                          capture_output=True, text=True, cwd=REPO_DIR)
    if done.returncode:
        sys.exit(f"{script} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def evaluate(train_dir, data, results):
    """eval.py's figures of the train_dir's newest checkpoint (all digits, from its results)."""
    tool("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={data}", "--run_once",
         f"--results_dir={results}")
    with open(os.path.join(results, "eval_results.jsonl")) as f:
        row = json.loads(f.read().splitlines()[-1])
    return {k: row[k] for k in ("step", "videos", "gap", "hit_at_one", "perr", "map", "loss")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the fixture's folder (made anew)")
    out = os.path.abspath(parser.parse_args().out)
    sys.path.insert(0, REPO_DIR)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    work = tempfile.mkdtemp(prefix="release_fixture_")
    try:
        data = generate(work)
        manifest = {"data": {split: digest(path) for split, path in data.items()},
                    "machine": machine(), "train_dirs": {}, "bundles": {}}
        places = {"work": work, "out": out}
        for name, (level, flags) in TRAIN_DIRS.items():
            trained = os.path.join(work, name)
            tool("train.py", f"--train_dir={trained}",
                 f"--train_data_pattern={data[level + '_train']}", *COMMON,
                 *[f.format(**places) for f in flags])
            places[name] = trained
        for name, (level, flags) in TRAIN_DIRS.items():
            kept = os.path.join(out, name)
            keep_newest(places[name], kept)
            validate = data[f"{level}_validate"]
            manifest["train_dirs"][name] = {
                "records": f"{level}_validate", "flags": flags,
                "eval": evaluate(kept, validate, os.path.join(work, "results", name))}
            tool("inference.py", f"--train_dir={kept}", f"--input_data_pattern={validate}",
                 f"--output_file={out}/{name}.csv")
        for name, (level, script, flags) in BUNDLES.items():
            tool(script, *[f.format(**places) for f in flags])
            stem = name[:-len(".tgz")]
            validate = data[f"{level}_validate"]
            tool("inference.py", f"--input_model_tgz={out}/{name}",
                 f"--input_data_pattern={validate}", f"--output_file={out}/{stem}.csv")
            manifest["bundles"][name] = {"records": f"{level}_validate", "tool": script,
                                         "flags": flags}
        with open(os.path.join(out, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote the release fixture to {out}")


def machine():
    """What the figures depend on beyond the code: the CPU and TensorFlow's kernels on it."""
    import platform

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    return {"cpu": cpu, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")}


def keep_newest(train_dir, kept):
    """The train_dir's model_flags.json and newest checkpoint (its index naming it alone)."""
    import checkpoints

    os.makedirs(kept)
    newest = checkpoints.candidates(train_dir)[0]
    for name in os.listdir(train_dir):
        if name.startswith(os.path.basename(newest) + ".") or name in KEPT:
            shutil.copy(os.path.join(train_dir, name), kept)
    with open(os.path.join(kept, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{os.path.basename(newest)}"\n'
                f'all_model_checkpoint_paths: "{os.path.basename(newest)}"\n')


if __name__ == "__main__":
    main()
