"""Completeness: a set records what each shard planned and whether it finished; validate,
inspect, train and evaluate see a set that lacks planned rows as incomplete."""

from __future__ import annotations

import json

import pytest
from targets_rows import make_rows

from mixsd.errors import MixsdError
from mixsd.targets.completeness import UNKNOWN, completeness, require_complete
from mixsd.targets.ops import merge
from mixsd.targets.reader import read_manifest
from mixsd.targets.summary import format_summary, inspect_set
from mixsd.targets.validate import validate
from mixsd.targets.writer import TargetSetWriter


def plan(records=10, mine=5, lams=(0.3,)):
    return {
        "input": "sha256:" + "c" * 64,
        "records": records,
        "shard_records": mine,
        "samples": 1,
        "lams": list(lams),
    }


def write_shard(root, provenance, shard, start, n=5, lam=0.3, **kw):
    with TargetSetWriter(root, provenance, shard=shard, plan=plan(**kw)) as w:
        w.write(make_rows(n, lam, start=start))


def test_a_shard_that_never_ran_makes_the_set_incomplete(tmp_path, provenance):
    root = tmp_path / "s"
    write_shard(root, provenance, "0/2", 0)
    problems, rows = validate(root)
    assert rows == 5
    assert problems == [
        f"{root}: incomplete: shard 1-of-2 never ran",
        f"{root}: incomplete: 5 of 10 planned rows",
    ]
    summary = inspect_set(root)
    assert summary["complete"] is False
    assert "incomplete: shard 1-of-2 never ran" in format_summary(root, summary)
    write_shard(root, provenance, "1/2", 100)
    assert validate(root) == ([], 10)
    assert inspect_set(root)["complete"] is True


def test_a_killed_run_is_incomplete_until_rerun(tmp_path, provenance):
    root = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        with TargetSetWriter(root, provenance, rows_per_part=2, plan=plan(10, 10)) as w:
            w.write(make_rows(3))
            w.flush()
            raise KeyboardInterrupt  # as a kill: the writer is never left normally
    problems, rows = validate(root)
    assert rows == 3 and problems[1] == f"{root}: incomplete: 3 of 10 planned rows"
    assert problems[0].startswith(f"{root}: incomplete: shard 0-of-1 did not finish (started ")
    assert problems[0].endswith(", 3 of 10 rows)")
    # killed before its first part: still incomplete, not "OK: 0 rows"
    empty = tmp_path / "e"
    TargetSetWriter(empty, provenance, plan=plan(10, 10))  # opened, never closed
    assert validate(empty)[0][-1] == f"{empty}: incomplete: 0 of 10 planned rows"
    with TargetSetWriter(root, provenance, plan=plan(10, 10)) as w:
        w.write(make_rows(7, start=3))
    assert validate(root) == ([], 10)


def test_adding_a_lambda_extends_the_plan_and_the_provenance(tmp_path, provenance):
    root = tmp_path / "s"
    write_shard(root, {**provenance, "lams": [0.3]}, "0/1", 0, records=5, lams=[0.3])
    with TargetSetWriter(root, {**provenance, "lams": [1.0]}, plan=plan(5, 5, [1.0])) as w:
        w.write(make_rows(2, 1.0))
        w.flush()
        problems, _ = completeness(read_manifest(root))
        assert problems[-1] == "incomplete: 7 of 10 planned rows"
        w.write(make_rows(3, 1.0, start=2))
    manifest = read_manifest(root)
    assert manifest["provenance"]["lams"] == [0.3, 1.0]
    assert manifest["plans"]["0-of-1"]["lams"] == [0.3, 1.0]
    assert validate(root) == ([], 10)


def test_a_set_without_plans_reads_with_completeness_unknown(tmp_path, provenance):
    root = tmp_path / "old"
    with TargetSetWriter(root, provenance) as w:
        w.write(make_rows(4))
    manifest = read_manifest(root)
    assert "plans" not in manifest  # as the previous code wrote it
    assert validate(root) == ([], 4)
    assert completeness(manifest) == ([], UNKNOWN)
    assert inspect_set(root)["complete"] is None
    assert require_complete(root, manifest, allow=False) == []


def test_train_and_evaluate_rule_refuses_in_one_line_unless_allowed(tmp_path, provenance, capsys):
    root = tmp_path / "s"
    write_shard(root, provenance, "0/2", 0)
    with pytest.raises(MixsdError) as info:
        require_complete(root, read_manifest(root), allow=False)
    text = str(info.value)
    assert text == (
        f"{root}: incomplete target set (shard 1-of-2 never ran; 5 of 10 planned rows): finish "
        "it (rerun the same generate command), or pass --allow-incomplete to use the rows that "
        "are there"
    )
    allowed = require_complete(root, read_manifest(root), allow=True)
    assert allowed == ["incomplete: shard 1-of-2 never ran", "incomplete: 5 of 10 planned rows"]
    assert "warning:" in capsys.readouterr().err


def test_merging_the_shards_gives_a_complete_set(tmp_path, provenance):
    a, b = tmp_path / "a", tmp_path / "b"
    write_shard(a, provenance, "0/2", 0)
    assert validate(a)[0]
    write_shard(b, provenance, "1/2", 100)
    merge([a, b], tmp_path / "m")
    assert validate(tmp_path / "m") == ([], 10)
    # two λ made as two sets of one shard each: the merged plan owes both λ's rows
    c, d = tmp_path / "c", tmp_path / "d"
    write_shard(c, provenance, "0/1", 0, records=5)
    write_shard(d, provenance, "0/1", 0, lam=1.0, records=5, lams=[1.0])
    merge([c, d], tmp_path / "cd")
    assert validate(tmp_path / "cd") == ([], 10)
    plans = json.loads((tmp_path / "cd" / ".manifest.json").read_text())["plans"]
    assert plans["0-of-1"]["rows"] == 10 and plans["0-of-1"]["lams"] == [0.3, 1.0]


def test_a_lam_added_with_other_sharding_keeps_the_set_complete():
    """λ 0.5 generated in 2 shards, λ 0.3 added later in 1: each group is whole, so the set is;
    a group with a shard missing is not, and the planned total adds the groups."""

    def plan(shards, lams, rows, completed="t1"):
        return {
            "shards": shards,
            "records": 10,
            "samples": 1,
            "lams": lams,
            "rows": rows,
            "started": "t0",
            "completed": completed,
        }

    parts = [{"shard": "0-of-2", "rows": 4}, {"shard": "1-of-2", "rows": 6}]
    parts.append({"shard": "0-of-1", "rows": 10})
    plans = {"0-of-2": plan(2, [0.5], 4), "1-of-2": plan(2, [0.5], 6), "0-of-1": plan(1, [0.3], 10)}
    assert completeness({"parts": parts, "plans": plans, "rows": 20}) == ([], None)
    del plans["1-of-2"]
    parts.pop(1)
    assert completeness({"parts": parts, "plans": plans, "rows": 14})[0] == [
        "incomplete: shard 1-of-2 never ran",
        "incomplete: 14 of 20 planned rows",
    ]
