"""experiments/plot.py draws the GAP-against-epochs figure from experiments/paper.py's rows."""

import collections
import functools
import json
import os
import subprocess
import sys
import types

import pytest

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


def finished(folder, weights, gaps):
    """A train_dir as experiments/paper.py leaves a finished run."""
    folder.mkdir(parents=True)
    (folder / "done").write_text(json.dumps({"seconds": 60.0}))
    (folder / "train_log.jsonl").write_text("".join(
        json.dumps({"step": step, "examples_per_second": rate, "loss": 1.0}) + "\n"
        for step, rate in ((20, 100.0), (40, 300.0), (60, 200.0))))
    layers = [("two_stream_model/video_fc", 131_072), ("two_stream_model/video_fc_bn", 2_048),
              ("two_stream_model/audio_fc", 65_536)]
    (folder / "model_summary.json").write_text(json.dumps({
        "model": "TwoStreamModel", "weights": weights,
        "layers": [{"path": path, "kind": "Dense", "weights": count, "dense": count}
                   for path, count in layers]}))
    (folder / "validation.jsonl").write_text("".join(
        json.dumps({"step": 91 * (i + 1), "gap": gap}) + "\n" for i, gap in enumerate(gaps)))


@pytest.mark.slow  # TensorFlow processes
def test_a_run_shared_by_two_experiments_is_trained_once(tmp_path):
    out = tmp_path / "experiments"
    (out / "frames" / "small").mkdir(parents=True)
    for split in ("train", "validate"):  # frame-level data already expanded
        (out / "frames" / "small" / f"{split}.done").write_text("")
    finished(out / "embeddings" / "small" / "dbof_dense", 35_192_424, [0.5, 0.6])
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, "experiments", "paper.py"),
                           "--experiment=factors", "--variants=dense", f"--out_dir={out}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / "factors" / "small" / "dense").exists()  # nothing trained
    rows = [json.loads(line) for line in (out / "factors.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["epoch"], r["gap"]) for r in rows] == [
        ("dense", round(91 * 256 / 23091, 2), 0.5), ("dense", round(182 * 256 / 23091, 2), 0.6)]
    assert {(r["weights"], r["fc_weights"], r["examples_per_second"]) for r in rows} == {
        (35_192_424, 131_072 + 65_536, 250.0)}  # median of the rates after the first line
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, "experiments", "paper.py"),
                           "--experiment=factors", "--variants=k_9", f"--out_dir={out}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "unknown variant" in done.stderr


def test_table_has_a_row_per_variant_against_the_first(tmp_path):
    rows = [{"variant": variant, "epoch": epoch, "gap": gap, "weights": weights,
             "fc_weights": fc, "examples_per_second": 250.0, "wall_seconds": 90}
            for variant, weights, fc, gaps in (("dense", 1_000_000, 400_000, (0.5, 0.6)),
                                               ("compact", 600_000, 2_000, (0.55, 0.58)))
            for epoch, gap in zip((1, 2), gaps)]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = os.path.join(REPO_DIR, "experiments", "table.py")
    done = subprocess.run([sys.executable, table, str(results), "--variants=compact,dense"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2:] == [
        "| compact | 600,000 | 0.0% | 2,000 | 0.550, 0.580 | 0.580 | +0.000 | 250 | 1.5 |",
        "| dense | 1,000,000 | -66.7% | 400,000 | 0.500, 0.600 | 0.600 | +0.020 | 250 | 1.5 |"]
    done = subprocess.run([sys.executable, table, str(results), "--variants=other"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no results for ['other']" in done.stderr


def frontier_module():
    sys.path.insert(0, os.path.join(REPO_DIR, "experiments"))
    import frontier

    return frontier


def test_frontier_points_are_the_largest_that_fit_their_budget():
    frontier = frontier_module()
    for family in ("dense", "low_rank", "circulant_bottleneck", "circulant_gating"):
        fixed, key = frontier.FAMILIES[family].budgets["0.5M"]
        settings = frontier.sized(fixed, key, 200_000)
        weights = frontier.model_weights(settings)
        assert weights <= 200_000 < frontier.model_weights({**settings, key: settings[key] + 1})
        assert weights > 0.95 * 200_000, (family, weights)


def frontier_rows():
    rows = []
    for family, budget, gap, seed in (("dense", "0.5M", 0.680, 0), ("low_rank", "0.5M", 0.700, 0),
                                      ("circulant_bottleneck", "0.5M", 0.700, 0),
                                      ("circulant_bottleneck", "0.5M", 0.710, 1),
                                      ("dense", "2M", 0.720, 0), ("low_rank", "2M", 0.650, 0)):
        rows.append({"family": family, "budget": budget, "point": "size=1", "seed": seed,
                     "weights": {"0.5M": 490_000, "2M": 1_990_000}[budget], "gap": gap})
    return rows


def test_frontier_second_seeds_go_where_families_are_close_and_the_table_marks_the_best(tmp_path):
    frontier = frontier_module()
    rows = frontier_rows()
    assert sorted(frontier.close_calls(rows, 0.01)) == [("circulant_bottleneck", "0.5M"),
                                                       ("low_rank", "0.5M")]
    table = frontier.table(rows)
    line = next(row for row in table.splitlines() if row.startswith("| 0.5M"))
    assert "**0.7050 (0.49M, size=1, 2 seeds)**" in line  # the mean of 0.700 and 0.710
    assert "| 0.7000 (0.49M, size=1) |" in line  # low rank, not the best
    assert "| 0.6800 (0.49M, size=1) |" in line
    frontier.plot(rows, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes().startswith(b"\x89PNG")


def test_frontier_twins_make_the_tested_sites_of_each_other_kind_at_the_points_weight_count():
    frontier = frontier_module()
    fixed, key = frontier.FAMILIES["circulant_gating"].budgets["0.1M"]
    point = frontier.sized(fixed, key, 100_000)
    target = frontier.model_weights(point)
    found = {kind: (twin, weights) for kind, twin, weights in
             frontier.twins("circulant_gating", point, key)}
    assert set(found) == {"dense", "low_rank", "monarch", "btt"}  # not its own kind, circulant
    assert found["dense"][0] is None and found["dense"][1] > 100 * target  # 3,862 x 3,862
    for kind in ("low_rank", "monarch"):
        twin, weights = found[kind]
        assert frontier.model_weights(twin) == weights
        assert abs(weights - target) <= 0.01 * target, (kind, weights, target)
        kinds = frontier.site_kinds(twin)
        assert kinds["gating"][0] == kind and kinds["classifier"] == ("low_rank", None)
        assert twin["low_rank"] == point["low_rank"]  # the rest of the model as it was
    btt, weights = found["btt"]  # 4 blocks (TWIN_SETTINGS), the rest of the model sized again
    assert btt["btt_blocks"] == 4 and frontier.site_kinds(btt)["gating"] == ("btt", 1)
    assert abs(weights - target) <= 0.01 * target and btt["low_rank"] < point["low_rank"]
    # A 3,862 x 3,862 gate of rank 2 (2 * 2 * 3,862) is the nearest to the circulant gate's
    # 2 * 2 * 3,862 (k=2, input side).
    assert frontier.site_kinds(found["low_rank"][0])["gating"] == ("low_rank", 2)


def test_frontier_twin_table_puts_each_point_beside_its_twins():
    frontier = frontier_module()
    rows = [{"family": "circulant_gating", "budget": "2M", "point": "low_rank=391", "seed": 0,
             "weights": 1_995_336, "gap": 0.727},
            {"family": "circulant_gating/low_rank", "budget": "2M", "seed": 0, "gap": 0.7196,
             "point": "low_rank=391 gating=low_rank:2", "weights": 1_995_232},
            {"family": "circulant_gating/dense", "budget": "2M", "point": "does not fit",
             "seed": None, "weights": 14_939_368, "gap": None},
            {"family": "low_rank", "budget": "2M", "point": "low_rank=398", "seed": 0,
             "weights": 1_999_434, "gap": 0.722},
            {"family": "low_rank/monarch", "budget": "2M", "point": "does not fit",
             "seed": None, "weights": 1_930_006, "gap": None}]
    lines = frontier.twin_table(rows).splitlines()
    assert lines[2] == ("| 2M | low_rank (classifier) | - | - | "
                        "**0.7220 (1.999M, own: low_rank=398)** | no fit (nearest 1.93M) | - |")
    line = lines[3]
    assert line == ("| 2M | circulant_gating (gating) | no fit (nearest 14.9M) | "
                    "**0.7270 (1.995M, own: low_rank=391)** | "
                    "0.7196 (1.995M, low_rank=391 gating=low_rank:2) | - | - |")
    assert frontier.close_calls(rows, 0.01) == [("circulant_gating", "2M"),
                                                ("circulant_gating/low_rank", "2M"),
                                                ("low_rank", "2M")]


def test_megabyte_points_fit_their_uint8_budget_and_each_budget_takes_the_best_bundle(tmp_path):
    frontier = frontier_module()
    for name, budget in (("low_rank", "1MB"), ("circulant_gating", "4MB"), ("moe", "16MB")):
        settings = frontier.MB_FAMILIES[name].budgets[budget]
        fixed, key = settings
        point = frontier.sized(fixed, key, frontier.MB_BUDGETS[budget], frontier.bundle_mb)
        assert frontier.bundle_mb(point) <= frontier.MB_BUDGETS[budget], (name, point)
        if key != "moe_num_mixtures":  # the next size would not fit
            assert frontier.bundle_mb({**point, key: point[key] + 1}) > \
                frontier.MB_BUDGETS[budget]
    rows = [{"family": family, "budget": budget, "point": "p", "seed": seed,
             "precision": precision, "bundle_mb": mb, "gap": gap, "weights": 10}
            for family, budget, seed, precision, mb, gap in (
                ("dense", "1MB", 0, "float32", 3.0, 0.700),
                ("dense", "1MB", 0, "uint8", 0.8, 0.699),
                ("low_rank", "1MB", 0, "float32", 3.1, 0.710),
                ("low_rank", "1MB", 0, "uint8", 0.9, 0.705),
                ("low_rank+distilled", "1MB", 0, "uint8", 0.9, 0.712))]
    best = frontier.mb_best(rows)
    assert best[("1MB", "dense")][:2] == (0.699, 0.8)  # the float32 bundle is over 1 MB
    assert best[("4MB", "low_rank")][:2] == (0.710, 3.1)
    assert ("0.25MB", "dense") not in best
    # Within 0.01 of the distilled student (0.712): low rank (0.705, 0.710), not dense (0.699).
    assert frontier.mb_close_calls(rows, 0.01) == {("low_rank", "p"),
                                                   ("low_rank+distilled", "p")}
    assert "| low_rank (uint8) | 1MB | p | 0.7050 (1 seed) | 0.7120 (1 seed) | +0.0070 |" in \
        frontier.variant_table(rows, "+distilled")
    assert "-0.0050 (0.9 MB)" in frontier.precision_table(rows)
    frontier.mb_plot(rows, tmp_path / "mb.png")
    assert (tmp_path / "mb.png").read_bytes().startswith(b"\x89PNG")


def test_averaged_families_are_their_base_points_trained_with_weight_averaging():
    frontier = frontier_module()
    from configs import frontier_mb as mb_config
    for name, budgets in mb_config.AVERAGED.items():
        for budget in budgets:
            [(_, _, point, model_flags)] = frontier.mb_points([name], [budget])
            [(family, _, averaged_point, averaged_flags)] = frontier.mb_points(
                [name + "+averaged"], [budget])
            assert (family, averaged_point) == (name + "+averaged", point)
            assert averaged_flags == [*model_flags, "--ema_decay=0.996"]
    rows = [{"family": family, "budget": "1MB", "point": "p", "seed": seed,
             "precision": "uint8", "bundle_mb": 0.9, "gap": gap, "weights": 10}
            for family, seed, gap in (("low_rank", 0, 0.700), ("low_rank+averaged", 0, 0.704),
                                      ("low_rank+averaged", 1, 0.708))]
    assert frontier.variant_table(rows, "+averaged").splitlines()[::2] == [
        "| family | budget | point | last weights | averaged | gain |",
        "| low_rank (uint8) | 1MB | p | 0.7000 (1 seed) | 0.7060 (2 seeds) | +0.0060 |"]
    assert frontier.variant_table(rows, "+distilled").count("\n") == 1  # no distilled rows
    cut_short = [{**row, "point": f"p, {epochs} epochs"}
                 for row, epochs in zip(rows, (4, 6, 6))]  # ONE_SITTING's points
    assert frontier.variant_table(cut_short, "+averaged").splitlines()[2] == (
        "| low_rank (uint8) | 1MB | p | 0.7000 (1 seed, 4 epochs) | 0.7060 (2 seeds, 6 epochs) "
        "| +0.0060 |")


def test_averaged_and_distilled_families_add_the_teachers_to_the_averaged_points():
    frontier = frontier_module()
    from configs import frontier_mb as mb_config
    for name in ("dense", "low_rank", "circulant_gating"):
        [(_, _, point, averaged_flags)] = frontier.mb_points([name + "+averaged"], ["4MB"])
        [(family, _, both_point, both_flags)] = frontier.mb_points(
            [name + "+averaged+distilled"], ["4MB"])
        assert (family, both_point) == (name + "+averaged+distilled", point)
        assert both_flags == [*averaged_flags, *mb_config.DISTILLATION]
    rows = [{"family": family, "budget": "4MB", "point": "p", "seed": 0, "precision": "uint8",
             "bundle_mb": 3.2, "gap": gap, "weights": 10}
            for family, gap in (("low_rank+averaged", 0.7280), ("low_rank+averaged+distilled",
                                                                0.7300))]
    assert frontier.variant_table(rows, "+distilled").splitlines()[2] == (
        "| low_rank+averaged (uint8) | 4MB | p | 0.7280 (1 seed) | 0.7300 (1 seed) | +0.0020 |")


def test_the_teachers_table_compares_each_student_with_labels_alone_on_its_labelled_videos():
    rows = [{"variant": variant, "seed": seed, "gap": gap, "labelled_videos": labelled,
             "unlabelled_videos": unlabelled, "teacher": teacher, "teacher_gaps": gaps}
            for variant, seed, gap, labelled, unlabelled, teacher, gaps in (
                ("all labelled", 0, 0.70, 100, 0, None, None),
                ("all labelled", 1, 0.71, 100, 0, None, None),
                ("half labelled", 0, 0.65, 50, 0, None, None),
                ("folds", 0, 0.72, 100, 0, "2 folds", [0.73, 0.74]),
                ("half + unlabelled", 0, 0.69, 50, 50, "half", [0.7]))]
    script = ("import json, sys; sys.argv = ['teachers']; import teachers; "
              f"print(teachers.table(json.loads({json.dumps(json.dumps(rows))})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=os.path.join(REPO_DIR, "experiments"), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[2:] == [
        "| all labelled | - | 0.7000, 0.7100 | 0.7050 | +0.0000 |",
        "| half labelled | - | 0.6500 | 0.6500 | +0.0000 |",
        "| folds | KnnMoeModel, 2 folds (0.73, 0.74) | 0.7200 | 0.7200 | +0.0150 |",
        "| half + unlabelled | KnnMoeModel, half (0.7) | 0.6900 | 0.6900 | +0.0400 |"]


def test_quarter_megabyte_points_fit_with_their_small_tensors_quantized_too():
    frontier = frontier_module()
    assert frontier.min_elements_of("0.25MB") == 3862 < frontier.min_elements_of("1MB")
    for name in ("dense", "low_rank", "circulant_gating"):
        [(_, _, _, model_flags)] = frontier.mb_points([name], ["0.25MB"])
        fixed, key = frontier.MB_FAMILIES[name].budgets["0.25MB"]
        size = int(next(f for f in model_flags if f.startswith(f"--{key}=")).split("=")[1])
        point = {**fixed, key: size}
        at_3862 = functools.partial(frontier.bundle_mb, min_elements=3862)
        assert at_3862(point) <= 0.25 < at_3862({**point, key: size + 1}), name
        # Exported with the default threshold, the same point would not fit.
        assert frontier.bundle_mb(point) > 0.25, name
    rows = [{"precision": "uint8", "gap": 0.7}, {"precision": "float32", "gap": 0.7}]
    assert frontier.exported_as_here(rows, "1MB")
    assert not frontier.exported_as_here(rows, "0.25MB")  # exported at the default threshold
    assert frontier.exported_as_here([{**r, "quantize_min_elements": 3862} for r in rows],
                                     "0.25MB")
    assert not frontier.exported_as_here([{"gap": 0.7}], "1MB")  # its bundles not evaluated


def test_an_ensemble_bundles_its_members_best_checkpoints_once_within_its_budget(
        tmp_path, monkeypatch):
    frontier = frontier_module()
    monkeypatch.setattr(frontier, "FLAGS", types.SimpleNamespace(out_dir=str(tmp_path),
                                                                 no_train=False))
    trained, calls = [], []

    def train(family, budget, name, model_flags, seed, reuse=True):
        trained.append((family, budget, seed, reuse, model_flags[-1]))
        return {"run": f"runs/{family}/{budget}/seed_{seed}", "gap": 0.72 + seed / 1000,
                "weights": 1000}

    def run_tool(script, args, log):
        calls.append((script, args))
        os.makedirs(os.path.dirname(log), exist_ok=True)  # as runs.run_tool does
        given = dict(a[2:].split("=", 1) for a in args)
        if "bundle_tgz" in given:
            with open(given["bundle_tgz"], "wb") as f:
                f.write(b"\0" * 2**19)  # 0.5 MB
        else:
            with open(given["metrics_file"], "w") as f:
                json.dump({"gap": 0.735}, f)

    monkeypatch.setattr(frontier, "train", train)
    monkeypatch.setattr(frontier.runs, "run_tool", run_tool)
    members = frontier.MB_ENSEMBLES["4MB"][0]
    rows = frontier.ensemble_of("4MB", members)
    # Each member's own folder (not a --reuse row), trained keeping its best checkpoint.
    assert trained == [(f, b, s, False, "--keep_best_checkpoint") for f, b, s in members]
    (bundled, made), (scored, evaluated) = calls
    assert bundled == scored == "ensemble.py"
    folders = ",".join(str(tmp_path / "runs" / f / b / f"seed_{s}") for f, b, s in members)
    assert f"--inputs={folders}" in made and "--max_bundle_mb=4.0" in made
    assert {"--checkpoint=best", "--quantize=uint8", "--weights=1,1,1,1"} <= set(made)
    bundle = (tmp_path / "runs" / "ensemble" / "4MB" / "2_x_circulant_gating_distilled_1MB_2_x_"
              "low_rank_distilled_1MB" / "bundle_uint8.tgz")
    assert f"--inputs={bundle}" in evaluated
    [row] = rows
    assert (row["family"], row["budget"], row["gap"], row["bundle_mb"], row["weights"]) == (
        "ensemble", "4MB", 0.735, 0.5, 4000)
    assert row["point"] == "2 x circulant_gating+distilled 1MB + 2 x low_rank+distilled 1MB"
    assert row["member_gaps"] == [0.72, 0.721, 0.72, 0.721]
    assert frontier.ensemble_of("4MB", members) == rows and len(calls) == 2  # done once
    monkeypatch.setitem(frontier._REUSED, (tuple(row["flags"]), 0), [row])
    trained.clear()
    assert frontier.ensemble_of("4MB", members) == rows and not trained
    assert "| 4MB | **0.7350 (0.5 MB uint8, 2 x circulant_gating+distilled" in \
        frontier.mb_table(rows)
    weighted = (("knn_moe", "64MB", 0, 4), ("moe_low_rank_gates", "16MB", 0))
    calls.clear()
    [row] = frontier.ensemble_of("64MB", weighted)
    assert row["point"] == "knn_moe 64MB (weight 4) + moe_low_rank_gates 16MB"
    assert row["flags"] == ["--ensemble", "knn_moe/64MB/seed_0*4", "moe_low_rank_gates/16MB/seed_0"]
    assert "--weights=4,1" in calls[0][1]
    for budget, found in frontier.MB_ENSEMBLES.items():  # members are points of the frontier
        for family, member_budget, *_ in (member for each in found for member in each):
            assert len(frontier.mb_points([family], [member_budget])) == 1, (budget, family)


def test_reused_rows_count_as_finished_runs_of_the_same_flags_and_seed(tmp_path):
    frontier = frontier_module()
    earlier = tmp_path / "frontier.jsonl"
    earlier.write_text(json.dumps({"family": "dense", "budget": "0.5M", "point": "h=98",
                                   "seed": 0, "gap": 0.68, "flags": ["--bottleneck_size=98"]})
                       + "\n" + json.dumps({"family": "x", "budget": "0.5M", "gap": None,
                                            "seed": None, "flags": None}) + "\n")
    reused = frontier.read_reused([str(earlier)])
    assert list(reused) == [(("--bottleneck_size=98",), 0)]
    assert reused[(("--bottleneck_size=98",), 0)][0]["reused_from"] == "frontier.jsonl"


def test_the_one_sitting_frontier_is_points_of_the_complete_one_cut_after_their_best_epochs():
    """Each point of ONE_SITTING is the complete frontier's, its epochs (where cut) one after
    the last best epoch of its two complete runs in experiments/results/frontier_mb.jsonl; each
    of its ensembles is the best of its budget there, of members it trains."""
    frontier = frontier_module()
    complete = {(p[0], p[1]): p for p in frontier.mb_points([*frontier.MB_FAMILIES],
                                                             [*frontier.MB_BUDGETS])}
    chosen = frontier.mb_points([*frontier.ONE_SITTING], [*frontier.MB_BUDGETS],
                                frontier.ONE_SITTING)
    assert sorted(p[:2] for p in chosen) == sorted(
        (family, budget) for family, by in frontier.ONE_SITTING.items() for budget in by)
    with open(os.path.join(REPO_DIR, "experiments", "results", "frontier_mb.jsonl")) as f:
        results = [json.loads(line) for line in f]
    best_epochs = collections.defaultdict(set)
    for row in results:
        if row["family"] != frontier.ENSEMBLE:
            best_epochs[(row["family"], row["budget"])].add((row["seed"], row["best_epoch"]))
    for family, budget, name, flags_of_run in chosen:
        _, _, full_name, full_flags = complete[(family, budget)]
        epochs = frontier.ONE_SITTING[family][budget]
        if epochs is None:
            assert (name, flags_of_run) == (full_name, full_flags)
            continue
        assert name == f"{full_name}, {epochs} epochs"
        assert flags_of_run == [*full_flags, f"--num_epochs={epochs}"]
        measured = [epoch for _, epoch in best_epochs[(family, budget)]]
        assert len(measured) == 2 and epochs == round(max(measured)) + 1, (family, budget)
    ensemble_gaps = {tuple(row["flags"]): row["gap"] for row in results
                     if row["family"] == frontier.ENSEMBLE}

    def gap_of(members):
        return ensemble_gaps[tuple(frontier.ensemble_flags(members))]

    for budget, [members] in frontier.ONE_SITTING_ENSEMBLES.items():
        assert gap_of(members) == max(gap_of(each) for each in frontier.MB_ENSEMBLES[budget])
        for family, member_budget, *_ in members:
            assert member_budget in frontier.ONE_SITTING[family], (budget, family)


@pytest.mark.slow  # a TensorFlow process
def test_reuse_and_other_training_flags_are_refused_together(tmp_path):
    frontier_py = os.path.join(REPO_DIR, "experiments", "frontier.py")
    done = subprocess.run([sys.executable, frontier_py,
                           f"--reuse={tmp_path / 'frontier.jsonl'}", "--train_flags=--num_epochs=1",
                           f"--out_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: --reuse takes runs trained with the frontier's own settings, which "
        "--train_flags changes: give one or the other"], done.stderr[-2000:]
    done = subprocess.run([sys.executable, frontier_py, "--megabytes", "--families=low_rank",
                           "--budgets=1MB,4MB", f"--out_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: low_rank at 1MB, 4MB: not in the one-sitting frontier (ONE_SITTING); add "
        "--complete"], done.stderr[-2000:]


@pytest.mark.slow  # a TensorFlow process
def test_no_train_keeps_every_finished_seed_once_at_each_precision(tmp_path, shared_data):
    """The dense 1 MB point's two seeds, reused: both in the table though the point is alone in
    its budget (no --close call), each precision once though the file lists the run twice (as
    a run shared by two budgets is); and its distilled student's seed, reused in a folder where
    no teacher was ever trained."""
    frontier = frontier_module()
    run = {"family": "dense", "budget": "1MB", "point": "bottleneck_size=192", "weights": 967318,
           "flags": ["--model=BottleneckModel", "--bottleneck_size=192", "--keep_best_checkpoint"],
           "run": "runs/dense/1MB/x"}
    rows = [{**run, "seed": seed, "precision": precision, "gap": 0.69 + seed / 100,
             "bundle_mb": mb} for seed in (0, 1)
            for precision, mb in (("float32", 3.4), ("float16", 1.7), ("uint8", 0.78))]
    [student] = frontier.mb_points(["dense+distilled"], ["1MB"])
    distilled = [{**row, "family": "dense+distilled", "flags": frontier.mb_flags(student),
                  "gap": 0.75} for row in rows if row["seed"] == 0]
    earlier = tmp_path / "frontier_mb.jsonl"
    earlier.write_text("".join(json.dumps(r) + "\n" for r in rows + rows + distilled))
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, "experiments", "frontier.py"),
                           "--megabytes", "--complete", "--families=dense,dense+distilled",
                           "--budgets=1MB", "--no_train",
                           f"--reuse={earlier}", f"--out_dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "YT8M_SHARED_DATA": shared_data})
    assert done.returncode == 0, done.stderr[-2000:]
    written = [json.loads(line) for line in (tmp_path / "out" / "frontier_mb.jsonl").open()]
    assert sorted((r["family"], r["seed"], r["precision"]) for r in written) == sorted(
        (r["family"], r["seed"], r["precision"]) for r in rows + distilled)
    assert "0.6950 (0.78 MB uint8, bottleneck_size=192, 2 seeds)" in done.stdout, done.stdout
    assert "| dense (uint8) | 1MB | bottleneck_size=192 | 0.6950 (2 seeds) | 0.7500 (1 seed) |" \
        in done.stdout, done.stdout
    assert not (tmp_path / "out" / "runs").exists()  # no teacher looked for, none trained


def test_an_mb_run_is_reused_with_its_rows_at_every_precision(tmp_path):
    frontier = frontier_module()
    earlier = tmp_path / "frontier_mb.jsonl"
    run = {"family": "dense", "budget": "1MB", "point": "h=9", "seed": 0,
           "flags": ["--bottleneck_size=9", "--keep_best_checkpoint"]}
    earlier.write_text("".join(json.dumps({**run, "precision": p, "gap": g}) + "\n"
                               for p, g in (("float32", 0.70), ("uint8", 0.69))))
    reused = frontier.read_reused([str(earlier)])
    assert [(r["precision"], r["gap"]) for r in reused[(tuple(run["flags"]), 0)]] == \
        [("float32", 0.70), ("uint8", 0.69)]


def budget_table_module():
    sys.path.insert(0, os.path.join(REPO_DIR, "experiments"))
    import budget_table

    return budget_table


def test_the_budget_table_takes_each_budgets_best_bundle_and_its_best_single_model():
    budget_table = budget_table_module()

    def row(family, point, seed, gap, mb, precision="uint8", flags=(), **more):
        return {"family": family, "point": point, "budget": "1MB", "seed": seed, "gap": gap,
                "bundle_mb": mb, "precision": precision,
                "flags": ["--model=BottleneckModel", *flags, "--keep_best_checkpoint"], **more}

    rows = [row("dense", "bottleneck_size=9", 0, 0.70, 0.9), row("dense", "bottleneck_size=9", 1,
                                                                0.68, 0.95),
            row("low_rank", "low_rank=5", 0, 0.695, 0.5, flags=["--low_rank=5",
                                                                "--teacher=<teachers>",
                                                                "--teacher_cache"],
                quantize_min_elements=3862),
            row("low_rank", "low_rank=5", 0, 0.71, 1.1, precision="float32"),  # over 1 MB
            {**row("ensemble", "2 x dense 1MB", 0, 0.72, 3.5),
             "flags": ["--ensemble", "dense/1MB/seed_0*3", "dense/1MB/seed_1"]}]
    lines = budget_table.table(rows).splitlines()
    # 0.25 MB: nothing fits. 1 MB: low rank (0.695) beats dense (mean 0.69 over 2 seeds); the
    # float32 bundle over the budget does not count
    assert lines[2] == ("| 1 MB | `low_rank` low_rank=5 | 0.6950 | 0.5 uint8 | `--model=Bottleneck"
                        "Model --low_rank=5` + teachers; export `--quantize=uint8 "
                        "--quantize_min_elements=3862` |")
    # 4 MB: the ensemble, then the best single model, which reaches 1.1 MB now
    assert lines[3].startswith("| 4 MB | `ensemble` 2 x dense 1MB | 0.7200 | 3.5 uint8 | members "
                               "dense/1MB/seed_0, dense/1MB/seed_1 (family/budget/seed), then "
                               "`ensemble.py --checkpoint=best --weights=3,1 --quantize=uint8`")
    assert lines[4].startswith("| 4 MB, one model | `low_rank` low_rank=5 | 0.7100 | 1.1 float32")
    # of a point at two precisions equal to the digits shown, the smaller bundle
    twice = [row("dense", "b", 0, 0.700004, 0.9, precision="float16"),
             row("dense", "b", 0, 0.70, 0.5)]
    assert "| 1 MB | `dense` b | 0.7000 | 0.5 uint8 |" in budget_table.table(twice)
    assert budget_table.line("1 MB", (0.69, 0.95, 2, rows[0])).startswith(
        "| 1 MB | `dense` bottleneck_size=9 | 0.6900 (2 seeds) | 0.95 uint8 |")


def test_the_readme_budget_table_is_the_one_the_results_make():
    """README and experiments/results/frontier_mb.jsonl agree: after new results, run
    experiments/budget_table.py --write."""
    budget_table = budget_table_module()
    import table

    with open(os.path.join(REPO_DIR, "README.md")) as f:
        in_readme = budget_table.in_readme(f.read())
    assert in_readme is not None, "README.md lost the budget table's markers"
    assert in_readme == budget_table.table(table.read_results(budget_table.RESULTS)), \
        "README's budget table is not the results': run experiments/budget_table.py --write"


def test_every_experiment_config_gives_its_command_wall_time_and_expected_result():
    sys.path.insert(0, os.path.join(REPO_DIR, "experiments"))
    import importlib

    import run

    names = run.config_names()
    assert {"frontier_weights", "frontier_mb", "teachers", "paper"} <= set(names)
    for name in names:
        config = importlib.import_module(f"configs.{name}")
        assert f"experiments/run.py {name}" in config.__doc__, name
        assert "Wall time" in config.__doc__ and "Expected" in config.__doc__, name
        assert os.path.exists(os.path.join(REPO_DIR, "experiments", f"{config.RUNNER}.py"))
    done = subprocess.run([sys.executable, os.path.join(REPO_DIR, "experiments", "run.py"),
                           "frontier"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: no experiment config 'frontier' in experiments/configs/; there are "
        + ", ".join(names) + " (run.py --list)"], done.stderr
