# mixsd: the pipeline in make targets. Every target that needs the environment creates it.
#   make demo     the whole pipeline on the embedded toy world (CPU, ~30 min)
#   make test     the test suite (what CI runs)
# Overrides: PY, VENV, TORCH_SPEC, EXTRAS, MODEL, INPUT, ENGINE, LAMBDAS, BATCH, NGPUS, ZERO, ...

PY         ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= deepspeed,dev
# The CUDA-only vLLM wheel, without its dependencies, so its processor interfaces import on CPU
# for the tests. Set VLLM_INTERFACES=0 (and add `vllm` to EXTRAS) on a GPU machine.
VLLM_INTERFACES ?= 1
BIN   := $(VENV)/bin
STAMP := $(VENV)/.mixsd-installed
PIN   := $(VENV)/torch-pin.txt
MIXSD := $(BIN)/mixsd

.PHONY: setup test lint data generate train evaluate demo bench clean

$(STAMP): pyproject.toml requirements/constraints.txt requirements/vllm-interfaces.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	# Pin whatever torch got installed, for every later step: an unpinned torch pulls CUDA wheels.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(PIN)
	$(BIN)/pip install -q -c $(PIN) -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	if [ "$(VLLM_INTERFACES)" = 1 ]; then \
	  $(BIN)/pip install -q --no-deps -c requirements/constraints.txt vllm && \
	  $(BIN)/pip install -q -c $(PIN) -c requirements/constraints.txt -r requirements/vllm-interfaces.txt; fi
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check mixsd tests benchmarks

clean:
	rm -rf data runs reports build .pytest_cache
