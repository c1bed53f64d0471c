"""Statistics: bootstrap CIs, retention at matched accuracy, the authors' first peak, sign flips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixsd.errors import MixsdError
from mixsd.evaluate.stats import (
    Curve,
    authors_first_peak,
    bootstrap_ci,
    bootstrap_ci_seeds,
    bootstrap_matched,
    curves,
    matched_value,
    peak_tolerance,
    replicate_ci,
    retention_at,
    sign_flip_p,
)


def _flags(n: int, correct: int) -> list[float]:
    return [1.0] * correct + [0.0] * (n - correct)


def test_bootstrap_ci_of_a_bernoulli_mean_matches_the_normal_interval():
    mean, lo, hi = bootstrap_ci(_flags(400, 280))  # exactly 0.7 correct
    assert mean == pytest.approx(0.7)
    assert lo < 0.7 < hi
    normal_width = 2 * 1.96 * math.sqrt(0.7 * 0.3 / 400)  # 0.0898
    assert (hi - lo) / normal_width == pytest.approx(1.0, abs=0.2)
    assert bootstrap_ci(_flags(400, 280)) == (mean, lo, hi)  # seeded: the same numbers


def test_seeds_by_items_ci_is_wider_than_items_only_when_seeds_differ():
    seeds = [_flags(200, 110), _flags(200, 140), _flags(200, 170)]  # 0.55, 0.70, 0.85
    mean, lo, hi = bootstrap_ci_seeds(seeds)
    pooled_mean, pooled_lo, pooled_hi = bootstrap_ci([v for s in seeds for v in s])
    assert mean == pytest.approx(0.7) and pooled_mean == pytest.approx(0.7)
    assert lo < 0.7 < hi
    # the seeds' means spread by 0.15: far more than 600 pooled items' sampling error (~0.037)
    assert hi - lo > 2 * (pooled_hi - pooled_lo)
    assert 0.55 <= lo and hi <= 0.85  # a resample of 3 seed means stays within them (± items)


def test_seeds_by_items_ci_of_one_seed_is_the_items_ci():
    mean, lo, hi = bootstrap_ci_seeds([_flags(400, 280)])
    assert mean == pytest.approx(0.7)
    assert (hi - lo) / (2 * 1.96 * math.sqrt(0.21 / 400)) == pytest.approx(1.0, abs=0.2)


def test_bootstrap_rejects_bad_shapes():
    with pytest.raises(MixsdError, match="1-D"):
        bootstrap_ci([])
    with pytest.raises(MixsdError, match=r"\[seeds, items\]"):
        bootstrap_ci_seeds([0.5, 0.7])


CURVE = [(0.0, 1.0), (0.4, 0.9), (0.8, 0.7), (1.0, 0.5)]  # base first, then checkpoints


@pytest.mark.parametrize(
    ("accuracy", "expected"),
    [
        (0.8, 0.7),  # a checkpoint exactly at 0.8: its own retention
        (0.5, 0.85),  # a quarter of the way from (0.4, 0.9) to (0.8, 0.7)
        (0.9, 0.6),  # halfway from (0.8, 0.7) to (1.0, 0.5)
        (0.2, 0.95),  # between the base and the first checkpoint: the base counts
    ],
)
def test_retention_at_interpolates_between_the_bracketing_checkpoints(accuracy, expected):
    assert retention_at(CURVE, accuracy) == pytest.approx(expected)


def test_retention_at_not_reached_is_none():
    assert retention_at([(0.0, 1.0), (0.3, 0.9), (0.79, 0.8)], 0.8) is None


def test_retention_at_uses_the_first_crossing_of_a_non_monotone_curve():
    curve = [(0.0, 1.0), (0.6, 0.8), (0.3, 0.9), (0.9, 0.4)]
    # the first crossing of 0.5 is between 0.0 and 0.6 (1.0 - 5/6 * 0.2), not 0.3 -> 0.9 (0.733)
    assert retention_at(curve, 0.5) == pytest.approx(1.0 - 0.2 * 5 / 6)


def test_retention_at_a_first_point_above_the_target_is_that_point():
    assert retention_at([(0.95, 0.6), (1.0, 0.5)], 0.9) == 0.6


def test_peak_tolerance_per_run_kind():
    assert (peak_tolerance("mixsd"), peak_tolerance("sft"), peak_tolerance("opsd")) == (5, 0, 0)
    with pytest.raises(MixsdError, match="expected one of mixsd, sft, opsd"):
        peak_tolerance("lora")


@pytest.mark.parametrize(
    ("values", "tolerance", "peak"),
    [
        ([10, 50, 48, 90], 0, 1),  # SFT: 50 is a new maximum and 48 does not exceed it
        ([10, 50, 48, 90], 5, 3),  # mixed: a 2-point dip is no peak; the fallback is the last
        ([10, 50, 45, 90], 5, 1),  # exactly a 5-point drop
        ([10, 50, 50, 90], 0, 1),  # an equal next checkpoint does not exceed
        ([80, 60, 90], 0, 2),  # index 0 only seeds the running maximum
        ([30, 20, 25, 40], 0, 3),  # 25 is not a new running maximum
        ([50, 50, 50], 0, 2),
        ([70], 0, 0),
        ([70, 60], 0, 1),
        ([100 * a for a in (0.1, 0.35, 0.3, 0.9)], 5, 1),  # 30.000000000000004 is 5 below 35
    ],
)
def test_authors_first_peak(values, tolerance, peak):
    assert authors_first_peak(values, tolerance) == peak


def test_authors_first_peak_with_the_tolerance_of_each_kind():
    values = [0, 40, 62, 60, 85, 80, 90]
    assert authors_first_peak(values, peak_tolerance("sft")) == 2
    assert authors_first_peak(values, peak_tolerance("mixsd")) == 4


@pytest.mark.parametrize(
    ("differences", "p"),
    [
        ([0.1, 0.2, 0.3], 0.25),  # 3 seeds all positive: 2 of 8 patterns, the smallest p
        ([-1, -2, -3], 0.25),  # two-sided
        ([3, 1, -1], 6 / 8),  # sums ±5, ±3, ±3, ±1: six have |sum| >= 3
        ([0, 0, 0], 1.0),
        ([1, 2, 3, 4, 5], 2 / 32),
        ([2, -2], 1.0),
    ],
)
def test_sign_flip_p_counts_patterns_exactly(differences, p):
    assert sign_flip_p(differences) == pytest.approx(p)


def _curve(train: list[int], kept: list[int], n_train=20, n_kept=100, tolerance=0.0) -> Curve:
    """A curve of whole-item flags: train[i] of n_train questions right and kept[i] of n_kept
    items kept at point i (the base first)."""
    return Curve(
        np.array([_flags(n_train, k) for k in train]),
        np.array([_flags(n_kept, k) for k in kept]),
        tolerance,
    )


def test_matched_value_reads_crossings_and_the_first_peak():
    acc, ret = np.array([0.0, 0.4, 0.9, 0.8]), np.array([1.0, 0.8, 0.6, 0.5])
    assert matched_value(acc, ret, "0.5", 0.0) == pytest.approx(0.8 - 0.2 * 0.2)  # 1/5 of the way
    assert matched_value(acc, ret, "0.9", 0.0) == pytest.approx(0.6)
    assert matched_value(acc, ret, "0.95", 0.0) is None
    assert matched_value(acc, ret, "first_peak", 0.0) == 0.6  # epoch-2: 90, then 80
    assert matched_value(acc, ret, "first_peak", 20.0) == 0.5  # a 10-point fall is no peak at 20
    assert matched_value(acc, ret, "first_peak", None) is None  # no run kind: no first peak
    assert matched_value(acc[:2], ret[:2], "first_peak", 0.0) is None  # one checkpoint


def test_bootstrap_matched_keeps_runs_paired_by_seed_and_item():
    """Two runs with the same flags differ by exactly 0 in every replicate (same draws), and the
    replicates of one run centre on its observed value."""
    seeds = [
        {"a": _curve([0, 8, 16, 20], [100, 80, 70, 60]), "b": _curve([0, 8, 16, 20], [100, 80, 70, 60])},
        {"a": _curve([0, 6, 18, 20], [100, 85, 75, 65]), "b": _curve([0, 6, 18, 20], [100, 85, 75, 65])},
    ]  # fmt: skip
    reps = bootstrap_matched(seeds, n_boot=500)
    assert reps["a"]["0.5"].shape == (500, 2)
    for point in ("0.5", "0.8", "first_peak"):
        assert np.array_equal(reps["a"][point], reps["b"][point], equal_nan=True)
        assert replicate_ci(reps["a"][point] - reps["b"][point]) == (0.0, 0.0)
    # observed at 50%: seed 1 at 0.8 - (0.1/0.4) * 0.1 = 0.775, seed 2 0.85 - (0.2/0.6) * 0.1
    observed = (0.775 + 0.85 - 0.1 / 30) / 2
    lo, hi = replicate_ci(reps["a"]["0.5"])
    assert lo < observed < hi and hi - lo < 0.2


def test_paired_bootstrap_ci_of_a_known_item_difference():
    """Run a keeps the same 10 of 100 items more than b at every point, one seed: wherever the
    crossing falls, the paired difference is 0.1, and its CI is that of the mean of 100 paired item
    differences in {0, 1} with p = 0.1: sd sqrt(0.1 * 0.9 / 100) = 0.03, so about ±0.059."""
    a = _curve([0, 10, 20], [100, 70, 70])
    b = Curve(a.train, np.array([_flags(100, k) for k in (100, 60, 60)]), 0.0)
    reps = bootstrap_matched([{"a": a, "b": b}], n_boot=4000)
    lo, hi = replicate_ci(reps["a"]["0.9"] - reps["b"]["0.9"])
    assert 0.1 - 0.075 < lo < 0.1 - 0.045 and 0.1 + 0.045 < hi < 0.1 + 0.075


def test_replicate_ci_leaves_out_replicates_that_miss_the_point():
    reps = np.array([[np.nan, np.nan], [0.5, np.nan], [0.7, 0.9]])  # means: -, 0.5, 0.8
    assert replicate_ci(reps) == pytest.approx(tuple(np.percentile([0.5, 0.8], [2.5, 97.5])))
    assert replicate_ci(np.full((3, 2), np.nan)) is None


def test_curves_from_metrics_put_the_base_first():
    row = lambda run, acc, ret: {  # noqa: E731
        "run": run,
        "memorization": {"train": acc},
        "retention": {"pooled": {"mean": ret}},
    }
    metrics = {
        "base": {"memorization": {"train": 0.05}},
        "checkpoints": [row("sft", 0.5, 0.9), row("sft", 0.9, 0.8), row("mixsd-0.3", 0.4, 1.0)],
    }
    assert curves(metrics) == {
        "sft": [(0.05, 1.0), (0.5, 0.9), (0.9, 0.8)],
        "mixsd-0.3": [(0.05, 1.0), (0.4, 1.0)],
    }
