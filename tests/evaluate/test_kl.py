"""KL(base || model) along the base's answers equals hand computations; the base against itself
scores 0."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from mixsd.evaluate.kl import (
    KLProbe,
    base_answers,
    coarse_kl,
    coarsen,
    kl_to_base,
    load_chat_prompts,
    token_kl,
)


def test_token_kl_on_a_three_token_vocabulary():
    base = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    model = torch.log(torch.tensor([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]]))
    # row 0: .5 ln(.5/.25) + .25 ln(.25/.5) + .25 ln 1 = .25 ln 2 = 0.173287
    # row 1: 1/3 ln((1/3)/(1/2)) + 2/3 ln((1/3)/(1/4)) = ln(32/27) / 3 = 0.056633
    want = [0.25 * math.log(2), math.log(32 / 27) / 3]
    got = token_kl(base + 7.0, model - 3.0)  # logits: any shift per row is the same distribution
    assert got.dtype == torch.float32 and got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(token_kl(model, base).numpy()[0], 0.25 * math.log(2), rtol=1e-6)


def test_coarse_kl_lumps_the_rest_into_one_bucket():
    base = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]))
    model = torch.log(torch.tensor([[0.25, 0.5, 0.25], [0.25, 0.5, 0.25]]))
    top = torch.tensor([[0], [1]])  # each row's base argmax
    # row 0: {0} vs {1, 2}: base (.5, .5), model (.25, .75): .5 ln 2 + .5 ln(2/3) = .5 ln(4/3)
    # row 1: identical distributions: 0
    got = coarse_kl(*coarsen(base, top), *coarsen(model, top))
    np.testing.assert_allclose(got.numpy(), [0.5 * math.log(4 / 3), 0.0], atol=1e-7)
    assert got[0] < token_kl(base, model)[0]  # coarsening loses information: at most the full KL
    both = torch.tensor([[0, 1], [1, 0]])  # a one-token rest: the exact KL
    np.testing.assert_allclose(
        coarse_kl(*coarsen(base, both), *coarsen(model, both)).numpy(),
        token_kl(base, model).numpy(),
        atol=1e-7,
    )


def _manual_logp(model, prompt, answer):
    """log-probs [len(answer), vocab] (float64), one unbatched forward per answer token."""
    rows = []
    for t in range(len(answer)):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + answer[:t]])).logits[0, -1]
        rows.append(torch.log_softmax(logits.double(), -1))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def setup(tiny_model, tiny_tokenizer):
    g = torch.Generator().manual_seed(0)
    vocab = tiny_model.config.vocab_size
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (5, 9, 2, 12, 7)]
    answers = base_answers(tiny_model, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=2)
    perturbed = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return prompts, answers, perturbed


def test_base_answers_are_greedy_ids(tiny_model, setup):
    prompts, answers, _ = setup
    assert all(0 < len(a) <= 6 for a in answers)
    for prompt, answer in zip(prompts, answers, strict=True):
        logp = _manual_logp(tiny_model, prompt, answer)
        assert logp.argmax(-1).tolist() == answer  # each token the base's own argmax


def test_base_against_itself_is_zero(tiny_model, setup):
    prompts, answers, _ = setup
    got = kl_to_base(tiny_model, tiny_model, prompts, answers, batch_size=2)
    assert got["kl"] == pytest.approx(0.0, abs=1e-6)
    assert got["delta_loglik"] == pytest.approx(0.0, abs=1e-6)
    assert got["tokens"] == sum(len(a) for a in answers) and got["prompts"] == 5
    assert got["per_prompt"]["tokens"] == [len(a) for a in answers]


def test_perturbed_model_equals_hand_computation(tiny_model, setup):
    prompts, answers, perturbed = setup
    vocab = tiny_model.config.vocab_size  # top_k capped at vocab - 1: the exact KL
    got = kl_to_base(tiny_model, perturbed, prompts, answers, batch_size=2, top_k=vocab)
    kls, dlls = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        base, model = (
            _manual_logp(tiny_model, prompt, answer),
            _manual_logp(perturbed, prompt, answer),
        )
        kls.append((base.exp() * (base - model)).sum(-1).numpy())
        idx = torch.tensor(answer).unsqueeze(1)
        dlls.append((model.gather(1, idx) - base.gather(1, idx)).squeeze(1).numpy())
    assert got["kl"] > 0.01
    np.testing.assert_allclose(got["per_prompt"]["kl"], [k.mean() for k in kls], atol=1e-5)
    np.testing.assert_allclose(
        got["per_prompt"]["delta_loglik"], [d.mean() for d in dlls], atol=1e-5
    )
    assert got["kl"] == pytest.approx(np.concatenate(kls).mean(), abs=1e-5)
    assert got["delta_loglik"] == pytest.approx(np.concatenate(dlls).mean(), abs=1e-5)
    coarse = kl_to_base(tiny_model, perturbed, prompts, answers, batch_size=2, top_k=16)
    assert 0 < coarse["kl"] < got["kl"]  # 16 of ~470 tokens: a lower bound
    assert coarse["delta_loglik"] == pytest.approx(got["delta_loglik"], abs=1e-6)


def test_empty_answers_are_left_out(tiny_model, setup):
    prompts, answers, perturbed = setup
    full = kl_to_base(tiny_model, perturbed, prompts, answers, batch_size=3)
    holed = kl_to_base(tiny_model, perturbed, prompts, [answers[0], [], *answers[2:]], batch_size=3)
    assert holed["prompts"] == 4 and holed["tokens"] == full["tokens"] - len(answers[1])
    assert holed["per_prompt"]["index"] == [0, 2, 3, 4]
    kept = [v for i, v in enumerate(full["per_prompt"]["kl"]) if i != 1]
    np.testing.assert_allclose(holed["per_prompt"]["kl"], kept, atol=1e-6)


def test_chat_prompts_are_many_and_distinct():
    prompts = load_chat_prompts()
    assert len(prompts) >= 50 and len(set(prompts)) == len(prompts)


def test_probe_scores_model_dirs_like_kl_to_base(
    tiny_model_dir, tiny_tokenizer, tiny_model, setup, tmp_path
):
    prompts, answers, perturbed = setup
    perturbed.save_pretrained(tmp_path / "perturbed")
    probe = KLProbe(tiny_model_dir, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=2)
    assert probe.view.answers_ids == answers
    assert probe(tiny_model_dir)["kl"] == pytest.approx(0.0, abs=1e-6)
    want = kl_to_base(tiny_model, perturbed, prompts, answers, batch_size=2)
    got = probe(tmp_path / "perturbed")
    assert got["kl"] == pytest.approx(want["kl"], rel=1e-5)
    assert got["delta_loglik"] == pytest.approx(want["delta_loglik"], rel=1e-5)
