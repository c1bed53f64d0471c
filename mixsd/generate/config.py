"""`GenerateConfig`: every option of `mixsd generate`, checked in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mixsd.answers import METHODS

ENGINES = ("hf", "vllm")
DEFAULT_ANSWER_METHODS = ["boxed", "number"]  # the published check: \boxed{}, else last number
DTYPES = ("auto", "float32", "bfloat16", "float16")
VLLM_RUNNERS = ("auto", "v2", "v1")


@dataclass
class GenerateConfig:
    """What to decode (model, input set, lam sweep, samples), how (sampling, limits, engine,
    batch), where (target set `out`, shard i/N) and rejection sampling (max_retries: extra
    attempts for a sequence whose extracted answer is wrong; 0 = keep the first attempt)."""

    model: str
    input: str
    out: str
    lam: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.5])
    samples: int = 1
    temperature: float = 0.6
    top_k: int = 64
    top_p: float = 1.0
    max_new_tokens: int = 512
    max_model_len: int = 4096
    seed: int = 0
    engine: str = "hf"
    batch_size: int = 32
    shard: str = "0/1"
    max_retries: int = 0
    # how rejection sampling reads a target's answer (mixsd.answers): the published boxed/number,
    # or `contains` (the answer as a whole word) for a model that answers in plain sentences;
    # None: the templates file's `answer_methods`, else `DEFAULT_ANSWER_METHODS`
    answer_methods: list[str] | None = None
    device: str = "auto"  # cuda when a GPU is visible, else cpu (vllm: the platform vLLM runs on)
    dtype: str = "auto"  # hf: bfloat16 on CUDA, float32 on CPU; vllm: the model's own
    templates: str | None = None
    stop: list[str] = field(default_factory=list)  # extra stop tokens: token strings or ids
    other_logprobs: bool = True
    tensor_parallel_size: int = 1  # vllm: GPUs per engine
    gpu_memory_utilization: float = 0.9  # vllm: share of each GPU for weights + KV cache
    vllm_runner: str = "auto"  # vllm: Model Runner V2 on CUDA, the V1 runner on CPU (no Triton)
    vllm_eager: bool | None = None  # vllm: skip compilation and CUDA graphs; None = on CPU only
    cpu_kv_cache_gib: int = 4  # vllm on CPU: KV cache GiB (VLLM_CPU_KVCACHE_SPACE)
    rows_per_part: int = 1000
    flush_seconds: float = 300.0  # write buffered rows at least this often (bounds a kill's loss)

    def __post_init__(self) -> None:
        if not self.lam:
            raise ValueError("option 'lam': give at least one value")
        for lam in self.lam:
            if not 0.0 <= lam <= 1.0:
                raise ValueError(f"option 'lam': {lam} is outside [0, 1]")
        if len(set(self.lam)) != len(self.lam):
            raise ValueError(f"option 'lam': repeated value in {self.lam}")
        positive = ("samples", "max_new_tokens", "max_model_len", "batch_size", "rows_per_part",
                    "tensor_parallel_size", "cpu_kv_cache_gib")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"option '{name}': must be >= 1, got {getattr(self, name)}")
        if self.flush_seconds < 0:
            raise ValueError(f"option 'flush_seconds': must be >= 0, got {self.flush_seconds}")
        if self.max_retries < 0:
            raise ValueError(f"option 'max_retries': must be >= 0, got {self.max_retries}")
        if self.answer_methods is not None:
            # "boxed,contains" from a flag is a list of two
            self.answer_methods = [m for ms in self.answer_methods for m in ms.split(",") if m]
            bad = [m for m in self.answer_methods if m not in METHODS]
            if bad or not self.answer_methods:
                raise ValueError(f"option 'answer_methods': expected some of {', '.join(METHODS)}")
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
        return dataclasses.replace(self, answer_methods=list(methods))

    def torch_dtype(self) -> str:
        """The hf engine's dtype: "auto" is bfloat16 on CUDA, float32 on CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.torch_device().startswith("cuda") else "float32"

    def torch_device(self) -> str:
        """The hf engine's device: "auto" is cuda when a GPU is visible, else cpu."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def sampling(self):
        """The token-choice settings as the mixing core's `Sampling`."""
        from mixsd.generate.core import Sampling

        return Sampling(self.temperature, self.top_k, self.top_p)
