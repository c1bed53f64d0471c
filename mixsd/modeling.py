"""What every stage that runs a model shares, defined once: which tokens end a turn (stop ids),
the pad id, where and in which precision a model runs ("auto" device and dtype), the transformers
engine for naive-only decoding (evaluation's greedy answers, the trainer's recall and OPSD's
rollouts), and teacher-forced scoring (the engine's other conditional, evaluation's target NLL and
Fisher).

torch is imported inside the functions that need it: the configs and the CLI import this module.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mixsd.errors import MixsdError

if TYPE_CHECKING:
    import torch

    from mixsd.generate.core import Sampling
    from mixsd.generate.hf_engine import HFEngine

# Tokens that end an assistant turn in the common chat formats (ChatML, Llama 3, plain LMs).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>")
DTYPES = ("auto", "float32", "bfloat16", "float16")  # what `resolve_dtype` accepts
CPU_BF16_ENV = "MIXSD_CPU_BF16"  # "0": "auto" keeps float32 on a bf16 CPU (`cpu_has_bf16`)
# The one pad id of every engine and scorer. Padding sits under a 0 attention mask with explicit
# position ids, so its value changes no number (tests/test_modeling.py); it only has to be an id
# the embedding has, and 0 is one in every vocabulary, with no tokenizer needed (scoring reads
# stored ids). No `pad_token_id or eos` fallbacks.
PAD_ID = 0
MAX_TOKENS = 16384  # scoring: padded input tokens per forward (activations)
MAX_LOGITS = 4096  # scoring: logit rows per forward, bounds the [rows, vocab] logits


# ---- token ids ------------------------------------------------------------------------------------
def declared_eos(generation_config) -> list[int]:
    """The end-of-turn ids a model declares in `generation_config.eos_token_id`: None, an int or
    a list (Llama 3: `<|eot_id|>` and `<|end_of_text|>`; Phi-3 `<|end|>`; Gemma `<end_of_turn>`)."""
    eos = generation_config.eos_token_id
    return [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(i) for i in eos]


def model_eos_ids(path) -> list[int]:
    """`declared_eos` of the model dir `path`, read without loading weights; a dir without
    `generation_config.json` gets what transformers derives from `config.json`."""
    from transformers import AutoConfig, GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(path)
    except OSError:
        gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(path))
    return declared_eos(gen)


def stop_ids(tokenizer, extra: Iterable[str] = (), model_eos: Iterable[int] = ()) -> list[int]:
    """The model's own end-of-turn ids (`model_eos`, see `model_eos_ids`), the tokenizer's EOS,
    the common end-of-turn tokens it has, and `extra` (token strings or integer ids); an extra
    one the tokenizer lacks is an error."""
    vocab = tokenizer.get_vocab()
    ids = {tokenizer.eos_token_id, *model_eos} | {vocab[t] for t in END_OF_TURN if t in vocab}
    for token in extra:
        if token in vocab:
            ids.add(vocab[token])
        elif token.isdigit() and int(token) < len(tokenizer):
            ids.add(int(token))
        else:
            raise MixsdError(f"option 'stop': the tokenizer has no token {token!r}")
    return sorted(i for i in ids if i is not None)


def end_of_turn_id(tokenizer) -> int:
    """The token that closes an assistant turn: the chat format's end-of-turn token when the
    tokenizer has a chat template and one of `END_OF_TURN`, else EOS."""
    vocab = tokenizer.get_vocab()
    if tokenizer.chat_template:
        for token in END_OF_TURN:
            if token in vocab:
                return vocab[token]
    return tokenizer.eos_token_id


# ---- device and precision -------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> str:
    """ "auto" is cuda when a GPU is visible, else cpu; asking for cuda without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MixsdError(f"option 'device': {device} requested but no CUDA device is visible")
    return device


def auto_dtype(device: str, cpu_bf16: bool) -> tuple[str, str]:
    """What "auto" means on `device` (as resolved): (dtype, why). bfloat16 on an accelerator; on
    the CPU bfloat16 when it multiplies bf16 natively (`cpu_bf16`, see `cpu_has_bf16`), 2.5-3x
    the fp32 matmul throughput there, else float32 (emulated bf16 is slower than fp32)."""
    if device != "cpu":
        return "bfloat16", device
    if cpu_bf16:
        return "bfloat16", "CPU has AVX-512 BF16"
    return "float32", f"CPU without native bf16 matmuls, or {CPU_BF16_ENV}=0"


def cpu_has_bf16() -> bool:
    """Does this CPU multiply bf16 natively? AVX512_BF16, which every CPU with AMX-BF16 has too
    (Intel Cooper Lake and Sapphire Rapids on, AMD Zen 4 on). Not
    `torch.ops.mkldnn._is_mkldnn_bf16_supported()`: oneDNN's test is "AVX-512 core", true on
    Skylake-X too, where bf16 is emulated by conversions. `CPU_BF16_ENV`=0 answers no (the tests
    set it: they compare engines and runs bit for bit in float32)."""
    import os

    import torch

    return os.environ.get(CPU_BF16_ENV) != "0" and torch.cpu._is_avx512_bf16_supported()


def resolve_dtype(dtype: str, device: str) -> str:
    """`dtype`, or for "auto" `auto_dtype` on `device` (as resolved), said once on stderr."""
    if dtype != "auto":
        return dtype
    chosen, why = auto_dtype(device, device == "cpu" and cpu_has_bf16())
    _say_once(f"dtype auto -> {chosen} ({why})")
    return chosen


@functools.cache
def _say_once(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---- decoding -------------------------------------------------------------------------------------
def naive_engine(
    model, tokenizer, sampling: Sampling, batch_size: int, max_new_tokens: int, max_model_len: int
) -> HFEngine:
    """The transformers engine set up for naive-only jobs (`Job(lam=1.0, expert_ids=None)`):
    no other-conditional log-probs, stopping at EOS and the end-of-turn tokens the model declares
    (`stop_ids`), like generation does."""
    from mixsd.generate.hf_engine import HFEngine

    return HFEngine(
        model,
        sampling,
        stop_ids=stop_ids(tokenizer, (), declared_eos(model.generation_config)),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        max_model_len=max_model_len,
        other_logprobs=False,
    )


# ---- teacher-forced scoring -----------------------------------------------------------------------
def left_pad(rows: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, ...]:
    """Left-padded ids `[n, L]`, 0/1 attention mask `[n, L]` and position ids `[n, L]` (0 at
    each row's first real token, so padding changes no row's numbers)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r) :] = torch.tensor(list(r))
            mask[i, width - len(r) :] = 1
    pos = (mask.cumsum(1) - 1).clamp_(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def score_tokens(
    model,
    items: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad: int = PAD_ID,
    max_tokens: int = MAX_TOKENS,
    max_logits: int = MAX_LOGITS,
) -> list[torch.Tensor]:
    """log p(target_t | context + target_<t) for each (context, target) pair: `[len(target)]`
    float32 tensors (raw, T=1), in the order of `items`.

    One function for every caller (the transformers engine's other conditional of a lam 0/1
    sequence, target sets' per-token NLL, the Fisher's log-likelihoods). It goes through the
    model's own forward, so whatever the architecture does to its logits (Cohere's logit scale,
    Granite's logit scaling, Gemma's final soft-capping) is what gets scored, as in decoding.
    Pairs are sorted by length and batched left-padded (explicit position ids), at most
    `max_tokens` padded tokens and `max_logits` logit rows per forward; `use_cache=False`, and
    `logits_to_keep` asks only for the positions that predict a target token. Gradients flow when
    the caller has them on (the Fisher); callers that only read wrap it in `torch.no_grad()`.
    Contexts must be non-empty; an empty target scores as an empty tensor.
    """
    import torch

    from mixsd.generate.core import token_logprobs

    device = next(model.parameters()).device
    out: list[torch.Tensor] = [torch.zeros(0)] * len(items)
    if any(not c for c, t in items if t):
        raise ValueError("score_tokens: the first target token needs a non-empty context")
    order = sorted(
        (i for i, (_, t) in enumerate(items) if t),
        key=lambda i: len(items[i][0]) + len(items[i][1]),
    )
    while order:
        group, width, keep = [], 0, 0
        for i in order:
            c, t = items[i]
            w, k = max(width, len(c) + len(t) - 1), max(keep, len(t))
            if group and ((len(group) + 1) * w > max_tokens or (len(group) + 1) * k > max_logits):
                break
            group.append(i)
            width, keep = w, k
        order = order[len(group) :]
        # The last target token is never an input: it is only predicted.
        rows = [list(items[i][0]) + list(items[i][1][:-1]) for i in group]
        ids, mask, pos = left_pad(rows, pad, device)
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=False,
            logits_to_keep=keep,
        ).logits  # [B, keep, V]: the last `keep` positions of every row
        for b, i in enumerate(group):
            target = torch.tensor(list(items[i][1]), device=logits.device)
            out[i] = token_logprobs(logits[b, keep - len(target) :], target)
    return out
