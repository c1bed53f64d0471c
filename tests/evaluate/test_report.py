"""The report: plots exist and are PNGs, report.md shows them and the tables, metrics.json holds
exactly the numbers it was given."""

from __future__ import annotations

import json

import numpy as np

from mixsd.evaluate.report import write_report
from mixsd.evaluate.scoring import retention


def _metrics():
    base = {"path": "base", "memorization": {"train": 0.1, "paraphrase": 0.0},
            "suites": {"gsm8k": 0.5, "known": 0.8}}  # fmt: skip
    ckpts = []
    for run, curve in (("sft", [0.4, 0.9, 0.8]), ("mixsd-0.3", [0.3, 0.7, 1.0])):
        for k, acc in enumerate(curve, start=1):
            suites = {"gsm8k": 0.5 - 0.1 * k, "known": 0.8 - 0.05 * k}
            ckpts.append({
                "run": run, "checkpoint": f"epoch-{k}", "path": f"{run}/exports/epoch-{k}",
                "memorization": {"train": acc, "paraphrase": acc / 2}, "suites": suites,
                "retention": retention(suites, base["suites"]),
                "drift": {"fisher": 0.01 * k, "l2": 0.1 * k},
                "first_peak": (run, k) in (("sft", 2), ("mixsd-0.3", 3)),
                "replaced_share": None if run == "sft" else 0.0,
            })  # fmt: skip
    nll_values = {
        "sft": np.array([2.0, 3.0, 4.0], np.float32),
        "λ=0.3": np.array([0.1, 0.2], np.float32),
    }
    metrics = {
        "base": base,
        "checkpoints": ckpts,
        "nll": {"sft": {"tokens": 3, "mean": 3.0, "median": 3.0, "p90": 3.8},
                "λ=0.3": {"tokens": 2, "mean": 0.15, "median": 0.15, "p90": 0.19}},
        "fisher": {"estimator": "per example", "examples": 8},
        "counts": {"memorization": {"train": 10, "paraphrase": 10}, "suites": {"gsm8k": 4, "known": 5}},
        "config": {"base": "base", "peak_tolerance": 5.0},
    }  # fmt: skip
    return metrics, nll_values


def test_report_written_with_plots(tmp_path):
    metrics, nll_values = _metrics()
    out = write_report(tmp_path / "report", metrics, nll_values)
    for png in ("nll_cdf.png", "tradeoff.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "nll_cdf.png",
        "report.md",
        "tradeoff.png",
    ]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "![trade-off](tradeoff.png)" in md and "![NLL CDFs](nll_cdf.png)" in md
    assert "| sft / epoch-2 ★ | 90.0% | 45.0% |" in md  # memorization row, first peak starred
    assert "that the next checkpoint does not exceed by more than 5 points)." in md
    assert (
        "| mixsd-0.3 / epoch-1 | 40.0% (80%) | 75.0% (94%) | 87% |" in md
    )  # acc (retention), mean
    assert "| sft | 3 | 3.0000 | 3.0000 | 3.8000 |" in md
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved == {**metrics, "plots": {"nll_cdf": "nll_cdf.png", "tradeoff": "tradeoff.png"}}


def test_report_without_nll_or_checkpoints(tmp_path):
    metrics, _ = _metrics()
    metrics.update(checkpoints=[], nll={}, fisher=None)
    out = write_report(tmp_path / "r", metrics, {})
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.md"]
    assert json.loads((out / "metrics.json").read_text())["plots"] == {}


def test_report_says_the_share_trained_on_references_beside_the_run(tmp_path):
    """A MixSD run that trained 3 of 4 rows on their references is mostly SFT: the report says
    it beside the run's name, in every table."""
    metrics, nll_values = _metrics()
    for c in metrics["checkpoints"]:
        if c["run"] == "mixsd-0.3":
            c["replaced_share"] = 0.75
    md = (write_report(tmp_path / "r", metrics, nll_values) / "report.md").read_text()
    assert "| mixsd-0.3 (75% on references) / epoch-1 | 30.0% | 15.0% |" in md
    assert "| mixsd-0.3 (75% on references) / epoch-1 | 40.0% (80%) | 75.0% (94%) | 87% |" in md
    assert "| mixsd-0.3 (75% on references) / epoch-3 ★ | 0.03 | 0.3 |" in md
    assert "| sft / epoch-2 ★ | 90.0% | 45.0% |" in md
    assert "(N% on references): the share of the run's MixSD rows that failed" in md
