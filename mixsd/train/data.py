"""Training examples from target sets: `prompt_ids + target_ids` from the STORED ids (never
re-tokenised), loss on the target tokens only.

A set is named `SET` (all of its λ) or `SET:lam=0.3` (several: `SET:lam=0.3,0.5`). Each set must
have been made with the model's tokenizer (fingerprint check); a λ the set does not hold, a
missing or invalid set and over-long sequences (with `too_long="refuse"`) are one-line errors.

Failed rows (`correct == false`: every rejection attempt gave a wrong answer) follow a policy:
`keep` trains on the wrong answer, `drop` leaves the fact out, `reference` (the default, as the
authors do for SimpleQA) trains on the reference answer instead, so every fact is taught and none
wrongly. Rows never checked (`correct` null, e.g. no rejection sampling) are always kept. When
more than half of a MixSD selection's rows would train on their references (an answer check that
never matches the model's answers, e.g. `\\boxed{}` expected from a model that answers in
sentences), the run would be an SFT run under a MixSD name: refused unless
`allow_mostly_reference`; any share is said in a warning and recorded in the run's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixsd.errors import MixsdError

MOSTLY_REFERENCE = 0.5  # above this share of a MixSD selection's rows replaced: refused
COLUMNS = ["id", "prompt_ids", "target_ids", "finish_reason", "correct", "answer", "reference"]


@dataclass(frozen=True)
class Example:
    """One training sequence: `ids` [n] = prompt then target; loss on `ids[n_prompt:]`."""

    ids: np.ndarray  # int32 [n]
    n_prompt: int
    id: str
    answer: str | None  # the gold answer, for the recall hook

    @property
    def n_target(self) -> int:
        return len(self.ids) - self.n_prompt


@dataclass
class DataStats:
    """What loading kept and dropped, per reason (written to the run's metrics)."""

    rows: int = 0
    kept: int = 0
    truncated: int = 0
    failed: int = 0  # rows with correct == false, whatever the policy did with them
    failed_policy: str = "reference"
    replaced: int = 0  # failed rows trained on their reference instead
    replaced_share: float = 0.0  # of the MixSD (λ) rows: replaced by their reference
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # --allow-incomplete: why
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def parse_target_spec(spec: str) -> tuple[Path, list[float] | None]:
    """`"SET"` -> (SET, None: every λ); `"SET:lam=0.3,0.5"` -> (SET, [0.3, 0.5])."""
    root, sep, sel = spec.rpartition(":lam=") if ":lam=" in spec else (spec, "", "")
    if not sep:
        return Path(spec), None
    try:
        lams = [float(x) for x in sel.split(",") if x.strip()]
    except ValueError:
        raise MixsdError(
            f"--targets {spec}: expected SET or SET:lam=<number>[,<number>...]"
        ) from None
    if not lams:
        raise MixsdError(f"--targets {spec}: no λ after 'lam='")
    return Path(root), lams


def check_set(root: Path, lams: list[float] | None, fingerprint: str) -> None:
    """Refuse a set that is missing, made with another tokenizer, or lacks a requested λ (one
    read of its manifest)."""
    from mixsd.targets.reader import listed_parts, read_manifest

    if not root.is_dir():
        raise MixsdError(f"{root}: target set not found (expected a target-set directory)")
    manifest = read_manifest(root)  # raises MixsdError on a missing or invalid manifest
    theirs = manifest["provenance"].get("tokenizer")
    if theirs != fingerprint:
        raise MixsdError(
            f"{root}: made with another tokenizer (fingerprint {str(theirs)[:12]}, model's "
            f"{fingerprint[:12]}); regenerate the set with this model or train the model it was made with"
        )
    if lams is not None:
        held = list(dict.fromkeys(p["lam"] for p in listed_parts(manifest) if p["lam"] is not None))
        missing = [x for x in lams if not any(abs(x - h) < 1e-9 for h in held)]
        if missing:
            have = ", ".join(f"{h:g}" for h in held) or "none (an SFT set)"
            raise MixsdError(f"{root}: λ={missing[0]:g} not in the set (it holds λ: {have})")


def check_selections(specs: list[str], fingerprint: str) -> None:
    """Every `--targets` selection checked (`check_set`), and no two that share a row: the same
    set twice, or one λ selected twice, would train those rows twice (the check `targets merge`
    makes, on each selection's parts)."""
    from mixsd.targets.ops import refuse_duplicates
    from mixsd.targets.reader import listed_parts, read_manifest

    roots, manifests = [], []
    for spec in specs:
        root, lams = parse_target_spec(spec)
        check_set(root, lams, fingerprint)
        manifest = read_manifest(root)
        roots.append(root)
        manifests.append({**manifest, "parts": listed_parts(manifest, lams)})
    refuse_duplicates(roots, manifests, "train on")


def answer_methods(given: list[str] | None, specs: list[str]) -> tuple[str, ...]:
    """How a run grades answers (per-epoch recall, OPSD's rollouts): the methods `given`
    (`--answer-methods`) when set; else those the target sets of `specs` were checked with (their
    provenance's `answer_methods`, each once, in order), so recall scores answers as the sets'
    answer check did; else boxed, number (OPSD, or sets that record none, e.g. SFT sets)."""
    if given is not None:
        return tuple(given)
    from mixsd.targets.reader import read_manifest

    methods: list[str] = []
    for spec in specs:
        provenance = read_manifest(parse_target_spec(spec)[0])["provenance"]
        methods += [m for m in provenance.get("answer_methods") or [] if m not in methods]
    return tuple(methods) or ("boxed", "number")


def reference_share(specs: list[str], failed: str, allow_mostly_reference: bool = False) -> float:
    """The share of the selections' MixSD (λ) rows that `failed="reference"` trains on their
    reference answer (0 under another policy). A selection where that is more than
    `MOSTLY_REFERENCE` is refused unless `allow_mostly_reference`: its run would be SFT."""
    from mixsd.targets.reader import iter_batches

    if failed != "reference":
        return 0.0
    replaced_all = rows_all = 0
    for spec in specs:
        root, lams = parse_target_spec(spec)
        replaced = rows = 0
        for batch in iter_batches(root, lams=lams, columns=["lam", "correct"]):
            for lam, correct in zip(
                batch.column("lam").to_pylist(), batch.column("correct").to_pylist(), strict=True
            ):
                rows += lam is not None
                replaced += lam is not None and correct is False
        if rows and replaced / rows > MOSTLY_REFERENCE and not allow_mostly_reference:
            raise MixsdError(
                f"--targets {spec}: {replaced} of {rows} MixSD rows ({replaced / rows:.0%}) failed "
                "their answer check and would train on their reference answers (--failed "
                "reference): an SFT run, not MixSD. Check the answer methods the set was made with "
                "(e.g. --answer-methods contains for a model that answers in sentences), or pass "
                "--allow-mostly-reference"
            )
        replaced_all, rows_all = replaced_all + replaced, rows_all + rows
    return replaced_all / rows_all if rows_all else 0.0


def reference_warning(stats: DataStats) -> str | None:
    """The line that says a run trains part of its MixSD rows on references (None: none)."""
    if not stats.replaced_share:
        return None
    return (
        f"warning: {stats.replaced_share:.0%} of the MixSD rows failed their answer check and "
        "train on their reference answers (--failed reference): for them this run is SFT"
    )


def selection_fingerprint(specs: list[str]) -> dict:
    """What a run trains on: per `--targets` selection, the parts its manifest lists (path, λ,
    rows and the sha256 the set's writer recorded; nothing is hashed again). A set that gains a λ
    or loses, adds or rewrites a part changes it."""
    from mixsd.targets.reader import listed_parts, read_manifest

    out = {}
    for spec in specs:
        root, lams = parse_target_spec(spec)
        parts = listed_parts(read_manifest(root), lams)
        out[spec] = [{k: p[k] for k in ("path", "lam", "rows", "sha256")} for p in parts]
    return out


def data_change(old: dict, new: dict) -> str | None:
    """The first difference between two data fingerprints (`selection_fingerprint`, or OPSD's
    files), in words; None when they are equal."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if not (isinstance(a, list) and isinstance(b, list)):
            return f"{key} {'changed' if a and b else 'added' if b else 'gone'}"
        a, b = ({p["path"]: p for p in parts} for parts in (a, b))
        added = [f"{p} added ({b[p]['rows']} rows)" for p in sorted(set(b) - set(a))]
        gone = [f"{p} gone" for p in sorted(set(a) - set(b))]
        rewritten = [f"{p} rewritten" for p in sorted(set(a) & set(b)) if a[p] != b[p]]
        return f"--targets {key}: part " + ", ".join(added + gone + rewritten)
    return None


def load_examples(
    specs: list[str],
    tokenizer,
    max_len: int,
    too_long: str = "truncate",
    failed: str = "reference",
    allow_mostly_reference: bool = False,
    allow_incomplete: bool = False,
) -> tuple[list[Example], DataStats]:
    """All training examples of the sets `specs`, in set then stored order.

    Rows without a target (e.g. `prompt_too_long`) are dropped and counted; failed rows follow
    `failed` (keep | drop | reference, see the module doc; a MixSD selection mostly replaced by
    references is refused unless `allow_mostly_reference`). An incomplete set is refused unless
    `allow_incomplete` (then recorded in the stats). A sequence longer than `max_len` has
    its target cut to fit (`too_long="truncate"`, counted) or stops the run (`"refuse"`); a prompt
    that alone fills `max_len` is dropped.
    """
    from mixsd.targets.completeness import require_complete
    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.reader import iter_batches, read_manifest

    fingerprint = tokenizer_fingerprint(tokenizer)
    examples: list[Example] = []
    stats = DataStats(failed_policy=failed)
    check_selections(specs, fingerprint)
    stats.replaced_share = reference_share(specs, failed, allow_mostly_reference)
    for spec in specs:
        root, lams = parse_target_spec(spec)
        if problems := require_complete(root, read_manifest(root), allow_incomplete):
            stats.incomplete[spec] = problems
        n_before = len(examples)
        for batch in iter_batches(root, lams=lams, columns=COLUMNS):
            for row in batch.to_pylist():
                stats.rows += 1
                if row["correct"] is False:
                    row = _failed_row(row, failed, tokenizer, stats, root)
                    if row is None:
                        continue
                ex = _example(row, max_len, too_long, stats, root, stats.rows)
                if ex is not None:
                    examples.append(ex)
        if len(examples) == n_before:
            raise MixsdError(
                f"{spec}: no trainable rows (after filters: {stats.dropped or 'none'})"
            )
    stats.kept = len(examples)
    return examples, stats


def _failed_row(row: dict, policy: str, tokenizer, stats: DataStats, root: Path) -> dict | None:
    """A failed row as `policy` trains it: unchanged, None (dropped), or its reference as target."""
    stats.failed += 1
    if policy == "keep":
        return row
    if policy == "drop":
        stats.drop("failed answer check")
        return None
    if not row["reference"]:
        raise MixsdError(
            f"{root}: row id {row['id']} failed its answer check and has no reference to train "
            "on instead (use --failed keep or --failed drop)"
        )
    from mixsd.data.templates import target_ids

    stats.replaced += 1
    return {**row, "target_ids": target_ids(tokenizer, row["reference"])}


def _example(
    row: dict, max_len: int, too_long: str, stats: DataStats, root: Path, n: int
) -> Example | None:
    prompt, target = row["prompt_ids"] or [], row["target_ids"] or []
    if not target:
        stats.drop(f"no target ({row['finish_reason']})")
        return None
    if not prompt:
        stats.drop("empty prompt")
        return None
    if len(prompt) + len(target) > max_len:
        if too_long == "refuse":
            raise MixsdError(
                f"{root}: row {n} (id {row['id']}): prompt_ids + target_ids = "
                f"{len(prompt) + len(target)} tokens, over max_len {max_len} "
                "(use --max-len, or too_long: truncate to cut targets)"
            )
        if len(prompt) >= max_len:
            stats.drop("prompt over max_len")
            return None
        target = target[: max_len - len(prompt)]
        stats.truncated += 1
    ids = np.asarray(prompt + target, dtype=np.int32)
    answer = row["answer"] if row.get("answer") is not None else row.get("reference")
    return Example(ids=ids, n_prompt=len(prompt), id=str(row["id"]), answer=answer)
