"""The report: retention on the items the base answers correctly, CIs beside every number, the
first peak at each run's tolerance, retention at matched accuracy; plots exist and are PNGs;
metrics.json holds exactly the numbers it was given."""

from __future__ import annotations

import json

import numpy as np
import pytest
from handmade_metrics import metrics as handmade

from mixsd.errors import MixsdError
from mixsd.evaluate.report import write_report
from mixsd.evaluate.stats import curves, retention_at
from mixsd.evaluate.tradeoff import retention, run_kind, with_ci

NLL = {"sft": np.array([2.0, 3.0, 4.0], np.float32), "λ=0.3": np.array([0.1, 0.2], np.float32)}


def test_retention_counts_the_items_the_base_answers_correctly():
    """Base gsm8k 1100, known 11110: 6 items. The model keeps 1 of 2 and 3 of 4: pooled 4/6, not
    the mean of the suites' 1/2 and 3/4."""
    r = retention({"gsm8k": "1011", "known": "11101"}, {"gsm8k": "1100", "known": "11110"})
    assert r["per_suite"]["gsm8k"]["mean"] == 0.5 and r["per_suite"]["gsm8k"]["n"] == 2
    assert r["per_suite"]["known"]["mean"] == 0.75
    assert r["pooled"]["mean"] == pytest.approx(4 / 6) and r["pooled"]["n"] == 6
    assert r["pooled"]["lo"] < 4 / 6 < r["pooled"]["hi"]
    none = retention({"a": "11", "b": "10"}, {"a": "00", "b": "10"})
    assert none["per_suite"]["a"] is None and none["pooled"]["mean"] == 1.0
    assert retention({"a": "11"}, {"a": "00"}) == {"per_suite": {"a": None}, "pooled": None}


def test_ci_contains_the_mean():
    ci = with_ci([1, 0, 1, 1, 0, 1, 1, 1])
    assert ci["mean"] == 0.75 and ci["n"] == 8
    assert 0.3 < ci["lo"] < 0.75 < ci["hi"] <= 1.0


def test_first_peak_and_matched_retention_per_run():
    m = handmade()
    sft, mix = m["runs"]["sft"], m["runs"]["mixsd-0.3"]
    assert (sft["kind"], sft["tolerance"], sft["first_peak"]) == ("sft", 0.0, "epoch-2")
    assert (mix["kind"], mix["tolerance"], mix["first_peak"]) == ("mixsd", 5.0, "epoch-3")
    assert [c["first_peak"] for c in m["checkpoints"]] == [False, True, False, False, False, True]
    # sft: (0.1, 1) (0.4, 4/6) (0.9, 2/6) (0.8, 1/6); 50% lies 1/5 of the way from 0.4 to 0.9
    want = {"0.5": 3.6 / 6, "0.8": 2.4 / 6, "0.9": 2 / 6}
    for a, value in want.items():
        assert sft["matched"][a]["mean"] == pytest.approx(value)
        assert sft["matched"][a]["lo"] <= value <= sft["matched"][a]["hi"]
    assert sft["matched"]["first_peak"]["mean"] == pytest.approx(2 / 6)
    assert sft["matched"]["first_peak"]["train"] == 0.9
    # mixsd: (0.1, 1) (0.3, 1) (0.7, 5/6) (1.0, 4/6)
    want = {"0.5": 11 / 12, "0.8": 7 / 9, "0.9": 13 / 18}
    for a, value in want.items():
        assert mix["matched"][a]["mean"] == pytest.approx(value)
    # the per-item interpolation's mean is the curve's own
    for run, curve in curves(m).items():
        for a in ("0.5", "0.8", "0.9"):
            got = m["runs"][run]["matched"][a]["mean"]
            assert got == pytest.approx(retention_at(curve, float(a)))


def test_matched_accuracy_not_reached(tmp_path):
    m = handmade({"sft": [{"train": "1100000000", "paraphrase": "0" * 10, "gsm8k": "1000",
                           "known": "11100"}] * 2})  # fmt: skip
    assert m["runs"]["sft"]["matched"]["0.5"] is None
    md = (write_report(tmp_path / "r", m, NLL) / "report.md").read_text()
    assert "| sft | sft (0) | not reached | not reached | not reached |" in md


def test_report_written_with_plots(tmp_path):
    metrics = handmade()
    out = write_report(tmp_path / "report", metrics, NLL)
    for png in ("nll_cdf.png", "tradeoff.png", "kl.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert sorted(p.name for p in out.iterdir()) == [
        "kl.png",
        "metrics.json",
        "nll_cdf.png",
        "report.md",
        "tradeoff.png",
    ]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "![trade-off](tradeoff.png)" in md and "![NLL CDFs](nll_cdf.png)" in md
    lo, hi = metrics["checkpoints"][1]["ci"]["memorization"]["train"]
    assert f"| sft / epoch-2 ★ | 90.0% [{100 * lo:.1f}, {100 * hi:.1f}] |" in md
    assert "Check: `boxed,contains`. The same answers under the strict check" in md
    assert "| sft / epoch-2 ★ | 80.0% [" in md  # strict: the first train answer fails
    assert "| gsm8k | 4 | 2 | 50.0% [" in md  # the base's suite: items, correct, accuracy
    assert "| model | gsm8k (2 items) | known (4 items) | pooled (6 items) |" in md
    assert "| sft / epoch-1 | 50.0% [0.0, 100.0] | 75.0% [" in md
    r = metrics["runs"]["sft"]["matched"]["0.5"]
    assert f"| sft | sft (0) | 60.0% [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}] |" in md
    assert "(epoch-2, train 90.0%) |" in md
    assert "| mixsd-0.3 | mixsd (5) | 91.7% [" in md
    assert "| sft | 3 | 3.0000 | 3.0000 | 3.8000 |" in md
    # KL: the mean over prompts of 0.01, 0.02, 0.03, 0.04 (each prompt once), CI over prompts
    ci = metrics["checkpoints"][0]["kl"]["ci"]["kl"]
    assert ci["mean"] == pytest.approx(0.025) and 0.01 <= ci["lo"] < 0.025 < ci["hi"] <= 0.04
    assert f"| sft / epoch-1 | 0.0250 [{ci['lo']:.4f}, {ci['hi']:.4f}] | -0.1000 [" in md
    assert "| 4 | 20 |" in md
    assert "| model | format | leakage | collapse | genuine | lost |" in md
    assert "| sft / epoch-3 | 0 | 1 | 0 | 4 | 5 |" in md  # kept 1 of 6
    assert "![KL over training](kl.png)" in md
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    plots = {"nll_cdf": "nll_cdf.png", "tradeoff": "tradeoff.png", "kl": "kl.png"}
    assert saved == {**metrics, "plots": plots}


def test_report_without_nll_or_checkpoints(tmp_path):
    metrics = handmade()
    metrics.update(checkpoints=[], runs={}, nll={}, fisher=None)
    out = write_report(tmp_path / "r", metrics, {})
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.md"]
    assert json.loads((out / "metrics.json").read_text())["plots"] == {}


def test_report_says_the_share_trained_on_references_beside_the_run(tmp_path):
    """A MixSD run that trained 3 of 4 rows on their references is mostly SFT: the report says
    it beside the run's name, in every table."""
    metrics = handmade()
    for c in metrics["checkpoints"]:
        if c["run"] == "mixsd-0.3":
            c["replaced_share"] = 0.75
    md = (write_report(tmp_path / "r", metrics, NLL) / "report.md").read_text()
    assert "| mixsd-0.3 (75% on references) / epoch-1 | 30.0% [" in md
    assert "| mixsd-0.3 (75% on references) / epoch-1 | 100.0% [100.0, 100.0] |" in md
    assert "| mixsd-0.3 (75% on references) / epoch-3 ★ | 0.03 | 0.3 |" in md
    assert "(N% on references): the share of the run's MixSD rows that failed" in md


def _run_dir(path, method, lams):
    path.mkdir()
    (path / "config.yaml").write_text(f"model: m\nmethod: {method}\n")
    parts = [{"path": f"lam={x}/p.parquet", "lam": x, "rows": 1, "sha256": "0"} for x in lams]
    data = {"input": "f: sha256 0"} if method == "opsd" else {"sets/a": parts}
    (path / "data.json").write_text(json.dumps(data))
    return path


def test_run_kind_from_the_run_dir(tmp_path):
    """The first peak's tolerance follows what the run trained on (data.json, config.yaml)."""
    assert run_kind(_run_dir(tmp_path / "mix", "nll", [None, 0.3])) == "mixsd"
    assert run_kind(_run_dir(tmp_path / "sft", "nll", [None])) == "sft"  # from-references
    assert run_kind(_run_dir(tmp_path / "lam0", "nll", [0.0])) == "sft"
    assert run_kind(_run_dir(tmp_path / "opsd", "opsd", [])) == "opsd"
    (tmp_path / "hf").mkdir()
    assert run_kind(tmp_path / "hf") is None
    (tmp_path / "sft" / "data.json").unlink()
    with pytest.raises(MixsdError, match="no data.json: cannot tell MixSD from SFT"):
        run_kind(tmp_path / "sft")


def test_the_tolerance_of_each_run_comes_from_its_data(tmp_path):
    """Training accuracy 10, 50, 48, 90%: a 2-point dip is SFT's first peak (tolerance 0) but
    not a MixSD run's (5 points: its fallback is the last checkpoint)."""
    from handmade_metrics import entry

    from mixsd.evaluate.tradeoff import summarize_runs

    def row(run, k, right):
        flags = {"train": "1" * right + "0" * (50 - right), "paraphrase": "0", "gsm8k": "1100",
                 "known": "11110"}  # fmt: skip
        c = {"run": run, "checkpoint": f"epoch-{k}", **entry(flags)}
        c["retention"] = retention(c["items"]["suites"], base["items"]["suites"])
        return c

    base = entry({"train": "0" * 50, "paraphrase": "0", "gsm8k": "1100", "known": "11110"})
    kinds = {
        "mix": run_kind(_run_dir(tmp_path / "mix", "nll", [0.3])),
        "sft": run_kind(_run_dir(tmp_path / "sft", "nll", [None])),
    }
    rows = [row(run, k, n) for run in kinds for k, n in enumerate((5, 25, 24, 45), start=1)]
    runs = summarize_runs(base, rows, kinds)
    assert (runs["sft"]["tolerance"], runs["sft"]["first_peak"]) == (0.0, "epoch-2")
    assert (runs["mix"]["tolerance"], runs["mix"]["first_peak"]) == (5.0, "epoch-4")
