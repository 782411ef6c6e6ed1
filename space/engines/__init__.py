"""Rollout engines: one `generate` interface over transformers, in-process vLLM and OpenAI-compatible servers.

    with make_engine(EngineConfig(kind="auto"), model_dir) as engine:
        groups = engine.generate(prompts, n=8, temperature=1.0, max_tokens=64, seed=0, prompt_ids=ids)
        groups[i][j].text, groups[i][j].num_tokens, groups[i][j].finish_reason   # "stop" or "length"

Prompts are already-rendered strings (the caller applied the chat template, space/data/prompting.py), so no engine
adds special tokens of its own (no second BOS), as TRL's GRPO trainer does when it tokenizes prompts.

**Seeds.** Every prompt gets its own seed, `derive_seed(seed, "engine-prompt", prompt_id, occurrence)`
(space/seeding.py), stable across processes and Python versions (`hash()` is salted per process). One seed shared by all
prompts makes samples of different prompts nearly identical in vLLM (docs/libraries.md, vLLM on CPU),
hence one SamplingParams per prompt. Without prompt_ids the key is a hash of the prompt text; a key that
repeats inside one call gets its occurrence number mixed in, so repeated prompts still get independent samples.

**Greedy.** temperature == 0 decodes greedily once per prompt and repeats that completion n times (all n are
identical by definition; no wasted compute). Seeds play no role then.

**Reproducibility.** Same model, prompts, ids, seed and arguments give the same completions on the same
engine kind. The kinds do not reproduce each other's samples (different random streams); their greedy outputs
agree up to floating-point ties. Details per engine in each class docstring.

Choosing: `kind="auto"` takes vLLM when the `vllm` module is installed, else transformers. vLLM's engine
core is a spawned process: scripts that build a vLLM engine need an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from space.registry import Registry
from space.seeding import derive_seed

logger = logging.getLogger(__name__)
GenerateProgress = Callable[[int, int], None]  # (prompts done, prompts in the call)
PROGRESS_CHUNKS = 20  # with a progress callback, a call is sampled in about this many pieces


@dataclass(frozen=True)
class Completion:
    """One sampled completion. num_tokens counts generated tokens including a final EOS token;
    finish_reason is "stop" (EOS or a stop sequence) or "length" (hit max_tokens)."""

    text: str
    num_tokens: int
    finish_reason: str

    @property
    def truncated(self) -> bool:
        """True when the completion hit max_tokens before EOS (finish_reason "length")."""
        return self.finish_reason == "length"


_ENGINES: Registry[EngineFactory] = Registry("engine kind", missing=ValueError)
EngineKind = _ENGINES.name_type("auto")  # a registered engine kind, or auto (the engines register at the end)


class EngineConfig(BaseModel):
    """Which engine generates rollouts and how. Fields prefixed vllm_/openai_ only affect that kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EngineKind = Field(
        "auto", description="auto: vllm when the `vllm` module is installed, else transformers"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype; auto = float32 on CPU (vLLM warns fp16 is unstable there), the model's "
        "own dtype on GPU. Ignored by openai (the server decides)"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass for temperature > 0 (1 = off)")
    batch_size: int = Field(
        64, gt=0, description="transformers: sequences (prompts x n) per generate call; a prompt's n samples "
        "always share a batch, so at least one prompt per batch"
    )
    max_model_len: int | None = Field(
        None, gt=0, description="vllm: context length (prompt + completion); None = the model's maximum"
    )
    vllm_kv_cache_gib: int = Field(
        1, gt=0, description="vllm on CPU: KV cache size in GiB, exported as VLLM_CPU_KVCACHE_SPACE while the "
        "engine starts unless that variable is already set (1 GiB = 131,072 slots on the tiny model)"
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="vllm: share of GPU memory, or on CPU of machine RAM, vLLM may reserve; "
        "None = 0.3 on CPU (vLLM's 0.92 refuses to start beside other processes: docs/libraries.md), 0.9 on GPU"
    )
    enforce_eager: bool | None = Field(
        None, description="vllm: skip graph capture/compilation; None = True on CPU, False on GPU"
    )
    cpu_threads: int | None = Field(
        None, gt=0, description="vllm on CPU: threads the engine computes on (in-process, the default: torch's "
        "thread count while it runs; a spawned engine: cores 0..N-1 via VLLM_CPU_OMP_THREADS_BIND); None = "
        "this process's torch threads, or vLLM's automatic binding when spawned"
    )
    vllm_seed: int = Field(0, ge=0, lt=2**32, description="vllm: engine seed (per-prompt seeds still come from generate's seed)")
    openai_base_url: str | tuple[str, ...] = Field(
        "http://127.0.0.1:8000/v1", description="openai: server root up to /v1, e.g. a vLLM OpenAI server; a list "
        "of roots is a pool serving the same model (requests balanced, dead servers failed over)"
    )
    openai_api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key (keys stay out of "
        "configs, cache keys and logs); unset sends no Authorization header"
    )
    openai_model: str | None = Field(
        None, description="openai: served model name; None = the model directory as given to make_engine "
        "(what a vLLM server started with --model <dir> serves)"
    )
    openai_max_concurrency: int = Field(
        8, gt=0, description="openai: requests in flight at once per server (one per prompt)"
    )
    openai_timeout: float = Field(300.0, gt=0.0, description="openai: seconds per request before it is retried")
    openai_retries: int = Field(
        3, ge=0, description="openai: retries after connection errors, timeouts, HTTP 429 and 5xx (4xx fail at once); "
        "a server whose last retries + 1 requests all failed that way is marked down"
    )
    openai_backoff: float = Field(1.0, ge=0.0, description="openai: first retry delay in seconds, doubled each time")
    openai_vllm_extensions: bool = Field(
        True, description="openai: send vLLM's extra request fields (return_token_ids for num_tokens, "
        "add_special_tokens=false like the other engines); turn off for servers that reject unknown fields "
        "(num_tokens then comes from logprobs or usage, else -1)"
    )

    @field_validator("openai_base_url")
    @classmethod
    def _one_or_more_distinct_urls(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, tuple):
            if not value:
                raise ValueError("openai_base_url: an empty list names no server")
            stripped = [url.rstrip("/") for url in value]
            if len(set(stripped)) != len(stripped):
                raise ValueError(f"openai_base_url: a server is listed twice in {list(value)}")
        return value


# ---------------------------------------------------------------------------------------------- seeds and checks


def prompt_keys(prompts: Sequence[str], prompt_ids: Sequence[str] | None) -> list[tuple[str, int]]:
    """(key, occurrence) per prompt: the id (or a hash of the text) and how often it appeared before."""
    if prompt_ids is None:
        keys = [hashlib.sha256(p.encode()).hexdigest()[:16] for p in prompts]
    else:
        keys = [str(pid) for pid in prompt_ids]
    seen: Counter[str] = Counter()
    out = []
    for key in keys:
        out.append((key, seen[key]))
        seen[key] += 1
    return out


def check_request(prompts: Sequence[str], n: int, temperature: float, max_tokens: int,
                  prompt_ids: Sequence[str] | None) -> None:
    """Fail early, naming the bad argument."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if prompt_ids is not None and len(prompt_ids) != len(prompts):
        raise ValueError(f"prompt_ids has {len(prompt_ids)} entries but prompts has {len(prompts)}")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i} is {type(prompt).__name__}, expected a rendered str")


def on_gpu() -> bool:
    """True when torch sees a CUDA device (decides CPU vs GPU defaults)."""
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------- shared base


class BaseEngine:
    """The engine interface, and what every engine shares: argument checks, seed derivation, greedy expansion
    and the context-manager protocol. Its bound `generate` is what difficulty estimation and evaluation take
    as generate_fn.

    Subclasses implement `_sample(prompts, keys, seeds, n, temperature, max_tokens)`, returning n completions per
    prompt, and `close()`.
    """

    kind = "base"

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int,
        prompt_ids: Sequence[str] | None = None,
        progress: GenerateProgress | None = None,
    ) -> list[list[Completion]]:
        """n completions per prompt, in prompt order; see the module docstring for seeds and greedy.

        `progress(done, total)`, if given, is called as prompts finish: the call is then sampled in about
        PROGRESS_CHUNKS pieces. Seeds are derived for the whole call first, so the completions are the same."""
        prompts = list(prompts)
        check_request(prompts, n, temperature, max_tokens, prompt_ids)
        if not prompts:
            return []
        keys = prompt_keys(prompts, prompt_ids)
        seeds = [derive_seed(seed, "engine-prompt", key, occ) for key, occ in keys]
        labels = [key for key, _ in keys]
        if temperature == 0:
            greedy = self._sample_in_chunks(prompts, labels, seeds, 1, 0.0, max_tokens, progress)
            groups = [[group[0]] * n for group in greedy]
        else:
            groups = self._sample_in_chunks(prompts, labels, seeds, n, float(temperature), max_tokens, progress)
        check_groups(groups, labels, n)
        return groups

    def _sample_in_chunks(self, prompts: list[str], keys: list[str], seeds: list[int], n: int, temperature: float,
                          max_tokens: int, progress: GenerateProgress | None) -> list[list[Completion]]:
        """One `_sample` call without a progress callback; with one, consecutive pieces and a report after each."""
        if progress is None:
            return self._sample(prompts, keys, seeds, n, temperature, max_tokens)
        unit = self.progress_unit(n)
        size = -(-max(-(-len(prompts) // PROGRESS_CHUNKS), unit) // unit) * unit  # whole units, >= 1/20 of the call
        groups: list[list[Completion]] = []
        for start in range(0, len(prompts), size):
            stop = start + size
            groups.extend(self._sample(prompts[start:stop], keys[start:stop], seeds[start:stop], n, temperature,
                                       max_tokens))
            progress(len(groups), len(prompts))
        return groups

    def _sample(self, prompts: list[str], keys: list[str], seeds: list[int], n: int, temperature: float,
                max_tokens: int) -> list[list[Completion]]:
        raise NotImplementedError

    def progress_unit(self, n: int) -> int:
        """Prompts per piece when reporting progress: pieces are whole multiples of it (an engine's batch)."""
        return 16

    def close(self) -> None:
        """Release the model or connections; safe to call twice."""

    def __enter__(self) -> BaseEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RolloutEngine = BaseEngine  # every engine subclasses BaseEngine, so the base class is the engine type


def check_groups(groups: list[list[Completion]], keys: list[str], n: int) -> None:
    """One group of exactly n completions per prompt (a broken backend must not pass silently)."""
    if len(groups) != len(keys):
        raise RuntimeError(f"engine returned {len(groups)} groups for {len(keys)} prompts")
    for key, group in zip(keys, groups):
        if len(group) != n:
            raise RuntimeError(f"engine returned {len(group)} completions for prompt_id={key!r}, expected {n}")


# ---------------------------------------------------------------------------------------------- registry

EngineFactory = Callable[[EngineConfig, "str | Path"], RolloutEngine]


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    """Register an engine factory (a class taking (cfg, model_dir)) under `name`; duplicates are refused."""
    return _ENGINES.register(name)


def engine_names() -> list[str]:
    """Registered engine kinds (auto is resolved before lookup)."""
    return _ENGINES.names()


def resolve_kind(cfg: EngineConfig) -> str:
    """The concrete kind: auto -> vllm when `vllm` is importable (found, not imported), else transformers."""
    if cfg.kind != "auto":
        return cfg.kind
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


def make_engine(cfg: EngineConfig, model_dir: str | Path) -> RolloutEngine:
    """Build the configured engine for a local model directory (or, for openai, a served model name)."""
    kind = resolve_kind(cfg)
    factory = _ENGINES.get(kind)
    logger.info("starting %s engine for %s", kind, model_dir)
    return factory(cfg, model_dir)


# Engines register themselves on import; these names stay importable from `space.engines`.
from space.engines.hf import SeededSampler, TransformersEngine, collect_eos_ids, nucleus  # noqa: E402
from space.engines.openai_engine import (  # noqa: E402
    AllServersDownError, EngineRequestError, OpenAIEngine, RetryableError, base_urls, choice_tokens, parse_choices)
from space.engines.vllm_engine import (  # noqa: E402
    VLLMEngine, model_max_positions, scoped_env, vllm_completion, vllm_cpu_env, vllm_engine_kwargs)
