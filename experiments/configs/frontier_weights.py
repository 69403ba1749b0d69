"""The size-accuracy frontier in weights: validation GAP@20 against weight count, by family.

    .venv/bin/python experiments/run.py frontier_weights [--families=...] [--budgets=...]
    (the same as experiments/frontier.py)

Every point is one train.py run of BottleneckModel (at full size, the starter's MoeModel) whose
size setting is the largest that keeps the model within the budget, with its twins (the tested
sites made of each other layer kind at the same weight count). Wall time: about 11 hours for
every family, budget and twin on 2 cores (EXPERIMENTS.md, "All families by budget"); a family
at two budgets with its twins, 10 to 15 minutes. Expected (experiments/results/frontier.jsonl):
the dense bottleneck best at 0.1M (0.624) and 8M, low rank with circulant Context Gating at 0.5M
(0.712) and 2M (0.726), the MoE of low-rank gates at 4.5M (0.733), the starter's MoeModel at
full size (0.737); circulant wins at the gating site at every budget, Monarch and BTT nowhere.
"""


RUNNER, ARGS = "frontier", []

BUDGETS = {"0.1M": 100_000, "0.5M": 500_000, "2M": 2_000_000,
           "4.5M": 4_460_000,  # the starter's LogisticModel: 4,452,886 weights
           "8M": 8_000_000}
CIRCULANT = {"circulant_diagonal_side": "input", "circulant_expansion": "blocks"}
LOW_RANK = {"bottleneck_size": 0}
GATING = {"output_gating": True, "compact_layers": "gating", "k_factor": 2, **CIRCULANT}
MOE_1 = {"video_level_classifier_model": "MoeModel", "moe_num_mixtures": 1}
# Sizes a twin's site may take: the circulant layers at most 4 factors (each factor is two FFTs
# more per step; the paper went to 4), low rank and Monarch blocks up to the layer's sides.
SIZE_LIMITS = {"circulant": 4, "low_rank": 4096, "monarch": 4096, "btt": 4096}
WITHIN = 0.01  # a twin's weights within 1% of its point's
# Options a twin of a kind takes beside its size. BTT of b blocks and rank r keeps about
# r*b*(inputs + outputs) weights: at the automatic b (about the square root of the smaller
# side) even rank 1 is past every gating point's budget; 4 blocks leave the rank to size it.
TWIN_SETTINGS = {"btt": {"btt_blocks": 4}}


class Family:
    """Points of one kind: per budget, fixed settings and the setting sized to the budget.

    tested: the sites (model_utils.SITES) whose structure the family is about, which its twins
    make of each other kind; none for the dense family."""

    def __init__(self, about, budgets, train_flags=(), tested=()):
        self.about = about
        self.budgets = budgets  # budget -> (fixed BottleneckModel settings, sized key or None)
        self.train_flags = list(train_flags)
        self.tested = tuple(tested)


# The circulant vectors learn at 3x the rate of the rest (circulant_options.py, trials 6 and
# 13: +0.0055 GAP for a circulant bottleneck, +0.0019 for circulant Context Gating).
CIRCULANT_TRAINING = ["--circulant_learning_rate_scale=3"]
# The MoE models: experiment 5's learning rate, 6 epochs (the full MoeModel is the slowest point).
MOE_TRAINING = ["--base_learning_rate=0.01", "--num_epochs=6"]


FAMILIES = {
    "dense": Family("features -> dense bottleneck (batch norm, ReLU) -> logistic; at 4.5M "
                    "the starter's LogisticModel (no bottleneck)", {
                        **{b: ({}, "bottleneck_size") for b in ("0.1M", "0.5M", "2M", "8M")},
                        "4.5M": (LOW_RANK, None)}),
    "low_rank": Family("features -> logistic classifier whose matrix is U V of rank r",
                       {b: (LOW_RANK, "low_rank") for b in ("0.1M", "0.5M", "2M", "4.5M")},
                       tested=["classifier"]),
    "circulant_bottleneck": Family(
        "features -> diagonal-circulant bottleneck (batch norm, ReLU) -> logistic",
        {b: ({"compact_layers": "fc", **CIRCULANT}, "bottleneck_size")
         for b in ("0.1M", "0.5M", "2M", "8M")}, CIRCULANT_TRAINING, tested=["fc"]),
    "circulant_classifier": Family(
        "features -> dense bottleneck -> diagonal-circulant logistic classifier (blocks)",
        {b: ({"compact_layers": "moe", **CIRCULANT}, "bottleneck_size")
         for b in ("0.1M", "0.5M")}, CIRCULANT_TRAINING, tested=["moe"]),
    "circulant_gating": Family(
        "the best dense form of the budget (low rank up to 4.5M, the dense bottleneck at 8M) "
        "with Context Gating of the output probabilities, diagonal-circulant (k=2); a dense "
        "one is 3,862 x 3,862 = 14.9M weights", {
            **{b: ({**LOW_RANK, **GATING}, "low_rank") for b in ("0.1M", "0.5M", "2M", "4.5M")},
            "8M": (GATING, "bottleneck_size")}, CIRCULANT_TRAINING, tested=["gating"]),
    "low_rank_at_moe_training": Family(
        "the low-rank family trained as the MoE points (Adam 0.01, 6 epochs): the circulant "
        "MoE's reference at its own training", {"4.5M": (LOW_RANK, "low_rank")}, MOE_TRAINING),
    "low_rank_moe": Family(
        "features -> MoE of 2 mixtures whose gate and expert matrices are U V of rank r (trained "
        "as the full MoeModel)", {b: ({**LOW_RANK, "video_level_classifier_model": "MoeModel",
                                       "moe_num_mixtures": 2}, "low_rank")
                                  for b in ("4.5M", "8M")}, MOE_TRAINING,
        tested=["moe_gates", "moe_experts"]),
    "circulant_moe": Family(
        "features -> MoE of 1 mixture, diagonal-circulant gates and Context Gating, dense "
        "experts (trained as the full MoeModel)",
        {"4.5M": ({**LOW_RANK, **GATING, **MOE_1, "compact_layers": "moe_gates,gating"}, None)},
        [*CIRCULANT_TRAINING, *MOE_TRAINING], tested=["moe_gates", "gating"]),
    "mixed_moe": Family(
        "features -> MoE of 1 mixture, diagonal-circulant gates and Context Gating, low-rank "
        "experts of rank r (trained as the full MoeModel)",
        {b: ({**LOW_RANK, **GATING, **MOE_1,
              "compact_layers": "moe_gates,gating,moe_experts=low_rank"}, "low_rank")
         for b in ("2M", "4.5M", "8M")},
        [*CIRCULANT_TRAINING, *MOE_TRAINING], tested=["moe_gates", "gating"]),
    "monarch_bottleneck": Family(
        "features -> Monarch bottleneck (about sqrt(side) blocks; batch norm, ReLU) -> logistic",
        {b: ({"compact_layers": "fc=monarch"}, "bottleneck_size")
         for b in ("0.1M", "0.5M", "2M", "8M")}, tested=["fc"]),
}
# Full size: the starter's MoeModel (2 mixtures, 22.3M weights).
FULL = ("dense", "MoeModel, 2 mixtures", ["--model=MoeModel", "--moe_num_mixtures=2",
                                          *MOE_TRAINING])
