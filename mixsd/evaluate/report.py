"""The report: `metrics.json` (every number) and `report.md` (tables and the PNG plots).

Every file is written to a temp name and renamed; `metrics.json` comes last, so a report dir with a
`metrics.json` is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mixsd.evaluate.plots import plot_kl, plot_nll_cdfs, plot_tradeoff
from mixsd.evaluate.stats import MATCHED_ACCURACIES
from mixsd.evaluate.taxonomy import CATEGORIES
from mixsd.io import write_atomic

FISHER_NOTE = (
    "Diagonal empirical Fisher of the base, per example: F_i = mean_n (d/dθ_i log p(y_n|x_n))^2 "
    "over held-out suite examples (their references as y); Fisher drift = sum_i F_i (θ_i - θ0_i)^2; "
    "L2 drift = ||θ - θ0||_2."
)
CI_NOTE = (
    "[lo, hi]: 95% bootstrap interval over items (2000 resamples); one seed, so it says nothing "
    "about seed-to-seed spread (`mixsd compare` over seed reports does)."
)


def write_report(out: str | Path, metrics: dict, nll: dict[str, np.ndarray]) -> Path:
    """Draw the plots into `out`, then write `report.md` and `metrics.json`; returns `out`.

    metrics: `{"base": {...}, "checkpoints": [...], "runs": {...}, "nll": {...}, "fisher": ...,
    "config": ...}`
    as `mixsd.evaluate.run` builds it; `metrics["plots"]` is filled here with the PNG names.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if nll:
        plots["nll_cdf"] = plot_nll_cdfs(nll, out / "nll_cdf.png").name
    points = tradeoff_points(metrics["checkpoints"])
    if points:
        base_train = metrics["base"]["memorization"].get("train")
        plots["tradeoff"] = plot_tradeoff(points, out / "tradeoff.png", base_train).name
    kl = kl_curves(metrics["checkpoints"])
    if kl:
        plots["kl"] = plot_kl(kl, out / "kl.png", "one seed; CI over prompts").name
    metrics = {**metrics, "plots": plots}
    write_atomic(out / "report.md", render_markdown(metrics))
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return out


def tradeoff_points(checkpoints: list[dict]) -> list[dict]:
    """One point per checkpoint that has both a training accuracy and a pooled retention."""
    return [
        {
            "run": c["run"],
            "train_acc": c["memorization"]["train"],
            "retention": c["retention"]["pooled"]["mean"],
            "first_peak": c["first_peak"],
        }
        for c in checkpoints
        if "train" in c["memorization"] and c["retention"]["pooled"] is not None
    ]


def kl_curves(checkpoints: list[dict]) -> dict[str, list[tuple[str, dict]]]:
    """Per run [(checkpoint, KL mean and CI over prompts)] of the checkpoints that have a KL."""
    out: dict = {}
    for c in checkpoints:
        if "kl" in c:
            out.setdefault(c["run"], []).append((c["checkpoint"], c["kl"]["ci"]["kl"]))
    return out


def render_markdown(m: dict) -> str:
    base, ckpts = m["base"], m["checkpoints"]
    lines = ["# mixsd evaluation report", "", f"Base model: `{base['path']}`", "", CI_NOTE]
    if any(c["first_peak"] for c in ckpts):
        lines += [
            "",
            "★ the run's first peak (the authors' rule): the first checkpoint, from the second "
            "on, that sets a new maximum of training accuracy and that the next checkpoint does "
            "not exceed, falling at least the run's tolerance below it (5 points for MixSD runs, "
            "0 for SFT and OPSD); "
            "else the last checkpoint.",
        ]
    if any(c["replaced_share"] for c in ckpts):
        lines += [
            "",
            "(N% on references): the share of the run's MixSD rows that failed their answer check "
            "and were trained on their reference answers (`--failed reference`): for those rows "
            "the run is SFT.",
        ]
    lines += [""]
    rows = [("base", base)] + [(_name(c), c) for c in ckpts]
    splits = list(base["memorization"])
    if splits:
        lines += ["## Memorization (closed book, T=0)", ""]
        counts = m["counts"]["memorization"]
        lines += _table(
            ["model"] + [f"{s} (n={counts[s]})" for s in splits],
            [[n] + [_acc(r, "memorization", s) for s in splits] for n, r in rows],
        )
        methods = ",".join(m["config"]["answer_methods"])
        lines += [
            f"Check: `{methods}`. The same answers under the strict check (a box equal to the "
            "gold, else the gold affirmed, not negated, in the first sentence):",
            "",
        ]
        lines += _table(
            ["model"] + [f"{s} strict" for s in splits],
            [[n] + [_acc(r, "strict", s) for s in splits] for n, r in rows],
        )
    suites = list(base["suites"])
    if suites:
        lines += _retention_tables(m, rows[1:])
    if m["runs"] and any(r["matched"] for r in m["runs"].values()):
        lines += _matched_table(m["runs"])
    if "tradeoff" in m["plots"]:
        lines += [
            "## Trade-off",
            "",
            "Every checkpoint; ringed: the first peak.",
            "",
            f"![trade-off]({m['plots']['tradeoff']})",
            "",
        ]
    elif ckpts:
        lines += [
            "## Trade-off",
            "",
            "No plot: it needs the `train` split and an item of a suite the base answers correctly.",
            "",
        ]
    if any("lost" in c for c in ckpts):
        lines += _lost_table(ckpts)
    if "kl" in m["plots"]:
        lines += _kl_table(ckpts, m["plots"]["kl"])
    if m["nll"]:
        lines += ["## Target NLL under the base model (per token, nats)", ""]
        lines += _table(
            ["targets", "tokens", "median", "mean", "p90"],
            [
                [k, str(v["tokens"]), f"{v['median']:.4f}", f"{v['mean']:.4f}", f"{v['p90']:.4f}"]
                for k, v in m["nll"].items()
            ],
        )
        lines += [f"![NLL CDFs]({m['plots']['nll_cdf']})", ""]
    if m.get("fisher"):
        lines += ["## Weight drift from the base", "", FISHER_NOTE, ""]
        lines += _table(
            ["model", "Fisher drift", "L2 drift"],
            [[_name(c), f"{c['drift']['fisher']:.4g}", f"{c['drift']['l2']:.4g}"] for c in ckpts],
        )
    return "\n".join(lines)


def _retention_tables(m: dict, named: list[tuple[str, dict]]) -> list[str]:
    """The base's held-out accuracy per suite, then each checkpoint's retention on the items the
    base answers correctly, per suite and pooled."""
    base, counts = m["base"], m["counts"]["suites"]
    suites = list(base["suites"])
    kept = {s: base["items"]["suites"][s].count("1") for s in suites}
    lines = ["## Held-out suites: the base", ""]
    lines += _table(
        ["suite", "items", "base correct", "base accuracy"],
        [[s, str(counts[s]), str(kept[s]), _acc(base, "suites", s)] for s in suites],
    )
    lines += [
        "## Retention (of the items the base answers correctly, the share the model still does)",
        "",
    ]
    header = [f"{s} ({kept[s]} items)" for s in suites] + [f"pooled ({sum(kept.values())} items)"]
    body = [
        [n]
        + [_ci(c["retention"]["per_suite"][s]) for s in suites]
        + [_ci(c["retention"]["pooled"])]
        for n, c in named
    ]
    lines += _table(["model", *header], body)
    lines += ["pooled: every suite's items together, each once (n/a: the base answers none).", ""]
    return lines


def _lost_table(ckpts: list[dict]) -> list[str]:
    lines = [
        "## Lost items by cause",
        "",
        "Suite items the base answers correctly and the model does not (`mixsd.evaluate.taxonomy`"
        "): collapse (empty, looping or off-topic), leakage (the training facts' answers, "
        "subjects or phrasing where the base had none), format (the gold is there, affirmed, but "
        "not where the check looks), genuine (a wrong answer).",
        "",
    ]
    body = [
        [_name(c), *(str(c["lost"][k]) for k in CATEGORIES), str(sum(c["lost"].values()))]
        for c in ckpts
        if "lost" in c
    ]
    return lines + _table(["model", *CATEGORIES, "lost"], body)


def _kl_table(ckpts: list[dict], plot: str) -> list[str]:
    lines = [
        "## KL to the base along its own answers",
        "",
        "On held-out prompts (the suites' and general chat prompts) the base answers greedily; "
        "along each answer, per token: KL(base || model) of the next-token distributions and the "
        "change of the answer's log-likelihood (model − base). Means over prompts (each prompt's "
        "own per-token mean), CI over prompts; no gold needed, so drift shows before answers "
        "turn wrong.",
        "",
    ]
    body = [
        [
            _name(c),
            _num(c["kl"]["ci"]["kl"]),
            _num(c["kl"]["ci"]["delta_loglik"]),
            str(c["kl"]["prompts"]),
            str(c["kl"]["tokens"]),
        ]
        for c in ckpts
        if "kl" in c
    ]
    lines += _table(
        ["model", "KL (nats/token)", "Δ log-lik (nats/token)", "prompts", "tokens"], body
    )
    return lines + [f"![KL over training]({plot})", ""]


def _matched_table(runs: dict) -> list[str]:
    lines = [
        "## Retention at matched training accuracy",
        "",
        "Pooled retention where the run's curve (the base first) first reaches each training "
        "accuracy, interpolated between the two checkpoints around the crossing (the CI resamples "
        "items, the crossing held fixed), and at the first peak.",
        "",
    ]
    header = ["run", "kind (tolerance)"] + [f"{100 * a:.0f}%" for a in MATCHED_ACCURACIES]
    body = []
    for run, r in runs.items():
        if not r["matched"]:
            continue
        kind = "—" if r["kind"] is None else f"{r['kind']} ({r['tolerance']:g})"
        cells = [_ci(r["matched"][str(a)], "not reached") for a in MATCHED_ACCURACIES]
        peak = r["matched"]["first_peak"]
        at_peak = (
            "—"
            if peak is None
            else (f"{_ci(peak)} ({r['first_peak']}, train {_pct(peak['train'])})")
        )
        body.append([run, kind, *cells, at_peak])
    return lines + _table([*header, "first peak"], body)


def _name(c: dict) -> str:
    peak = " ★" if c["first_peak"] else ""
    run = c["run"]
    if c["replaced_share"]:
        run += f" ({100 * c['replaced_share']:.0f}% on references)"
    return f"{run} / {c['checkpoint']}{peak}" if c["checkpoint"] else run + peak


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _acc(model: dict, kind: str, group: str) -> str:
    """An accuracy of the model with its CI: `90.0% [70.0, 100.0]`."""
    lo, hi = model["ci"][kind][group]
    return f"{_pct(model[kind][group])} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _num(x: dict) -> str:
    """A `{"mean", "lo", "hi"}` of a plain number as `0.0123 [0.0100, 0.0150]`."""
    return f"{x['mean']:.4f} [{x['lo']:.4f}, {x['hi']:.4f}]"


def _ci(x: dict | None, missing: str = "n/a") -> str:
    """A `{"mean", "lo", "hi"}` as `90.0% [70.0, 100.0]`."""
    if x is None:
        return missing
    return f"{_pct(x['mean'])} [{100 * x['lo']:.1f}, {100 * x['hi']:.1f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]
