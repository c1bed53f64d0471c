"""configs/experiment: one training budget for every method (the experiment's protocol), the
LoRA LR at the authors' ratio, the λ and suites the experiment promises; each file loads into
its stage's config."""

from __future__ import annotations

from pathlib import Path

from mixsd.config import load_config
from mixsd.evaluate.config import EvaluateConfig
from mixsd.generate.config import GenerateConfig
from mixsd.train.config import TrainConfig

CONF = Path(__file__).parents[1] / "configs" / "experiment"
BUDGET = (
    "epochs",
    "batch_size",
    "warmup_steps",
    "schedule",
    "weight_decay",
    "adam_betas",
    "grad_clip",
    "dtype",
    "export_every_epoch",
)


def _train(name: str, **paths) -> TrainConfig:
    return load_config(TrainConfig, CONF / name, model="m", out=Path("o"), **paths)


def test_every_method_has_one_budget():
    sft = _train("train.yaml", targets=["t"])
    lora = _train("sft-lora.yaml", targets=["t"])
    opsd = _train("opsd.yaml", opsd={"input": "f.jsonl"})
    for name in BUDGET:
        assert getattr(sft, name) == getattr(lora, name) == getattr(opsd, name), name
    assert (sft.epochs, sft.batch_size, sft.lr, sft.schedule) == (6, 4, 1e-4, "constant")
    assert opsd.method == "opsd" and opsd.lr == sft.lr and sft.lora is None
    assert lora.lora.r == 32 and lora.lr == 20 * sft.lr  # the authors' LoRA / full ratio


def test_generate_and_evaluate_settings():
    gen = load_config(GenerateConfig, CONF / "generate.yaml", model="m", input="i", out="o")
    assert gen.lam == [0.3, 0.5] and gen.max_retries == 3 and gen.answer_methods == ["contains"]
    ev = load_config(EvaluateConfig, CONF / "evaluate.yaml", base="b", out="o")
    assert ev.suites == ["world", "language", "arithmetic", "commonsense", "translation"]
    assert (ev.max_new_tokens, ev.answer_methods, ev.limit) == (40, ["contains"], 0)
