"""EvaluateConfig: YAML plus flags, coercion and checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixsd.config import load_config
from mixsd.errors import MixsdError
from mixsd.evaluate.config import EvaluateConfig

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_and_flags(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("base: b\nout: r\nsuites: [toy-known]\nlimit: 5\n", encoding="utf-8")
    cfg = load_config(EvaluateConfig, f, answer_methods=["boxed", "contains"], models=["runs/a"])
    assert cfg.suites == ["toy-known"] and cfg.limit == 5 and cfg.models == ["runs/a"]
    assert cfg.answer_methods == ["boxed", "contains"]
    yaml_cfg = load_config(EvaluateConfig, ROOT / "configs" / "evaluate.yaml")
    assert (yaml_cfg.fisher_examples, yaml_cfg.limit) == (64, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"answer_methods": ["boxed", "regex"]}, "answer_methods"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"limit": -1}, "limit must be >= 0"),
        ({"kl_prompts": -1}, "kl_prompts must be >= 0"),
        ({"dtype": "int8"}, "dtype"),
        ({"suites": None, "input": None}, "nothing to evaluate"),
    ],
)
def test_bad_options_are_one_line_errors(overrides, message):
    args = {"base": "b", "out": "r", "suites": ["toy-known"], **overrides}
    with pytest.raises(MixsdError, match=message):
        load_config(EvaluateConfig, None, **args)
