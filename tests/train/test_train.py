"""The training loop on CPU: learning, export, resume, batch-split invariance, DeepSpeed ZeRO-2/3."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mixsd.config import load_config
from mixsd.errors import MixsdError
from mixsd.train import TrainConfig, run


def assert_same_weights(a: dict, b: dict, lr: float) -> None:
    """Two runs that should reach the same weights (accumulation, ranks, ZeRO stages) did, up to
    the fp32 summation order: every tensor within rtol 1e-4 / atol 1e-5, except at most 1 element
    in 1000, and no element further apart than one step of `lr`.

    Why the exception: AdamW normalizes each update by the gradient's running RMS, so where a
    gradient nearly cancels (in the batch sum, or across steps in the running mean) the last-bit
    differences of a reordered fp32 sum reach the update at a far larger relative size (seen: 1
    element of 16384, a gate_proj weight that moved 1.9e-3 where the median moved 6.2e-3, off by
    2.3e-5 at lr 3e-3, on one CPU and not another). A real mismatch (a wrong micro-batch weight,
    a missed all-reduce) moves most elements, and the runs' losses are compared tightly as well.
    """
    assert a.keys() == b.keys()
    for k in a:
        close = torch.isclose(a[k], b[k], rtol=1e-4, atol=1e-5)
        assert (~close).sum().item() <= a[k].numel() // 1000, f"{k}: {(~close).sum()} elements"
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=lr, msg=lambda m, k=k: f"{k}: {m}")


def two_ranks(zero: str, tmp_path) -> tuple[list, list]:
    """(command, extra args) of a 2-process `mixsd train`: DDP under torchrun for `--zero none`,
    else `--nproc 2` with a DeepSpeed config whose ZeRO-3 partitions every tensor (persistence
    threshold 0, so the gathers really run on the tiny model)."""
    if zero == "none":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node=2", "-m", "mixsd", "train"]  # fmt: skip
        return launcher, []
    ds_config = tmp_path / "ds.json"
    cfg = json.loads(open(f"configs/deepspeed/zero{zero}.json").read())
    cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    ds_config.write_text(json.dumps(cfg))
    return [sys.executable, "-m", "mixsd", "train", "--nproc", 2], ["--deepspeed-config", ds_config]


def _cfg(tiny_model_dir, targets, out, **kw):
    base = dict(
        model=str(tiny_model_dir), targets=targets, out=out, batch_size=4, lr=3e-3, warmup_steps=2
    )
    return load_config(TrainConfig, None, **{**base, **kw})


def _metric(run_dir, key):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x[key] for x in lines if key in x]


def _losses(run_dir):
    return _metric(run_dir, "loss")


def _weights(model_dir):
    return load_file(model_dir / "model.safetensors")


def test_sft_set_learns_and_export_loads_and_generates(tiny_model_dir, sft_set, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _cfg(tiny_model_dir, [str(sft_set)], tmp_path / "run", epochs=4, recall_every_epoch=True,
               recall_max_new_tokens=4, export_every_epoch=True)  # fmt: skip
    model_dir = run(cfg)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 4 * 4
    assert sum(losses[-4:]) < 0.7 * sum(losses[:4])  # last epoch vs first
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if "recall" in x] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "run" / "exports").iterdir()) == [
        f"epoch-{k}" for k in (1, 2, 3, 4)
    ]
    assert _weights(tmp_path / "run" / "exports" / "epoch-4").keys() == _weights(model_dir).keys()
    # the final model is the last export's files, linked, not a second copy
    last = tmp_path / "run" / "exports" / "epoch-4"
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(p.name for p in last.iterdir())
    assert all((model_dir / p.name).samefile(p) for p in last.iterdir())
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = _weights(tiny_model_dir)
    trained = model.state_dict()
    assert (
        trained["lm_head.weight"].data_ptr() == trained["model.embed_tokens.weight"].data_ptr()
    )  # tied
    assert not torch.equal(trained["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    out = model.generate(torch.tensor([tok.encode("What is")]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 2


def test_mixsd_set_at_one_lambda_learns(tiny_model_dir, mixsd_set, tmp_path):
    run(_cfg(tiny_model_dir, [f"{mixsd_set}:lam=0.5"], tmp_path / "run", epochs=4))
    losses = _losses(tmp_path / "run")
    assert len(losses) == 16 and sum(losses[-4:]) < 0.7 * sum(losses[:4])
    data = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert data["examples"] == 16  # only λ=0.5 rows
    # ids 4, 9, 14 failed their answer check: by default trained on their reference
    assert (data["failed"], data["failed_policy"], data["replaced"]) == (3, "reference", 3)


def test_no_save_state_writes_no_checkpoint_and_the_same_weights(tiny_model_dir, sft_set, tmp_path):
    """--no-save-state: no resume state on disk, the same training (exports, final model)."""
    kw = dict(epochs=2, export_every_epoch=True)
    with_state = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "a", **kw))
    without = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "b", save_state=False, **kw))
    assert not (tmp_path / "b" / "checkpoints").exists()
    assert (tmp_path / "a" / "checkpoints" / "latest").is_file()
    assert sorted(p.name for p in (tmp_path / "b" / "exports").iterdir()) == ["epoch-1", "epoch-2"]
    a, b = _weights(with_state), _weights(without)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(MixsdError, match="option 'save_every': checkpoints are off"):
        _cfg(tiny_model_dir, [str(sft_set)], tmp_path / "c", save_state=False, save_every=2)


def test_a_killed_run_without_resume_state_starts_over_with_one_data_line(
    tiny_model_dir, sft_set, tmp_path
):
    cfg = _cfg(tiny_model_dir, [str(sft_set)], tmp_path / "run", steps=3, save_state=False)
    run(cfg, stop_after=2)  # killed after 2 steps: nothing to resume from
    run(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("event") for x in lines].count("data") == 1
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]


def test_references_share_is_warned_and_recorded(tiny_model_dir, tiny_tokenizer, tmp_path, capsys):
    """3 of 16 λ rows (ids 4, 9, 14) train on their references: one warning line at start, the
    share in the run's metrics."""
    from .conftest import set_rows, write_set

    root = write_set(tmp_path / "set", tiny_tokenizer, set_rows(tiny_tokenizer, 16, "mixsd", 0.5))
    run(_cfg(tiny_model_dir, [str(root)], tmp_path / "run", steps=1))
    data = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert data["replaced_share"] == 3 / 16
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert warnings == [
        "warning: 19% of the MixSD rows failed their answer check and train on their reference "
        "answers (--failed reference): for them this run is SFT"
    ]


def test_kill_and_resume_reaches_the_same_weights(tiny_model_dir, sft_set, tmp_path):
    kw = dict(steps=9, micro_batch_size=2, schedule="cosine", save_every=2)
    whole = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "a", **kw))
    cfg = _cfg(tiny_model_dir, [str(sft_set)], tmp_path / "b", **kw)
    run(cfg, stop_after=5)  # "killed" after step 5 (checkpoint at 4 and at the stop)
    assert not (tmp_path / "b" / "model").exists()
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text() == "step-5"
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "epoch": 2, "lo')  # killed while writing step 6's metrics
    resumed = run(cfg)
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(resumed)[k]), k
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")  # metrics trimmed, not duplicated


def test_resume_refuses_a_changed_trajectory(tiny_model_dir, sft_set, tmp_path):
    from mixsd.errors import MixsdError

    run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "r", steps=2), stop_after=1)
    with pytest.raises(MixsdError, match="cannot resume with a different 'lr'"):
        run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "r", steps=2, lr=1e-3))
    # Recall options change no weight: a resumed run may change them.
    run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "r", steps=2, recall_max_new_tokens=9))
    assert (tmp_path / "r" / "model").is_dir()


def test_resume_refuses_changed_data(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A set that gained a λ since the run started: the run trained on 6 rows, it must not resume
    on 9. A selection the new λ does not touch still resumes; so does the restored set."""
    import shutil

    from mixsd.errors import MixsdError

    from .conftest import set_rows, write_set

    root = write_set(tmp_path / "set", tiny_tokenizer, set_rows(tiny_tokenizer, 6, "mixsd", 0.3))
    kept = shutil.copytree(root, tmp_path / "copy")
    every, one = (
        _cfg(tiny_model_dir, [spec], tmp_path / name, steps=3, batch_size=2)
        for spec, name in ((str(root), "every"), (f"{root}:lam=0.3", "one"))
    )
    run(every, stop_after=1)
    run(one, stop_after=1)
    assert json.loads((tmp_path / "every" / "data.json").read_text())[str(root)][0]["rows"] == 6
    write_set(root, tiny_tokenizer, set_rows(tiny_tokenizer, 3, "mixsd", 0.5))  # a λ added
    with pytest.raises(
        MixsdError,
        match=r"every: cannot resume, the training data changed since the run started \(--targets "
        r".*/set: part lam=0.5/part-0-of-1-\d+.parquet added \(3 rows\)\); restore the data, or "
        r"train into a new --out",
    ):
        run(every)
    assert (tmp_path / "every" / "checkpoints" / "latest").read_text() == "step-1"
    run(one)  # λ=0.3 only: its parts are unchanged
    shutil.rmtree(root)
    shutil.copytree(kept, root)
    run(every)
    assert _losses(tmp_path / "every") == _losses(tmp_path / "one")


def test_trim_metrics_drops_later_steps_and_a_partial_line(tmp_path):
    from mixsd.train.checkpoint import trim_metrics

    path = tmp_path / "metrics.jsonl"
    lines = [{"event": "data", "step": 0}, {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 3, "lo')
    trim_metrics(path, 2)
    assert [json.loads(x) for x in path.read_text().splitlines()] == lines
    trim_metrics(path, 1)
    assert [json.loads(x) for x in path.read_text().splitlines()] == lines[:2]
    trim_metrics(path, 0)  # starting over (no checkpoint): the old run's lines all go
    assert path.read_text() == ""


def test_accumulation_gives_the_same_update(tiny_model_dir, mixsd_set, tmp_path):
    """One micro-batch of 8 vs 4 accumulated micro-batches of 2 (with gradient checkpointing):
    the same token-mean gradient, so the same weights."""
    a = run(_cfg(tiny_model_dir, [str(mixsd_set)], tmp_path / "a", steps=3, batch_size=8))
    b = run(
        _cfg(
            tiny_model_dir,
            [str(mixsd_set)],
            tmp_path / "b",
            steps=3,
            batch_size=8,
            micro_batch_size=2,
            gradient_checkpointing=True,
        )
    )
    assert_same_weights(_weights(a), _weights(b), lr=3e-3)
    torch.testing.assert_close(_losses(tmp_path / "a"), _losses(tmp_path / "b"), rtol=1e-5, atol=0)


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mixsd", "train", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_cli_bad_input_is_one_line(tiny_model_dir, sft_set, tmp_path):
    p = _cli("--model", tiny_model_dir, "--targets", f"{sft_set}:lam=0.3", "--out", tmp_path / "r")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "λ=0.3 not in the set" in p.stderr and "Traceback" not in p.stderr


def test_config_checks(tiny_model_dir, sft_set, tmp_path):
    from mixsd.errors import MixsdError

    with pytest.raises(MixsdError, match="micro_batch_size.: 3 does not divide the 8"):
        _cfg(
            tiny_model_dir, [str(sft_set)], tmp_path, batch_size=16, micro_batch_size=3
        ).micro_and_accumulation(2)
    assert _cfg(
        tiny_model_dir, [str(sft_set)], tmp_path, batch_size=16, micro_batch_size=2
    ).micro_and_accumulation(2) == (2, 4)


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["none", "0", "1", "2", "3"])
def test_two_ranks_match_one_plain_process(zero, tiny_model_dir, sft_set, tmp_path):
    """2 CPU ranks (gloo) give the plain single process's losses, grad norms and weights: DDP
    (`--zero none`, launched by torchrun itself) and every DeepSpeed ZeRO stage (`--nproc 2`).
    Batch 6 over 16 rows with micro-batch 1 leaves a short last batch (an idle micro-step on both
    ranks). ZeRO-3 partitions every tensor (persistence threshold 0). DDP and ZeRO-3 are killed
    after 3 steps and resumed. Without a terminal, progress is a status line. (Stage 0 once
    crashed at its first step: DeepSpeed keeps no grad norm there; `--zero none` once trained two
    unsynchronised replicas.)"""
    plain = run(_cfg(tiny_model_dir, [str(sft_set)], tmp_path / "plain", steps=6, batch_size=6))
    args = ["--model", tiny_model_dir, "--targets", sft_set, "--out", tmp_path / "mp", "--steps", 6,
            "--batch-size", 6, "--micro-batch-size", 1, "--lr", 3e-3, "--warmup-steps", 2,
            "--zero", zero]  # fmt: skip
    launcher, more = two_ranks(zero, tmp_path)
    args += more
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if zero in ("none", "3"):
        p = subprocess.run([*map(str, launcher + args), "--stop-after", "3"],
                           capture_output=True, text=True, env=env)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        assert not (tmp_path / "mp" / "model").exists()
    p = subprocess.run(list(map(str, launcher + args)), capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    # stderr is a pipe (as in SLURM logs): process 0 writes status lines, not a tqdm bar
    line = [x for x in p.stderr.splitlines() if x.startswith("train: ")][-1]
    assert line.startswith("train: 6/6 steps (100%)") and "tok/s" in line and "loss=" in line
    torch.testing.assert_close(
        _losses(tmp_path / "mp"), _losses(tmp_path / "plain"), rtol=1e-5, atol=0
    )
    norms = [_metric(tmp_path / r, "grad_norm") for r in ("mp", "plain")]
    torch.testing.assert_close(*norms, rtol=1e-4, atol=0)
    assert_same_weights(_weights(tmp_path / "mp" / "model"), _weights(plain), lr=3e-3)


def test_recall_counts_what_greedy_decoding_says(tiny_model, tiny_tokenizer):
    """Gold answers taken from the model's own greedy continuation are recalled; others are not."""
    import copy

    import numpy as np

    from mixsd.train.data import Example
    from mixsd.train.recall import greedy_recall

    rng = np.random.default_rng(0)  # random prompts: the untrained model continues them variously
    prompts = [rng.integers(10, 400, n).tolist() for n in (12, 9, 14)]  # batched with padding
    with torch.no_grad():
        outs = [
            tiny_model.generate(torch.tensor([p]), max_new_tokens=8, do_sample=False)[0, len(p) :]
            for p in prompts
        ]
    texts = [tiny_tokenizer.decode(o, skip_special_tokens=True) for o in outs]
    answers = [texts[0].strip(), texts[1].strip(), "not-what-it-says"]
    assert all(answers)
    exs = [Example(np.asarray(p + [1], dtype=np.int32), len(p), f"q{i}", a)
           for i, (p, a) in enumerate(zip(prompts, answers, strict=True))]  # fmt: skip
    assert greedy_recall(tiny_model, tiny_tokenizer, exs, 10, 8, methods=("contains",)) == 2 / 3
    assert greedy_recall(tiny_model, tiny_tokenizer, exs, 1, 8, methods=("contains",)) == 1.0
    no_pad = copy.deepcopy(tiny_tokenizer)  # many base tokenizers have no pad token
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    assert greedy_recall(tiny_model, no_pad, exs, 10, 8, methods=("contains",)) == 2 / 3


def test_cli_duplicate_targets_is_one_line_before_any_process_starts(
    tiny_model_dir, mixsd_set, tmp_path
):
    p = _cli(
        "--model",
        tiny_model_dir,
        "--targets",
        mixsd_set,
        "--targets",
        f"{mixsd_set}:lam=0.5",
        "--out",
        tmp_path / "r",
        "--nproc",
        2,
        "--zero",
        2,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: {mixsd_set}: (id 'q0', sample 0, λ 0.5) is also in {mixsd_set}: "
        "refusing to train on duplicates"
    ]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "recorded, given, recall",
    [
        (["contains"], None, 1.0),
        (None, None, 0.0),
        (["contains"], ["boxed", "number"], 0.0),
        (None, ["contains"], 1.0),
    ],
)
def test_recall_scores_with_the_sets_answer_methods(
    recorded, given, recall, tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    """A model that answers in sentences ("It is X3, I think.") recalls every fact under the
    set's `contains` check (recorded in its provenance by generate), none under boxed/number
    (the default when the set records no methods). `--answer-methods`, when given, is what
    recall grades with, whatever the set recorded (even the default's boxed,number)."""
    from mixsd.generate import greedy

    from .conftest import set_rows, write_set

    rows = set_rows(tiny_tokenizer, 4, "mixsd", 0.3)
    extra = {"answer_methods": recorded} if recorded else {}
    root = write_set(tmp_path / "set", tiny_tokenizer, rows, **extra)
    said = {tuple(r["prompt_ids"]): f"It is {r['answer']}, I think." for r in rows}
    monkeypatch.setattr(
        greedy, "greedy_answers", lambda m, t, prompts, *a, **k: [said[tuple(p)] for p in prompts]
    )
    cfg = _cfg(
        tiny_model_dir,
        [str(root)],
        tmp_path / "r",
        epochs=1,
        recall_every_epoch=True,
        failed="keep",
        answer_methods=given,
    )
    run(cfg)
    assert _metric(tmp_path / "r", "recall") == [recall]


def test_cli_mostly_references_is_refused_in_one_line(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A model that never boxes its answers fails every check of a boxed set: all 4 rows would
    train on their references. Refused before any process starts; allowed when asked."""
    from .conftest import set_rows, write_set

    rows = set_rows(tiny_tokenizer, 4, "mixsd", 0.0)
    for r in rows:
        r["correct"] = False
    root = write_set(tmp_path / "set", tiny_tokenizer, rows)
    args = [
        "--model",
        tiny_model_dir,
        "--targets",
        f"{root}:lam=0",
        "--out",
        tmp_path / "r",
        "--steps",
        1,
        "--batch-size",
        2,
    ]
    p = _cli(*args, "--nproc", 2)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"note: {root}: completeness unknown: written before mixsd recorded plans",  # no plan
        f"error: --targets {root}:lam=0: 4 of 4 MixSD rows (100%) failed their answer check and "
        "would train on their reference answers (--failed reference): an SFT run, not MixSD. "
        "Check the answer methods the set was made with (e.g. --answer-methods contains for a "
        "model that answers in sentences), or pass --allow-mostly-reference",
    ]
    assert not (tmp_path / "r").exists()
    p = _cli(*args, "--allow-mostly-reference")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "warning: 100% of the MixSD rows failed their answer check" in p.stderr
    data = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert (data["replaced"], data["replaced_share"]) == (4, 1.0)
