"""`mixsd compare` over three hand-made seed reports: means and CIs over seeds, matched accuracy
over seeds, the paired run - control difference equal to the hand computation, clear errors."""

from __future__ import annotations

import json

import pytest
from handmade_metrics import RUNS
from handmade_metrics import metrics as handmade

from mixsd.errors import MixsdError
from mixsd.evaluate.compare import compare


def _sft(e1: tuple[str, str], e2: tuple[str, str]) -> list[dict]:
    """The hand-made sft run with other suite flags at epoch-1 and epoch-2 (train unchanged)."""
    runs = [dict(c) for c in RUNS["sft"]]
    for c, (gsm8k, known) in zip(runs, (e1, e2), strict=False):
        c.update(gsm8k=gsm8k, known=known)
    return runs


# sft at 50% training accuracy lies 1/5 of the way from epoch-1 (40%) to epoch-2 (90%):
# seed 1 kept 4/6 then 2/6 -> 3.6/6; seed 2 5/6, 3/6 -> 4.6/6; seed 3 3/6, 1/6 -> 2.6/6.
# mixsd-0.3 is the same in every seed: 11/12.
SEEDS = [
    RUNS,
    {**RUNS, "sft": _sft(("1100", "11100"), ("1000", "11000"))},
    {**RUNS, "sft": _sft(("0000", "11100"), ("0000", "10000"))},
]
SFT_AT_50 = [3.6 / 6, 4.6 / 6, 2.6 / 6]


def _seed_dirs(tmp_path, seeds=SEEDS):
    dirs = []
    for i, runs in enumerate(seeds, start=1):
        d = tmp_path / f"seed{i}"
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps(handmade(runs)))
        dirs.append(d)
    return dirs


def test_compare_over_three_seeds(tmp_path):
    out = compare(_seed_dirs(tmp_path), tmp_path / "cmp", control="sft")
    r = json.loads((out / "compare.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.json",
        "compare.md",
        "kl.png",
        "tradeoff.png",
    ]

    # the paired difference at 50% is the hand computation
    d = r["differences"]["mixsd-0.3"]["0.5"]
    diffs = [11 / 12 - s for s in SFT_AT_50]
    assert d["mean"] == pytest.approx(11 / 12 - 10.8 / 18)  # = 0.31667
    # the CI redraws seeds and items: wider than the seeds' spread, around the mean
    assert d["lo"] < min(diffs) and max(diffs) < d["hi"]
    assert (d["p"], d["n"]) == (0.25, 3)  # three positive differences: the smallest p of 3 seeds
    assert "sft" not in r["differences"]

    # matched accuracy over seeds
    sft = r["matched"]["sft"]["0.5"]
    assert sft["mean"] == pytest.approx(sum(SFT_AT_50) / 3) and sft["reached"] == 3
    assert sft["lo"] <= sft["mean"] <= sft["hi"]
    peak = r["matched"]["sft"]["first_peak"]  # epoch-2 in every seed: 2/6, 3/6, 1/6
    assert peak["mean"] == pytest.approx(2 / 6) and peak["train"] == pytest.approx(0.9)

    # per checkpoint: mean over seeds x items, the CI around it
    e1 = r["checkpoints"][0]
    assert (e1["run"], e1["checkpoint"], e1["first_peak_seeds"]) == ("sft", "epoch-1", 0)
    pooled = e1["retention"]["pooled"]
    assert pooled["mean"] == pytest.approx((4 / 6 + 5 / 6 + 3 / 6) / 3)
    assert pooled["lo"] < pooled["mean"] < pooled["hi"]
    assert e1["memorization"]["train"]["mean"] == pytest.approx(0.4)
    assert e1["strict"]["train"]["mean"] == pytest.approx(0.3)
    assert r["checkpoints"][1]["first_peak_seeds"] == 3
    kl = r["checkpoints"][1]["kl"]["kl"]  # epoch-2: 0.02 .. 0.08 in every seed
    assert kl["mean"] == pytest.approx(0.05) and kl["lo"] < 0.05 < kl["hi"]

    md = (out / "compare.md").read_text()
    assert "## Per checkpoint (mean over 3 seeds; CI over seeds x items)" in md
    assert "## Retention at matched training accuracy (3 seeds)" in md
    assert "## Run − sft (3 seeds, paired by seed)" in md
    assert f"| mixsd-0.3 | {100 * d['mean']:+.1f} [" in md and "p=0.25 (n=3)" in md
    assert "| sft | 60.0% [" in md and "(3/3)" in md
    assert "## KL to the base along its own answers (mean over 3 seeds" in md
    # lost at sft/epoch-1: 2, 1, 3 of 6 in the three seeds (1 leakage each, the rest genuine)
    assert e1["lost"] == {"format": 0.0, "leakage": 1.0, "collapse": 0.0, "genuine": 1.0}
    assert "| sft / epoch-1 | 0.0 | 1.0 | 0.0 | 1.0 | 2.0 |" in md


def test_a_run_missing_in_one_seed_is_one_clear_line(tmp_path):
    seeds = [SEEDS[0], {"sft": RUNS["sft"]}, SEEDS[2]]
    dirs = _seed_dirs(tmp_path, seeds)
    with pytest.raises(MixsdError) as info:
        compare(dirs, tmp_path / "cmp")
    assert str(info.value) == f"{dirs[1]}: run mixsd-0.3 missing (it is in {dirs[0]})"
    assert not (tmp_path / "cmp" / "compare.json").exists()


def test_other_bases_and_a_missing_control_are_refused(tmp_path):
    dirs = _seed_dirs(tmp_path, SEEDS[:2])
    with pytest.raises(MixsdError, match="--control opsd: no such run in"):
        compare(dirs, tmp_path / "cmp", control="opsd")
    m = json.loads((dirs[1] / "metrics.json").read_text())
    m["base"]["items"]["suites"]["gsm8k"] = "1000"
    (dirs[1] / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(MixsdError, match="the base's answers differ"):
        compare(dirs, tmp_path / "cmp")
    with pytest.raises(MixsdError, match="no metrics.json"):
        compare([dirs[0], tmp_path], tmp_path / "cmp")


def test_compare_command(tmp_path):
    from typer.testing import CliRunner

    from mixsd.cli import app

    dirs = [str(d) for d in _seed_dirs(tmp_path)]
    result = CliRunner().invoke(app, ["compare", *dirs, "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "compare.json").is_file()
