"""The generate stage end to end on the tiny model: determinism, shards, resume, rejection
sampling, and clear errors before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mixsd import modeling
from mixsd.config import load_config
from mixsd.data.io import write_records
from mixsd.data.records import Record
from mixsd.errors import MixsdError
from mixsd.generate import runner
from mixsd.generate.config import GenerateConfig
from mixsd.targets.reader import iter_rows
from mixsd.targets.writer import TargetSetWriter

LOGPROBS = ("expert_logprob", "naive_logprob")


@pytest.fixture(scope="module")
def input_path(tmp_path_factory):
    records = [
        # five-digit answers: the random tiny model never says them (a digit it does say often)
        Record(f"q{i}", f"Who founded guild {i}?", f"The answer is {n}.\n\n\\boxed{{{n}}}")
        for i, n in enumerate(range(48611, 48618))
    ]
    return write_records(records, tmp_path_factory.mktemp("in") / "train.jsonl")


def config(model, inp, out, **kw) -> GenerateConfig:
    base = dict(lam=[0.0, 0.5, 1.0], max_new_tokens=6, batch_size=4, rows_per_part=2)
    base["flush_seconds"] = 0.0  # every row reaches a part at once: a kill loses nothing
    return GenerateConfig(model=str(model), input=str(inp), out=str(out), **base | kw)


def rows(root) -> list[dict]:
    return sorted(iter_rows(root), key=lambda r: (r["id"], r["sample"], r["lam"]))


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    """Equal rows; log-probs to 1e-5, since a different batch composition changes the float
    rounding of the forward (the tokens, chosen from the same keys, stay identical)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in LOGPROBS} == {
            k: v for k, v in y.items() if k not in LOGPROBS
        }
        for k in LOGPROBS:
            assert (x[k] is None) == (y[k] is None)
            if x[k] is not None:
                assert x[k] == pytest.approx(y[k], abs=1e-5)


@pytest.fixture(scope="module")
def baseline(tiny_model_dir, input_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "set"
    stats = runner.run(config(tiny_model_dir, input_path, out))
    return out, stats


def test_rows_and_stats(baseline):
    out, stats = baseline
    got = rows(out)
    assert len(got) == 7 * 3 == stats["rows"]
    assert {(r["id"], r["lam"]) for r in got} == {
        (f"q{i}", x) for i in range(7) for x in (0, 0.5, 1)
    }
    for r in got:
        assert len(r["source"]) == len(r["target_ids"]) == len(r["naive_logprob"])
        assert set(r["source"]) <= ({0} if r["lam"] == 0 else {1} if r["lam"] == 1 else {0, 1})
        assert r["kind"] == "mixsd" and r["correct"] is False and r["attempt"] == 0
    naive = sum(sum(r["source"]) for r in got)
    assert stats["naive_fraction"] == pytest.approx(naive / stats["tokens"])


def test_same_seed_same_set_other_seed_other_set(baseline, tiny_model_dir, input_path, tmp_path):
    runner.run(config(tiny_model_dir, input_path, tmp_path / "again"))
    assert_same_rows(rows(tmp_path / "again"), rows(baseline[0]))
    runner.run(config(tiny_model_dir, input_path, tmp_path / "seed1", seed=1))
    assert rows(tmp_path / "seed1") != rows(baseline[0])


def test_shards_partition_the_input(baseline, tiny_model_dir, input_path, tmp_path):
    ids = []
    for i in range(3):
        runner.run(config(tiny_model_dir, input_path, tmp_path / f"s{i}", shard=f"{i}/3"))
        ids.append({r["id"] for r in rows(tmp_path / f"s{i}")})
    assert sum(len(s) for s in ids) == len(set().union(*ids)) == 7
    for i in range(3):  # several shards into one set give the unsharded set
        runner.run(config(tiny_model_dir, input_path, tmp_path / "one", shard=f"{i}/3"))
    assert_same_rows(rows(tmp_path / "one"), rows(baseline[0]))


def test_kill_and_rerun_equals_uninterrupted(
    baseline, tiny_model_dir, input_path, tmp_path, monkeypatch
):
    cfg = config(tiny_model_dir, input_path, tmp_path / "set")
    real_write, calls = TargetSetWriter.write, []

    def dying_write(self, batch):
        calls.append(1)
        if len(calls) > 9:
            raise KeyboardInterrupt  # killed mid-run, with rows buffered and parts written
        real_write(self, batch)

    monkeypatch.setattr(TargetSetWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg)
    monkeypatch.undo()
    assert len(rows(cfg.out)) == 9
    stats = runner.run(cfg)
    assert stats["skipped_existing"] == 9 and stats["rows"] == 12
    assert_same_rows(rows(cfg.out), rows(baseline[0]))
    assert runner.run(cfg)["rows"] == 0  # complete: nothing more to do


def test_rejection_sampling_retries_with_new_keys(
    tiny_model_dir, input_path, tmp_path, monkeypatch
):
    cfg = config(tiny_model_dir, input_path, tmp_path / "rs", lam=[0.5], max_retries=2)
    stats = runner.run(cfg)  # the random model never answers right: every row uses 3 attempts
    got = rows(cfg.out)
    assert stats["attempts"] == 3 * 7 and {(r["attempt"], r["correct"]) for r in got} == {
        (2, False)
    }
    direct = runner.run(config(tiny_model_dir, input_path, tmp_path / "a2", lam=[0.5]))
    first = rows(tmp_path / "a2")
    assert all(
        a["target_ids"] != b["target_ids"] for a, b in zip(got, first, strict=True)
    )  # other keys
    monkeypatch.setattr(runner, "is_correct", lambda text, gold, methods: True)
    cfg = config(tiny_model_dir, input_path, tmp_path / "ok", lam=[0.5], max_retries=2)
    assert runner.run(cfg)["acceptance_rate"] == 1.0
    assert_same_rows(rows(cfg.out), [r | {"correct": True} for r in first])
    assert direct["rows"] == 7


def test_stops_at_the_end_of_turn_ids_the_model_declares(baseline, tiny_model_dir, tmp_path):
    """`generation_config.eos_token_id` may be a list (Llama 3, Phi-3, Gemma): every id in it ends
    a sequence, and the provenance records the stop set."""
    import json
    import shutil

    from transformers import GenerationConfig

    from mixsd.targets.manifest import read_manifest

    first = rows(baseline[0])[2]  # q0 at lam=1: stop on its third token from now on
    assert (first["id"], first["lam"]) == ("q0", 1.0) and len(first["target_ids"]) >= 3
    stop = first["target_ids"][2]
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    eos = GenerationConfig.from_pretrained(model).eos_token_id
    GenerationConfig(eos_token_id=[eos, stop]).save_pretrained(model)
    assert modeling.model_eos_ids(model) == [eos, stop]
    inp = tmp_path / "q0.jsonl"
    inp.write_text(
        json.dumps(
            {
                "id": "q0",
                "prompt": "Who founded guild 0?",
                "reference": "The answer is 0.\n\n\\boxed{0}",
            }
        )
        + "\n"
    )
    runner.run(config(model, inp, tmp_path / "set", lam=[1.0]))
    (row,) = rows(tmp_path / "set")
    cut = first["target_ids"].index(stop) + 1  # the first occurrence, at or before position 2
    assert (row["target_ids"], row["finish_reason"]) == (first["target_ids"][:cut], "stop")
    assert stop in read_manifest(tmp_path / "set")["provenance"]["stop_ids"]
    assert modeling.declared_eos(GenerationConfig(eos_token_id=7)) == [7]
    assert modeling.declared_eos(GenerationConfig()) == []


def test_a_job_without_result_fails_loudly(tiny_model_dir, input_path, tmp_path, monkeypatch):
    """An engine that loses a result must not end in a set that looks complete."""
    open_engine = runner._open_engine

    def lossy(*args):
        engine = open_engine(*args)
        generate = engine.generate
        engine.generate = lambda jobs: (r for r in generate(jobs) if r.tag[0].id != "q3")
        return engine

    monkeypatch.setattr(runner, "_open_engine", lossy)
    cfg = config(tiny_model_dir, input_path, tmp_path / "set", lam=[0.5])
    with pytest.raises(MixsdError, match=r"1 of 7 rows got no result \(first: id 'q3', sample 0"):
        runner.run(cfg)
    assert sorted(r["id"] for r in rows(cfg.out)) == [f"q{i}" for i in range(7) if i != 3]
    monkeypatch.setattr(runner, "_open_engine", open_engine)
    assert runner.run(cfg)["rows"] == 1  # the rerun decodes only the missing row


def test_each_record_is_tokenised_once(tiny_model_dir, input_path, tmp_path, monkeypatch):
    """The prompt pair of a record serves all of its samples and lambdas (and retries)."""
    from mixsd.data import templates

    calls = []
    build = templates.build_prompt_pair
    monkeypatch.setattr(
        templates,
        "build_prompt_pair",
        lambda tok, rec, t: calls.append(rec.id) or build(tok, rec, t),
    )
    cfg = config(tiny_model_dir, input_path, tmp_path / "set", samples=2, max_new_tokens=2)
    assert runner.run(cfg)["rows"] == 7 * 2 * 3
    assert sorted(calls) == [f"q{i}" for i in range(7)]


def test_clear_errors_before_any_work(tiny_model_dir, input_path, tmp_path):
    with pytest.raises(MixsdError, match="1.5 is outside"):
        load_config(GenerateConfig, None, model="m", input="i", out="o", lam="0,1.5")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(MixsdError, match="empty-model"):
        runner.run(config(empty, input_path, tmp_path / "a"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "prompt": ""}\n')
    with pytest.raises(MixsdError, match="bad.jsonl:1"):
        runner.run(config(tiny_model_dir, bad, tmp_path / "b"))
    with pytest.raises(MixsdError, match="no token '<nope>'"):
        runner.run(config(tiny_model_dir, input_path, tmp_path / "c", stop=["<nope>"]))
    assert not any((tmp_path / x).exists() for x in "abc")
    runner.run(config(tiny_model_dir, input_path, tmp_path / "d", lam=[1.0], max_new_tokens=1))
    with pytest.raises(MixsdError, match="sampling.temperature"):
        runner.run(
            config(
                tiny_model_dir,
                input_path,
                tmp_path / "d",
                lam=[1.0],
                max_new_tokens=1,
                temperature=0.7,
            )
        )


def test_cli_runs_and_reports_errors_in_one_line(tiny_model_dir, input_path, tmp_path):
    base = [
        sys.executable,
        "-m",
        "mixsd",
        "generate",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(input_path),
        "--max-new-tokens",
        "2",
    ]
    ok = subprocess.run(
        base + ["--out", str(tmp_path / "s"), "--lam", "0.5"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "7 rows written" in ok.stdout, ok.stderr
    bad = subprocess.run(
        base + ["--out", str(tmp_path / "t"), "--lam", "0,2"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: command line: option 'lam': 2.0 is outside [0, 1]"
    ]


def mixsd_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixsd", *map(str, args)], capture_output=True, text=True
    )


def test_half_generated_set_is_incomplete_and_train_refuses_it(
    tiny_model_dir, input_path, tmp_path
):
    """Shard 0/2 alone: validate and inspect say what is missing, train refuses in one line,
    --allow-incomplete trains on what is there and says so in the metrics' data line."""
    import json

    out = tmp_path / "set"
    runner.run(config(tiny_model_dir, input_path, out, lam=[0.5], shard="0/2"))
    have = len(rows(out))
    assert 0 < have < 7
    check = mixsd_cli("targets", "validate", out)
    assert check.returncode == 1 and check.stdout.splitlines() == [
        f"{out}: incomplete: shard 1-of-2 never ran",
        f"{out}: incomplete: {have} of 7 planned rows",
    ]
    assert "incomplete: shard 1-of-2 never ran" in mixsd_cli("targets", "inspect", out).stdout
    # the tiny model answers nothing right: its rows train as they are (not refused as SFT)
    train = ["train", "--model", tiny_model_dir, "--targets", out, "--batch-size", "2"]
    train += ["--failed", "keep"]
    refused = mixsd_cli(*train, "--out", tmp_path / "run", "--steps", "1")
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        f"error: {out}: incomplete target set (shard 1-of-2 never ran; {have} of 7 planned "
        "rows): finish it (rerun the same generate command), or pass --allow-incomplete to use "
        "the rows that are there"
    ]
    assert not (tmp_path / "run").exists()
    allowed = mixsd_cli(*train, "--out", tmp_path / "run2", "--steps", "1", "--allow-incomplete")
    assert allowed.returncode == 0, allowed.stderr
    lines = (tmp_path / "run2" / "metrics.jsonl").read_text().splitlines()
    data = next(json.loads(x) for x in lines if json.loads(x)["event"] == "data")
    assert data["rows"] == have and data["incomplete"] == {
        str(out): ["incomplete: shard 1-of-2 never ran", f"incomplete: {have} of 7 planned rows"]
    }
    evaluate = ["evaluate", "--base", tiny_model_dir, "--targets", out, "--out", tmp_path / "ev"]
    refused = mixsd_cli(*evaluate)
    assert refused.returncode == 1 and "incomplete target set" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and not (tmp_path / "ev").exists()
    runner.run(config(tiny_model_dir, input_path, out, lam=[0.5], shard="1/2"))
    assert mixsd_cli("targets", "validate", out).stdout == "OK: 7 rows\n"


def test_reruns_keep_the_stats_and_the_lambda_list(tiny_model_dir, input_path, tmp_path):
    from mixsd.targets.manifest import read_manifest

    cfg = config(tiny_model_dir, input_path, tmp_path / "set", lam=[0.5])
    first = runner.run(cfg)
    assert runner.run(cfg)["rows"] == 0  # a no-op rerun
    stats = read_manifest(cfg.out)["stats"]["0-of-1"]
    assert stats["runs"] == 2 and stats["skipped_existing"] == 7
    for key in ("rows", "attempts", "tokens", "naive_tokens", "accepted"):
        assert stats[key] == first[key], key
    assert stats["naive_fraction"] == first["naive_fraction"]
    more = runner.run(config(tiny_model_dir, input_path, cfg.out, lam=[1.0]))  # add a λ
    manifest = read_manifest(cfg.out)
    assert manifest["provenance"]["lams"] == [0.5, 1.0]
    assert manifest["stats"]["0-of-1"]["rows"] == 14 and manifest["stats"]["0-of-1"]["runs"] == 3
    assert manifest["stats"]["0-of-1"]["tokens"] == first["tokens"] + more["tokens"]


def test_templates_carry_their_answer_methods_and_low_acceptance_warns(
    tiny_model_dir, input_path, tmp_path, capsys
):
    """A templates file names the answer check it is made for; the command line still wins; a
    run that accepts under 10% of its attempts says so in one line."""
    from mixsd.targets.manifest import read_manifest

    templates = tmp_path / "t.yaml"
    templates.write_text(
        'answer_methods: [contains]\nfact:\n  prefix: "\\nHint:"\n  transition: ""\n'
    )
    cfg = config(tiny_model_dir, input_path, tmp_path / "a", lam=[0.5], templates=str(templates))
    assert cfg.answer_methods is None and cfg.with_answer_methods().answer_methods == ["contains"]
    runner.run(cfg)
    assert read_manifest(cfg.out)["provenance"]["answer_methods"] == ["contains"]
    err = capsys.readouterr().err.splitlines()
    assert (
        "warning: 0 of 7 attempts (0.0%) passed the answer check (contains): does it fit how the "
        "model answers? (--answer-methods, or `answer_methods` in the templates file)"
    ) in err
    flag = config(
        tiny_model_dir,
        input_path,
        tmp_path / "b",
        lam=[0.5],
        templates=str(templates),
        answer_methods=["number"],
    )
    assert flag.with_answer_methods().answer_methods == ["number"]
    plain = config(tiny_model_dir, input_path, tmp_path / "c", lam=[0.5])
    assert plain.with_answer_methods().answer_methods == ["boxed", "number"]
    templates.write_text("answer_methods: [exact]\n")
    with pytest.raises(MixsdError, match=r"t.yaml: answer_methods: expected a list of boxed"):
        runner.run(config(tiny_model_dir, input_path, tmp_path / "d", templates=str(templates)))


def test_the_smollm2_templates_name_contains():
    from pathlib import Path

    from mixsd.data.templates import template_answer_methods

    path = Path(__file__).parents[2] / "configs" / "templates" / "smollm2.yaml"
    assert template_answer_methods(path) == ["contains"]
