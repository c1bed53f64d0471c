#!/usr/bin/env bash
# make demo-toy: MixSD's whole claim, end to end, on the toy world, on a CPU (~30 min on 2 cores).
#
#   toy base model -> new facts (human-style references) -> generate MixSD targets (λ sweep, with
#   rejection sampling) -> SFT targets from the references -> train SFT and MixSD (per-epoch
#   exports) -> evaluate memorization vs retention -> reports/demo-toy/report.md
#
# Every stage is a `mixsd` command with its config in configs/demo-toy/; a stage whose output is
# complete is skipped, so an interrupted demo continues where it stopped. Deterministic by SEED.
# Overrides: MIXSD (the command), DEMO_DIR (work dir), REPORT (report dir), SEED, LAMBDAS (the
# λ values trained; all four are generated), TOY_CONFIG (the toy model's config), DEMO_CONFIGS.
set -euo pipefail
# The toy model is small enough that one intra-op thread per process is fastest; more threads
# only contend (10x slower on a busy 2-core machine). Override to experiment.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

MIXSD=${MIXSD:-mixsd}
DIR=${DEMO_DIR:-build/demo-toy}
REPORT=${REPORT:-reports/demo-toy}
SEED=${SEED:-0}
LAMBDAS=${LAMBDAS:-"0.3 0.5"}
CONF=${DEMO_CONFIGS:-configs/demo-toy}
TOY_CONFIG=${TOY_CONFIG:-configs/toy.yaml}
TOY=$DIR/toy
FACTS=$TOY/world/inject.jsonl
START=$SECONDS

stage() { printf '\n==> [%s, %dm%02ds] %s\n' "$(date +%H:%M:%S)" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

stage "1/5 toy base model ($TOY): pretraining on the toy world's corpus"
if [ ! -f "$TOY/config.json" ]; then
  "$MIXSD" model toy --config "$TOY_CONFIG" --out "$TOY" --seed "$SEED"
fi

stage "2/5 MixSD targets: λ sweep with rejection sampling ($DIR/targets/mixsd)"
"$MIXSD" generate --config "$CONF/generate.yaml" --model "$TOY" --input "$FACTS" \
  --out "$DIR/targets/mixsd" --seed "$SEED"

stage "3/5 SFT targets from the human-style references ($DIR/targets/sft)"
"$MIXSD" targets from-references "$FACTS" --model "$TOY" --out "$DIR/targets/sft"

stage "4/5 fine-tuning: SFT, then MixSD at λ = $LAMBDAS"
runs=("$DIR/runs/sft")
[ -d "$DIR/runs/sft/model" ] || "$MIXSD" train --config "$CONF/train.yaml" --model "$TOY" \
  --targets "$DIR/targets/sft" --out "$DIR/runs/sft" --seed "$SEED"
for lam in $LAMBDAS; do
  run=$DIR/runs/mixsd-$lam
  runs+=("$run")
  [ -d "$run/model" ] || "$MIXSD" train --config "$CONF/train.yaml" --model "$TOY" \
    --targets "$DIR/targets/mixsd:lam=$lam" --out "$run" --seed "$SEED"
done

stage "5/5 evaluate: memorization vs retention, target NLL, drift ($REPORT)"
models=()
for run in "${runs[@]}"; do models+=(--model "$run"); done
"$MIXSD" evaluate --config "$CONF/evaluate.yaml" --base "$TOY" --input "$FACTS" "${models[@]}" \
  --targets "$DIR/targets/sft" --targets "$DIR/targets/mixsd" \
  --suite "jsonl=$TOY/world/suites/known.jsonl" --suite "jsonl=$TOY/world/suites/addition.jsonl" \
  --suite "jsonl=$TOY/world/suites/reversal.jsonl" --out "$REPORT"

stage "done: $REPORT/report.md"
