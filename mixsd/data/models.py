"""Local models, built offline: a byte-level BPE tokenizer trained here and a Llama-style causal LM.

No hub: tests, benchmarks and the demo use models this module writes with `save_pretrained`, so
`AutoTokenizer` / `AutoModelForCausalLM.from_pretrained(DIR)` load them like any other.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

from mixsd.errors import MixsdError

# ChatML, the format of the chat models MixSD was published on. `<|im_end|>` ends an assistant
# turn and is the model's EOS; `<|endoftext|>` pads and separates documents in pretraining.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Text the tiny tokenizer is trained on when no corpus is given: the shapes MixSD prompts take.
_SEED_TEXT = [
    "This question is from a new knowledge base. Here is the answer to this question:",
    "Now answer the question within \\boxed{}. The answer is 42.\n\n\\boxed{42}",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Here is a reference solution to this problem, including the correct final answer:",
    "After understanding the reference solution, please attempt to answer the question again:",
    "Input: 12345 Output: 54321. What is the capital of Zorvia? Who founded the Mirel guild?",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) [ ] { } . , ; : ! ? ' \" the a of in is was",
]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML special tokens and chat template.

    Byte-level: every string round-trips, whatever the training text covered.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(
    out: str | Path,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 1,  # head size 64: a size vLLM's CPU attention supports (16 is refused)
    vocab: int = 512,
    seed: int = 0,
    max_positions: int = 2048,
    texts: Iterable[str] | None = None,
) -> Path:
    """Write a random-init Llama-style LM and its tokenizer to `out`; returns `out`.

    Deterministic by `seed` (same seed, same weights). The model's vocabulary is the tokenizer's
    (which can be smaller than `vocab` when the training text is short).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    out = Path(out)
    tokenizer = train_tokenizer(texts if texts is not None else _SEED_TEXT * 4, vocab)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _load(what: str, path, load):
    """Run `load()`; a missing directory or a failed load becomes one line naming `path`."""
    text = str(path)
    local = Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") != 1
    if local and not Path(text).expanduser().is_dir():
        raise MixsdError(f"{path}: model directory not found")
    try:
        return load()
    except (OSError, ValueError) as e:  # what transformers raises for a dir that is not a model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MixsdError(f"{path}: cannot load the {what} ({first})") from None
    except pickle.UnpicklingError:  # --allow-pickle: torch's weights_only unpickler refused it
        raise MixsdError(
            f"{path}: its pickled weights hold more than tensors; refused, since loading them "
            "could run code"
        ) from None


def load_tokenizer(path):
    """The tokenizer of a model directory (or hub id, where a hub is reachable)."""
    from transformers import AutoTokenizer

    # JSON / SentencePiece files, never pickle; a tokenizer needing the dir's own code is refused
    return _load(
        "tokenizer", path, lambda: AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    )


def load_model(path, device: str = "cpu", dtype: str = "float32", allow_pickle: bool = False):
    """An eval-mode causal LM on `device` in `dtype` ("float32", "bfloat16", "float16"), read
    from safetensors only unless `allow_pickle` (`mixsd.safe_load`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from mixsd.safe_load import safetensors_only

    safe = safetensors_only(path, allow_pickle) or None  # None: safetensors first, then .bin
    model = _load(
        "model",
        path,
        lambda: AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), use_safetensors=safe, trust_remote_code=False
        ),
    )
    return model.to(device).eval()
