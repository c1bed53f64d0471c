"""The experiment's statistics: bootstrap CIs over items and seeds, retention at matched training
accuracy, the authors' first peak, and the paired MixSD - SFT comparison over seeds.

Pure functions on numbers (numpy only). Accuracies and retentions are fractions (0.8, not 80),
except where a docstring says points (of 100), as the first peak's tolerance is.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from mixsd.errors import MixsdError

MATCHED_ACCURACIES = (0.5, 0.8, 0.9)  # the training accuracies at which retention is compared
# keys of a run's matched values: each accuracy, and the authors' first peak
MATCHED_POINTS = (*(str(a) for a in MATCHED_ACCURACIES), "first_peak")
_TAILS = (2.5, 97.5)  # percentiles of a 95% interval

# Points (of 100) the checkpoint after a new maximum must fall for that maximum to be the first
# peak: the authors use 5 for mixed-target runs, whose curves wobble, and 0 for everything else
# (their `mixsd/eval/first_peak.py`: 5 when the method name contains "sft-mix").
_PEAK_TOLERANCE = {"mixsd": 5.0, "sft": 0.0, "opsd": 0.0}


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of `values` [n_items] and its 95% percentile-bootstrap interval.

    Items are resampled with replacement `n_boot` times; the interval is the 2.5th and 97.5th
    percentiles of the resampled means. Retention on the items the base answers correctly is the
    mean of the model's 0/1 flags on them, so this is its CI too.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise MixsdError(f"bootstrap_ci wants a non-empty 1-D list of values, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, _TAILS)
    return float(x.mean()), float(lo), float(hi)


def bootstrap_ci_seeds(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi) over seeds x items: `values` [n_seeds, n_items], one row per seed.

    Two-level bootstrap: each replicate draws n_seeds seeds with replacement, then, within each
    drawn seed, n_items of its items with replacement, and takes the mean. Seed-to-seed spread
    (training order, sampled targets) thus widens the interval, which resampling the pooled
    items would hide. With one seed it is `bootstrap_ci` of that seed's items.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.size == 0:
        raise MixsdError(f"bootstrap_ci_seeds wants [seeds, items] values, got shape {x.shape}")
    n_seeds, n_items = x.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds, 1))
    items = rng.integers(0, n_items, size=(n_boot, n_seeds, n_items))
    means = x[seeds, items].mean(axis=(1, 2))
    lo, hi = np.percentile(means, _TAILS)
    return float(x.mean()), float(lo), float(hi)


def retention_at(curve: list[tuple[float, float]], accuracy: float) -> float | None:
    """Retention where a run's curve first reaches training accuracy `accuracy`, or None.

    curve: (training accuracy, retention) per checkpoint in training order; the base (step 0)
    goes first when given, so a crossing between the base and the first checkpoint counts.
    Takes the first checkpoint i with accuracy >= `accuracy` (a later dip and re-crossing does not
    count) and interpolates linearly between checkpoints i-1 and i, which bracket the crossing;
    a checkpoint exactly at `accuracy` gives its own retention, and so does a curve whose first
    point is already above it. None: the curve never reaches `accuracy` ("not reached").
    """
    for i, (acc, ret) in enumerate(curve):
        if acc >= accuracy:
            if i == 0:
                return ret
            acc0, ret0 = curve[i - 1]  # acc0 < accuracy <= acc: the bracket is never flat
            return ret0 + (accuracy - acc0) / (acc - acc0) * (ret - ret0)
    return None


def peak_tolerance(run_kind: str) -> float:
    """The first peak's tolerance in points for a run kind: 5 for "mixsd", 0 for "sft", "opsd"."""
    if run_kind not in _PEAK_TOLERANCE:
        raise MixsdError(f"run kind '{run_kind}': expected one of {', '.join(_PEAK_TOLERANCE)}")
    return _PEAK_TOLERANCE[run_kind]


def authors_first_peak(values: list[float], tolerance: float) -> int:
    """Index of a run's first peak of training accuracy, by the authors' rule.

    values: training accuracy in points (of 100) per checkpoint, training order, base excluded.
    Their `first_peak_index`: the first i in 1..n-2 that is a new running maximum (above every
    earlier value, index 0 seeding the maximum) and that the next checkpoint does not exceed,
    having fallen at least `tolerance` points below it (`peak_tolerance`); else the last index.
    [10, 50, 48, 90] -> 1 at tolerance 0 but 3 at 5 (a 2-point dip is no peak for a mixed run).

    Index 0 is never the peak and the fallback is the last checkpoint: [80, 60, 90] -> 2.
    """
    if not values:
        raise MixsdError("first peak of no checkpoints")
    best = values[0]
    for i in range(1, len(values) - 1):
        if values[i] > best:
            # 1e-9: accuracies are ratios x 100, and a 5-point drop must not miss by rounding
            if values[i + 1] <= values[i] - tolerance + 1e-9:
                return i
            best = values[i]
    return len(values) - 1


def sign_flip_p(differences) -> float:
    """Exact two-sided sign-flip permutation p-value of the mean of paired `differences` [n].

    Under "no difference" each seed's difference is as likely negative as positive, so all 2^n
    sign patterns are equally likely; p is the share whose |mean| is at least the observed one
    (the observed pattern included). Exact enumeration: 2^n patterns, fine for seeds. p is a
    multiple of 1/2^n and at least 2/2^n: with 3 seeds the smallest attainable p is 0.25, so 3
    seeds can never show significance at 0.05, however large and consistent the difference.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise MixsdError(f"sign_flip_p wants a non-empty 1-D list of differences, got {d.shape}")
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))  # [2^n, n]
    means = np.abs(signs @ d) / d.size
    # 1e-12: the all-flipped pattern must tie with the observed one despite rounding
    return float(np.mean(means >= abs(d.mean()) - 1e-12))


class Curve(NamedTuple):
    """One run's per-item flags over its curve in one seed, the base first (checkpoint order).

    train: [n_points, n_train] 0/1 closed-book answers to the training questions;
    kept: [n_points, n_kept] 0/1 on the suite items the base answers correctly (base row all 1);
    tolerance: the run's first-peak tolerance in points (None: no first peak).
    """

    train: np.ndarray
    kept: np.ndarray
    tolerance: float | None


def matched_value(acc: np.ndarray, ret: np.ndarray, point: str, tolerance) -> float | None:
    """A curve's retention at a matched point: `retention_at` a training accuracy ("0.8"), or at
    the authors' first peak ("first_peak"). acc, ret: [n_points], the base first."""
    if point != "first_peak":
        return retention_at(list(zip(acc, ret, strict=True)), float(point))
    if tolerance is None or len(acc) < 3:  # a first peak needs a run with several checkpoints
        return None
    return float(ret[1 + authors_first_peak(list(100 * acc[1:]), tolerance)])


def bootstrap_matched(seeds: list[dict[str, Curve]], n_boot: int = 2000, seed: int = 0) -> dict:
    """Bootstrap replicates of every run's retention at every matched point, over seeds x items.

    seeds: per seed, `{run: Curve}` (the same runs, facts and suite items in every seed).
    Each replicate draws n_seeds seeds with replacement, then, within each drawn seed, its
    training questions and its retention items with replacement, recomputes each run's curve
    and reads the matched points off it (a fresh crossing, a fresh first peak). Every run of a
    replicate gets the same draws, so runs stay paired by seed and by item and a difference of
    two runs' replicates is the paired bootstrap of their difference. Returns
    `{run: {point: [n_boot, n_seeds]}}`, NaN where the replicate's curve misses the point.
    """
    rng = np.random.default_rng(seed)
    n_seeds, runs = len(seeds), list(seeds[0])
    out = {run: {p: np.full((n_boot, n_seeds), np.nan) for p in MATCHED_POINTS} for run in runs}
    picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    for slot in range(n_seeds):
        for s, curves in enumerate(seeds):
            rows = np.flatnonzero(picks[:, slot] == s)  # the replicates drawing seed s here
            first = next(iter(curves.values()))
            n_train, n_kept = first.train.shape[1], first.kept.shape[1]
            ti = rng.integers(0, n_train, size=(rows.size, n_train))
            ki = rng.integers(0, n_kept, size=(rows.size, n_kept))
            for run, c in curves.items():
                acc = c.train[:, ti].mean(axis=-1)  # [n_points, rows]
                ret = c.kept[:, ki].mean(axis=-1)
                for r, b in enumerate(rows):
                    for p in MATCHED_POINTS:
                        v = matched_value(acc[:, r], ret[:, r], p, c.tolerance)
                        out[run][p][b, slot] = np.nan if v is None else v
    return out


def replicate_ci(replicates: np.ndarray) -> tuple[float, float] | None:
    """The 95% percentile interval of the mean over seeds, from `bootstrap_matched` replicates
    [n_boot, n_seeds] (or a difference of two runs' replicates): each replicate averages the
    seeds that reach the point; a replicate where none does is left out. None: none reach."""
    reached = ~np.isnan(replicates)
    keep = reached.any(axis=1)
    if not keep.any():
        return None
    means = np.nansum(replicates[keep], axis=1) / reached[keep].sum(axis=1)
    lo, hi = np.percentile(means, _TAILS)
    return float(lo), float(hi)


def curves(metrics: dict) -> dict[str, list[tuple[float, float]]]:
    """Per run in `metrics.json` (`mixsd evaluate`): [(training accuracy, retention)], the base
    first (its retention is 1 by definition) then every checkpoint in training order; retention is
    the pooled one (`mixsd.evaluate.tradeoff.retention`)."""
    out = {}
    base = (metrics["base"]["memorization"]["train"], 1.0)
    for c in metrics["checkpoints"]:
        point = (c["memorization"]["train"], c["retention"]["pooled"]["mean"])
        out.setdefault(c["run"], [base]).append(point)
    return out
