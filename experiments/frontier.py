"""The size-accuracy frontier: validation GAP@20 against weight count, by family; the runner of
configs/frontier_weights.py and configs/frontier_mb.py (experiments/run.py), which hold the
families, budgets, teachers, ensembles and the one-sitting selection.

    .venv/bin/python experiments/frontier.py [--families=dense,low_rank] [--budgets=0.5M,2M]

Real 2018 video-level data: training on the shared `train/` and `extra-train/` folders (43,552
videos), validation on `validate/` (5,701). Every point is one `train.py` run of
`BottleneckModel` (at full size, the starter's MoeModel) whose size setting, where it has one,
is the largest that keeps the model within the budget; train.py validates after every epoch
with eval.py's code, and the point's GAP is its best epoch. Where another family comes within
--close (0.01) of a budget's best, those families' points of that budget are trained again with
seed 1 and their GAP is the mean of the two seeds.

Twins (--twins): each structured point is trained again with the sites its family is about made
of each other layer kind (dense, circulant, low rank, Monarch), each site's own size chosen so
that the model keeps the point's weight count within 1% (the family's size setting sized again
where the sites alone cannot get there), trained the same way; a point and its twins within
--close of each other get the second seed too. A twin that cannot come within 1% is listed as
not fitting, with the nearest it came.

Output in --out_dir: `frontier.jsonl` (one JSON line per run), `frontier.png` (GAP against
weights, log scale, a line per family, the best of each budget marked) and `frontier.md` (the
table by budget, then each structured point against its twins). A run already finished in its
folder is read again, not retrained; so is a run recorded in a --reuse file (an earlier
frontier.jsonl, such as the ones in experiments/results/) with the same train.py flags and seed:
its row is taken as it stands, marked with the file it came from. With --megabytes, --reuse takes
frontier_mb.jsonl files: a run's rows at every precision (its bundles were evaluated then).

--megabytes: budgets of bundle MB (MB_BUDGETS), each point exported at every precision and
each bundle evaluated by ensemble.py; "F+distilled" is family F distilled from the cross-fitted
KnnMoeModel teacher, "F+averaged" is F with its weights averaged (WEIGHT_AVERAGING), and
"ensemble" puts trained points in one bundle (MB_ENSEMBLES); frontier_mb.md compares each
variant with its base family. By default only the points of ONE_SITTING and their ensembles are
trained (1h21m on 2 cores; what it leaves out is listed there); --complete trains
every point of MB_FAMILIES and every ensemble (about 5 hours).
"""

import collections
import functools
import json
import os
import re
import shutil
import statistics
import sys
import time
import warnings

import runs  # beside this script; puts the repository on sys.path
from absl import app, flags
from runs import BATCH, DATA, TRAIN_VIDEOS, TRAINING

import utils  # noqa: E402

utils.quiet_tensorflow()

from configs.frontier_mb import (  # noqa: E402  (the recipes)
    ENSEMBLE,
    MAX_MIXTURES,
    MB_BUDGETS,
    MB_ENSEMBLES,
    MB_FAMILIES,
    MIN_ELEMENTS,
    ONE_SITTING,
    ONE_SITTING_ENSEMBLES,
    PRECISIONS,
    SAVED_MODEL_MB,
    SIZED_AT,
    TEACHER_FLAGS,
    TEACHER_FOLDS,
    TEACHERS,
    VARIANTS,
)
from configs.frontier_weights import BUDGETS, FAMILIES, FULL, SIZE_LIMITS, TWIN_SETTINGS, WITHIN  # noqa: E402

flags.DEFINE_bool("megabytes", False, "The frontier in megabytes of bundle: each point exported "
                  "at float32, float16 and uint8 and each bundle evaluated; students distilled "
                  "too (see MB_FAMILIES). Without --complete, the points of ONE_SITTING "
                  "(1h21m on 2 cores).")
flags.DEFINE_bool("complete", False, "With --megabytes: every point, variant and ensemble of "
                  "MB_FAMILIES and MB_ENSEMBLES, none cut short (about 5 hours on 2 cores) instead "
                  "of the one-sitting selection.")
flags.DEFINE_string("families", "", "Families to train (default: all of the frontier; "
                    "--megabytes: those of ONE_SITTING unless --complete). Weights: "
                    + ", ".join(FAMILIES) + "; --megabytes: " + ", ".join(MB_FAMILIES)
                    + f" and {ENSEMBLE} (MB_ENSEMBLES: trained points in one bundle).")
flags.DEFINE_string("budgets", "", "Budgets (default: all). Weights: " + ", ".join(BUDGETS)
                    + " and full (the starter's MoeModel, 2 mixtures, dense family); "
                    "--megabytes: " + ", ".join(MB_BUDGETS) + ".")
flags.DEFINE_list("train_flags", [], "More train.py flags for every run, after the frontier's "
                  "(for a quick check: --train_flags=--num_epochs=1); the runs are new ones.")
flags.DEFINE_bool("twins", True, "Train each structured point's twins too.")
flags.DEFINE_bool("no_train", False, "Train nothing: the table and plot of the runs finished "
                  "so far.")
flags.DEFINE_float("close", 0.01, "Families within this GAP of a budget's best get a 2nd seed.")
flags.DEFINE_list("reuse", [], "Earlier frontier.jsonl (--megabytes: frontier_mb.jsonl) files "
                  "whose runs count as finished: a row with the same model flags and seed is "
                  "taken, not retrained (the first file that has it wins). The training "
                  "settings of this script are assumed.")
flags.DEFINE_string("out_dir", os.path.join(runs.REPO, "out", "frontier"), "Where runs go.")
FLAGS = flags.FLAGS


_STATS = {}


def model_stats(settings, min_elements=None):
    """(weights, {precision: MB of the weights as an export stores them, tensors of at least
    min_elements values quantized}) of BottleneckModel with these settings (built once per
    settings and min_elements)."""
    import quantization

    min_elements = min_elements or quantization.MIN_ELEMENTS
    key = json.dumps([settings, min_elements], sort_keys=True)
    if key not in _STATS:
        import tensorflow as tf

        import model_summary
        import models

        model = models.build_model("BottleneckModel", 3862, **settings)
        with warnings.catch_warnings():  # Keras repeats a layer's ValueError as a warning
            warnings.simplefilter("ignore")
            model({"features": tf.zeros((1, 1152))})
        _STATS[key] = model.count_params(), model_summary.mb_by_precision(model, min_elements)
    return _STATS[key]


def model_weights(settings):
    """Weights of BottleneckModel with these settings."""
    return model_stats(settings)[0]


def sized(settings, key, budget, measure=model_weights):
    """`settings` with `key` at the largest value whose model keeps within `budget` (of weights,
    or of what `measure` gives)."""
    if measure({**settings, key: 1}) > budget:
        raise ValueError(f"{settings} does not fit {budget:,} at {key}=1")
    low, high = 1, 2
    while measure({**settings, key: high}) <= budget:
        low, high = high, high * 2
    while high - low > 1:  # the measure grows with the size setting
        middle = (low + high) // 2
        low, high = (middle, high) if measure({**settings, key: middle}) <= budget \
            else (low, middle)
    return {**settings, key: low}


def site_kinds(settings):
    """{site: (kind, size)} that compact_layers names, and the classifier sites that low_rank
    makes low rank where they are not named (BottleneckModel.classifier_structure), of size
    None: the low_rank setting's."""
    import model_utils

    named = model_utils.parse_compact_layers(settings.get("compact_layers", ""))
    if settings.get("low_rank"):
        moe = settings.get("video_level_classifier_model") == "MoeModel"
        for site in ("moe_gates", "moe_experts") if moe else ("classifier",):
            if site not in named and model_utils.FALLBACK[site] not in named:
                named[site] = ("low_rank", None)
    return named


def with_sites(settings, kinds):
    """`settings` with every site of {site: (kind, size)} named in compact_layers (so that
    low_rank reaches only the sites said to be low rank), low_rank left out where no site
    takes it."""
    items = [site if (kind, size) == ("circulant", None) else
             f"{site}={kind}" + (f":{size}" if size else "")
             for site, (kind, size) in kinds.items()]
    found = {**settings, "compact_layers": ",".join(items)}
    if ("low_rank", None) not in kinds.values():
        found.pop("low_rank", None)
    return found


def nearest(weights_of, sizes, target):
    """(size, weights): the size among `sizes` (ascending; weights monotone in them, up to the
    rounding of block sizes) whose model is nearest to `target` weights. Sizes that cannot be
    built (more Monarch blocks than a layer's side) are left out; (None, None) if none can."""
    def weights(index):
        try:
            return weights_of(sizes[index])
        except ValueError:
            return None

    if weights(0) is None:
        return None, None
    low, high = 0, len(sizes) - 1
    if weights(high) is None:  # the last size that builds
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if weights(middle) is not None else (low, middle)
        high = low
    first, last = 0, high
    rising = weights(last) >= weights(first)
    while last - first > 1:  # where the weights cross the target
        middle = (first + last) // 2
        first, last = (middle, last) if (weights(middle) <= target) == rising \
            else (first, middle)
    found = [(abs(w - target), i, w) for i in range(max(0, first - 3), min(high, last + 3) + 1)
             if (w := weights(i)) is not None]
    _, index, w = min(found)
    return sizes[index], w


def twins(family, settings, key):
    """[(kind, settings or None, weights)]: the point's twins, its tested sites made of each
    other kind, each site at the size nearest the point's weight count, then `key` sized again
    where that is not within WITHIN; settings None where the twin cannot come within WITHIN
    (weights: the nearest it came, None if it cannot be built)."""
    import layer_kinds

    target = model_weights(settings)
    kinds = site_kinds(settings)
    tested = FAMILIES[family].tested
    own = {kinds.get(site, ("dense", None))[0] for site in tested}
    found = []
    point = settings
    for kind in layer_kinds.KINDS:
        if own == {kind}:
            continue
        settings = {**point, **TWIN_SETTINGS.get(kind, {})}
        sized = kind in layer_kinds.SIZED
        twin = dict(kinds) if sized else {**kinds, **{site: (kind, None) for site in tested}}
        if sized:
            for site in tested:  # one at a time, the others as they are so far
                def weights_at(size, site=site, twin=twin, kind=kind, settings=settings):
                    return model_weights(with_sites(settings, {**twin, site: (kind, size)}))

                size, _ = nearest(weights_at, list(range(1, SIZE_LIMITS[kind] + 1)), target)
                twin[site] = (kind, size)
        if sized and any(size is None for site, (_, size) in twin.items() if site in tested):
            found.append((kind, None, None))
            continue
        candidate = with_sites(settings, twin)
        weights = model_weights(candidate)
        if abs(weights - target) > WITHIN * target and key in candidate:
            value, weights = nearest(lambda v, c=candidate: model_weights({**c, key: v}),
                                     list(range(1, 2 * candidate[key] + 64)), target)
            candidate[key] = value
        fits = abs(weights - target) <= WITHIN * target
        found.append((kind, candidate if fits else None, weights))
    return found


def flag_list(settings):
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in sorted(settings.items())]


def twin_name(family, kind):
    return f"{family}/{kind}"


def point_name(settings, key, tested=()):
    """The size setting and, for a twin, its tested sites: 'low_rank=391 gating=low_rank:2'."""
    parts = [f"{key}={settings[key]}"] if key and key in settings else []
    kinds = site_kinds(settings)
    parts += [f"{site}={kinds[site][0]}" + (f":{kinds[site][1]}" if kinds[site][1] else "")
              for site in tested if site in kinds]
    return " ".join(parts) or "-"


def points(families, budgets, with_twins=False):
    """(family, budget, name, train.py model flags) of every point asked for, each followed by
    its twins (family 'FAMILY/KIND') when with_twins; and the rows of the twins that do not fit
    (gap None, the weights they came nearest to)."""
    found, misfits = [], []
    for family in families:
        each = FAMILIES[family]
        for budget, (fixed, key) in each.budgets.items():
            if budget not in budgets:
                continue
            settings = sized(fixed, key, BUDGETS[budget]) if key else dict(fixed)
            found.append((family, budget, point_name(settings, key),
                          ["--model=BottleneckModel", *flag_list(settings), *each.train_flags]))
            if not (with_twins and each.tested):
                continue
            for kind, twin, weights in twins(family, settings, key):
                if twin is None:
                    misfits.append({"family": twin_name(family, kind), "budget": budget,
                                    "point": "does not fit", "seed": None, "gap": None,
                                    "weights": weights})
                    continue
                train_flags = [f for f in each.train_flags if not (
                    f.startswith("--circulant_learning_rate_scale")
                    and "circulant" not in {k for k, _ in site_kinds(twin).values()})]
                found.append((twin_name(family, kind), budget,
                              point_name(twin, key, each.tested),
                              ["--model=BottleneckModel", *flag_list(twin), *train_flags]))
    if "full" in budgets and FULL[0] in families:
        found.append((FULL[0], "full", *FULL[1:]))
    return found, misfits


def train_args(flags_of_run, seed):
    """train.py's arguments (but --train_dir) of a run on this data and training; the run's own
    flags come after TRAINING, so theirs win (absl keeps a repeated flag's last value)."""
    data = utils.shared_data_dir()
    patterns = {split: ",".join(os.path.join(data, p) for p in DATA[split]) for split in DATA}
    return [f"--train_data_pattern={patterns['train']}",
            f"--validation_data_pattern={patterns['validate']}", "--start_new_model",
            *TRAINING, *flags_of_run, *FLAGS.train_flags, f"--seed={seed}"]


_FOLDERS = {}  # train.py arguments -> the folder of their run (a twin can be another point)
_REUSED = {}  # (model flags, seed) -> an earlier run's rows (the MB frontier's: one per precision)
_TEACHER_DIRS = []  # the train_dirs of the MB frontier's teachers, for TEACHERS in a flag


def read_reused(paths):
    """{(model flags, seed): [row, ...]} of the finished runs in these frontier.jsonl (or
    frontier_mb.jsonl) files; the first file that has a run wins."""
    found = {}
    for path in paths:
        try:
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: --reuse {path}: {e}; give frontier.jsonl (or, with "
                             "--megabytes, frontier_mb.jsonl) files written by this script"
                             ) from None
        here = collections.defaultdict(list)
        for row in rows:
            if row.get("gap") is not None and row.get("flags"):
                here[(tuple(row["flags"]), row["seed"])].append(
                    {**row, "reused_from": row.get("reused_from") or os.path.basename(path)})
        for key, rows_of_run in here.items():
            found.setdefault(key, rows_of_run)
    return found


def train(family, budget, name, model_flags, seed, reuse=True):
    """One run (one per set of arguments: a twin the same as another point is not trained
    again); its row for frontier.jsonl. reuse=False: the run's folder is wanted, so a run of
    --reuse is not taken (it is read again from its folder if it finished there)."""
    reused = _REUSED.get((tuple(model_flags), seed)) if reuse else None
    if reused:
        return {**reused[0], "family": family, "budget": budget, "point": name}
    if TEACHERS in " ".join(model_flags) and not _TEACHER_DIRS:
        found = teachers()  # trained first, when the first student that needs them is
        if found is None:  # --no_train, not trained yet
            return None
        _TEACHER_DIRS[:] = found
    args = train_args([f.replace(TEACHERS, ",".join(_TEACHER_DIRS)) for f in model_flags], seed)
    folder = _FOLDERS.setdefault(tuple(args), os.path.join(
        FLAGS.out_dir, "runs", family.replace("/", "_as_"), budget,
        re.sub(r"\W+", "_", name).strip("_") or "point", f"seed_{seed}"))
    if FLAGS.no_train and runs.finished_seconds(args, folder) is None:
        return None
    seconds = runs.run_train(args, f"{family} {budget} {name} seed {seed}", folder)
    results = runs.validations(folder)
    best = max(results, key=lambda r: r["gap"])
    row = {"family": family, "budget": budget, "point": name, "seed": seed,
           "weights": runs.weights_of(folder), "gap": best["gap"],
           "best_epoch": round(best["step"] * BATCH / TRAIN_VIDEOS, 1),
           "gaps": [round(r["gap"], 4) for r in results], "flags": model_flags,
           "examples_per_second": runs.examples_per_second(folder),
           "wall_seconds": round(seconds), "run": os.path.relpath(folder, FLAGS.out_dir)}
    print(f"{family} {budget} {name} seed {seed}: {row['weights']:,} weights, GAP "
          f"{row['gap']:.4f} (epoch {row['best_epoch']}), {seconds:.0f}s", flush=True)
    return row


def summary(rows):
    """{(family, budget): (mean GAP, weights, seeds, point)} over the seeds of each point."""
    grouped = collections.defaultdict(list)
    for row in rows:
        if row["gap"] is not None:  # not the twins that do not fit
            grouped[(row["family"], row["budget"], row["point"])].append(row)
    best = {}
    for (family, budget, point), group in grouped.items():
        entry = (statistics.mean(r["gap"] for r in group), group[0]["weights"], len(group), point)
        if (family, budget) not in best or entry[0] > best[(family, budget)][0]:
            best[(family, budget)] = entry
    return best


def close_calls(rows, close):
    """(family, budget) of the points within `close` GAP of the best of their group, in the
    groups where there are two or more such: the families of a budget (twins aside), and each
    structured point with its twins."""
    groups = collections.defaultdict(dict)
    for (family, budget), entry in summary(rows).items():
        if "/" not in family:
            groups[budget][family] = entry[0]
        groups[(family.split("/")[0], budget)][family] = entry[0]
    found = set()
    for group, gaps in groups.items():
        near = [family for family, gap in gaps.items() if max(gaps.values()) - gap <= close]
        if len(near) > 1:
            found.update((family, group if isinstance(group, str) else group[1])
                         for family in near)
    return sorted(found)


def table(rows):
    """The families by budget (twins in twin_table)."""
    entries = {k: v for k, v in summary(rows).items() if "/" not in k[0]}
    families = [f for f in FAMILIES if any(k[0] == f for k in entries)]
    budgets = [b for b in [*BUDGETS, "full"] if any(k[1] == b for k in entries)]
    lines = ["| budget | " + " | ".join(families) + " |", "|---" * (len(families) + 1) + "|"]
    for budget in budgets:
        top = max(v[0] for k, v in entries.items() if k[1] == budget)
        cells = []
        for family in families:
            if (family, budget) not in entries:
                cells.append("-")
                continue
            gap, weights, seeds, point = entries[(family, budget)]
            text = f"{gap:.4f} ({weights / 1e6:.3g}M, {point}{', 2 seeds' if seeds > 1 else ''})"
            cells.append(f"**{text}**" if gap == top else text)
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def twin_table(rows):
    """Each structured point against its twins: a line per (family, budget), a column per
    kind of its tested sites (its own kind marked 'own'), the best of the line in bold."""
    import layer_kinds

    entries = summary(rows)
    misfits = {(r["family"], r["budget"]): r["weights"] for r in rows if r["gap"] is None}
    lines = ["| budget | family (tested sites) | " + " | ".join(layer_kinds.KINDS) + " |",
             "|---" * (len(layer_kinds.KINDS) + 2) + "|"]
    for budget in [*BUDGETS, "full"]:
        for family, each in FAMILIES.items():
            twins_here = [k for k in layer_kinds.KINDS if (twin_name(family, k), budget)
                          in entries or (twin_name(family, k), budget) in misfits]
            if (family, budget) not in entries or not twins_here:
                continue
            found = {twin_name(family, k): entries.get((twin_name(family, k), budget))
                     for k in layer_kinds.KINDS}
            found[family] = entries[(family, budget)]
            top = max(v[0] for v in found.values() if v)
            fixed, key = each.budgets[budget]
            kinds = site_kinds({**fixed, key: 1} if key else fixed)  # the size aside
            own_kinds = {kinds.get(site, ("dense", None))[0] for site in each.tested}
            cells = []
            for kind in layer_kinds.KINDS:
                name = twin_name(family, kind)
                own = own_kinds == {kind}
                entry = found[family] if own else found[name]
                if entry is None:
                    nearest_weights = misfits.get((name, budget))
                    cells.append("-" if (name, budget) not in misfits else "no fit" + (
                        f" (nearest {nearest_weights / 1e6:.3g}M)" if nearest_weights else ""))
                    continue
                gap, weights, seeds, point = entry
                text = (f"{gap:.4f} ({weights / 1e6:.4g}M, {'own: ' if own else ''}{point}"
                        f"{', 2 seeds' if seeds > 1 else ''})")
                cells.append(f"**{text}**" if gap == top else text)
            lines.append(f"| {budget} | {family} ({', '.join(each.tested)}) | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = {k: v for k, v in summary(rows).items() if "/" not in k[0]}
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for family in FAMILIES:
        found = sorted((v[1], v[0]) for k, v in entries.items() if k[0] == family)
        if found:
            axes.plot([w for w, _ in found], [g for _, g in found], marker="o", markersize=4,
                      label=family.replace("_", " "))
    for budget in {k[1] for k in entries}:
        weights, gap = max(((v[1], v[0]) for k, v in entries.items() if k[1] == budget),
                           key=lambda p: p[1])
        axes.plot(weights, gap, marker="*", markersize=14, color="black", fillstyle="none",
                  linestyle="none")
    finish_plot(figure, axes, out, "weights (log scale)", "validation GAP@20 (best epoch)",
                "Size-accuracy frontier, YouTube-8M 2018 video level (star: best per budget)", 8)


def finish_plot(figure, axes, out, xlabel, ylabel, title, legend_size):
    """A log-x frontier figure's labels, grid and legend, saved to `out`."""
    import matplotlib.pyplot as plt

    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=legend_size)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def bundle_mb(settings, precision=SIZED_AT, min_elements=None):
    """The MB of a BottleneckModel bundle with these settings, at this precision (tensors of
    at least min_elements values quantized; default: quantization.MIN_ELEMENTS)."""
    return model_stats(settings, min_elements)[1][precision] + SAVED_MODEL_MB


def min_elements_of(budget=None):
    """export_model.py's --quantize_min_elements for the points of this MB budget (None: its
    default, which rows without "quantize_min_elements" were exported with)."""
    import quantization

    return MIN_ELEMENTS.get(budget, quantization.MIN_ELEMENTS)


def exported_as_here(rows, budget):
    """Whether an earlier run's rows (one per precision) hold bundles exported as this
    budget's are: evaluated, with the same --quantize_min_elements."""
    return all("precision" in row and row.get("quantize_min_elements", min_elements_of())
               == min_elements_of(budget) for row in rows)


EPOCHS = re.compile(r", \d+ epochs$")  # the end of a point's name where it is cut short


def cut_short(name, epochs):
    """The name of a point stopped after `epochs` (ONE_SITTING), which EPOCHS matches."""
    return f"{name}, {epochs} epochs"


def mb_points(families, budgets, selection=None):
    """(family, budget, name, train.py flags) of the MB frontier's points asked for: of every
    family's budgets, or of a selection's ({family: {budget: epochs or None}}, ONE_SITTING)."""
    found = []
    for family in families:
        each = MB_FAMILIES[family]
        for budget, (fixed, key) in each.budgets.items():
            if budget not in budgets or (selection is not None
                                         and budget not in selection.get(family, {})):
                continue
            epochs = selection[family][budget] if selection is not None else None
            settings = dict(fixed)
            model = settings.pop("model", "BottleneckModel")
            if key:
                settings = sized(settings, key, MB_BUDGETS[budget], functools.partial(
                    bundle_mb, min_elements=min_elements_of(budget)))
                if key == "moe_num_mixtures":
                    settings[key] = min(settings[key], MAX_MIXTURES)
            name = point_name(settings, key) if key else "-"
            found.append((family, budget, cut_short(name, epochs) if epochs else name,
                          [f"--model={model}", *flag_list(settings), *each.train_flags,
                           *([f"--num_epochs={epochs}"] if epochs else [])]))
    return found


def teachers(seed=0):
    """The teachers' train_dirs (trained here first), fold i's trained without fold i."""
    folders = []
    for fold in range(TEACHER_FOLDS):
        name = f"fold {fold} of {TEACHER_FOLDS}"
        flags_of_run = [*TEACHER_FLAGS, f"--holdout_fold={fold}/{TEACHER_FOLDS}"]
        row = train("teacher", "all", name, flags_of_run, seed)
        if row is None:  # --no_train, not trained yet
            return None
        print(f"teacher {name}: GAP {row['gap']:.4f} on the validation videos", flush=True)
        folders.append(os.path.join(FLAGS.out_dir, row["run"]))
    return folders


def scored_bundle(base, make):
    """(GAP on the validation videos, MB) of the bundle base.tgz: made by the tool call
    make(base) (a folder base and base.tgz), then scored by ensemble.py; done once, the .tgz
    and its scores kept. None when it is not done and --no_train."""
    metrics = base + ".json"
    if not os.path.exists(metrics):
        if FLAGS.no_train:
            return None
        for leftover in (base, base + "_untarred"):  # of a bundle that did not finish
            shutil.rmtree(leftover, ignore_errors=True)
        make(base)
        validate = ",".join(os.path.join(utils.shared_data_dir(), p) for p in DATA["validate"])
        runs.run_tool("ensemble.py", [
            f"--inputs={base}.tgz", f"--input_data_pattern={validate}",
            f"--output_file={base}_validate.csv", f"--metrics_file={metrics}",
            f"--untar_model_dir={base}_untarred"], base + "_evaluate.txt")
        for done in (base, base + "_untarred"):  # the .tgz is the bundle
            shutil.rmtree(done, ignore_errors=True)
    with open(metrics) as f:
        return json.load(f)["gap"], round(os.path.getsize(base + ".tgz") / 2**20, 4)


def bundles_of(row, folder, precisions=PRECISIONS):
    """A row per precision: the run's best checkpoint exported at it (export_model.py) and the
    bundle evaluated on the validation videos (ensemble.py); done once, kept in the folder."""
    found, min_elements = [], min_elements_of(row["budget"])
    for precision in precisions:
        def export(base, precision=precision):
            runs.run_tool("export_model.py", [
                f"--train_dir={folder}", "--checkpoint=best", f"--output_dir={base}",
                f"--output_tgz={base}.tgz", f"--quantize={precision}",
                f"--quantize_min_elements={min_elements}"], base + "_export.txt")

        scored = scored_bundle(os.path.join(folder, f"bundle_{precision}"), export)
        if scored is None:
            continue
        gap, mb = scored
        found.append({**row, "precision": precision, "trained_gap": row["gap"], "gap": gap,
                      "bundle_mb": mb, "quantize_min_elements": min_elements})
        print(f"  {precision}: {mb:.3f} MB, GAP {gap:.4f}", flush=True)
    return found


def mb_flags(point):
    """train.py flags of an MB point's run: its own, and the best checkpoint kept to export."""
    return [*point[3], "--keep_best_checkpoint"]


def member_weight(member):
    """The weight of an ensemble's member (family, budget, seed[, weight]): 1 unless given."""
    return member[3] if len(member) > 3 else 1


def ensemble_name(members):
    """'knn_moe 64MB (weight 4) + 2 x low_rank+distilled 1MB' of (family, budget, seed[,
    weight]) members."""
    counts = collections.Counter((m[0], m[1], member_weight(m)) for m in members)
    return " + ".join((f"{n} x " if n > 1 else "") + f"{f} {b}"
                      + (f" (weight {w:g})" if w != 1 else "") for (f, b, w), n in counts.items())


def ensemble_flags(members):
    """An ensemble's stand-in for train.py flags in frontier_mb.jsonl (its identity for
    --reuse): ["--ensemble", "family/budget/seed_N[*weight]", ...]."""
    return ["--ensemble", *(f"{m[0]}/{m[1]}/seed_{m[2]}" + (
        f"*{member_weight(m):g}" if member_weight(m) != 1 else "") for m in members)]


def ensemble_of(budget, members, selection=None):
    """[the row] of one uint8 bundle of the members' runs (their best checkpoints, trained here
    first where they are not in --out_dir), scored like any bundle; ensemble.py refuses it over
    the budget. [] when a member is not trained and --no_train."""
    flags_of_run = ensemble_flags(members)
    reused = _REUSED.get((tuple(flags_of_run), 0))
    if reused:
        return [{**row, "budget": budget} for row in reused]
    member_rows = []
    for family, member_budget, seed, *_ in members:
        point = mb_points([family], [member_budget], selection)[0]
        row = train(*point[:3], mb_flags(point), seed, reuse=False)
        if row is None:
            print(f"{ENSEMBLE} {budget}: {family} {member_budget} seed {seed} is not trained "
                  "yet", flush=True)
            return []
        member_rows.append(row)
    folders = [os.path.join(FLAGS.out_dir, row["run"]) for row in member_rows]
    started = time.time()

    def bundle(base):
        runs.run_tool("ensemble.py", [
            f"--inputs={','.join(folders)}",
            f"--weights={','.join(f'{member_weight(m):g}' for m in members)}",
            "--checkpoint=best", f"--bundle_dir={base}",
            f"--bundle_tgz={base}.tgz", "--quantize=uint8",
            f"--max_bundle_mb={MB_BUDGETS[budget]}"], base + "_bundle.txt")

    name = ensemble_name(members)
    base = os.path.join(FLAGS.out_dir, "runs", ENSEMBLE, budget,
                        re.sub(r"\W+", "_", name).strip("_"), "bundle_uint8")
    scored = scored_bundle(base, bundle)
    if scored is None:
        return []
    gap, mb = scored
    print(f"{ENSEMBLE} {budget} {name}: {mb:.3f} MB uint8, GAP {gap:.4f} (members "
          + ", ".join(f"{row['gap']:.4f}" for row in member_rows) + ")", flush=True)
    return [{"family": ENSEMBLE, "budget": budget, "point": name, "seed": 0,
             "weights": sum(row["weights"] for row in member_rows), "gap": gap,
             "trained_gap": None, "member_gaps": [row["gap"] for row in member_rows],
             "flags": flags_of_run, "wall_seconds": round(time.time() - started),
             "run": os.path.relpath(os.path.dirname(base), FLAGS.out_dir),
             "precision": SIZED_AT, "bundle_mb": mb}]


def mb_summary(rows):
    """{(family, point, precision): (mean GAP, MB, seeds, budget)} over the seeds."""
    grouped = collections.defaultdict(list)
    for row in rows:
        grouped[(row["family"], row["point"], row["budget"], row["precision"])].append(row)
    return {(f, point, p): (statistics.mean(r["gap"] for r in group),
                            max(r["bundle_mb"] for r in group), len(group), budget)
            for (f, point, budget, p), group in grouped.items()}


def mb_best(rows):
    """{(MB budget, family): (GAP, MB, seeds, point, precision)}: the family's best bundle of
    at most the budget (any point, any precision)."""
    best = {}
    for (family, point, precision), (gap, mb, seeds, _) in mb_summary(rows).items():
        for budget, limit in MB_BUDGETS.items():
            if mb <= limit and ((budget, family) not in best or gap > best[(budget, family)][0]):
                best[(budget, family)] = (gap, mb, seeds, point, precision)
    return best


def mb_close_calls(rows, close):
    """(family, point) of the bundles within `close` GAP of their budget's best, in budgets
    where two or more families are: each to be trained with a second seed."""
    found = set()
    best = mb_best(rows)
    for budget in MB_BUDGETS:
        here = {f: v for (b, f), v in best.items() if b == budget}
        if len(here) < 2:
            continue
        top = max(v[0] for v in here.values())
        near = [(f, v[3]) for f, v in here.items() if top - v[0] <= close]
        if len(near) > 1:
            found.update(near)
    return found


def mb_table(rows):
    best = mb_best(rows)
    families = [f for f in [*MB_FAMILIES, ENSEMBLE] if any(k[1] == f for k in best)]
    lines = ["| bundle budget | " + " | ".join(families) + " |",
             "|---" * (len(families) + 1) + "|"]
    for budget in MB_BUDGETS:
        here = {f: best[(budget, f)] for f in families if (budget, f) in best}
        if not here:
            continue
        top = max(v[0] for v in here.values())
        cells = []
        for family in families:
            if family not in here:
                cells.append("-")
                continue
            gap, mb, seeds, point, precision = here[family]
            text = (f"{gap:.4f} ({mb:.3g} MB {precision}, {point}"
                    f"{', 2 seeds' if seeds > 1 else ''})")
            cells.append(f"**{text}**" if gap == top else text)
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def precision_table(rows):
    """Each run (seed 0) at each precision: the bundle's MB and GAP, the loss against float32."""
    runs_ = collections.defaultdict(dict)
    for row in rows:
        if row["seed"] == 0:
            runs_[(row["family"], row["budget"], row["point"])][row["precision"]] = row
    lines = ["| family | budget | point | weights | float32 | float16 | uint8 | float32 / uint8 "
             "MB |", "|---" * 8 + "|"]
    for (family, budget, point), by in runs_.items():
        if "float32" not in by:
            continue
        full = by["float32"]
        cells = [f"{full['gap']:.4f} ({full['bundle_mb']:.3g} MB)"]
        for precision in ("float16", "uint8"):
            row = by.get(precision)
            cells.append("-" if row is None else f"{row['gap'] - full['gap']:+.4f} "
                         f"({row['bundle_mb']:.3g} MB)")
        ratio = f"{full['bundle_mb'] / by['uint8']['bundle_mb']:.2f}x" if "uint8" in by else "-"
        lines.append(f"| {family} | {budget} | {point} | {full['weights']:,} | "
                     + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def variant_table(rows, variant):
    """Each point of a variant family (VARIANTS: "+distilled", "+averaged") against the same
    point of its base family (mean of their seeds, at each precision), whether or not either
    was cut short (ONE_SITTING: each stops after its own best epoch)."""
    summary_ = mb_summary(rows)
    by_size = {(family, EPOCHS.sub("", point), precision): (value, EPOCHS.search(point))
               for (family, point, precision), value in summary_.items()}

    def cell(gap, seeds, epochs):
        return (f"{gap:.4f} ({seeds} seed{'s' if seeds > 1 else ''}"
                + (epochs.group(0) if epochs else "") + ")")

    lines = [f"| family | budget | point | {' | '.join(VARIANTS[variant])} | gain |",
             "|---" * 6 + "|"]
    for (family, point, precision), ((gap, _, seeds, budget), epochs) in by_size.items():
        if not family.endswith(variant):
            continue
        plain, plain_epochs = by_size.get((family[:-len(variant)], point, precision),
                                          (None, None))
        if plain is None:
            continue
        lines.append(f"| {family[:-len(variant)]} ({precision}) | {budget} | {point} | "
                     f"{cell(plain[0], plain[2], plain_epochs)} | {cell(gap, seeds, epochs)} | "
                     f"{gap - plain[0]:+.4f} |")
    return "\n".join(lines)


def mb_plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary_ = mb_summary(rows)
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    markers = {"float32": "s", "float16": "^", "uint8": "o"}
    for index, family in enumerate([*MB_FAMILIES, ENSEMBLE]):
        color = plt.get_cmap("tab20")(index % 20)
        for precision, marker in markers.items():
            found = sorted((mb, gap) for (f, _, p), (gap, mb, _, _) in summary_.items()
                           if f == family and p == precision)
            if found:
                axes.plot([m for m, _ in found], [g for _, g in found], marker=marker,
                          markersize=4, color=color, linestyle="-" if precision == "uint8"
                          else "none", label=family.replace("_", " ")
                          if precision == "uint8" else None)
    for limit in MB_BUDGETS.values():
        axes.axvline(limit, color="grey", alpha=0.3, linewidth=0.8)
    finish_plot(figure, axes, out, "bundle MB (.tgz; log scale; o uint8, ^ float16, s float32)",
                "validation GAP@20 of the bundle",
                "Size-accuracy frontier in megabytes, YouTube-8M 2018 video level", 7)


def mb_main(families, budgets, selection=None):
    """The MB frontier's points of these families and budgets (of the selection, if one:
    ONE_SITTING), their second seeds where close, then their ensembles."""
    started = time.time()
    todo = mb_points([f for f in families if f != ENSEMBLE], budgets, selection)
    chosen = MB_ENSEMBLES if selection is None else ONE_SITTING_ENSEMBLES
    ensembles = [(budget, members) for budget, found in chosen.items()
                 if ENSEMBLE in families and budget in budgets for members in found]
    print(f"{len(todo)} points: " + "; ".join(f"{f} {b} {n}" for f, b, n, _ in todo)
          + "".join(f"; {ENSEMBLE} {b} {ensemble_name(m)}" for b, m in ensembles), flush=True)

    def trained(point, seed):
        model_flags = mb_flags(point)
        reused = _REUSED.get((tuple(model_flags), seed))
        if reused and exported_as_here(reused, point[1]):
            # a row per precision (a run shared by two budgets was recorded under each)
            by_precision = {row["precision"]: row for row in reused}
            return [{**row, "family": point[0], "budget": point[1], "point": point[2]}
                    for row in by_precision.values()]
        row = train(*point[:3], model_flags, seed=seed, reuse=False)  # its folder: to export
        if row is None:
            return []
        return bundles_of(row, os.path.join(FLAGS.out_dir, row["run"]))

    rows = [row for point in todo for row in trained(point, 0)]
    again = mb_close_calls(rows, FLAGS.close) | {  # and every second seed already run
        (point[0], point[2]) for point in todo
        if (tuple(mb_flags(point)), 1) in _REUSED}
    rows += [row for point in todo if (point[0], point[2]) in again
             for row in trained(point, 1)]
    rows += [row for budget, found in ensembles for row in ensemble_of(budget, found, selection)]
    if FLAGS.no_train:
        done = {(row["family"], row["budget"], row["point"]) for row in rows}
        print(f"--no_train: {len(done)} of the {len(todo) + len(ensembles)} points and ensembles "
              "finished (in --out_dir or --reuse); the others need a run without --no_train",
              flush=True)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    results = os.path.join(FLAGS.out_dir, "frontier_mb.jsonl")
    utils.atomic_write(results, "".join(json.dumps(r) + "\n" for r in rows))
    mb_plot(rows, os.path.join(FLAGS.out_dir, "frontier_mb.png"))
    text = (mb_table(rows) + "\n\nEach run at each precision (GAP change against float32):\n\n"
            + precision_table(rows) + "\n\nDistillation:\n\n" + variant_table(rows, "+distilled")
            + "\n\nWeight averaging:\n\n" + variant_table(rows, "+averaged"))
    utils.atomic_write(os.path.join(FLAGS.out_dir, "frontier_mb.md"), text + "\n")
    print(text)
    print(f"results: {results} (and frontier_mb.png, frontier_mb.md); wall time "
          f"{utils.duration(time.time() - started)}")


def main(argv):
    del argv
    known_families = [*MB_FAMILIES, ENSEMBLE] if FLAGS.megabytes else FAMILIES
    known_budgets = [*MB_BUDGETS] if FLAGS.megabytes else [*BUDGETS, "full"]
    selection = ONE_SITTING if FLAGS.megabytes and not FLAGS.complete else None
    families = [f.strip() for f in FLAGS.families.split(",") if f.strip()] or (
        [*known_families] if selection is None else [*ONE_SITTING, ENSEMBLE])
    budgets = [b.strip() for b in FLAGS.budgets.split(",") if b.strip()] or known_budgets
    unknown = [f for f in families if f not in known_families] + \
        [b for b in budgets if b not in known_budgets]
    if unknown:
        raise SystemExit(f"error: unknown family or budget {unknown}; families: "
                         f"{', '.join(known_families)}; budgets: {', '.join(known_budgets)}")
    left_out = [f for f in families if selection is not None and f != ENSEMBLE
                and not any(b in budgets for b in ONE_SITTING.get(f, {}))]
    if left_out:
        raise SystemExit(f"error: {', '.join(left_out)} at {', '.join(budgets)}: not in the "
                         "one-sitting frontier (ONE_SITTING); add --complete")
    if FLAGS.reuse and FLAGS.train_flags:  # a reused row was trained without them
        raise SystemExit("error: --reuse takes runs trained with the frontier's own settings, "
                         "which --train_flags changes: give one or the other")
    if not os.path.isdir(os.path.join(utils.shared_data_dir(), "yt8m-2018-video")):
        raise SystemExit(f"error: no yt8m-2018-video in {utils.shared_data_dir()}; set "
                         "YT8M_SHARED_DATA to the folder of the real YouTube-8M files")
    _REUSED.update(read_reused(FLAGS.reuse))
    if FLAGS.megabytes:
        return mb_main(families, budgets, selection)
    started = time.time()
    todo, misfits = points(families, budgets, FLAGS.twins)
    print(f"{len(todo)} points: " + "; ".join(f"{f} {b} {n}" for f, b, n, _ in todo), flush=True)
    for row in misfits:
        print(f"{row['family']} {row['budget']}: no twin within {WITHIN:.0%} of the point's "
              "weights", flush=True)
    rows = [row for point in todo if (row := train(*point, seed=0))]
    again = set(close_calls(rows, FLAGS.close)) | {  # and every second seed already run
        point[:2] for point in todo if (tuple(point[3]), 1) in _REUSED}
    rows += [row for point in todo if point[:2] in again and (row := train(*point, seed=1))]
    if FLAGS.no_train:
        print(f"--no_train: {len(rows)} finished runs of the {len(todo)} points and their "
              "second seeds", flush=True)
    rows += misfits
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    results = os.path.join(FLAGS.out_dir, "frontier.jsonl")
    utils.atomic_write(results, "".join(json.dumps(r) + "\n" for r in rows))
    plot(rows, os.path.join(FLAGS.out_dir, "frontier.png"))
    text = table(rows) + "\n\nEach structured point against its twins:\n\n" + twin_table(rows)
    utils.atomic_write(os.path.join(FLAGS.out_dir, "frontier.md"), text + "\n")
    print(text)
    print(f"results: {results} (and frontier.png, frontier.md); wall time "
          f"{utils.duration(time.time() - started)}")


if __name__ == "__main__":
    sys.exit(app.run(main))
