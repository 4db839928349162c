"""Settings of the teacher that rewrites phase 1 of regime D.

Defaults are the paper's: Qwen3-30B-A3B-Instruct-2507 served by vLLM, sampled with the
settings of its model card. `max_tokens` is derived from each document's length (never
vLLM's silent default of 16), so a rewrite of a long document is not cut short.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

from curate.curation.errors import UserError

PAPER_TEACHER_MODEL = "Qwen/Qwen3-30B-A3B-Instruct-2507"
BACKENDS = ("vllm", "openai")
ON_FAILURE = ("keep-original", "drop")
# On CPU vLLM otherwise reserves most of the machine's memory for its KV cache.
CPU_KV_CACHE_BYTES_DEFAULT = 2 << 30


@dataclass(frozen=True)
class TeacherConfig:
    """Everything that decides which teacher runs where and how it samples.

    backend: "vllm" (offline engines inside the Ray job) or "openai" (any
        OpenAI-compatible endpoint).
    model: model id or local directory (vllm), or the served model name (openai).
    replicas, tp: fixed pool of engine replicas, tensor-parallel size of each (vllm).
    max_tokens_per_char, max_tokens_margin: a document of n characters may get
        ceil(n * max_tokens_per_char) + max_tokens_margin generated tokens; one token
        per character is generous for every tokenizer we know, the margin pays for the tags.
    seed: base of the per-document sampling seed, so reruns sample the same way.
    endpoint, concurrency, retries, timeout_s: the openai backend's server URL
        (".../v1"), requests in flight, retries with backoff and per-request timeout.
    on_failure: what happens to a document whose rewrite failed ("keep-original" or "drop").
    max_failure_fraction: the share of phase-1 documents whose request may fail (no answer)
        before the build stops with one line; a teacher that fails every request stops at once.
    kv_cache_memory_bytes: KV cache size per engine; None means vLLM's default on GPUs
        and CPU_KV_CACHE_BYTES_DEFAULT on CPUs.
    max_model_len: context length of each engine (None: the model's own).
    enforce_eager: skip compilation and CUDA graphs: a faster engine start for small jobs.
    structured_output: a regex every generation must match (vLLM structured outputs),
        e.g. STRUCTURED_OUTPUT_REGEX; None samples freely.
    batch_size: rows per batch handed to an engine or to the request pool.
    """

    backend: str = field(default="vllm", metadata={"option": "teacher_backend", "help": "vllm (offline engines in the job) or openai (an endpoint)."})
    model: str = field(default=PAPER_TEACHER_MODEL, metadata={"option": "teacher_model", "help": "Model id or local directory."})
    replicas: int = field(default=1, metadata={"option": "teacher_replicas", "help": "vLLM engine replicas."})
    tp: int = field(default=1, metadata={"option": "teacher_tp", "help": "Tensor-parallel size of each engine."})
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    max_tokens_per_char: float = 1.0
    max_tokens_margin: int = 64
    seed: int = field(default=0, metadata={"option": "teacher_seed", "help": "Base of every document's sampling seed."})
    endpoint: str | None = field(default=None, metadata={"option": "teacher_endpoint", "help": "OpenAI-compatible base URL (.../v1)."})
    concurrency: int = field(default=8, metadata={"option": "teacher_concurrency", "help": "Requests in flight to the endpoint."})
    retries: int = field(default=3, metadata={"option": "teacher_retries", "help": "Retries of a failed request to the endpoint, with backoff."})
    timeout_s: float = field(default=600.0, metadata={"option": "teacher_timeout", "help": "Seconds per request to the endpoint."})
    on_failure: str = field(default="keep-original", metadata={"option": "on_teacher_failure", "help": "keep-original or drop a document whose rewrite failed."})
    max_failure_fraction: float = field(
        default=0.05, metadata={"option": "max_teacher_failure_fraction", "help": "Stop when more than this share of requests fails (no answer from the teacher)."}
    )
    kv_cache_memory_bytes: int | None = field(default=None, metadata={"option": "teacher_kv_cache_bytes", "help": "KV cache bytes per engine (CPU default 2 GiB)."})
    max_model_len: int | None = field(default=None, metadata={"option": "teacher_max_model_len", "help": "Context length of each engine."})
    enforce_eager: bool = field(default=False, metadata={"option": "teacher_enforce_eager", "help": "Skip vLLM compilation (faster start for small jobs)."})
    structured_output: str | None = field(default=None, metadata={"option": "teacher_structured_output", "help": "A regex every generation must match."})
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"--teacher-backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.on_failure not in ON_FAILURE:
            raise UserError(
                f"--on-teacher-failure must be one of {', '.join(ON_FAILURE)}, got {self.on_failure!r}"
            )
        if self.backend == "openai" and not self.endpoint:
            raise UserError("--teacher-backend openai needs --teacher-endpoint (e.g. http://host:8000/v1)")
        if self.backend == "openai" and importlib.util.find_spec("openai") is None:
            raise UserError("--teacher-backend openai needs the OpenAI client: pip install 'curate[teacher-openai]'")
        for name in ("replicas", "tp", "concurrency", "batch_size", "max_tokens_margin"):
            if getattr(self, name) < 1:
                raise UserError(f"teacher option {name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.max_failure_fraction <= 1:
            raise UserError(f"--max-teacher-failure-fraction must be in [0, 1], got {self.max_failure_fraction}")
        if self.retries < 0 or self.timeout_s <= 0 or self.max_tokens_per_char <= 0:
            raise UserError("teacher retries must be >= 0, timeout and max-tokens-per-char > 0")

    def max_tokens(self, text: str) -> int:
        """The generation budget of one document, from its length."""
        return math.ceil(len(text) * self.max_tokens_per_char) + self.max_tokens_margin

    def sampling(self) -> dict:
        """The sampling settings shared by every request (the model card's)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p}

