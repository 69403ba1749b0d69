"""The paper's experiments (Araujo et al. 2018), re-run with this project's own train.py.

    .venv/bin/python experiments/run.py paper --experiment=NAME [--scale=small|paper]
    (the same as experiments/paper.py; NAME: layer_by_layer, embeddings, factors, video_level,
    compact_moe)

Wall time on 2 cores at --scale=small: about 30 minutes an experiment (frame level, after the
frames are expanded once), video_level and compact_moe 40 to 60 minutes. Expected
(EXPERIMENTS.md, "The paper's experiments"): a circulant FC as good as the dense one with DBoF,
NetVLAD 0.013 below its dense FC (the paper: 0.864 against 0.851), a compact MoE well below the
dense one (the paper: -0.041), the compact gates alone close to it.
"""

RUNNER, ARGS = "paper", []

TRAIN_VIDEOS = 23091
VIDEO_DATA = {"train": "yt8m-2018-video/train/*.tfrecord",
              "validate": "yt8m-2018-video/validate/*.tfrecord"}

# The frame-level experiments' sizes and training, by scale (see the module's docstring).
FRAME_SCALES = {
    "paper": {"frames": (100, 300), "batch_size": 320, "num_epochs": 15,
              "clusters": {"dbof": (8192, 4096), "netvlad": (64, 32), "netfv": (64, 32)},
              "flags": ["--base_learning_rate=0.0002", "--learning_rate_decay=0.8",
                        "--learning_rate_decay_examples=4000000", "--fc_size=512",
                        "--moe_num_mixtures=4"]},
    "small": {"frames": (30, 60), "batch_size": 256, "num_epochs": 5,
              "clusters": {"dbof": (256, 128), "netvlad": (16, 8), "netfv": (16, 8)},
              "flags": ["--base_learning_rate=0.002", "--learning_rate_decay=0.8",
                        "--learning_rate_decay_examples=4000000", "--fc_size=512",
                        "--moe_num_mixtures=2", "--batch_norm_momentum=0.9"]},
}
VIDEO_ONLY = ["--use_audio=false", "--feature_names=rgb", "--feature_sizes=1024"]
# The circulant layers these experiments first ran with (diagonal after each circulant, one
# zero-padded product); the variants marked "input diagonal, lr x3" override them (the last
# flag wins) with the best settings found: the diagonal on each factor's input, expanding
# layers by blocks, the circulant vectors at 3x the learning rate.
FIRST_CIRCULANT = ["--circulant_diagonal_side=output", "--circulant_expansion=pad"]
INPUT_DIAGONAL = ["--circulant_diagonal_side=input", "--circulant_expansion=blocks",
                  "--circulant_learning_rate_scale=3"]
EXPERIMENTS = {
    "layer_by_layer": {
        "frame_level": True,
        "variants": {
            "dense": [*VIDEO_ONLY],
            "compact DBoF": [*VIDEO_ONLY, "--compact_layers=embedding"],
            "compact FC": [*VIDEO_ONLY, "--compact_layers=fc"],
            "compact MoE": [*VIDEO_ONLY, "--compact_layers=moe,gating"],
            # The experts stay dense: the gates are where circulant layers pay.
            "compact MoE gates and Context Gating": [*VIDEO_ONLY,
                                                     "--compact_layers=moe_gates,gating"],
            # A dense model of about the size of the one above: does the compact one beat it?
            "dense, 1 mixture, no Context Gating": [*VIDEO_ONLY, "--moe_num_mixtures=1",
                                                    "--gating=false"],
            "compact MoE, input diagonal, lr x3": [*VIDEO_ONLY, "--compact_layers=moe,gating",
                                                   *INPUT_DIAGONAL],
            "compact MoE gates and Context Gating, input diagonal, lr x3": [
                *VIDEO_ONLY, "--compact_layers=moe_gates,gating", *INPUT_DIAGONAL],
            # A dense model of the size of the one above (4,413,130 against 4,405,476 weights).
            "dense, 1 mixture, no Context Gating, FC 350": [
                *VIDEO_ONLY, "--moe_num_mixtures=1", "--gating=false", "--fc_size=350"],
        },
    },
    "embeddings": {
        "frame_level": True,
        "variants": {
            "DBoF dense": ["--embedding=dbof"],
            "DBoF compact FC": ["--embedding=dbof", "--compact_layers=fc"],
            "NetVLAD dense": ["--embedding=netvlad"],
            "NetVLAD compact FC": ["--embedding=netvlad", "--compact_layers=fc"],
            # The paper's NetFV learns its centres apart from the assignment weights: its weight
            # counts are those of --fv_couple_weights=false, to the unit.
            "NetFV dense": ["--embedding=netfv", "--fv_couple_weights=false"],
            "NetFV compact FC": ["--embedding=netfv", "--fv_couple_weights=false",
                                 "--compact_layers=fc"],
            "NetVLAD compact FC, input diagonal, lr x3": [
                "--embedding=netvlad", "--compact_layers=fc", *INPUT_DIAGONAL],
            "NetFV compact FC, input diagonal, lr x3": [
                "--embedding=netfv", "--fv_couple_weights=false", "--compact_layers=fc",
                *INPUT_DIAGONAL],
            # Still rising after 5 epochs where the dense model peaked at 3: trained longer.
            "NetVLAD compact FC, input diagonal, lr x3, 10 epochs": [
                "--embedding=netvlad", "--compact_layers=fc", *INPUT_DIAGONAL,
                "--num_epochs=10"],
        },
    },
    "factors": {
        "frame_level": True,
        "variants": {  # dense and k=1 are the same runs as embeddings' DBoF ones
            "dense": ["--embedding=dbof"],
            "compact FC, k=1": ["--embedding=dbof", "--compact_layers=fc"],
            "compact FC, k=3": ["--embedding=dbof", "--compact_layers=fc", "--k_factor=3"],
            "compact FC, k=6": ["--embedding=dbof", "--compact_layers=fc", "--k_factor=6"],
        },
    },
    "video_level": {
        **VIDEO_DATA,
        "flags": ["--batch_size=256", "--base_learning_rate=0.01", "--num_epochs=10",
                  "--validation_steps=91", "--log_steps=30", "--seed=0"],
        "variants": {
            "LogisticModel dense": ["--model=LogisticModel"],
            "LogisticModel compact": ["--model=LogisticModel", "--compact_layers=moe"],
            "MoeModel dense": ["--model=MoeModel", "--moe_num_mixtures=2"],
            "MoeModel compact": ["--model=MoeModel", "--moe_num_mixtures=2",
                                 "--compact_layers=moe,gating"],
        },
        "batch_size": 256,
    },
    "compact_moe": {  # which part of the MoE to make compact
        **VIDEO_DATA,
        "flags": ["--batch_size=256", "--base_learning_rate=0.01", "--num_epochs=10",
                  "--validation_steps=91", "--log_steps=30", "--seed=0", "--model=MoeModel"],
        "variants": {
            "2 mixtures, compact gates": ["--moe_num_mixtures=2", "--compact_layers=moe_gates"],
            "1 mixture, compact gates": ["--moe_num_mixtures=1", "--compact_layers=moe_gates"],
            "1 mixture, dense": ["--moe_num_mixtures=1"],
            "1 mixture, compact gates, k=3": ["--moe_num_mixtures=1", "--compact_layers=moe_gates",
                                              "--k_factor=3"],
        },
        "batch_size": 256,
    },
}
