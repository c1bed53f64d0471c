"""One raw input row (a dict from any file format) -> a `Record`, or the problems preventing it.

A row gives its prompt and reference in one of three forms: `prompt`/`reference`; chat form,
`messages: [{role: user, ...}, {role: assistant, ...}]`; or Alpaca form, `instruction`, optional
`input`, `output` (prompt = instruction, a blank line, input). Every other field must be one of
the record's (a misspelt `knowlege` would silently change what the expert sees), except the data
builder's `IGNORED_FIELDS`. A row without an `id` gets `content_id`.

TRL's forms read too: `prompt` may be conversational (`[{"role": "user", "content": ...}]`, one
user turn: mixsd's templates add the rest), `completion` (a string or one assistant turn) is the
reference, and `privileged_context` (a string, or messages whose contents are joined with newlines
as TRL's SDFT/SDPO trainers join them) is the knowledge the expert sees. A TRL self-distillation
row, `{prompt, privileged_context}`, has no reference: like an evaluation file's row it needs an
answer and serves evaluate; with `completion` it serves every stage.

The authors' evaluation files (test and paraphrase sets) hold `{"prompt", "ground_truth_answer"}`:
`ground_truth_answer` is read as `answer`, and where an answer is all a stage needs (evaluate's
`--input`: `need_reference=False`) a row may have no reference. Generate and SFT sets still need
the reference (the answer text a target is made from): without one the row is refused, saying so.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any

from mixsd.data.records import KINDS, Record

_OPTIONAL_TEXT = ("knowledge", "answer", "split")
_FORMS = {"messages": ("messages",), "Alpaca": ("instruction", "input", "output")}
_FIELDS = {"id", "prompt", "reference", "kind", "paraphrases", *_OPTIONAL_TEXT}
_FIELDS |= {f for fields in _FORMS.values() for f in fields}
# TRL's names (self-distillation and prompt-completion datasets) -> the record's.
TRL_FIELDS = {"completion": "reference", "privileged_context": "knowledge"}
_FIELDS |= set(TRL_FIELDS)
# Written by the paper's data builder next to `messages`; nothing in mixsd reads them.
IGNORED_FIELDS = ("clear_answer", "mix_meta", "subject")
GROUND_TRUTH = "ground_truth_answer"  # the authors' evaluation files' name for `answer`


def row_id(raw: Any) -> str | None:
    """The id a row claims, if it is a usable one (for the duplicate check)."""
    ident = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(ident, int) and not isinstance(ident, bool):
        return str(ident)
    return ident if _text(ident) else None


def parse_record(
    raw: Any, need_reference: bool = True
) -> tuple[Record | None, list[tuple[str | None, str]]]:
    """A `Record` from one raw row, or None and the (field, message) problems that prevent it.
    `need_reference=False`: a row with an answer (`answer` or `ground_truth_answer`) may lack
    the reference."""
    if not isinstance(raw, dict):
        return None, [(None, f"expected a JSON object, got {type(raw).__name__}")]
    if None in raw:
        return None, [(None, "more cells than header columns")]
    raw = {k: v for k, v in raw.items() if v is not None and k not in IGNORED_FIELDS}
    errors: list[tuple[str | None, str]] = []
    if GROUND_TRUTH in raw:  # the authors' evaluation files
        if "answer" in raw:
            errors.append((GROUND_TRUTH, "give one of answer or ground_truth_answer"))
        raw["answer"] = raw.pop(GROUND_TRUTH)
    errors += _from_trl(raw)
    required = [] if errors else ["prompt", "reference"]  # no "missing" noise on top
    forms = [f for f, fields in _FORMS.items() if set(fields) & set(raw)]
    if len(forms) + ("prompt" in raw or "reference" in raw) > 1:
        field = next(f for form in forms for f in _FORMS[form] if f in raw)
        msg = "give one of messages, prompt/reference or instruction/input/output"
        errors.append((field, msg))
        required = []  # no "missing" noise on top
    elif forms == ["messages"]:
        turns = _from_messages(raw.pop("messages"))
        if turns is None:
            errors.append(("messages", _MESSAGES))
            required = []
        else:
            raw = {**turns, **raw}
    elif forms == ["Alpaca"]:
        turns, bad = _from_alpaca(raw)
        errors += bad
        required = [] if bad else required
        raw = {**(turns or {}), **{k: v for k, v in raw.items() if k not in _FORMS["Alpaca"]}}
    if "id" in raw:
        raw["id"] = row_id(raw) or raw["id"]  # integer ids become strings
        if not _text(raw["id"]):
            errors.append(("id", f"expected a non-empty string, got {_show(raw['id'])}"))
    answer_only = "answer" in raw and "reference" not in raw
    for field in required:
        if field == "reference" and answer_only:
            if need_reference:
                errors.append((field, _NO_REFERENCE))
        elif field not in raw:
            errors.append((field, "missing (required: a non-empty string)"))
        elif not _text(raw[field]):
            errors.append((field, f"expected a non-empty string, got {_show(raw[field])}"))
    for field in _OPTIONAL_TEXT:
        if field in raw and not _text(raw[field]):
            errors.append((field, f"expected a non-empty string, got {_show(raw[field])}"))
    kind = raw.get("kind", "fact")
    if kind not in KINDS:
        errors.append(("kind", f"unknown kind {_show(kind)} (expected one of: {', '.join(KINDS)})"))
    # a misspelt optional field (`knowlege`) would silently change what the expert sees
    for field in sorted(set(raw) - _FIELDS):
        near = difflib.get_close_matches(field, [*_FIELDS, *IGNORED_FIELDS], n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        errors.append((field, f"unknown field ({hint}expected: {', '.join(sorted(_FIELDS))})"))
    paraphrases = raw.get("paraphrases", [])
    if not (isinstance(paraphrases, (list, tuple)) and all(_text(p) for p in paraphrases)):
        msg = f"expected a list of non-empty strings, got {_show(paraphrases)}"
        errors.append(("paraphrases", msg))
    if errors:
        return None, errors
    record = Record(
        id=raw["id"] if "id" in raw else content_id(raw, kind, paraphrases),
        prompt=raw["prompt"],
        reference=raw.get("reference"),
        knowledge=raw.get("knowledge"),
        answer=raw.get("answer"),
        kind=kind,
        split=raw.get("split"),
        paraphrases=tuple(paraphrases),
    )
    return record, []


_NO_REFERENCE = (
    "missing: generating targets needs the reference answer text (an answer alone, as in a "
    "prompt + ground_truth_answer evaluation file, serves evaluate --input only)"
)
_MESSAGES = "expected [{role: user, content}, {role: assistant, content}], non-empty contents"


def _from_messages(messages: Any) -> dict[str, str] | None:
    """prompt/reference from a chat-form record (one user turn, then one assistant turn)."""
    ok = (
        isinstance(messages, list)
        and len(messages) == 2
        and all(isinstance(m, dict) and _text(m.get("content")) for m in messages)
        and [m.get("role") for m in messages] == ["user", "assistant"]
    )
    return {"prompt": messages[0]["content"], "reference": messages[1]["content"]} if ok else None


def _from_trl(raw: dict) -> list[tuple[str, str]]:
    """Rename TRL's fields in `raw` to the record's (in place): a conversational prompt becomes
    its user turn's text, `completion` the reference, `privileged_context` the knowledge."""
    errors = []
    if isinstance(raw.get("prompt"), list):
        turn = _one_turn(raw["prompt"], "user")
        if turn is None:
            errors.append(("prompt", _PROMPT))
        else:
            raw["prompt"] = turn
    for name, field in TRL_FIELDS.items():
        if name not in raw:
            continue
        if field in raw:
            errors.append((name, f"give one of {field} or {name}"))
        value = raw.pop(name)
        if name == "completion" and isinstance(value, list):
            turn = _one_turn(value, "assistant")
            if turn is None:
                errors.append((name, _COMPLETION))
            value = turn
        elif name == "privileged_context" and isinstance(value, list):
            ok = all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value)
            if not ok:
                errors.append((name, _CONTEXT))
            value = "\n".join(m["content"] for m in value if m["content"]) if ok else None
        if value is not None:
            raw[field] = value
    return errors


_PROMPT = 'expected a string or [{"role": "user", "content": "..."}] (one user turn)'
_COMPLETION = 'expected a string or [{"role": "assistant", "content": "..."}] (one turn)'
_CONTEXT = 'expected a string or a list of messages [{"role": ..., "content": "..."}]'


def _one_turn(messages: list, role: str) -> str | None:
    """The content of a one-message conversation in `role`, or None when it is not one."""
    ok = len(messages) == 1 and isinstance(messages[0], dict) and messages[0].get("role") == role
    return messages[0].get("content") if ok and _text(messages[0].get("content")) else None


def _from_alpaca(raw: dict) -> tuple[dict[str, str] | None, list[tuple[str, str]]]:
    """prompt/reference from an Alpaca-form record: instruction, optional input, output."""
    errors = []
    for field in ("instruction", "output"):
        if field not in raw:
            errors.append((field, "missing (required: a non-empty string)"))
        elif not _text(raw[field]):
            errors.append((field, f"expected a non-empty string, got {_show(raw[field])}"))
    extra = raw.get("input", "")
    if not isinstance(extra, str):
        errors.append(("input", f"expected a string, got {_show(extra)}"))
    if errors:
        return None, errors
    prompt = raw["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
    return {"prompt": prompt, "reference": raw["output"]}, []


def content_id(raw: dict, kind: str, paraphrases) -> str:
    """The id of a record given without one: "h" + 16 hex digits of a hash of everything mixsd
    reads from it, so the same record gets the same id on every run and every shard. `check`
    appends "-k" to the k-th repeat of a content within a file."""
    content = [raw["prompt"], raw.get("reference"), *(raw.get(f) for f in _OPTIONAL_TEXT), kind]
    text = json.dumps([*content, list(paraphrases)], ensure_ascii=False)
    return "h" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
