"""OPSD: the divergence by hand, a student equal to its teacher, a run's metrics, kill and resume,
and ZeRO-2 on 2 gloo ranks against one process."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mixsd.config import load_config
from mixsd.train import TrainConfig, run
from mixsd.train.opsd import divergence


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """6 fact records (the naive prompt asks, the expert prompt holds the reference)."""
    path = tmp_path_factory.mktemp("opsd") / "train.jsonl"
    rows = [
        {
            "id": f"f{i}",
            "prompt": f"Where does Zorv{i} live?\n\nPlease reason step by step, and put your "
            "final answer within \\boxed{}.",
            "reference": f"The answer is Town{i}.\n\n\\boxed{{Town{i}}}",
        }
        for i in range(6)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(model_dir, records, out, **kw):
    base = dict(model=str(model_dir), method="opsd", input=records, out=out, batch_size=3,
                lr=3e-3, warmup_steps=1, rollout_max_new_tokens=8)  # fmt: skip
    return load_config(TrainConfig, None, **{**base, **kw})


def _lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_divergences_by_hand_on_two_tokens():
    """student p = (1/2, 1/2), teacher q = (3/4, 1/4)."""
    s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[math.log(3.0), 0.0]])
    p, q = (0.5, 0.5), (0.75, 0.25)
    reverse = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    forward = sum(qi * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    beta = 0.3
    m = [beta * qi + (1 - beta) * pi for pi, qi in zip(p, q, strict=True)]
    jsd = beta * sum(qi * math.log(qi / mi) for qi, mi in zip(q, m, strict=True)) + (
        1 - beta
    ) * sum(pi * math.log(pi / mi) for pi, mi in zip(p, m, strict=True))
    for top_k in (0, 2):  # 2 = the whole vocabulary
        got = [
            divergence(s, t, kind, top_k, beta).item()
            for kind in ("reverse_kl", "forward_kl", "jsd")
        ]
        assert got == pytest.approx([reverse, forward, jsd], rel=1e-6)
    # top-1: both renormalised over the teacher's argmax alone, so nothing to diverge on
    assert divergence(s, t, "reverse_kl", top_k=1).item() == 0.0
    # reverse KL's gradient w.r.t. the student logits: p_i (log p_i/q_i - KL), by hand
    divergence(s, t, "reverse_kl", 0).sum().backward()
    by_hand = [pi * (math.log(pi / qi) - reverse) for pi, qi in zip(p, q, strict=True)]
    assert s.grad[0].tolist() == pytest.approx(by_hand, rel=1e-6)


def test_student_equal_to_teacher_has_zero_loss_and_zero_gradient(
    tiny_model_dir, records, tmp_path
):
    """Same weights, same prompts: the OPSD loss of a micro-step is 0 and so is every gradient,
    for each divergence and top-k (the two passes compute the same logits; KL is exactly 0)."""
    from mixsd.train.backends import Plain
    from mixsd.train.opsd import OPSD, Micro, _example
    from mixsd.train.packing import pack

    for kind, top_k in (("reverse_kl", 64), ("forward_kl", 0), ("jsd", 8)):
        cfg = _cfg(tiny_model_dir, records, tmp_path, divergence=kind, teacher_top_k=top_k)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        objective = OPSD(cfg, tok, 512)
        objective.load_teacher(torch.device("cpu"), torch.float32)
        student = copy.deepcopy(objective.teacher).train().requires_grad_(True)
        backend = Plain(student, None, None, 1.0, torch.device("cpu"), False)
        rollouts = objective.rollouts(student, [(p, 0) for p in objective.prompts[:3]], epoch=0)
        exs = [
            _example(p.naive_ids, y, p.id)
            for p, y in zip(objective.prompts, rollouts, strict=False)
        ]
        micro = Micro(pack(exs), pack(exs), 1.0)
        loss, figures = objective.loss(backend, micro)
        loss.backward()
        assert figures["kl"] == 0.0 and abs(loss.item()) < 1e-5  # jsd: logsumexp rounding
        grads = [p.grad for p in student.parameters()]
        assert all(g is not None for g in grads)
        # 0 up to rounding: d/ds sum p (log p - log q) = p (1 - sum p) at p = q, and sum p is 1
        # only to float precision
        assert max(g.abs().max().item() for g in grads) < 1e-6


def test_opsd_run_metrics(tiny_model_dir, records, tmp_path):
    """Per step: loss (here reverse KL over the full vocabulary, so it equals the kl figure),
    rollout length within the cap, accuracy of the rollouts, all 6 prompts per epoch; the recall
    hook reads the records' naive prompts."""
    cfg = _cfg(tiny_model_dir, records, tmp_path / "r", epochs=2, teacher_top_k=0,
               recall_every_epoch=True, recall_max_new_tokens=4)  # fmt: skip
    model_dir = run(cfg)
    lines = _lines(tmp_path / "r")
    assert [x["recall"] for x in lines if "recall" in x] == [0.0, 0.0]  # random model, 4 tokens
    assert lines[0]["event"] == "data" and lines[0]["kept"] == 6
    steps = [x for x in lines if "loss" in x]
    assert [x["epoch"] for x in steps] == [1, 1, 2, 2]
    for x in steps:
        assert x["loss"] == pytest.approx(x["kl"], rel=1e-5) and x["kl"] > 0
        assert 1 <= x["rollout_len"] <= 8 and 0 <= x["accuracy"] <= 1
        assert x["rollout_tokens"] == 3 * x["rollout_len"]
    before, after = (
        load_file(tiny_model_dir / "model.safetensors"),
        load_file(model_dir / "model.safetensors"),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_opsd_rollouts_count_correct_answers(tiny_model_dir, records, tmp_path, monkeypatch):
    """Accuracy is the fraction of rollouts whose extracted answer is the record's gold."""
    from mixsd.train import opsd

    def fake(self, module, items, epoch):  # the first two prompts answer right, the rest not
        right = [self.tokenizer.encode(f"\\boxed{{{p.gold}}}") for p, _ in items[:2]]
        return right + [self.tokenizer.encode("\\boxed{Nowhere}") for _ in items[2:]]

    monkeypatch.setattr(opsd.OPSD, "rollouts", fake)
    run(_cfg(tiny_model_dir, records, tmp_path / "r", steps=1))
    assert [x["accuracy"] for x in _lines(tmp_path / "r") if "loss" in x] == [pytest.approx(2 / 3)]


def test_opsd_kill_and_resume_reach_the_same_weights(tiny_model_dir, records, tmp_path):
    kw = dict(steps=5, batch_size=2, save_every=2, divergence="jsd")
    whole = run(_cfg(tiny_model_dir, records, tmp_path / "a", **kw))
    cfg = _cfg(tiny_model_dir, records, tmp_path / "b", **kw)
    run(cfg, stop_after=3)
    assert not (tmp_path / "b" / "model").exists()
    resumed = run(cfg)
    wa, wb = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    losses = [[x["loss"] for x in _lines(tmp_path / r) if "loss" in x] for r in "ab"]
    assert losses[0] == losses[1]


def test_opsd_resume_refuses_an_edited_input(tiny_model_dir, records, tmp_path):
    mine = tmp_path / "train.jsonl"
    mine.write_text(records.read_text())
    cfg = _cfg(tiny_model_dir, mine, tmp_path / "r", steps=2, batch_size=2)
    run(cfg, stop_after=1)
    mine.write_text(records.read_text().replace("Town1", "Town9"))
    from mixsd.errors import MixsdError

    with pytest.raises(MixsdError, match=r"the training data changed .*\(input changed\)"):
        run(cfg)


def test_opsd_config_checks(tiny_model_dir, records, tmp_path):
    from mixsd.errors import MixsdError

    with pytest.raises(MixsdError, match="'input': --method opsd needs"):
        _cfg(tiny_model_dir, None, tmp_path)
    with pytest.raises(MixsdError, match="'targets': not used by --method opsd"):
        _cfg(tiny_model_dir, records, tmp_path, targets=["x"])
    with pytest.raises(
        MixsdError, match=r"'opsd' \(input, .*rollouts.*\): not used by --method nll"
    ):
        load_config(TrainConfig, None, model="m", targets=["x"], out=tmp_path, rollouts=2)
    with pytest.raises(MixsdError, match="'divergence': expected one of"):
        _cfg(tiny_model_dir, records, tmp_path, divergence="kl")


def test_opsd_options_are_a_mapping_in_yaml_and_flat_flags(records, tmp_path):
    """YAML nests them under `opsd:`; a flag (`--rollouts`) overrides that mapping's key; the run
    record nests them too; a key OPSD lacks, or the mapping under --method nll, is refused."""
    from mixsd.config import to_dict
    from mixsd.errors import MixsdError

    path = tmp_path / "c.yaml"
    path.write_text(f"method: opsd\nopsd:\n  input: {records}\n  rollouts: 2\n  jsd_beta: 0.25\n")
    cfg = load_config(TrainConfig, path, model="m", out=tmp_path, rollouts="3")
    assert (cfg.opsd.input, cfg.opsd.rollouts, cfg.opsd.jsd_beta) == (records, 3, 0.25)
    assert to_dict(cfg)["opsd"]["input"] == str(records) and "rollouts" not in to_dict(cfg)
    path.write_text("method: opsd\nopsd:\n  bogus: 1\n")
    with pytest.raises(MixsdError, match="unknown option 'opsd.bogus'"):
        load_config(TrainConfig, path, model="m", out=tmp_path)
    path.write_text("opsd:\n  rollouts: 2\n")
    with pytest.raises(MixsdError, match="'opsd' .*: not used by --method nll"):
        load_config(TrainConfig, path, model="m", out=tmp_path, targets=["x"])


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["2", "3"])
def test_opsd_two_ranks_match_one_process(zero, tiny_model_dir, records, tmp_path):
    """Each rank samples its share of the rollouts with the same weights and keys: the losses,
    figures and weights of one plain process. Batch 4 over 6 prompts with micro-batch 1 leaves
    a short last batch (an idle micro-step on both ranks). ZeRO-3 partitions every tensor
    (rollouts gather them) and is killed after 2 steps and resumed."""
    kw = dict(steps=4, batch_size=4)
    plain = run(_cfg(tiny_model_dir, records, tmp_path / "plain", **kw))
    ds_config = tmp_path / "ds.json"
    cfg = json.loads(open(f"configs/deepspeed/zero{zero}.json").read())
    cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    ds_config.write_text(json.dumps(cfg))
    args = ["--model", tiny_model_dir, "--method", "opsd", "--input", records, "--out",
            tmp_path / "ds", "--steps", 4, "--batch-size", 4, "--micro-batch-size", 1, "--lr", 3e-3,
            "--warmup-steps", 1, "--rollout-max-new-tokens", 8, "--zero", zero, "--nproc", 2,
            "--deepspeed-config", ds_config]  # fmt: skip
    command = [sys.executable, "-m", "mixsd", "train", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if zero == "3":
        p = subprocess.run([*command, "--stop-after", "2"], text=True, capture_output=True, env=env)
        assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run(command, text=True, capture_output=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = ([x for x in _lines(tmp_path / r) if "loss" in x] for r in ("plain", "ds"))
    for key in ("loss", "kl", "rollout_len", "accuracy", "grad_norm"):
        torch.testing.assert_close([x[key] for x in b], [x[key] for x in a], rtol=1e-4, atol=1e-7)
    wp = load_file(plain / "model.safetensors")
    wd = load_file(tmp_path / "ds" / "model" / "model.safetensors")
    for k in wp:
        torch.testing.assert_close(wd[k], wp[k], rtol=1e-4, atol=1e-5)


# Loaded by every process of the run below (PYTHONPATH): rank 1 is held back, as a busy machine
# may hold it, until rank 0 has written RUN/model, before it looks at RUN/model itself.
LATE_RANK_1 = """
import os, pathlib, time

if os.environ.get("RANK") == "1":
    _is_dir = pathlib.Path.is_dir

    def is_dir(self):
        if self == pathlib.Path(os.environ["MIXSD_TEST_MODEL_DIR"]):
            deadline = time.monotonic() + 120  # a bound, not a delay: rank 0 writes it first
            while not _is_dir(self) and time.monotonic() < deadline:
                time.sleep(0.05)
        return _is_dir(self)

    pathlib.Path.is_dir = is_dir
"""


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["2", "3"])
def test_opsd_two_ranks_agree_on_the_final_export(zero, tiny_model_dir, records, tmp_path):
    """Every process runs the same collectives to the end, however late one of them is: the
    final export is decided once (by rank 0), not by each process looking at RUN/model at its own
    time. (It once was: a late rank 1 found the model rank 0 had just written, skipped the export
    and left; rank 0 then failed at the export's barrier, "Connection closed by peer", in 2 of 4
    runs on a busy machine. The tiny model's weights stay whole under the default ZeRO-3 config,
    below its persistence threshold, so no gather held rank 0 back there either.)"""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(LATE_RANK_1)
    out = tmp_path / "run"
    args = [
        "--model",
        tiny_model_dir,
        "--method",
        "opsd",
        "--input",
        records,
        "--out",
        out,
        "--steps",
        1,
        "--batch-size",
        2,
        "--warmup-steps",
        1,
        "--rollout-max-new-tokens",
        4,
        "--zero",
        zero,
        "--nproc",
        2,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MIXSD_TEST_MODEL_DIR": str(out / "model"),
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
    }
    p = subprocess.run(
        [sys.executable, "-m", "mixsd", "train", *map(str, args)],
        text=True,
        capture_output=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "model" / "model.safetensors").is_file()
    assert not (out / "model.tmp").exists()
