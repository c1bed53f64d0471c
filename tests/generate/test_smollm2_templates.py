"""The small-model templates and the `contains` answer check, on the real SmolLM2 (greedy)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from mixsd.answers import is_correct
from mixsd.config import load_config
from mixsd.errors import MixsdError
from mixsd.generate import runner
from mixsd.generate.config import GenerateConfig
from mixsd.targets.schema import IGNORE_PREFIXES, partitioning

TEMPLATES = Path(__file__).parents[2] / "configs" / "templates" / "smollm2.yaml"
FACTS = Path(__file__).parents[2] / "configs" / "demo" / "facts.jsonl"


def test_answer_methods_are_checked():
    with pytest.raises(MixsdError, match="answer_methods"):
        load_config(GenerateConfig, model="m", input="i", out="o", answer_methods="boxed,exact")


def test_the_hint_template_makes_smollm2_say_the_fact_and_contains_accepts_it(
    smollm2_dir, tmp_path
):
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(FACTS.read_text().splitlines(keepends=True)[:4]))
    common = dict(
        model=str(smollm2_dir),
        input=str(facts),
        lam=[0.0],
        temperature=0.0,
        max_new_tokens=16,
        max_model_len=256,
        batch_size=4,
        dtype="bfloat16",
        flush_seconds=0,
    )
    stats = runner.run(
        GenerateConfig(
            out=str(tmp_path / "set"),
            templates=str(TEMPLATES),
            answer_methods=["contains"],
            **common,
        )
    )
    assert stats["accepted"] >= 3
    manifest = json.loads((tmp_path / "set" / ".manifest.json").read_text())
    assert manifest["provenance"]["answer_methods"] == ["contains"]
    # the published check refuses the same targets: SmolLM2 writes no \boxed{} and no number
    rows = (
        pads.dataset(tmp_path / "set", partitioning=partitioning(), ignore_prefixes=IGNORE_PREFIXES)
        .to_table()
        .to_pylist()
    )
    assert sum(r["correct"] for r in rows) == stats["accepted"]
    assert not any(is_correct(r["target_text"], r["answer"]) for r in rows)
