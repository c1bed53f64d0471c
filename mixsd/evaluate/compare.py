"""`compare(report_dirs, out, control)`: the same runs over seeds, from one `mixsd evaluate` report
dir per seed.

    metrics.json per seed -> checks (same base, runs, checkpoints, items) -> per checkpoint the
    mean over seeds with a seeds x items CI -> retention at matched training accuracy over seeds
    -> run - control at each matched point (paired by seed) -> compare.md, tradeoff.png, compare.json

Only `metrics.json` is read: its per-item flags (`items`) carry everything. `compare.json` is
written last, so a dir holding it is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mixsd.errors import MixsdError
from mixsd.evaluate.plots import plot_kl, plot_tradeoff_seeds
from mixsd.evaluate.stats import (
    MATCHED_ACCURACIES,
    MATCHED_POINTS,
    bootstrap_ci_seeds,
    bootstrap_matched,
    replicate_ci,
    sign_flip_p,
)
from mixsd.evaluate.tradeoff import flags_array, kept_items, run_curve
from mixsd.io import write_atomic
from mixsd.outputs import check_output


def compare(report_dirs: list, out: str | Path, control: str = "sft") -> Path:
    """Write `compare.md`, `tradeoff.png` and `compare.json` into `out`; returns it.

    report_dirs: one `mixsd evaluate` report per seed, over the same runs (dir names) and base.
    control: the run every other run is compared with (paired by seed).
    """
    check_output(out, "compare", report_dirs)
    seeds = [load_metrics(d) for d in report_dirs]
    check_seeds(report_dirs, seeds, control)
    replicates = matched_replicates(seeds)
    result = {
        "seeds": [str(d) for d in report_dirs],
        "base": seeds[0]["base"]["path"],
        "control": control,
        "checkpoints": checkpoint_means(seeds),
        "matched": matched_over_seeds(seeds, replicates),
        "differences": differences(seeds, control, replicates),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result["plots"] = _plots(result, seeds[0]["base"], out)
    write_atomic(out / "compare.md", render_compare(result))
    write_atomic(out / "compare.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return out


def _plots(result: dict, base: dict, out: Path) -> dict[str, str]:
    """Draw the trade-off (needs a `train` split and a retention) and KL-over-training plots
    into `out`; `{name: PNG file name}`."""
    plots = {}
    ckpts, n = result["checkpoints"], len(result["seeds"])
    runs = list(dict.fromkeys(c["run"] for c in ckpts))
    curves = {run: [c for c in ckpts if c["run"] == run and c["retention"]] for run in runs}
    if "train" in base["memorization"] and any(curves.values()):
        train = base["memorization"]["train"]  # the same in every seed (check_seeds)
        plots["tradeoff"] = plot_tradeoff_seeds(
            curves, result["matched"], train, n, out / "tradeoff.png"
        ).name
    kl = {run: [(c["checkpoint"], c["kl"]["kl"]) for c in ckpts if c["run"] == run and "kl" in c]
          for run in runs}  # fmt: skip
    kl = {run: points for run, points in kl.items() if points}
    if kl:
        subtitle = f"mean over {n} seeds; CI over seeds x prompts"
        plots["kl"] = plot_kl(kl, out / "kl.png", subtitle).name
    return plots


def load_metrics(report_dir: str | Path) -> dict:
    path = Path(report_dir) / "metrics.json"
    if not path.is_file():
        raise MixsdError(f"{report_dir}: no metrics.json (not a finished `mixsd evaluate` report)")
    return json.loads(path.read_text(encoding="utf-8"))


def check_seeds(dirs: list, seeds: list[dict], control: str) -> None:
    """The seed reports must hold the same base (path and answers), runs and checkpoints."""
    first, ref = seeds[0], dirs[0]
    runs = list(first["runs"])
    if control not in runs:
        raise MixsdError(f"--control {control}: no such run in {ref} (runs: {', '.join(runs)})")
    for d, m in zip(dirs[1:], seeds[1:], strict=True):
        if m["base"]["path"] != first["base"]["path"]:
            raise MixsdError(
                f"{d}: base {m['base']['path']}, but {ref} has {first['base']['path']}"
            )
        if m["base"]["items"] != first["base"]["items"]:
            raise MixsdError(
                f"{d}: the base's answers differ from {ref}'s (other facts, suites, --limit, dtype or "
                "batch size?): evaluate every seed the same way"
            )
        for run in runs:
            if run not in m["runs"]:
                raise MixsdError(f"{d}: run {run} missing (it is in {ref})")
        for run in m["runs"]:
            if run not in first["runs"]:
                raise MixsdError(f"{ref}: run {run} missing (it is in {d})")
        if _kl_prompts(m) != _kl_prompts(first):
            raise MixsdError(
                f"{d}: KL prompts per checkpoint {_kl_prompts(m)} differ from {ref}'s "
                f"{_kl_prompts(first)}: evaluate every seed with the same --kl-prompts"
            )
        if _names(m) != _names(first):
            raise MixsdError(
                f"{d}: checkpoints {', '.join(_names(m))} differ from {ref}'s "
                f"{', '.join(_names(first))}"
            )


def _kl_prompts(m: dict) -> list[int | None]:
    return [c["kl"]["prompts"] if "kl" in c else None for c in m["checkpoints"]]


def _names(m: dict) -> list[str]:
    return [f"{c['run']}/{c['checkpoint']}" for c in m["checkpoints"]]


def checkpoint_means(seeds: list[dict]) -> list[dict]:
    """Per checkpoint: every memorization accuracy (the config's check and strict), the retention
    per suite and pooled, the KL to the base and log-likelihood change (when measured), as the
    mean over seeds with a 95% CI over seeds x items (`bootstrap_ci_seeds`), and the number of
    seeds where it is the first peak; the mean over seeds of the lost items' counts by cause."""
    base_items = seeds[0]["base"]["items"]["suites"]
    out = []
    for i, c in enumerate(seeds[0]["checkpoints"]):
        same = [m["checkpoints"][i] for m in seeds]
        kept = [kept_items(s["items"]["suites"], base_items) for s in same]
        per_suite = {
            name: _ci([k[name] for k in kept]) if kept[0][name].size else None
            for name in base_items
        }
        pooled = [np.concatenate([np.zeros(0), *k.values()]) for k in kept]
        retention = {"per_suite": per_suite, "pooled": _ci(pooled) if pooled[0].size else None}
        out.append(
            {
                "run": c["run"],
                "checkpoint": c["checkpoint"],
                "memorization": _means(same, "memorization"),
                "strict": _means(same, "strict"),
                "retention": retention if retention["pooled"] else None,
                "first_peak_seeds": sum(s["first_peak"] for s in same),
            }
        )
        if "lost" in c:
            out[-1]["lost"] = {k: float(np.mean([s["lost"][k] for s in same])) for k in c["lost"]}
        if "kl" in c:
            out[-1]["kl"] = {
                k: _ci([np.array(s["kl"]["per_prompt"][k]) for s in same])
                for k in ("kl", "delta_loglik")
            }
    return out


def _means(same: list[dict], kind: str) -> dict:
    """`{split: mean and CI}` of one checkpoint's accuracies of `kind` over seeds (`same`)."""
    splits = same[0]["items"][kind]
    return {g: _ci([flags_array(s["items"][kind][g]) for s in same]) for g in splits}


def _ci(rows: list[np.ndarray]) -> dict:
    mean, lo, hi = bootstrap_ci_seeds(np.stack(rows))
    return {"mean": mean, "lo": lo, "hi": hi}


def _seed_values(seeds: list[dict], run: str, point: str) -> list[float | None]:
    """One value per seed of a run's retention at a matched point (None: not reached)."""
    values = []
    for m in seeds:
        found = m["runs"][run]["matched"].get(point)
        values.append(None if found is None else found["mean"])
    return values


def matched_replicates(seeds: list[dict]) -> dict | None:
    """`bootstrap_matched` over the seeds' per-item flags (`run_curve`): `{run: {point: [n_boot,
    n_seeds]}}`; None without a curve (no `train` split, or no item the base answers correctly)."""
    base = seeds[0]["base"]  # the same in every seed (check_seeds)
    curves = [
        {run: run_curve(base, [c for c in m["checkpoints"] if c["run"] == run], r["tolerance"])
         for run, r in m["runs"].items()}
        for m in seeds
    ]  # fmt: skip
    if any(c is None for c in curves[0].values()):
        return None
    return bootstrap_matched(curves)


def matched_over_seeds(seeds: list[dict], replicates: dict | None) -> dict:
    """Per run and matched point: the mean over the seeds that reach it, its 95% CI over seeds x
    items (`replicate_ci`), and `reached` (k of n seeds); at the first peak also the mean
    training accuracy there. `{run: {point: {"mean", "lo", "hi", "reached"} }}`, mean None when
    no seed reaches it."""
    out: dict = {}
    for run in seeds[0]["runs"]:
        out[run] = {}
        for point in MATCHED_POINTS:
            values = [v for v in _seed_values(seeds, run, point) if v is not None]
            cell = {"mean": None, "lo": None, "hi": None, "reached": len(values)}
            if values:
                ci = replicate_ci(replicates[run][point])
                cell.update(mean=float(np.mean(values)), lo=ci[0], hi=ci[1])
            if point == "first_peak" and values:
                peaks = [m["runs"][run]["matched"]["first_peak"]["train"] for m in seeds]
                cell["train"] = float(np.mean(peaks))
            out[run][point] = cell
    return out


def differences(seeds: list[dict], control: str, replicates: dict | None) -> dict:
    """Per run other than `control`, at each matched point: run - control over the seeds where
    both reach it: the mean, its 95% CI from the paired replicates (seeds x items, the same draws
    for both runs), the exact sign-flip p over the seeds' differences and n (seeds); None when
    no seed has both."""
    out: dict = {}
    for run in seeds[0]["runs"]:
        if run == control:
            continue
        out[run] = {}
        for point in MATCHED_POINTS:
            pairs = zip(_seed_values(seeds, run, point), _seed_values(seeds, control, point),
                        strict=True)  # fmt: skip
            d = [t - c for t, c in pairs if t is not None and c is not None]
            out[run][point] = None
            if d:
                ci = replicate_ci(replicates[run][point] - replicates[control][point])
                out[run][point] = {"mean": float(np.mean(d)), "lo": ci[0], "hi": ci[1],
                                   "p": sign_flip_p(d), "n": len(d)}  # fmt: skip
    return out


def render_compare(r: dict) -> str:
    """compare.md: the tables of `compare.json`, the seed count in every header."""
    n = len(r["seeds"])
    lines = [f"# mixsd compare: {n} seeds", "", f"Base model: `{r['base']}`", ""]
    lines += [f"- `{d}`" for d in r["seeds"]]
    lines += [
        "",
        "Retention: of the items the base answers correctly, the share the model still does "
        "(pooled over the suites). [lo, hi]: 95% bootstrap intervals.",
        "",
        f"## Per checkpoint (mean over {n} seeds; CI over seeds x items)",
        "",
    ]
    ckpts = r["checkpoints"]
    splits = list(ckpts[0]["memorization"]) if ckpts else []
    body = [
        [_label(c)]
        + [_cell(c["memorization"][s]) for s in splits]
        + [_cell(c["strict"][s]) for s in splits]
        + [
            _cell(c["retention"]["pooled"] if c["retention"] else None),
            f"{c['first_peak_seeds']}/{n}",
        ]
        for c in ckpts
    ]
    strict = [f"{s} strict" for s in splits]
    lines += _table(["model", *splits, *strict, "retention", "first peak in"], body)
    header = ["run"] + [f"{100 * a:.0f}%" for a in MATCHED_ACCURACIES] + ["first peak"]
    lines += [
        f"## Retention at matched training accuracy ({n} seeds)",
        "",
        "Mean over the seeds whose curve reaches the accuracy (k/n); CI over seeds x items: each "
        "bootstrap replicate redraws the seeds, then their training questions and retention "
        "items, and finds the crossing (or first peak) again on the redrawn curve.",
        "",
    ]
    body = [
        [run] + [_reached(m[p], n, p) for p in MATCHED_POINTS] for run, m in r["matched"].items()
    ]
    lines += _table(header, body)
    if r["differences"]:
        lines += [
            f"## Run − {r['control']} ({n} seeds, paired by seed)",
            "",
            "Retention difference in points; CI: the paired bootstrap over seeds x items (both runs "
            "redrawn with the same seeds and items); p: exact "
            f"two-sided sign-flip test (with {n} seeds the smallest possible p is "
            f"{2 / 2**n:.3g}); n: seeds where both runs reach the point.",
            "",
        ]
        body = [
            [run] + [_diff(d[p]) for p in MATCHED_POINTS] for run, d in r["differences"].items()
        ]
        lines += _table(header, body)
    if any("lost" in c for c in ckpts):
        lines += [f"## Lost items by cause (mean count over {n} seeds)", ""]
        causes = list(next(c["lost"] for c in ckpts if "lost" in c))
        body = [
            [_label(c), *(f"{c['lost'][k]:.1f}" for k in causes), f"{sum(c['lost'].values()):.1f}"]
            for c in ckpts
            if "lost" in c
        ]
        lines += _table(["model", *causes, "lost"], body)
    if "kl" in r["plots"]:
        lines += [
            f"## KL to the base along its own answers (mean over {n} seeds; CI over seeds x "
            "prompts)",
            "",
        ]
        body = [
            [_label(c), _num(c["kl"]["kl"]), _num(c["kl"]["delta_loglik"])]
            for c in ckpts
            if "kl" in c
        ]
        lines += _table(["model", "KL (nats/token)", "Δ log-lik (nats/token)"], body)
        lines += [f"![KL over training]({r['plots']['kl']})", ""]
    if "tradeoff" in r["plots"]:
        lines += [
            f"## Trade-off ({n} seeds)",
            "",
            "Mean over seeds per checkpoint, bars: the retention CI (seeds x items); ringed: the "
            "mean first peak.",
            "",
            f"![trade-off]({r['plots']['tradeoff']})",
            "",
        ]
    return "\n".join(lines)


def _label(c: dict) -> str:
    return f"{c['run']} / {c['checkpoint']}" if c["checkpoint"] else c["run"]


def _num(x: dict) -> str:
    return f"{x['mean']:.4f} [{x['lo']:.4f}, {x['hi']:.4f}]"


def _cell(x: dict | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x['mean']:.1f}% [{100 * x['lo']:.1f}, {100 * x['hi']:.1f}]"


def _reached(x: dict, n: int, point: str) -> str:
    if x["mean"] is None:
        return f"{'no first peak' if point == 'first_peak' else 'not reached'} (0/{n})"
    return f"{_cell(x)} ({x['reached']}/{n})"


def _diff(d: dict | None) -> str:
    if d is None:
        return "—"
    return (
        f"{100 * d['mean']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}], "
        f"p={d['p']:.3g} (n={d['n']})"
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out + [""]
