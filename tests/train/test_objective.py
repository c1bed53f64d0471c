"""The objective seam of the training loop: the NLL objective's micro-steps, idle ones included."""

from __future__ import annotations

import numpy as np

from mixsd.train.data import DataStats, Example
from mixsd.train.nll import TargetNLL
from mixsd.train.objective import idle_or


def _examples() -> list[Example]:
    return [
        Example(ids=np.arange(3 + i, dtype=np.int32), n_prompt=2, id=f"e{i}", answer=None)
        for i in range(4)
    ]


def test_idle_or_runs_the_fallback_with_weight_zero():
    assert idle_or([1, 2], 9) == ([1, 2], 1.0)
    assert idle_or([], 9) == ([9], 0.0)


def test_nll_micro_steps_normalise_by_the_global_batch_and_keep_idle_processes_in_step():
    """Items 1 and 3 are this step's batch; this process's parts are [3], [1] and nothing (a
    short last batch): the empty one runs the batch's first row with weight 0."""
    ex = _examples()
    objective = TargetNLL(ex, DataStats())
    micros, n_norm, figures = objective.micro_batches(None, 0, [1, 3], [[3], [1], []], world=1)
    assert [m.weight for m in micros] == [1.0, 1.0, 0.0]
    assert [m.batch.n_real for m in micros] == [len(ex[3].ids), len(ex[1].ids), len(ex[1].ids)]
    assert n_norm == ex[1].n_target + ex[3].n_target == 2 + 4 and figures == {}
    assert objective.record({"loss": 12.0}, n_norm) == {"loss": 2.0, "target_tokens": 6}
