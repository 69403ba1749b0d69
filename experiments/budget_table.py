"""README's budget table, made from the megabyte frontier's results (frontier_mb.jsonl): for each
bundle budget its best bundle (the mean over seeds of the validation GAP of the uint8 or other
export), and where that is an ensemble, its best single model too, each with its flags.

    .venv/bin/python experiments/budget_table.py          # print the table
    .venv/bin/python experiments/budget_table.py --write  # put it in README.md, between markers

tests/test_readme.py fails when README's table is not this one.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import frontier  # noqa: E402
import runs  # noqa: E402
import table as results_table  # noqa: E402
from configs.frontier_mb import DISTILLATION, ENSEMBLE, MB_BUDGETS  # noqa: E402

import quantization  # noqa: E402

RESULTS = os.path.join(runs.REPO, "experiments", "results", "frontier_mb.jsonl")
README = os.path.join(runs.REPO, "README.md")
BEGIN = "<!-- budget table: made by experiments/budget_table.py --write from frontier_mb.jsonl -->"
END = "<!-- end of the budget table -->"
COMMON = ("--keep_best_checkpoint",)  # every row's (README says so above the table)


def bundles(rows):
    """[(GAP, MB, seeds, row)]: each bundle of the results (a point at a precision), its GAP the
    mean over its seeds, its MB the largest (frontier.mb_summary), with a row of it."""
    first = {}
    for row in rows:
        first.setdefault((row["family"], row["point"], row["precision"]), row)
    return [(gap, mb, seeds, first[key])
            for key, (gap, mb, seeds, _) in frontier.mb_summary(rows).items()]


def best_within(found, limit, single=False):
    """The best bundle of at most `limit` MB (single: no ensemble); of two equal to the digits
    shown (a point at two precisions, say), the smaller."""
    fitting = [b for b in found if b[1] <= limit and not (single and b[3]["family"] == ENSEMBLE)]
    return max(fitting, key=lambda b: (round(b[0], 4), -b[1])) if fitting else None


def how(row):
    """The commands of a bundle, in Markdown: train.py's flags (teachers named apart), the
    export's; an ensemble's members and ensemble.py's weights."""
    if row["family"] == ENSEMBLE:
        members = row["flags"][1:]  # "family/budget/seed_N[*weight]"
        weights = [m.split("*")[1] if "*" in m else "1" for m in members]
        return (f"members {', '.join(m.split('*')[0] for m in members)} (family/budget/seed), "
                f"then `ensemble.py "
                f"--checkpoint=best --weights={','.join(weights)} --quantize=uint8`")
    flags = [f for f in row["flags"] if f not in COMMON and f not in DISTILLATION]
    export = f"--quantize={row['precision']}" if row["precision"] != "float32" else ""
    min_elements = row.get("quantize_min_elements", quantization.MIN_ELEMENTS)
    if min_elements != quantization.MIN_ELEMENTS and export:
        export += f" --quantize_min_elements={row['quantize_min_elements']}"
    taught = any(f in DISTILLATION for f in row["flags"])
    return (f"`{' '.join(flags)}`" + (" + teachers" if taught else "")
            + (f"; export `{export}`" if export else ""))


def line(budget, bundle, one_model=False):
    gap, mb, seeds, row = bundle
    what = f"`{row['family']}`" + (f" {row['point']}" if row["point"] != "-" else "")
    return (f"| {budget}{', one model' if one_model else ''} | {what} | {gap:.4f}"
            f"{f' ({seeds} seeds)' if seeds > 1 else ''} | {mb:.3g} {row['precision']} | "
            f"{how(row)} |")


def table(rows):
    found = bundles(rows)
    lines = ["| bundle | best found (family, point) | GAP@20 | MB | how |", "|---" * 5 + "|"]
    for budget, limit in MB_BUDGETS.items():
        best = best_within(found, limit)
        if best is None:
            continue
        lines.append(line(budget.replace("MB", " MB"), best))
        if best[3]["family"] == ENSEMBLE:
            single = best_within(found, limit, single=True)
            if single is not None:
                lines.append(line(budget.replace("MB", " MB"), single, one_model=True))
    return "\n".join(lines)


def in_readme(text):
    """The table between the markers of README's text (None without them)."""
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv):
    unknown = [a for a in argv[1:] if a != "--write"]
    if unknown:
        raise SystemExit(f"error: unknown argument {unknown[0]}; usage: budget_table.py "
                         "[--write]")
    made = table(results_table.read_results(RESULTS))
    if "--write" not in argv:
        print(made)
        return
    with open(README) as f:
        text = f.read()
    if in_readme(text) is None:
        raise SystemExit(f"error: README.md has no {BEGIN!r} ... {END!r} markers to write "
                         "between")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    with open(README, "w") as f:
        f.write(f"{before}{BEGIN}\n{made}\n{END}{after}")
    print(f"wrote the budget table into {README}")


if __name__ == "__main__":
    main(sys.argv)
