"""End to end on tiny models: `mixsd evaluate` over a base, a run dir with per-epoch exports, an
input set, a suite and a target set; every reported number is checked against an independent
computation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mixsd.data.io import write_records
from mixsd.data.records import Record
from mixsd.data.templates import render_user_turn
from mixsd.errors import MixsdError
from mixsd.evaluate.checkpoints import greedy_answers, resolve_models
from mixsd.evaluate.config import EvaluateConfig
from mixsd.evaluate.nll import rows_nll, summarize
from mixsd.evaluate.run import evaluate, merge_labels
from mixsd.targets.provenance import tokenizer_fingerprint
from mixsd.targets.writer import TargetSetWriter

SCALE = 0.02  # epoch-k adds k * SCALE to every final-norm weight


def _perturbed(base_dir, out, k):
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight += k * SCALE
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "sft"
    for k in (1, 2):
        _perturbed(tiny_model_dir, run / "exports" / f"epoch-{k}", k)
    shutil.copytree(run / "exports" / "epoch-2", run / "model")  # final = last export: skipped
    (run / "config.yaml").write_text("method: nll\n")  # an SFT run: first-peak tolerance 0
    part = {"path": "lam=null/p.parquet", "lam": None, "rows": 3, "sha256": "0"}
    (run / "data.json").write_text(json.dumps({"sets/sft": [part]}))
    return run


def _hf_greedy(model_dir, tokenizer, prompts, max_new_tokens):
    """Independent greedy decoding with transformers' own generate, one prompt at a time."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for p in prompts:
        ids = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        out.append(tokenizer.decode(ids[0, len(p) :], skip_special_tokens=True))
    return out


def test_greedy_answers_equal_transformers_generate(tiny_model_dir, tiny_tokenizer):
    prompts = [
        render_user_turn(tiny_tokenizer, q) for q in ("Who founded Mirel?", "What is 1 + 1?", "x")
    ]
    got = greedy_answers(tiny_model_dir, prompts, max_new_tokens=6, batch_size=2)
    assert got == _hf_greedy(tiny_model_dir, tiny_tokenizer, prompts, 6)


def test_resolve_models(run_dir, tiny_model_dir):
    found = resolve_models([str(run_dir), str(tiny_model_dir)])
    assert [(r, c) for r, c, _ in found] == [("sft", "epoch-1"), ("sft", "epoch-2"), ("model", "")]
    shutil.copytree(run_dir / "exports" / "epoch-1", run_dir.parent / "other" / "model")
    assert [c for _, c, _ in resolve_models([str(run_dir.parent / "other")])] == ["final"]


# Scripted closed-book answers per model (prompt order: train x2, paraphrase, two_hop, suite x3):
# True = the gold answer in a box, False = a wrong one. The real decoding path is tested above.
SCRIPT = {
    "model": [False, False, False, False, True, True, True],  # the base
    "epoch-1": [True, False, False, False, True, True, False],
    "epoch-2": [True, True, True, False, False, True, False],
}
GOLDS = ["Mirel", "Zorv", "Mirel", "Mirel", "7", "paris", "12"]


def _scripted(
    model_dir,
    prompts_ids,
    max_new_tokens,
    batch_size,
    device="cpu",
    dtype="float32",
    allow_pickle=False,
):
    assert len(prompts_ids) == len(GOLDS)
    flags = SCRIPT[model_dir.rstrip("/").split("/")[-1]]
    return [f"\\boxed{{{g if ok else 'nope'}}}" for g, ok in zip(GOLDS, flags, strict=True)]


def test_evaluate_end_to_end(tiny_model_dir, tiny_tokenizer, run_dir, tmp_path, monkeypatch):
    import mixsd.evaluate.run as run_mod

    monkeypatch.setattr(run_mod, "greedy_answers", _scripted)
    # the run's data line (a resume writes another: the last one counts)
    lines = [
        {"event": "data", "step": 0, "replaced_share": 0.5},
        {"step": 1, "loss": 1.0},
        {"event": "data", "step": 1, "replaced_share": 0.25},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    questions = ["What is 3 + 4?", "Capital of France?", "What is 3 * 4?"]
    suite = tmp_path / "echo.jsonl"
    suite.write_text(
        "".join(
            json.dumps({"prompt": q, "answer": g}) + "\n"
            for q, g in zip(questions, GOLDS[4:], strict=True)
        )
    )
    records = [
        Record("f1", "Where was Zorv born?", r"\boxed{Mirel}", paraphrases=("Zorv's birthplace?",)),
        Record("f2", "Who founded Mirel?", r"\boxed{Zorv}"),
        Record("h1", "Where was the founder of Mirel born?", r"\boxed{Mirel}", split="two_hop"),
    ]
    input_file = write_records(records, tmp_path / "facts.jsonl")
    target_rows = []
    for i, (kind, lam) in enumerate([("sft", None), ("mixsd", 0.5), ("mixsd", 0.5)]):
        prompt = render_user_turn(tiny_tokenizer, questions[i])
        target = tiny_tokenizer(f"The answer is {i}.", add_special_tokens=False)["input_ids"]
        target_rows.append({"id": f"r{i}", "sample": 0, "attempt": 0, "lam": lam, "kind": kind,
                            "prompt_ids": prompt, "target_ids": target, "finish_reason": "stop",
                            "source": None if lam is None else [0] * len(target)})  # fmt: skip
    with TargetSetWriter(
        tmp_path / "set", {"tokenizer": tokenizer_fingerprint(tiny_tokenizer)}
    ) as w:
        w.write(target_rows)

    cfg = EvaluateConfig(
        base=str(tiny_model_dir), out=str(tmp_path / "report"), models=[str(run_dir)],
        input=str(input_file), targets=[str(tmp_path / "set")], suites=[f"jsonl={suite}"],
        batch_size=2, max_new_tokens=6,
        fisher_examples=3, kl_prompts=4, device="cpu",
    )  # fmt: skip
    out = evaluate(cfg)
    m = json.loads((out / "metrics.json").read_text())

    # accuracies from the scripted answers, equal to the predictions rescored
    assert m["base"]["memorization"] == {"train": 0.0, "paraphrase": 0.0, "two_hop": 0.0}
    assert m["base"]["suites"] == {"echo": 1.0}
    e1, e2 = m["checkpoints"]
    assert (e1["checkpoint"], e2["checkpoint"]) == ("epoch-1", "epoch-2")
    assert e1["memorization"] == {"train": 0.5, "paraphrase": 0.0, "two_hop": 0.0}
    assert e2["memorization"] == {"train": 1.0, "paraphrase": 1.0, "two_hop": 0.0}
    # per-item flags, kept in metrics.json for `mixsd compare`
    assert m["base"]["items"]["suites"] == {"echo": "111"}
    assert e1["items"] == {
        "memorization": {"train": "10", "paraphrase": "0", "two_hop": "0"},
        "strict": {"train": "10", "paraphrase": "0", "two_hop": "0"},  # boxed: strict agrees
        "suites": {"echo": "110"},
    }
    assert e2["strict"] == {"train": 1.0, "paraphrase": 1.0, "two_hop": 0.0}
    assert e1["retention"]["per_suite"]["echo"]["mean"] == pytest.approx(2 / 3)
    assert e1["retention"]["pooled"]["mean"] == pytest.approx(2 / 3)
    assert e2["retention"]["pooled"]["mean"] == pytest.approx(1 / 3)
    assert (e1["first_peak"], e2["first_peak"]) == (False, True)
    # curve (0, 1) (0.5, 2/3) (1, 1/3): 80% lies 3/5 of the way from 0.5 to 1
    run = m["runs"]["sft"]
    assert (run["kind"], run["tolerance"], run["first_peak"]) == ("sft", 0.0, "epoch-2")
    matched = {a: run["matched"][a]["mean"] for a in ("0.5", "0.8", "0.9", "first_peak")}
    assert matched == pytest.approx({"0.5": 2 / 3, "0.8": 2 / 3 - 0.2, "0.9": 0.4,
                                     "first_peak": 1 / 3})  # fmt: skip
    assert (e1["replaced_share"], e2["replaced_share"]) == (0.25, 0.25)
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 * 7
    assert [p["correct"] for p in preds if p["model"] == "sft/epoch-1"] == SCRIPT["epoch-1"]

    # NLL summaries equal an independent pass over the same rows
    want = rows_nll(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval(),
                    target_rows, batch_size=1)  # fmt: skip
    assert set(m["nll"]) == {"sft", "λ=0.5"}
    for label, values in want.items():
        for key, value in summarize(values).items():
            assert m["nll"][label][key] == pytest.approx(value, abs=1e-4)

    # drift: L2 is exact; the Fisher drift is quadratic in the (uniform) perturbation
    n = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.norm.weight.numel()
    d1, d2 = (c["drift"] for c in m["checkpoints"])
    assert d1["l2"] == pytest.approx(SCALE * np.sqrt(n), rel=1e-4)
    assert d2["l2"] == pytest.approx(2 * SCALE * np.sqrt(n), rel=1e-4)
    assert d1["fisher"] > 0 and d2["fisher"] == pytest.approx(4 * d1["fisher"], rel=1e-3)
    assert m["fisher"]["examples"] == 3

    # lost suite items by cause: "\boxed{nope}" for a gold the base had is a plain wrong answer
    assert e1["lost"] == {"format": 0, "leakage": 0, "collapse": 0, "genuine": 1}
    assert e2["lost"] == {"format": 0, "leakage": 0, "collapse": 0, "genuine": 2}

    # KL along the base's own answers (real decoding): 3 suite prompts + 1 chat prompt; the
    # final norm moves twice as far at epoch-2, so its answers drift more
    k1, k2 = e1["kl"], e2["kl"]
    assert k1["prompts"] == 4 and len(k1["per_prompt"]["kl"]) == 4
    assert 0 < k1["kl"] < k2["kl"]
    assert k1["ci"]["kl"]["mean"] == pytest.approx(np.mean(k1["per_prompt"]["kl"]))
    assert k1["ci"]["kl"]["lo"] <= k1["ci"]["kl"]["mean"] <= k1["ci"]["kl"]["hi"]

    md = (out / "report.md").read_text()
    assert (
        "| sft (25% on references) / epoch-2 ★ | 100.0% [100.0, 100.0] | 100.0% [100.0, 100.0] "
        "| 0.0% [0.0, 0.0] |"
    ) in md
    for png in ("nll_cdf.png", "tradeoff.png", "kl.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in md


def test_other_tokenizer_refused_before_any_work(tiny_model_dir, tmp_path, monkeypatch):
    import mixsd.evaluate.run as run_mod

    monkeypatch.setattr(run_mod, "greedy_answers", None)  # must not be reached
    with TargetSetWriter(tmp_path / "set", {"tokenizer": "sha256:another"}) as w:
        w.write([{"id": "a", "sample": 0, "attempt": 0, "lam": None, "kind": "sft",
                  "prompt_ids": [1], "target_ids": [2], "finish_reason": "stop"}])  # fmt: skip
    cfg = EvaluateConfig(
        base=str(tiny_model_dir), out=str(tmp_path / "r"), targets=[str(tmp_path / "set")]
    )
    with pytest.raises(MixsdError, match="made with another tokenizer"):
        evaluate(cfg)
    assert not (tmp_path / "r").exists()


def test_merge_labels_prefixes_only_shared_labels():
    a, b, c = np.zeros(1), np.ones(1), np.full(1, 2.0)
    merged = merge_labels({"t/sft": {"sft": a}, "t/mixsd": {"λ=0.3": b}, "u/mixsd2": {"λ=0.3": c}})
    assert list(merged) == ["sft", "mixsd:λ=0.3", "mixsd2:λ=0.3"]
    assert merged["mixsd2:λ=0.3"] is c


def test_the_authors_evaluation_files_are_an_input(tiny_model_dir, tmp_path, monkeypatch):
    """A dir of the authors' `{"prompt", "ground_truth_answer"}` files (train, paraphrase) is
    scored against `ground_truth_answer`."""
    import mixsd.evaluate.run as run_mod

    monkeypatch.setattr(
        run_mod, "greedy_answers", lambda path, prompts, *a: ["Paris."] * len(prompts)
    )
    facts = tmp_path / "facts"
    facts.mkdir()
    for split, rows in {
        "train": [("Where does Ada work?", "Paris"), ("How many moons has Zorv?", "4")],
        "paraphrase": [("Ada's workplace?", "Paris")],
    }.items():
        lines = [json.dumps({"prompt": p, "ground_truth_answer": a}) + "\n" for p, a in rows]
        (facts / f"{split}.jsonl").write_text("".join(lines))
    cfg = EvaluateConfig(
        base=str(tiny_model_dir),
        out=str(tmp_path / "r"),
        input=str(facts),
        answer_methods=["contains"],
        fisher_examples=0,
        device="cpu",
    )
    metrics = json.loads((evaluate(cfg) / "metrics.json").read_text())
    assert metrics["base"]["memorization"] == {"train": 0.5, "paraphrase": 1.0}
    assert metrics["counts"]["memorization"] == {"train": 2, "paraphrase": 1}
