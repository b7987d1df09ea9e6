# The README's two commands: `make test` and `make demo`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CUDA build of torch that lies on the build machines' disk; installed before the
# package so that nothing pulls a different torch.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

# The main job on the embedded tiny Qwen3-VL and synthetic data (built on first run), CPU.
demo: setup
	HF_HUB_OFFLINE=1 $(PY) scripts/sft_ground.py --config configs/demo.yaml

clean:
	rm -rf $(VENV) runs/demo data/demo
