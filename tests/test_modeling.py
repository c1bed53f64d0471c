"""The shared model pieces: the one teacher-forced scorer against unbatched step-by-step forwards,
on models with and without a logit transform (Cohere's logit scale, Gemma 2's final
soft-capping); the one pad id (its value changes no number); the "auto" device/dtype rule; the
naive-only engine's stop ids."""

from __future__ import annotations

import pytest
import torch

from mixsd.generate.core import Sampling, sequence_key
from mixsd.generate.hf_engine import HFEngine
from mixsd.generate.jobs import Job
from mixsd.modeling import (
    CPU_BF16_ENV,
    PAD_ID,
    auto_dtype,
    declared_eos,
    naive_engine,
    resolve_device,
    resolve_dtype,
    score_tokens,
    stop_ids,
)

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)  # fmt: skip


def manual(model, context, target):
    """log p(target_t | context + target_<t): one unpadded, uncached forward per token."""
    out = []
    for t in range(len(target)):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context + target[:t]])).logits[0, -1]
        out.append(torch.log_softmax(logits.double(), -1)[target[t]].item())
    return out


def items(vocab, lengths=((5, 3), (9, 1), (2, 7), (12, 4), (3, 0), (1, 5))):
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randint(3, vocab, (c,), generator=g).tolist(),
         torch.randint(3, vocab, (t,), generator=g).tolist())
        for c, t in lengths
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cohere():
    """A tiny Cohere model whose logits are scaled by 8 after the head (`logit_scale`)."""
    from transformers import CohereConfig, CohereForCausalLM

    torch.manual_seed(0)
    cfg = CohereConfig(**SMALL, logit_scale=8.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return CohereForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def gemma2():
    """A tiny Gemma 2 model with final logit soft-capping (tanh) at 0.5."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(**SMALL, head_dim=16, final_logit_softcapping=0.5)
    return Gemma2ForCausalLM(cfg).eval()


@pytest.mark.parametrize("budget", [{}, {"max_tokens": 20, "max_logits": 6}])
def test_equals_a_manual_loop_in_any_batching(tiny_model, budget):
    pairs = items(tiny_model.config.vocab_size)
    with torch.no_grad():
        got = score_tokens(tiny_model, pairs, **budget)  # small budgets: one or two per forward
    for (context, target), lp in zip(pairs, got, strict=True):
        assert lp.dtype == torch.float32 and lp.shape == (len(target),)
        assert lp.tolist() == pytest.approx(manual(tiny_model, context, target), abs=1e-4)


@pytest.mark.parametrize("name", ["cohere", "gemma2"])
def test_logit_transforms_are_scored(name, request):
    model = request.getfixturevalue(name)
    pairs = items(model.config.vocab_size)
    with torch.no_grad():
        got = score_tokens(model, pairs)
    for (context, target), lp in zip(pairs, got, strict=True):
        assert lp.tolist() == pytest.approx(manual(model, context, target), abs=1e-4)


def test_hf_engine_scores_the_other_conditional_through_the_transform(cohere):
    """lam 0 decodes the expert and scores the naive conditional afterwards: both log-probs must
    be those of the model's own (scaled) logits. Scoring through the decoder and the head alone
    gave the unscaled ones."""
    pairs = items(cohere.config.vocab_size, ((6, 0), (11, 0), (4, 0)))
    jobs = [
        Job(sequence_key(0, f"ex{i}", 0, 0), 0.0, nv, nv + [7, 8, 9], i)
        for i, (nv, _) in enumerate(pairs)
    ]
    engine = HFEngine(cohere, Sampling(temperature=1.0), stop_ids=[], batch_size=2,
                      max_new_tokens=5, max_model_len=64)  # fmt: skip
    for r in engine.generate(jobs):
        naive, expert = jobs[r.tag].naive_ids, jobs[r.tag].expert_ids
        assert len(r.target_ids) == 5
        assert r.naive_logprob == pytest.approx(manual(cohere, naive, r.target_ids), abs=1e-4)
        assert r.expert_logprob == pytest.approx(manual(cohere, expert, r.target_ids), abs=1e-4)


def test_gradients_flow_and_empty_contexts_are_refused(tiny_model):
    (context, target), *_ = items(tiny_model.config.vocab_size)
    score_tokens(tiny_model, [(context, target)])[0].sum().backward()
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    tiny_model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="non-empty context"):
        score_tokens(tiny_model, [([], target)])


def test_the_pad_value_changes_no_number(tiny_model):
    """Why one pad id (`PAD_ID`) serves every engine and scorer: padding is masked, so scores and
    decoded tokens (with their log-probs) are the same whatever id fills it."""
    pairs = items(tiny_model.config.vocab_size)
    with torch.no_grad():
        ref = score_tokens(tiny_model, pairs, PAD_ID)
        other = score_tokens(tiny_model, pairs, tiny_model.config.vocab_size - 1)
    for a, b in zip(ref, other, strict=True):
        assert torch.equal(a, b)
    jobs = [
        Job(sequence_key(0, f"ex{i}", 0, 0), 0.5, c + t, c, i) for i, (c, t) in enumerate(pairs)
    ]
    runs = [
        {r.tag: r for r in HFEngine(tiny_model, Sampling(temperature=1.0), stop_ids=[],
                                    batch_size=4, max_new_tokens=4, max_model_len=64,
                                    pad_id=pad).generate(jobs)}
        for pad in (PAD_ID, 5)
    ]  # fmt: skip
    assert runs[0] == runs[1]


def test_auto_device():
    """auto: cuda when visible, else cpu; asking for cuda without one is an error."""
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == want and resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        from mixsd.errors import MixsdError

        with pytest.raises(MixsdError, match="no CUDA device is visible"):
            resolve_device("cuda:0")


@pytest.mark.parametrize(
    "device, cpu_bf16, want",
    [
        ("cpu", True, "bfloat16"),  # native bf16 matmuls: bf16
        ("cpu", False, "float32"),  # none: fp32 (emulated bf16 is slower)
        ("cuda", False, "bfloat16"),  # an accelerator: bf16, whatever the CPU
        ("cuda:1", True, "bfloat16"),
    ],
)
def test_auto_dtype(device, cpu_bf16, want):
    assert auto_dtype(device, cpu_bf16)[0] == want


def test_resolve_dtype_explicit_wins_and_auto_is_said_once(monkeypatch, capsys):
    import mixsd.modeling as modeling

    for dtype in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(dtype, "cpu") == resolve_dtype(dtype, "cuda") == dtype
    assert capsys.readouterr().err == ""  # explicit: nothing to say
    modeling._say_once.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.delenv(CPU_BF16_ENV)
    assert resolve_dtype("auto", "cpu") == resolve_dtype("auto", "cpu") == "bfloat16"
    assert capsys.readouterr().err == "dtype auto -> bfloat16 (CPU has AVX-512 BF16)\n"
    monkeypatch.setenv(CPU_BF16_ENV, "0")  # the tests' pin (tests/conftest.py)
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == "bfloat16"  # the CPU check is not asked off the CPU
    assert capsys.readouterr().err.splitlines() == [
        f"dtype auto -> float32 (CPU without native bf16 matmuls, or {CPU_BF16_ENV}=0)",
        "dtype auto -> bfloat16 (cuda)",
    ]
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.delenv(CPU_BF16_ENV)
    modeling._say_once.cache_clear()
    assert resolve_dtype("auto", "cpu") == "float32"


def test_naive_engine_stops_where_the_model_ends_a_turn(tiny_model, tiny_tokenizer):
    from transformers import GenerationConfig

    engine = naive_engine(tiny_model, tiny_tokenizer, Sampling(temperature=0.0), 8, 4, 64)
    declared = declared_eos(tiny_model.generation_config)
    assert sorted(engine.stop_ids) == stop_ids(tiny_tokenizer, (), declared)
    assert tiny_tokenizer.eos_token_id in engine.stop_ids
    assert (engine.pad_id, engine.other_logprobs) == (PAD_ID, False)
    assert declared_eos(GenerationConfig(eos_token_id=[3, 4])) == [3, 4]
