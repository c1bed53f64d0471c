"""Statistics: bootstrap CIs, retention at matched accuracy, the authors' first peak, sign flips."""

from __future__ import annotations

import math

import pytest

from mixsd.errors import MixsdError
from mixsd.evaluate.stats import (
    authors_first_peak,
    bootstrap_ci,
    bootstrap_ci_seeds,
    curves,
    paired_difference,
    peak_tolerance,
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


def test_paired_difference_over_seeds():
    result = paired_difference([0.8, 0.9, 0.7], [0.6, 0.6, 0.6])  # differences 0.2, 0.3, 0.1
    assert result.mean == pytest.approx(0.2)
    assert 0.1 - 1e-12 <= result.lo < 0.2 < result.hi <= 0.3 + 1e-12
    assert (result.p, result.n) == (0.25, 3)
    with pytest.raises(MixsdError, match="differ in shape"):
        paired_difference([0.8, 0.9], [0.6, 0.6, 0.6])


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
