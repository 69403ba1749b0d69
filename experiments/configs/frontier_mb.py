"""The frontier in megabytes: validation GAP@20 of exported bundles against their size.

By family, precision (float32, float16, uint8), distillation, weight averaging and ensembles.

    .venv/bin/python experiments/run.py frontier_mb              # the one-sitting selection
    .venv/bin/python experiments/run.py frontier_mb --complete   # every point
    (the same as experiments/frontier.py --megabytes [--complete])

Wall time on 2 cores: 1h21m for the one-sitting selection from nothing (ONE_SITTING), about 5
hours complete. Expected (experiments/results/frontier_mb.jsonl, README's budget table): the
distilled dense bottleneck best at 0.25 MB (0.678), circulant gating distilled at 1 MB (0.727),
ensembles at 4 MB (0.736), 16 MB (0.739) and 64 MB (0.752); uint8 within 0.0002 of float32.
"""

from runs import KNN_TRAINING

from configs.frontier_weights import (  # noqa: F401
    CIRCULANT_TRAINING,
    GATING,
    LOW_RANK,
    MOE_1,
    MOE_TRAINING,
    Family,
)

RUNNER, ARGS = "frontier", ["--megabytes"]

# Budgets in MB (2^20 bytes, as export_model.py reports) of the exported .tgz. Each point is
# sized so that its uint8 bundle fits (weights at one byte, the small tensors at four, and the
# SavedModel's own bytes), trained once with --keep_best_checkpoint, and that checkpoint
# exported at each precision: the float32 and float16 bundles of a point land in larger budgets.
MB_BUDGETS = {"0.25MB": 0.25, "1MB": 1.0, "4MB": 4.0, "16MB": 16.0, "64MB": 64.0}
PRECISIONS = ("float32", "float16", "uint8")
SIZED_AT = "uint8"
SAVED_MODEL_MB = 0.06  # a BottleneckModel export's saved_model.pb: 59 KB (the .tgz compresses)
MAX_MIXTURES = 2  # MoE points of at most 2 mixtures (a 6-mixture MoE would fit 64 MB; time)
MOE_2 = {"video_level_classifier_model": "MoeModel", "moe_num_mixtures": 2}
# The teacher of the distilled students: KnnMoeModel (the best video-level model) cross-fitted
# on TEACHER_FOLDS folds, each video's soft targets from the teacher that never saw it.
TEACHER_FOLDS = 2
TEACHER_FLAGS = ["--model=KnnMoeModel", *KNN_TRAINING]
TEACHERS = "<teachers>"  # in a student's flags: the teachers' train_dirs
DISTILLATION = [f"--teacher={TEACHERS}", f"--teacher_folds={TEACHER_FOLDS}", "--teacher_cache"]
# At 0.25 MB the tensors of one value a class (biases, batch norm, the circulant gate's
# vectors) are quantized too: float32, they would take half of the budget. Elsewhere the
# exports keep quantization.MIN_ELEMENTS, the 2018 winners' threshold.
MIN_ELEMENTS = {"0.25MB": 3862}
SMALL = ("0.25MB", "1MB", "4MB")
DISTILLED = SMALL  # where students are distilled (time: the teacher's first epoch)
# Weight averaging: an exponential moving average of the weights with a half-life of 173 steps
# (one epoch of the 43,552 videos at batch 256), the averaged weights validated and exported.
WEIGHT_AVERAGING = ["--ema_decay=0.996"]
AVERAGED = {"dense": ("1MB", "4MB"), "low_rank": ("1MB", "4MB"),
            "circulant_gating": ("1MB", "4MB"), "knn_moe": ("64MB",)}
# A variant family (name + suffix) against its base: (the base's column, the variant's).
VARIANTS = {"+distilled": ("labels only", "distilled"), "+averaged": ("last weights", "averaged")}

MB_FAMILIES = {
    "dense": Family("features -> dense bottleneck -> logistic",
                    {b: ({}, "bottleneck_size") for b in SMALL}),
    "low_rank": Family("features -> logistic classifier of rank r",
                       {b: (LOW_RANK, "low_rank") for b in SMALL}),
    "circulant_gating": Family(
        "low rank r with diagonal-circulant Context Gating (k=2) of the probabilities",
        {b: ({**LOW_RANK, **GATING}, "low_rank") for b in SMALL}, CIRCULANT_TRAINING),
    "moe": Family("the starter's MoE (dense gates and experts), mixtures sized (at most 2)",
                  {b: ({**LOW_RANK, **MOE_1}, "moe_num_mixtures") for b in ("16MB", "64MB")},
                  MOE_TRAINING),
    "moe_circulant_gating": Family(
        "the MoE with diagonal-circulant Context Gating (k=2)",
        {b: ({**LOW_RANK, **MOE_1, **GATING}, "moe_num_mixtures") for b in ("16MB", "64MB")},
        [*CIRCULANT_TRAINING, *MOE_TRAINING]),
    "moe_low_rank_gates": Family(
        "the MoE with gates of rank 4 and Context Gating of rank 2 (the 4.5M weights winner)",
        {b: ({**LOW_RANK, **MOE_1, "output_gating": True,
              "compact_layers": "moe_gates=low_rank:4,gating=low_rank:2"}, "moe_num_mixtures")
         for b in ("16MB", "64MB")}, MOE_TRAINING),
    "moe_low_rank_gates_circulant_gating": Family(
        "the MoE with gates of rank 4 and diagonal-circulant Context Gating (k=2): "
        "moe_low_rank_gates with its gate circulant instead of rank 2, as many weights",
        {"16MB": ({**LOW_RANK, **MOE_1, **GATING,
                   "compact_layers": "moe_gates=low_rank:4,gating"}, "moe_num_mixtures")},
        [*CIRCULANT_TRAINING, *MOE_TRAINING]),
    "knn_moe": Family("KnnMoeModel (2 mixtures): its memory of the 43,552 training videos' "
                      "features is most of the bundle (about 54 MB at uint8)",
                      {"64MB": ({"model": "KnnMoeModel"}, None)}, KNN_TRAINING),
}
for _name in ("dense", "low_rank", "circulant_gating"):
    _family = MB_FAMILIES[_name]
    MB_FAMILIES[f"{_name}+distilled"] = Family(
        _family.about + f", distilled from the {TEACHER_FOLDS}-fold KnnMoeModel teacher",
        {b: v for b, v in _family.budgets.items() if b in DISTILLED},
        [*_family.train_flags, *DISTILLATION])
for _name, _budgets in AVERAGED.items():
    _family = MB_FAMILIES[_name]
    MB_FAMILIES[f"{_name}+averaged"] = Family(
        _family.about + ", weights averaged (" + " ".join(WEIGHT_AVERAGING) + ")",
        {b: _family.budgets[b] for b in _budgets}, [*_family.train_flags, *WEIGHT_AVERAGING])
# Averaged and distilled together, where averaging alone is the better variant (4 MB): against
# each family averaged alone (its "+distilled" variant table) and against each other.
for _name in ("dense", "low_rank", "circulant_gating"):
    _family = MB_FAMILIES[f"{_name}+averaged"]
    MB_FAMILIES[f"{_name}+averaged+distilled"] = Family(
        _family.about + f", distilled from the {TEACHER_FOLDS}-fold KnnMoeModel teacher",
        {"4MB": _family.budgets["4MB"]}, [*_family.train_flags, *DISTILLATION])
# Ensembles: several points' runs (family, budget, seed[, weight]) in one bundle (ensemble.py
# --bundle_dir: the weighted mean of their probabilities inside the graph, uint8), each of which
# must fit the budget it is listed under. The weight of 4 for KnnMoeModel is the better of 2 and
# 4, both tried on the validation videos.
ENSEMBLE = "ensemble"
MB_ENSEMBLES = {
    "4MB": ((("circulant_gating+distilled", "1MB", 0), ("circulant_gating+distilled", "1MB", 1),
             ("low_rank+distilled", "1MB", 0), ("low_rank+distilled", "1MB", 1)),
            (("circulant_gating+averaged", "1MB", 0), ("circulant_gating+averaged", "1MB", 1),
             ("low_rank+averaged", "1MB", 0), ("low_rank+averaged", "1MB", 1)),
            # the best 1 MB family, two runs distilled and two averaged
            (("circulant_gating+distilled", "1MB", 0), ("circulant_gating+distilled", "1MB", 1),
             ("circulant_gating+averaged", "1MB", 0), ("circulant_gating+averaged", "1MB", 1))),
    "16MB": ((("moe_low_rank_gates", "16MB", 0), ("moe_low_rank_gates", "16MB", 1)),),
    "64MB": ((("knn_moe", "64MB", 0), ("moe_low_rank_gates", "16MB", 0),
              ("moe_low_rank_gates", "16MB", 1)),
             (("knn_moe", "64MB", 0, 4), ("moe_low_rank_gates", "16MB", 0),
              ("moe_low_rank_gates", "16MB", 1))),
}


# The frontier in one sitting (--megabytes without --complete): 1h21m from nothing on 2 cores (65
# minutes of it training) instead of about 5 hours, each budget's best bundle and its like-for-like
# rivals kept (EXPERIMENTS.md, "The frontier in one sitting"). family -> {budget: epochs (None:
# TRAINING's 12)}. Cut from the complete frontier: the labels-only students but the dense ones at
# 0.25 and 1 MB (the distillation gains) and all of them at 4 MB, where the averaged students are
# the better variant; the distilled students at 4 MB, and the averaged and distilled ones (no
# better than averaged); the averaged ones at 1 MB but circulant gating (members of the 4 MB
# ensemble); the MoE with dense gates and the 1-mixture MoEs (below the 2-mixture ones that fit 16
# MB); KnnMoeModel averaged; the ensembles that were not their budget's best. Epochs: a point stops
# one epoch after the last best epoch of its complete runs (2 seeds); the learning rate decays by
# examples seen, not by --num_epochs, so a shorter run is the longer one's beginning.
ONE_SITTING = {
    "dense": {"0.25MB": None, "1MB": 4},
    "dense+distilled": {"0.25MB": None, "1MB": 6},
    "low_rank+distilled": {"0.25MB": None, "1MB": None},
    "circulant_gating+distilled": {"0.25MB": None, "1MB": None},
    "dense+averaged": {"4MB": 3},
    "low_rank+averaged": {"4MB": 6},
    "circulant_gating+averaged": {"1MB": None, "4MB": 6},
    "moe_circulant_gating": {"64MB": None},  # 2 mixtures, 14.2 MB at uint8: a 16 MB bundle
    "moe_low_rank_gates": {"16MB": None},
    "knn_moe": {"64MB": None},
}
ONE_SITTING_ENSEMBLES = {"4MB": MB_ENSEMBLES["4MB"][2:], "16MB": MB_ENSEMBLES["16MB"],
                         "64MB": MB_ENSEMBLES["64MB"][1:]}
