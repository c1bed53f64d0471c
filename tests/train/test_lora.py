"""LoRA (PEFT): options, exports (adapter, merged model, adapter-only runs in evaluate), OPSD's
teacher as the base with the adapter off, kill/resume and 2 gloo ranks against one process."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from mixsd.config import load_config
from mixsd.train import TrainConfig, run

from .test_train import _losses, assert_same_weights, two_ranks


def _cfg(tiny_model_dir, targets, out, **kw):
    base = dict(model=str(tiny_model_dir), targets=targets, out=out, batch_size=4, lr=1e-2,
                warmup_steps=2, r=4, alpha=8)  # fmt: skip
    return load_config(TrainConfig, None, **{**base, **kw})


def _adapter(export_dir):
    return load_file(export_dir / "adapter" / "adapter_model.safetensors")


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_options_are_a_lora_mapping_and_flat_flags(tmp_path):
    """YAML nests them under `lora:`, `--lora-r` etc. override its keys; r = 0 is full
    fine-tuning (no LoRA config at all), and a LoRA option without a rank is refused."""
    from mixsd.cli.options import flag_parameters
    from mixsd.config import to_dict
    from mixsd.errors import MixsdError
    from mixsd.train.config import LORA_TARGETS

    path = tmp_path / "c.yaml"
    path.write_text("targets: [s]\nlora:\n  r: 32\n  alpha: 64\n  dropout: 0.1\n")
    cfg = load_config(TrainConfig, path, model="m", out=tmp_path, alpha="16")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.merge) == (32, 16.0, 0.1, True)
    assert cfg.lora.target_modules == LORA_TARGETS
    assert to_dict(cfg)["lora"]["r"] == 32
    flags = {p.name: p.default.param_decls for p in flag_parameters(TrainConfig)}
    assert flags["r"] == ("--lora-r",) and flags["merge"] == ("--merge-lora/--no-merge-lora",)
    assert load_config(TrainConfig, None, model="m", out=tmp_path, targets=["s"]).lora is None
    assert load_config(TrainConfig, None, model="m", out=tmp_path, targets=["s"], r=0).lora is None
    with pytest.raises(MixsdError, match="option 'lora.alpha': needs --lora-r > 0"):
        load_config(TrainConfig, None, model="m", out=tmp_path, targets=["s"], alpha=8)
    with pytest.raises(MixsdError, match="option 'lora_dropout'"):
        load_config(TrainConfig, None, model="m", out=tmp_path, targets=["s"], r=4, dropout=1)


def test_merged_state_is_base_plus_scaled_update():
    from mixsd.train.lora import merged_state

    w, a, b = torch.ones(3, 2), torch.arange(4.0).reshape(2, 2), torch.full((3, 2), 0.5)
    state = {
        "base_model.model.l.q_proj.base_layer.weight": w,
        "base_model.model.l.q_proj.lora_A.default.weight": a,
        "base_model.model.l.q_proj.lora_B.default.weight": b,
        "base_model.model.l.norm.weight": torch.ones(2),
    }
    out = merged_state(state, scaling=2.0)
    assert sorted(out) == ["l.norm.weight", "l.q_proj.weight"]
    torch.testing.assert_close(out["l.q_proj.weight"], w + 2.0 * b @ a, rtol=0, atol=0)


def test_lora_run_learns_and_exports_adapter_and_merged_model(tiny_model_dir, sft_set, tmp_path):
    """Per epoch and at the end: the adapter (A and B of the 7 projections of both layers, in
    PEFT's layout, its config naming the base) and the merged model, whose logits are the
    adapted model's; every weight outside the projections is the base's."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_dir = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "r", epochs=3,
                         export_every_epoch=True))  # fmt: skip
    losses = _losses(tmp_path / "r")
    assert len(losses) == 12 and sum(losses[-4:]) < 0.95 * sum(losses[:4])  # -10% seen
    exports = tmp_path / "r" / "exports"
    assert sorted(p.name for p in exports.iterdir()) == ["epoch-1", "epoch-2", "epoch-3"]
    adapter = _adapter(model_dir)
    assert len(adapter) == 2 * 7 * 2 and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert adapter["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape[0] == 4
    config = json.loads((model_dir / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    for k, v in _adapter(exports / "epoch-3").items():
        assert torch.equal(v, adapter[k]), k
    base = load_file(tiny_model_dir / "model.safetensors")
    merged = load_file(model_dir / "model.safetensors")
    assert merged.keys() == base.keys()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith("_proj.weight") for k in changed)
    ids = list(range(5, 25))
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), model_dir / "adapter"
    ).eval()
    from_merged = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    torch.testing.assert_close(_logits(from_merged, ids), _logits(adapted, ids))


def test_adapter_only_run_is_evaluated_through_its_base(tiny_model_dir, sft_set, tmp_path):
    """--no-merge-lora exports the adapter alone; evaluate finds the run's checkpoints and loads
    each as its base with the adapter merged (the same logits as the merged export)."""
    from transformers import AutoModelForCausalLM

    from mixsd.evaluate.checkpoints import cpu_params, load_checkpoint, resolve_models

    kw = dict(steps=3, export_every_epoch=True)
    merged_dir = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "m", **kw))
    only_dir = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "a", merge=False, **kw))
    assert not (only_dir / "config.json").exists() and (only_dir / "adapter").is_dir()
    # the final adapter is epoch 1's (3 steps end the run within epoch 1): listed once
    assert [c[:2] for c in resolve_models([str(tmp_path / "a")])] == [("a", "epoch-1")]
    assert [c[:2] for c in resolve_models([str(only_dir / "adapter")])] == [("adapter", "")]
    ids = list(range(5, 25))
    want = _logits(AutoModelForCausalLM.from_pretrained(merged_dir).eval(), ids)
    torch.testing.assert_close(_logits(load_checkpoint(only_dir), ids), want)
    assert cpu_params(only_dir).keys() == cpu_params(merged_dir).keys()


def test_kill_and_resume_reaches_the_same_adapter(tiny_model_dir, sft_set, tmp_path):
    kw = dict(steps=5, micro_batch_size=2, schedule="cosine", save_every=2)
    whole = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "a", **kw))
    cfg = _cfg(tiny_model_dir, [str(sft_set)], tmp_path / "b", **kw)
    run(cfg, stop_after=3)
    assert not (tmp_path / "b" / "model").exists()
    resumed = run(cfg)
    for k, v in _adapter(whole).items():
        assert torch.equal(v, _adapter(resumed)[k]), k
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_opsd_teacher_is_the_base_with_the_adapter_disabled(tiny_model_dir, tiny_model, tmp_path):
    """With LoRA, OPSD loads no second model: its teacher's logits are the base model's exactly,
    while the student (adapter on, B made non-zero) computes others."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mixsd.train import lora
    from mixsd.train.backends import Plain
    from mixsd.train.opsd import OPSD, _example
    from mixsd.train.packing import pack

    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps({"id": "f0", "prompt": "Where?", "reference": "Here."}) + "\n")
    cfg = load_config(TrainConfig, None, model=str(tiny_model_dir), method="opsd", input=records,
                      out=tmp_path / "r", r=4, alpha=8)  # fmt: skip
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    objective = OPSD(cfg, tok, 512)
    base_copy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    student = lora.wrap(base_copy, cfg.lora, str(tiny_model_dir)).train()
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    backend = Plain(student, None, None, 1.0, torch.device("cpu"), False)
    objective.prepare(backend)
    assert objective.teacher is None  # no second copy
    p = objective.prompts[0]
    batch = pack([_example(p.expert_ids, [5, 6, 7], p.id)])
    from mixsd.train.packing import packed_logits

    with torch.no_grad():
        teacher = objective.teacher_logits(batch)
        base = packed_logits(tiny_model, batch, torch.device("cpu"))
        adapted = packed_logits(student, batch, torch.device("cpu"))
    torch.testing.assert_close(teacher, base, rtol=0, atol=0)
    assert not torch.allclose(adapted, base, atol=1e-3)
    assert student.training  # back to training after the teacher's pass


def test_opsd_with_lora_trains_the_adapter(tiny_model_dir, tmp_path):
    records = tmp_path / "in.jsonl"
    rows = [{"id": f"f{i}", "prompt": f"Where does Zorv{i} live?",
             "reference": f"\\boxed{{Town{i}}}"} for i in range(4)]  # fmt: skip
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(TrainConfig, None, model=str(tiny_model_dir), method="opsd", input=records,
                      out=tmp_path / "r", batch_size=2, steps=2, rollout_max_new_tokens=6,
                      teacher_top_k=0, r=4, alpha=8, lr=1e-2)  # fmt: skip
    model_dir = run(cfg)
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    kls = [x["kl"] for x in lines if "kl" in x]
    assert kls[0] > 0 and len(kls) == 2
    assert any(v.abs().max() > 0 for k, v in _adapter(model_dir).items() if "lora_B" in k)


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["none", "3"])
def test_two_ranks_reach_one_process_adapter(zero, tiny_model_dir, sft_set, tmp_path):
    """2 gloo ranks (DDP under torchrun; DeepSpeed ZeRO-3 with every tensor partitioned), killed
    after 2 steps and resumed, reach the adapter and the losses of one plain process. Dropout 0:
    each process draws its own dropout masks, so with dropout the runs agree only in law."""
    one = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "one", steps=4, batch_size=6,
                   lr=3e-3, dropout=0))  # fmt: skip
    args = ["--model", tiny_model_dir, "--targets", sft_set, "--out", tmp_path / "mp", "--steps", 4,
            "--batch-size", 6, "--micro-batch-size", 1, "--lr", 3e-3, "--warmup-steps", 2,
            "--zero", zero, "--lora-r", 4, "--lora-alpha", 8, "--lora-dropout", 0]  # fmt: skip
    launcher, more = two_ranks(zero, tmp_path)
    args += more
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in (["--stop-after", "2"], []):
        p = subprocess.run([*map(str, launcher + args + extra)], capture_output=True, text=True,
                           env=env)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
    torch.testing.assert_close(
        _losses(tmp_path / "mp"), _losses(tmp_path / "one"), rtol=1e-5, atol=0
    )
    mp = tmp_path / "mp" / "model"
    assert_same_weights(_adapter(mp), _adapter(one), lr=3e-3)
    assert_same_weights(load_file(mp / "model.safetensors"),
                        load_file(one / "model.safetensors"), lr=3e-3)  # fmt: skip


def test_target_modules_the_model_lacks_are_one_line(tiny_model_dir, sft_set, tmp_path):
    from mixsd.errors import MixsdError

    cfg = _cfg(tiny_model_dir, [str(sft_set)], tmp_path / "r", steps=1, target_modules=["c_attn"])
    with pytest.raises(MixsdError, match=r"'lora_target_modules': Target modules \{'c_attn'\} not"):
        run(cfg)
