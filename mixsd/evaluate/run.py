"""`evaluate(cfg)`: did the model learn the new facts, and what did it lose?

    checks (inputs, suites, models) -> greedy closed-book answers of the base and every checkpoint
    -> memorization and retention -> target NLL and Fisher under the base -> drift -> report

Every input is checked before any model runs. Generation goes through the generate engine.
"""

from __future__ import annotations

import json
from pathlib import Path

from mixsd.config import to_dict
from mixsd.data import templates
from mixsd.data.models import load_model, load_tokenizer
from mixsd.errors import MixsdError
from mixsd.evaluate.checkpoints import (
    check_tokenizers,
    cpu_params,
    greedy_answers,
    replaced_share,
    resolve_models,
)
from mixsd.evaluate.config import EvaluateConfig
from mixsd.evaluate.report import FISHER_NOTE, write_report
from mixsd.evaluate.scoring import accuracy, score
from mixsd.evaluate.suites import Suite, load_input, load_suite, memorization_splits
from mixsd.evaluate.tradeoff import (
    accuracy_cis,
    flags_text,
    retention,
    run_kind,
    summarize_runs,
    with_ci,
)
from mixsd.io import atomic_file
from mixsd.modeling import resolve_device, resolve_dtype
from mixsd.outputs import check_output
from mixsd.progress import track
from mixsd.tracking import track_report


def evaluate(cfg: EvaluateConfig) -> Path:
    """Run the whole evaluation and write the report dir `cfg.out`; returns it."""
    check_output(cfg.out, "report", [cfg.base, *cfg.models, cfg.input, *cfg.targets])
    groups = _question_groups(cfg)  # cheap checks first: a bad path fails in a second
    incomplete = _incomplete_sets(cfg)
    checkpoints = resolve_models(cfg.models)
    kinds = {Path(p).name: run_kind(p) for p in cfg.models}  # first-peak tolerance per run
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg.base)
    check_tokenizers(tokenizer, [p for _, _, p in checkpoints], cfg.targets)

    prompts = [templates.render_user_turn(tokenizer, r.prompt) for g in groups for r in g.records]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    answer = _Answerer(cfg, groups, prompts, device, dtype)
    base = {"path": cfg.base, **answer("base", cfg.base)}
    rows = []
    shares = {Path(p).name: replaced_share(p) for p in cfg.models}  # labels are dir names
    for run, name, path in track(checkpoints, "checkpoints", "model"):
        label = _label(run, name)
        rows.append(
            {
                "run": run,
                "checkpoint": name,
                "path": str(path),
                "replaced_share": shares[run],
                **answer(label, str(path)),
            }
        )
    for c in rows:
        c["retention"] = retention(c["items"]["suites"], base["items"]["suites"])
    runs = summarize_runs(base, rows, kinds)
    if cfg.kl_prompts and rows:
        _kl_to_base(cfg, tokenizer, groups, rows, device, dtype)
    if base["suites"]:
        lost = _lost_items(groups, answer.predictions)
        for c in rows:
            c["lost"] = lost[_label(c["run"], c["checkpoint"])]
    nll_values, fisher_info = _nll_and_drift(cfg, tokenizer, groups, rows, device, dtype)

    from mixsd.evaluate.nll import summarize

    metrics = {
        "base": base,
        "checkpoints": rows,
        "runs": runs,
        "nll": {k: summarize(v) for k, v in nll_values.items()},
        "fisher": fisher_info,
        "counts": {
            kind: {g.name: len(g.records) for g in groups if g.kind == kind}
            for kind in ("memorization", "suites")
        },
        "config": to_dict(cfg),
        "dtype": dtype,  # the precision every model ran in (the config's "auto" resolved)
        "incomplete_targets": incomplete,  # --allow-incomplete: the sets' missing pieces
    }
    _write_jsonl(out / "predictions.jsonl", answer.predictions)
    write_report(out, metrics, nll_values)
    if cfg.report_to:
        track_report(cfg.report_to, out, to_dict(cfg))
    return out


def _label(run: str, checkpoint: str) -> str:
    """A model's name in `predictions.jsonl`: `run/checkpoint`, or the dir name of an HF dir."""
    return f"{run}/{checkpoint}" if checkpoint else run


class _Answerer:
    """Greedy closed-book answers of one model to every question group, scored per group;
    each answer is also kept as a prediction line (`predictions.jsonl`)."""

    def __init__(self, cfg: EvaluateConfig, groups: list[_Group], prompts, device, dtype):
        self.cfg, self.groups, self.prompts = cfg, groups, prompts
        self.device, self.dtype = device, dtype
        self.predictions: list[dict] = []

    def __call__(self, label: str, path: str) -> dict:
        """`{"memorization": {split: accuracy}, "strict": {split: accuracy under the strict
        check}, "suites": {suite: accuracy}, "items": {kind: {group: flags text}}, "ci": {kind:
        {group: [lo, hi]}}}` of the model."""
        cfg = self.cfg
        texts = greedy_answers(
            path,
            self.prompts,
            cfg.max_new_tokens,
            cfg.batch_size,
            self.device,
            self.dtype,
            cfg.allow_pickle,
        )
        result: dict = {"memorization": {}, "strict": {}, "suites": {}}
        items: dict = {"memorization": {}, "strict": {}, "suites": {}}
        at = 0
        for g in self.groups:
            mine, at = texts[at : at + len(g.records)], at + len(g.records)
            golds = [r.gold for r in g.records]
            flags = score(mine, golds, tuple(cfg.answer_methods), g.multiple_choice)
            result[g.kind][g.name] = accuracy(flags)
            items[g.kind][g.name] = flags_text(flags)
            if g.kind == "memorization":
                # the same answers under the strict check too: `contains` counts "does not
                # actually have a pet lizard" for "lizard"
                strict = score(mine, golds, ("strict",))
                result["strict"][g.name] = accuracy(strict)
                items["strict"][g.name] = flags_text(strict)
            self.predictions.extend(
                {
                    "model": label,
                    "group": g.name,
                    "id": r.id,
                    "gold": r.gold,
                    "output": t,
                    "correct": f,
                }
                for r, t, f in zip(g.records, mine, flags, strict=True)
            )
        return {**result, "items": items, "ci": accuracy_cis(items)}


def _nll_and_drift(
    cfg, tokenizer, groups, rows: list[dict], device, dtype
) -> tuple[dict, dict | None]:
    """Per-token NLL of the target sets under the base (`{label: values}`), and each
    checkpoint's Fisher-weighted and L2 drift from the base (written into `rows`); the Fisher's
    note for the report, or None when it is off."""
    from mixsd.evaluate import fisher
    from mixsd.evaluate.nll import target_set_nll

    # the Fisher only serves the drift of checkpoints
    examples = _fisher_examples(tokenizer, groups, cfg.fisher_examples) if rows else []
    if not cfg.targets and not examples:
        return {}, None
    model = load_model(cfg.base, device, dtype, cfg.allow_pickle)
    per_set = {t: target_set_nll(model, t, cfg.batch_size, cfg.limit) for t in cfg.targets}
    if not examples:
        return merge_labels(per_set), None
    weights = {k: v.cpu() for k, v in fisher.diagonal_fisher(model, examples).items()}
    del model
    theta0 = cpu_params(cfg.base, cfg.allow_pickle)
    for c in track(rows, "drift", "model"):
        c["drift"] = fisher.drift(weights, theta0, cpu_params(c["path"], cfg.allow_pickle))
    return merge_labels(per_set), {"estimator": FISHER_NOTE, "examples": len(examples)}


def merge_labels(per_set: dict[str, dict]) -> dict:
    """One `{label: values}` over target sets; a label two sets share gets `<set dir name>:`."""
    counts: dict[str, int] = {}
    for values in per_set.values():
        for label in values:
            counts[label] = counts.get(label, 0) + 1
    return {
        (f"{Path(t).name}:{label}" if counts[label] > 1 else label): v
        for t, values in per_set.items()
        for label, v in values.items()
    }


class _Group:
    """Questions scored together: a memorization split (`kind="memorization"`) or a suite."""

    def __init__(self, kind: str, suite: Suite):
        self.kind, self.name = kind, suite.name
        self.records, self.multiple_choice = suite.records, suite.multiple_choice


def _question_groups(cfg: EvaluateConfig) -> list[_Group]:
    groups = []
    if cfg.input is not None:
        for name, records in memorization_splits(load_input(cfg.input)).items():
            groups.append(_Group("memorization", Suite(name, records)))
    seen = set()
    for spec in cfg.suites:
        suite = load_suite(spec)
        if suite.name in seen:
            raise MixsdError(f"suite '{spec}': a suite named '{suite.name}' is already given")
        seen.add(suite.name)
        groups.append(_Group("suites", suite))
    if cfg.limit:
        for g in groups:
            g.records = g.records[: cfg.limit]
    return groups


def _incomplete_sets(cfg: EvaluateConfig) -> dict[str, list[str]]:
    """Refuse an incomplete target set (unless `allow_incomplete`); what was tolerated, per set."""
    from mixsd.targets.completeness import require_complete
    from mixsd.targets.reader import read_manifest

    found = {t: require_complete(t, read_manifest(t), cfg.allow_incomplete) for t in cfg.targets}
    return {t: problems for t, problems in found.items() if problems}


def _round_robin(lists: list[list]) -> list:
    """The items of `lists` interleaved: the first of each, then the second of each, ..."""
    return [x[i] for i in range(max(map(len, lists), default=0)) for x in lists if i < len(x)]


def _fisher_examples(tokenizer, groups: list[_Group], n: int) -> list[tuple[list[int], list[int]]]:
    """Up to `n` held-out (prompt ids, reference ids), taken round-robin over the suites."""
    picked = _round_robin([g.records for g in groups if g.kind == "suites"])
    return [
        (
            templates.render_user_turn(tokenizer, r.prompt),
            templates.target_ids(tokenizer, r.reference),
        )
        for r in picked[:n]
    ]


def _lost_items(groups: list[_Group], predictions: list[dict]) -> dict[str, dict[str, int]]:
    """Per model label: its lost suite items (the base right, the model wrong) counted by cause
    (`mixsd.evaluate.taxonomy`); leakage looks for markers of the training facts (the `train`
    split's answers, subjects and reference phrasing) that the base's own answers lack."""
    from mixsd.evaluate.taxonomy import breakdown, injected_markers

    suites = {g.name for g in groups if g.kind == "suites"}
    train = [r for g in groups if (g.kind, g.name) == ("memorization", "train") for r in g.records]
    facts = [
        {"prompt": r.prompt, "reference": r.reference or "", "answer": r.gold,
         "knowledge": r.knowledge or ""}
        for r in train
    ]  # fmt: skip
    base = [p["output"] for p in predictions if p["model"] == "base" and p["group"] in suites]
    return breakdown(predictions, suites, injected_markers(facts, base))


def _kl_to_base(cfg, tokenizer, groups: list[_Group], rows: list[dict], device, dtype) -> None:
    """Each checkpoint's KL(base || model) and log-likelihood change along the base's greedy
    answers to `cfg.kl_prompts` held-out prompts (round-robin over the suites and the general chat
    prompts), with CIs over prompts; written into `rows` (`kl`)."""
    from mixsd.evaluate.kl import KLProbe, load_chat_prompts

    suites = [[r.prompt for r in g.records] for g in groups if g.kind == "suites"]
    picked = _round_robin([*suites, load_chat_prompts()])[: cfg.kl_prompts]
    prompts = [templates.render_user_turn(tokenizer, p) for p in picked]
    probe = KLProbe(cfg.base, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size, device,
                    dtype, cfg.allow_pickle)  # fmt: skip
    for c in track(rows, "kl", "model"):
        found = probe(c["path"])
        per = found["per_prompt"]
        c["kl"] = {**found, "ci": {k: with_ci(per[k]) for k in ("kl", "delta_loglik")}}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_file(path) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
