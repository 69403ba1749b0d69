"""Validation GAP against epochs, one curve per variant, from experiments/paper.py's results.

    .venv/bin/python experiments/plot.py out/experiments/video_level.jsonl [--out=FILE.png]
"""

import collections
import os
import sys

from absl import app, flags
from table import read_results  # beside this script

flags.DEFINE_string("out", "", "The PNG to write (default: the results file's name, .png).")
flags.DEFINE_string("title", "", "Figure title (default: the experiment's name).")
FLAGS = flags.FLAGS


def plot(rows, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = collections.defaultdict(list)
    for row in rows:
        curves[row["variant"]].append((row["epoch"], row["gap"], row["weights"]))
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for variant, points in curves.items():
        points.sort()
        label = f"{variant} ({points[0][2]:,} weights)"
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                  label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation GAP@20")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: plot.py RESULTS.jsonl [--out=FILE.png]")
    rows = read_results(argv[1])
    out = FLAGS.out or os.path.splitext(argv[1])[0] + ".png"
    plot(rows, out, FLAGS.title or rows[0]["experiment"].replace("_", " "))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(app.run(main))
