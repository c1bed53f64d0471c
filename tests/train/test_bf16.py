"""bf16 training on a CPU is mixed precision, as on GPUs: bf16 autocast over fp32 weights and
optimizer state, in the plain backend and under DeepSpeed (whose own bf16 section would cast the
module to bf16), and the run's data line records the precision."""

from __future__ import annotations

import os
import subprocess

import torch

from mixsd.train import run
from tests.train.test_train import _cfg, _losses, _metric, _weights, two_ranks


def test_bf16_on_cpu_is_autocast_over_fp32_weights(tiny_model_dir, sft_set, tmp_path):
    losses, weights = {}, {}
    for dtype in ("float32", "bfloat16"):
        model_dir = run(
            _cfg(tiny_model_dir, [str(sft_set)], tmp_path / dtype, steps=4, dtype=dtype)
        )
        assert _metric(tmp_path / dtype, "dtype") == [dtype]  # the data line
        losses[dtype], weights[dtype] = _losses(tmp_path / dtype), _weights(model_dir)
    assert {t.dtype for t in weights["bfloat16"].values()} == {torch.float32}
    # The first step sees the same weights: bf16 matmuls move the loss a little, not much.
    first = losses["float32"][0], losses["bfloat16"][0]
    assert first[0] != first[1] and abs(first[0] - first[1]) < 1e-2 * first[0]
    # 2 DeepSpeed ranks (ZeRO-0) in bf16: the same autocast forward as the plain process, so the
    # same losses up to the reduction order (the module cast to bf16 would move them by ~1e-3).
    args = ["--model", tiny_model_dir, "--targets", sft_set, "--out", tmp_path / "ds", "--steps", 4,
            "--batch-size", 4, "--micro-batch-size", 1, "--lr", 3e-3, "--warmup-steps", 2,
            "--zero", "0", "--dtype", "bfloat16"]  # fmt: skip
    launcher, more = two_ranks("0", tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        list(map(str, launcher + args + more)), capture_output=True, text=True, env=env
    )
    assert p.returncode == 0, p.stderr[-3000:]
    torch.testing.assert_close(_losses(tmp_path / "ds"), losses["bfloat16"], rtol=1e-4, atol=0)
    assert {t.dtype for t in _weights(tmp_path / "ds" / "model").values()} == {torch.float32}
