# The README's commands: `make test`, `make demo`, `make demo-grpo`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The CUDA build of torch that lies on the build machines' disk; installed before the
# package so that nothing pulls a different torch.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO := runs/demo
# The demo needs no network: the tiny model and the synthetic data are built locally.
OFFLINE := HF_HUB_OFFLINE=1

.PHONY: setup test demo demo-grpo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

# The main job on the embedded tiny Qwen3-VL and synthetic data (built on first run), CPU;
# then the first-real-run steps on its test set: predict, evaluate, pictures, curves, summary.
# Each run starts afresh (the model and the data are kept).
demo: setup
	rm -rf $(DEMO)
	$(OFFLINE) $(BIN)/trl-ground-sft --config configs/demo.yaml
	$(OFFLINE) $(BIN)/trl-ground-predict --model $(DEMO)/final --test-json data/demo/test.json --img-root data/demo \
		--add-negatives --max-new-tokens 128 --out $(DEMO)/outputs.json --viz $(DEMO)/pictures
	$(BIN)/trl-ground-eval --pred $(DEMO)/outputs.json --gt data/demo/test.json --out $(DEMO)/metrics.json > $(DEMO)/metrics.md
	$(BIN)/trl-ground-plot $(DEMO)
	$(PY) -m trl_ground.cli.demo_summary $(DEMO)

# GRPO (LoRA) on the SFT demo's model; runs the SFT demo first if its model is missing.
demo-grpo: setup
	test -f $(DEMO)/final/config.json || $(MAKE) demo
	rm -rf runs/grpo_demo
	$(OFFLINE) $(BIN)/trl-ground-grpo --config configs/grpo_demo.yaml
	$(PY) -m trl_ground.cli.demo_summary runs/grpo_demo --grpo

clean:
	rm -rf $(VENV) runs/demo runs/grpo_demo runs/tiny-qwen3vl data/demo
