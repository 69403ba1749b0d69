"""experiments/plot.py draws the GAP-against-epochs figure from experiments/paper.py's rows."""

import json
import os
import subprocess
import sys

from utils import REPO_DIR


def test_plot_writes_a_png_with_one_curve_per_variant(tmp_path):
    rows = [{"experiment": "video_level", "variant": variant, "epoch": epoch,
             "gap": 0.5 + 0.01 * epoch + shift, "weights": weights}
            for variant, shift, weights in (("dense", 0.0, 4_500_000), ("compact", -0.05, 9_000))
            for epoch in (1, 2, 3)]
    results = tmp_path / "video_level.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, "experiments", "plot.py"),
                           str(results)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    image = (tmp_path / "video_level.png").read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 10_000
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, "experiments", "plot.py"),
                           str(empty)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no results" in done.stderr
