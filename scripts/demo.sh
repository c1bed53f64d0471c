#!/usr/bin/env bash
# make demo: MixSD against SFT on a real chat model, SmolLM2-135M-Instruct, on a CPU: the quick
# cut of `make experiment` (scripts/experiment.sh, configs/experiment/), with its protocol,
# evaluation and report format, on one seed, the facts with everyday-word answers
# (configs/demo/facts.jsonl), SFT and MixSD λ 0.3, 4 epochs (an export each) -> reports/demo/
# (words/seed<SEED>/report.md: the run's curves with CIs over items; words/compare/compare.md).
# The runs' weights are kept (PRUNE=0; ~6 GB), so `make demo-opsd` reuses them.
# Overrides: SEED, RUNS (e.g. "sft mixsd-0.3 opsd"), EPOCHS, WORK, REPORTS, PRUNE, and those of
# scripts/experiment.sh.
set -euo pipefail

export SEEDS=${SEED:-0}
export WORK=${WORK:-build/demo}
export REPORTS=${REPORTS:-reports/demo}
export FACTS=words=configs/demo/facts.jsonl
export RUNS=${RUNS:-sft mixsd-0.3}
export EPOCHS=${EPOCHS:-4}
export LR_CHECK=
export PRUNE=${PRUNE:-0}
exec bash "$(dirname "$0")/experiment.sh"
