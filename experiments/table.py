"""A Markdown table of experiments/paper.py's results: one row per variant, the first as baseline.

    .venv/bin/python experiments/table.py out/experiments/embeddings.jsonl [--variants=A,B]

Columns: weights, fewer weights than the baseline, FC weights (frame-level models), validation
GAP@20 after each epoch, the best, its difference from the baseline's best, training examples/s
and wall minutes.
"""

import collections
import json
import sys


def read_results(path):
    """experiments/paper.py's rows from a JSON-lines file; exits with one line when it has none."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise SystemExit(f"error: no results in {path}")
    return rows


def table(rows, variants=None):
    runs = collections.OrderedDict()
    for row in rows:
        runs.setdefault(row["variant"], []).append(row)
    names = variants or list(runs)
    missing = [n for n in names if n not in runs]
    if missing:
        raise SystemExit(f"error: no results for {missing}; there are {list(runs)}")
    base = runs[names[0]]
    base_best = max(r["gap"] for r in base)
    lines = ["| variant | weights | fewer | FC weights | validation GAP@20 by epoch | best | "
             "vs first | examples/s | minutes |", "|---" * 9 + "|"]
    for name in names:
        run = sorted(runs[name], key=lambda r: r["epoch"])
        last, best = run[-1], max(r["gap"] for r in run)
        fewer = 1 - last["weights"] / base[-1]["weights"]
        fc = last.get("fc_weights")
        rate = last.get("examples_per_second")
        gaps = ", ".join(f"{r['gap']:.3f}" for r in run)
        lines.append(
            f"| {name} | {last['weights']:,} | {fewer:.1%} | {f'{fc:,}' if fc else '-'} | "
            f"{gaps} | {best:.3f} | "
            f"{best - base_best:+.3f} | {f'{rate:,.0f}' if rate else '-'} | "
            f"{last['wall_seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv):
    paths = [a for a in argv[1:] if not a.startswith("--")]
    chosen = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--variants=")]
    if len(paths) != 1:
        raise SystemExit("usage: table.py RESULTS.jsonl [--variants=A,B,...]")
    print(table(read_results(paths[0]), chosen[0].split(",") if chosen else None))


if __name__ == "__main__":
    main(sys.argv)
