# Set-up and entry points. Every target creates .venv and installs into it first (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench-readers clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Two workers: most tests start TensorFlow processes, and each start-up uses one core; a worker
# that runs out of tests takes some of the other's (worksteal), so the long ones do not queue.
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The demo: generated frame-level data, the paper's two-stream model with every dense layer
# made compact (scaled down to train in about two minutes on a CPU), evaluation, submission.
DEMO ?= out/demo
DEMO_DATA := --output_dir=$(DEMO)/data --num_classes=100 --frame_level --min_frames=30 --max_frames=100
DEMO_MODEL := --frame_features --num_classes=100 --max_frames=100 --model=TwoStreamModel \
	--video_clusters=512 --audio_clusters=256 --fc_size=512 --iterations=30 \
	--compact_layers=embedding,fc,moe,gating --k_factor=1
demo: $(STAMP)
	rm -rf $(DEMO)
	$(PY) generate_data.py $(DEMO_DATA) --split=train --num_videos=3000
	$(PY) generate_data.py $(DEMO_DATA) --split=validate --num_videos=500
	$(PY) generate_data.py $(DEMO_DATA) --split=test --num_videos=500 --no_labels
	$(PY) train.py $(DEMO_MODEL) --train_dir=$(DEMO)/model --train_data_pattern='$(DEMO)/data/train*' \
		--batch_size=80 --num_epochs=100 --max_steps=1200 --log_steps=100 --checkpoint_steps=400
	$(PY) eval.py --train_dir=$(DEMO)/model --eval_data_pattern='$(DEMO)/data/validate*' --run_once
	$(PY) inference.py --train_dir=$(DEMO)/model --input_data_pattern='$(DEMO)/data/test*' \
		--output_file=$(DEMO)/submission.csv
	@echo
	@echo "data:        $(DEMO)/data (train, validate, test without labels)"
	@echo "model:       $(DEMO)/model (checkpoints, model_flags.json, eval_results.jsonl, TensorBoard)"
	@echo "submission:  $(DEMO)/submission.csv"
	@echo "CPU kernels: TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-1 (the tools' default on x86)}: the demo's GAP depends on it (README)"
	@head -1 $(DEMO)/model/model_summary.txt

bench-readers: $(STAMP)
	$(PY) benchmarks/bench_readers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
