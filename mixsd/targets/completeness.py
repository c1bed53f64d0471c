"""Is a target set whole? The one rule that `validate`, `inspect`, `train` and `evaluate` share.

Every shard of a generate run records its plan in the manifest when it starts (`plans[shard]`:
the input fingerprint, the number of shards, the whole input's and this shard's records, samples,
the λ list, the rows it owes) and stamps `completed` when it finishes; a rerun of the shard
restarts the stamp. A set is complete when every one of the N shards ran, finished, and its
listed parts hold the rows it planned. Readers outside mixsd (`datasets`, pyarrow) cannot see
this: check `mixsd targets validate` first.

A set written before mixsd recorded plans still reads: its completeness is unknown (a note, not
a problem), since nothing says how many rows it should have.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mixsd.errors import MixsdError

UNKNOWN = "completeness unknown: written before mixsd recorded plans"


def completeness(manifest: dict) -> tuple[list[str], str | None]:
    """(problems, note): one `incomplete: ...` line per missing piece ([] when every planned row
    is there), and a note when completeness cannot be known (no plan recorded).

    Plans are grouped by their shard count N: each group (say a λ generated in 2 shards, a λ
    added later in 1) is whole when all N of its shards ran, finished and hold their rows."""
    plans: dict = manifest.get("plans") or {}
    present: dict[str, int] = {}
    for part in manifest["parts"]:
        present[part["shard"]] = present.get(part["shard"], 0) + part["rows"]
    if not plans:
        return [], UNKNOWN
    problems = []
    planned = 0
    for n in sorted({int(p["shards"]) for p in plans.values()}):
        group = {s: p for s, p in plans.items() if int(p["shards"]) == n}
        planned += max(p["records"] * p["samples"] * len(p["lams"]) for p in group.values())
        for shard in (f"{i}-of-{n}" for i in range(n)):
            plan, have = group.get(shard), present.get(shard, 0)
            if plan is None:
                if shard not in present:  # else written before plans were: the note says so
                    problems.append(f"incomplete: shard {shard} never ran")
            elif plan.get("completed") is None:
                problems.append(
                    f"incomplete: shard {shard} did not finish (started {plan.get('started')}, "
                    f"{have} of {plan['rows']} rows)"
                )
            elif have < plan["rows"]:
                problems.append(f"incomplete: shard {shard}: {have} of {plan['rows']}")
    if problems:
        problems.append(f"incomplete: {manifest['rows']} of {planned} planned rows")
    unplanned = sorted(s for s in present if s not in plans)
    note = f"{UNKNOWN} (shard {', '.join(unplanned)})" if unplanned else None
    return problems, note


def require_complete(root: str | Path, manifest: dict, allow: bool) -> list[str]:
    """Refuse an incomplete set in one line (MixsdError) unless `allow`; returns the problems
    tolerated (for the run's metrics). Notes and tolerated problems go to stderr, one line."""
    problems, note = completeness(manifest)
    if note:
        print(f"note: {root}: {note}", file=sys.stderr)
    if not problems:
        return []
    what = "; ".join(p.removeprefix("incomplete: ") for p in problems)
    if not allow:
        raise MixsdError(
            f"{root}: incomplete target set ({what}): finish it (rerun the same generate "
            "command), or pass --allow-incomplete to use the rows that are there"
        )
    print(f"warning: {root}: incomplete target set ({what}): using what is there", file=sys.stderr)
    return problems


def merged_plan(old: dict | None, plan: dict, shard: str, now: str) -> dict:
    """The plan a (re)started shard records: λ and samples are the union of the runs' (a rerun
    may add λ values), the rows owed follow from them, `completed` is cleared until it ends."""
    lams = list(plan["lams"])
    samples = plan["samples"]
    if old is not None:
        lams = list(dict.fromkeys([*old["lams"], *lams]))
        samples = max(samples, old["samples"])
    return {
        "input": plan["input"],
        "shards": int(shard.split("-of-")[1]),
        "records": plan["records"],
        "shard_records": plan["shard_records"],
        "samples": samples,
        "lams": lams,
        "rows": plan["shard_records"] * samples * len(lams),
        "started": now,
        "completed": None,
    }
