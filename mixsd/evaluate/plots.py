"""The report's pictures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixsd.evaluate.nll import ecdf


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write to a temp name, then rename: a PNG that exists is complete."""
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    return path


def plot_nll_cdfs(nll: dict[str, np.ndarray], path: str | Path) -> Path:
    """Empirical CDFs of per-token NLL under the base, one curve per target set / λ; the legend
    gives each median."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label in sorted(nll):
        x, y = ecdf(nll[label])
        ax.step(x, y, where="post", label=f"{label} (median {np.median(nll[label]):.3f})")
    ax.set_xlabel("per-token NLL under the base model (nats)")
    ax.set_ylabel("fraction of target tokens")
    ax.set_title("Target NLL under the base model")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_tradeoff(
    points: list[dict], path: str | Path, base_train_acc: float | None = None
) -> Path:
    """Training accuracy (x) against pooled retention (y) for every checkpoint.

    points: dicts with `run`, `train_acc`, `retention`, `first_peak` (bool), in checkpoint order
    within each run. One colour per run (method / λ), checkpoints joined in order, the first-peak
    checkpoint ringed; the base model, if given, is the black cross at retention 1.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    runs = list(dict.fromkeys(p["run"] for p in points))
    colours = plt.get_cmap("tab10")
    for i, run in enumerate(runs):
        mine = [p for p in points if p["run"] == run and p["retention"] is not None]
        if not mine:
            continue
        c = colours(i % 10)
        xs, ys = [p["train_acc"] for p in mine], [p["retention"] for p in mine]
        ax.plot(xs, ys, "-", color=c, alpha=0.35, linewidth=1)
        ax.scatter(xs, ys, color=c, s=28, label=run, zorder=3)
        for p in mine:
            if p["first_peak"]:
                ax.scatter([p["train_acc"]], [p["retention"]], s=170, facecolors="none",
                           edgecolors=c, linewidths=2, zorder=4)  # fmt: skip
    _tradeoff_axes(ax, base_train_acc, "Memorization vs retention, every checkpoint")
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def _tradeoff_axes(ax, base_train_acc: float | None, title: str) -> None:
    """What both trade-off plots share: the base's cross, the first-peak legend entry, labels."""
    if base_train_acc is not None:
        ax.scatter([base_train_acc], [1.0], marker="x", color="black", s=60, label="base", zorder=5)
    ax.scatter(
        [], [], s=170, facecolors="none", edgecolors="gray", linewidths=2, label="first peak"
    )
    ax.set_xlabel("training accuracy (closed book, T=0)")
    ax.set_ylabel("retention (of the items the base answers correctly)")
    ax.set_title(title)
    ax.set_xlim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_tradeoff_seeds(
    curves: dict[str, list[dict]], matched: dict, base_train_acc: float, n_seeds: int, path
) -> Path:
    """The trade-off over seeds: one curve per run from the base (training accuracy, retention 1)
    through each checkpoint's mean over seeds, a bar for its retention CI, the mean first peak
    ringed.

    curves: per run its checkpoints from `compare.json` (`memorization.train`, `retention.pooled`
    as mean/lo/hi); matched: `compare.json`'s `matched` (its `first_peak` cell).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colours = plt.get_cmap("tab10")
    for i, (run, points) in enumerate(curves.items()):
        if not points:
            continue
        c = colours(i % 10)
        xs = [base_train_acc] + [p["memorization"]["train"]["mean"] for p in points]
        pooled = [p["retention"]["pooled"] for p in points]
        ys = [1.0] + [r["mean"] for r in pooled]
        lo, hi = [1.0] + [r["lo"] for r in pooled], [1.0] + [r["hi"] for r in pooled]
        # bars, not a band: training accuracy can fall between checkpoints, and a band over a
        # curve that turns back on itself folds over
        yerr = [np.subtract(ys, lo), np.subtract(hi, ys)]
        ax.errorbar(xs, ys, yerr=yerr, fmt="-o", color=c, markersize=4, linewidth=1.2,
                    elinewidth=1, capsize=3, alpha=0.9, label=run)  # fmt: skip
        peak = matched[run]["first_peak"]
        if peak["mean"] is not None:
            ax.scatter([peak["train"]], [peak["mean"]], s=170, facecolors="none",
                       edgecolors=c, linewidths=2, zorder=4)  # fmt: skip
    _tradeoff_axes(
        ax, base_train_acc, f"Memorization vs retention, mean over {n_seeds} seeds (95% CI bars)"
    )
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_kl(curves: dict[str, list[tuple[str, dict]]], path, subtitle: str) -> Path:
    """KL(base || model) over training: one curve per run, x the checkpoint in training order
    (0: the base, KL 0), y the mean over prompts of the per-token KL with its 95% CI as bars.

    curves: per run [(checkpoint name, {"mean", "lo", "hi"})] in training order.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.get_cmap("tab10")
    for i, (run, points) in enumerate(curves.items()):
        xs = list(range(len(points) + 1))
        ys = [0.0] + [p["mean"] for _, p in points]
        yerr = [[0.0] + [p["mean"] - p["lo"] for _, p in points],
                [0.0] + [p["hi"] - p["mean"] for _, p in points]]  # fmt: skip
        ax.errorbar(xs, ys, yerr=yerr, fmt="-o", color=colours(i % 10), markersize=4,
                    capsize=3, label=run)  # fmt: skip
    longest = max(curves.values(), key=len)
    ax.set_xticks(range(len(longest) + 1), ["base"] + [name or "model" for name, _ in longest])
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_ylabel("KL(base || model), nats per token")
    ax.set_title(f"Drift from the base along its own answers ({subtitle})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
