"""Set operations: merge sets, export rows for other trainers, an SFT set from references."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mixsd
from mixsd.errors import MixsdError
from mixsd.outputs import check_output
from mixsd.targets.manifest import fsync_dir, new_manifest, read_manifest, write_manifest
from mixsd.targets.provenance import (
    CHUNK,
    check_compatible,
    input_fingerprint,
    model_fingerprint,
    tokenizer_fingerprint,
)
from mixsd.targets.reader import iter_batches, listed_parts
from mixsd.targets.schema import TargetRow, format_lam, lam_dir, show_lam
from mixsd.targets.writer import TargetSetWriter, existing_keys

MARKER = "\x00MIXSD-USER\x00"


def merge(sets: list[str | Path], out: str | Path) -> int:
    """Copy the parts of compatible `sets` into a new set `out`; returns its row count.

    Refuses: provenances that differ (`check_compatible`, e.g. another tokenizer), an (id, sample,
    λ) key present in two inputs, an existing `out`, a part whose sha256 is not the listed one.
    Parts are copied byte for byte (their checksums are verified while copying).
    """
    out = Path(out)
    if len(sets) < 2:
        raise MixsdError("merge needs at least two sets")
    if out.exists() and out.is_dir() and any(out.iterdir()):
        raise MixsdError(f"{out}: already exists and is not empty")
    check_output(out, "target set", sets)
    manifests = [read_manifest(s) for s in sets]
    for path, m in zip(sets[1:], manifests[1:], strict=True):
        try:
            check_compatible(manifests[0]["provenance"], m["provenance"])
        except MixsdError as e:
            raise MixsdError(f"{path} cannot merge with {sets[0]}: {e}") from None
    refuse_duplicates(sets, manifests)
    merged = new_manifest(manifests[0]["provenance"])
    merged["stats"] = {
        "merged_from": {str(s): m.get("stats", {}) for s, m in zip(sets, manifests, strict=True)}
    }
    if all(m.get("plans") for m in manifests):  # else completeness stays unknown
        merged["plans"] = merge_plans([m["plans"] for m in manifests])
    counters: dict[tuple[str, str], int] = {}
    for src, m in zip(sets, manifests, strict=True):
        for entry in listed_parts(m):
            folder = lam_dir(entry["lam"])
            n = counters[folder, entry["shard"]] = counters.get((folder, entry["shard"]), -1) + 1
            rel = f"{folder}/part-{entry['shard']}-{n:05d}.parquet"
            _copy_verified(Path(src) / entry["path"], out / rel, entry["sha256"])
            merged["parts"].append({**entry, "path": rel})
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, merged)
    return merged["rows"]


def merge_plans(plans: list[dict]) -> dict:
    """The plans of merged sets: a shard planned in several inputs (e.g. one λ each) owes the sum
    of their rows, holds the union of their λ, and is complete only when all of them were."""
    out: dict = {}
    for shard_plans in plans:
        for shard, plan in shard_plans.items():
            old = out.get(shard)
            if old is None:
                out[shard] = dict(plan)
                continue
            done = old["completed"] and plan["completed"]
            out[shard] = {
                **old,
                "records": max(old["records"], plan["records"]),
                "samples": max(old["samples"], plan["samples"]),
                "lams": list(dict.fromkeys([*old["lams"], *plan["lams"]])),
                "rows": old["rows"] + plan["rows"],
                "completed": max(old["completed"], plan["completed"]) if done else None,
            }
    return out


def refuse_duplicates(sets: list, manifests: list[dict], doing: str = "merge") -> None:
    """Refuse an (id, sample, λ) key held by two of `sets` (their `manifests` list the parts to
    compare: train passes each selection's). Keys can only collide within one λ: compare key sets
    only for λ held by several inputs."""
    held: dict[str, tuple[float | None, list[int]]] = {}  # λ text -> (λ, inputs holding it)
    for i, m in enumerate(manifests):
        for p in m["parts"]:
            owners = held.setdefault(format_lam(p["lam"]), (p["lam"], []))[1]
            if i not in owners:
                owners.append(i)
    for lam, owners in held.values():
        if len(owners) < 2:
            continue
        seen: dict[tuple, int] = {}
        for i in owners:
            for batch in iter_batches(sets[i], lams=[lam], columns=["id", "sample"]):
                for key in zip(
                    batch.column("id").to_pylist(), batch.column("sample").to_pylist(), strict=True
                ):
                    if seen.setdefault(key, i) != i:
                        raise MixsdError(
                            f"{sets[i]}: (id {key[0]!r}, sample {key[1]}, λ {show_lam(lam)}) "
                            f"is also in {sets[seen[key]]}: refusing to {doing} duplicates"
                        )


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    if h.hexdigest() != sha256:
        tmp.unlink()
        raise MixsdError(f"{src}: sha256 differs from its manifest: run `mixsd targets validate`")
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def export(
    root: str | Path, fmt: str, out: str | Path | None = None, tokenizer: str | Path | None = None
) -> int:
    """Write the set as JSON lines to `out` (atomically) or stdout; returns the row count.

    `jsonl`: every column of every row. The chat formats (`CHAT_FORMATS`) decode each row into a
    user turn, the naive prompt decoded and unwrapped from the chat template, and an assistant
    turn, the decoded target (special tokens such as EOS dropped): `messages` writes
    `{"messages": [user, assistant]}` (TRL's conversational SFT form), `prompt-completion`
    `{"prompt": [user], "completion": [assistant]}` (TRL's conversational prompt-completion
    form: loss on the completion only), `authors` the paper's own JSONL (`authors_line`).
    They need the set's tokenizer: the folder `tokenizer`, else the provenance's model path;
    its fingerprint must be the set's.
    """
    if fmt not in ("jsonl", *CHAT_FORMATS):
        raise MixsdError(f"export format '{fmt}': expected jsonl, {', '.join(CHAT_FORMATS)}")
    if out is not None:
        check_output(out, "file", [root, tokenizer])
    if fmt in CHAT_FORMATS:
        prov = read_manifest(root)["provenance"]
        name = tokenizer or (prov.get("model") or {}).get("name")
        tok = load_tokenizer(name, hint=" (pass --tokenizer DIR)" if tokenizer is None else "")
        if prov.get("tokenizer") and tokenizer_fingerprint(tok) != prov["tokenizer"]:
            raise MixsdError(
                f"{name}: not the tokenizer {root} was made with (fingerprints differ)"
            )
        lines = _chat_lines(root, tok, fmt, prov)
    else:
        lines = (
            json.dumps(r, ensure_ascii=False) for b in iter_batches(root) for r in b.to_pylist()
        )
    if out is None:
        n = 0
        for n, line in enumerate(lines, 1):  # noqa: B007
            sys.stdout.write(line + "\n")
        return n
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # like every other writer of the project
    except OSError as e:
        raise MixsdError(f"{out.parent}: cannot create the folder ({e.strerror})") from None
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for n, line in enumerate(lines, 1):  # noqa: B007
                f.write(line + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failure mid-way leaves no half-written file
    return n


def load_tokenizer(name: str | Path | None, hint: str = ""):
    """The project's tokenizer loader (`mixsd.data.models`), with `hint` added to its error."""
    from mixsd.data.models import load_tokenizer as load

    if name is None:
        raise MixsdError(f"no tokenizer: the set's provenance names no model{hint}")
    try:
        return load(name)
    except MixsdError as e:
        raise MixsdError(f"{e}{hint}") from None


CHAT_FORMATS = ("messages", "prompt-completion", "authors")
# Our finish reasons in the authors' words (`length`: the max_new_tokens cap was reached).
AUTHORS_FINISH = {"stop": "stop", "length": "max_new_tokens", "prompt_too_long": "prompt_too_long"}


def _chat_lines(root, tokenizer, fmt: str, provenance: dict) -> Iterator[str]:
    pre, post = _user_wrapping(tokenizer)
    for batch in iter_batches(root):
        for row in batch.to_pylist():
            prompt = row["prompt_ids"]
            text = tokenizer.decode(prompt)
            if text.startswith(pre) and text.endswith(post) and len(text) >= len(pre) + len(post):
                user = text[len(pre) : len(text) - len(post)]
            else:  # a prompt not rendered by our templates: keep its text, minus special tokens
                user = tokenizer.decode(prompt, skip_special_tokens=True)
            turns = [
                {"role": "user", "content": user},
                {
                    "role": "assistant",
                    "content": tokenizer.decode(row["target_ids"], skip_special_tokens=True),
                },
            ]
            if fmt == "messages":
                line = {"messages": turns}
            elif fmt == "prompt-completion":
                line = {"prompt": turns[:1], "completion": turns[1:]}
            else:
                line = authors_line(row, turns, provenance)
            yield json.dumps(line, ensure_ascii=False)


def authors_line(row: dict, turns: list[dict], provenance: dict) -> dict:
    """One row in the paper's own JSONL (their `mix_distribution_sampling.py` writes it, their
    SFT and NeMo-RL recipes read it): `messages`, `clear_answer`, `subject`, and `mix_meta`
    with the λ, sampling, `student_token_fraction` (our naive-token fraction: `source` 1 = the
    prompt-only student), token count, finish reason, correct, attempts (1-based; 0 for a prompt
    too long), and the reference as `ground_truth_assistant`. mixsd keeps no subject: ""."""
    sampling = provenance.get("sampling") or {}
    source = row["source"] or []
    too_long = row["finish_reason"] == "prompt_too_long"
    meta = {
        "lambda": row["lam"],
        "temperature": sampling.get("temperature"),
        "topk": sampling.get("top_k"),
        "gen_index": row["sample"],
        "student_token_fraction": sum(source) / max(1, len(source)),
        "num_tokens": len(row["target_ids"]),
        "finish_reason": AUTHORS_FINISH[row["finish_reason"]],
        "correct": row["correct"],
        "num_attempts": 0 if too_long else row["attempt"] + 1,
        "max_retries": provenance.get("max_retries"),
        "ground_truth_assistant": row["reference"],
    }
    return {"messages": turns, "clear_answer": row["answer"] or "", "subject": "", "mix_meta": meta}


def _user_wrapping(tokenizer) -> tuple[str, str]:
    """The text a prompt has before and after the user's words, as `render_user_turn` writes it."""
    from mixsd.data.templates import render_user_turn

    pre, _, post = tokenizer.decode(render_user_turn(tokenizer, MARKER)).partition(MARKER)
    return pre, post


def from_references(
    input_path: str | Path, model: str | Path, out: str | Path, templates: str | Path | None = None
) -> int:
    """An SFT set (kind 'sft', λ null) whose targets are the records' references + EOS.

    Same format as MixSD sets, so the trainer has one input format. Resumable: rows the set
    already holds are skipped. Returns the number of rows written now.
    """
    from mixsd.data.io import load_records
    from mixsd.data.templates import build_prompt_pair, load_templates, target_ids

    check_output(out, "target set", [input_path, model, templates])
    records = load_records(input_path)
    chosen = load_templates(templates)
    tok = load_tokenizer(model)
    provenance = {
        "kind": "sft",
        "model": model_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tok),
        "templates": {k: dataclasses.asdict(v) for k, v in sorted(chosen.items())},
        "sampling": None,
        "seed": None,
        "lams": [None],
        "engine": {"name": "references", "version": mixsd.__version__},
        "input": input_fingerprint(records),
    }
    # Opening first: it adopts parts a crash left unlisted, so the keys below include their rows.
    plan = {
        "input": provenance["input"],
        "records": len(records),
        "shard_records": len(records),
        "samples": 1,
        "lams": [None],
    }
    with TargetSetWriter(out, provenance, plan=plan) as writer:
        done = existing_keys(out)
        rows = []
        for r in records:
            if (r.id, 0, None) in done:
                continue
            pair = build_prompt_pair(tok, r, chosen)
            rows.append(
                TargetRow(
                    id=r.id,
                    sample=0,
                    attempt=0,
                    lam=None,
                    kind="sft",
                    prompt_ids=pair.naive_ids,
                    expert_prompt_ids=pair.expert_ids,
                    target_ids=target_ids(tok, r.reference),
                    target_text=r.reference,
                    finish_reason="stop",
                    correct=True,
                    reference=r.reference,
                    answer=r.gold,
                )
            )
        writer.write(rows)
        writer.add_stats({"source": str(input_path), "records": len(records)})
    return len(rows)
