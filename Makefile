# Two entry points for a fresh machine (see README):
#   make demo   install what is missing, run the depth sweep and fit it
#   make test   install what is missing, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# Where pip looks for torch. Left empty, scripts/install-torch.sh picks: a wheel
# already on disk, else PyTorch's CPU index when no NVIDIA GPU is found, else PyPI (CUDA).
TORCH_INDEX ?=

.PHONY: venv demo test test-slow test-all bench clean slurm-up

$(VENV)/.installed: pyproject.toml scripts/install-torch.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	PIP="$(PIP)" TORCH_VERSION=$(TORCH_VERSION) TORCH_INDEX="$(TORCH_INDEX)" bash scripts/install-torch.sh
	$(PIP) install -q -e ".[dev,track]"
	touch $@

venv: $(VENV)/.installed

# The main job: the depth sweep at the scale the hardware allows (cpu without a GPU,
# paper with one) and its fit. Written under runs/demo/ so that the study shipped in
# results/ and analysis/ is not mixed with it; DEMO_DIR=. to use those folders.
DEMO_DIR ?= runs/demo
# On a CUDA machine that is the paper scale: it needs the hf extra (datasets; tokenizers is a core dependency;
# about 50 MB) and a token store of FineWeb-Edu, whose size is printed before anything is
# fetched (`ebt-sweep prepare --estimate`); launch then prepares it once. CPU: unchanged.
demo: venv
	@if $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
	  echo "CUDA GPU found: the demo runs the paper scale; installing the hf extra (datasets)"; \
	  $(PIP) install -q -e ".[dev,hf]" && $(VENV)/bin/ebt-sweep prepare sweeps/depth.yaml --scale paper --estimate; \
	fi
	$(VENV)/bin/ebt-sweep launch sweeps/depth.yaml --results $(DEMO_DIR)/results
	$(VENV)/bin/ebt-sweep fit $(DEMO_DIR)/results --out $(DEMO_DIR)/analysis

test: venv
	$(PY) -m pytest -q -m "not slow and not slurm and not gpu"

# The slow end-to-end tests and the Slurm tests (CI runs these after `make test`).
test-slow: venv
	$(PY) -m pytest -q -m "(slow or slurm) and not gpu" || [ $$? -eq 5 ]  # 5: none collected

test-all: venv
	$(PY) -m pytest -q -m "not gpu"

bench: venv
	$(PY) benchmarks/bench.py

slurm-up:
	bash scripts/slurm-up.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
