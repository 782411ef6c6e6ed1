"""The openai engine over a pool of two real vLLM OpenAI servers on loopback (the tiny model): requests spread
over both, the samples and their order match one server alone, and when one server is SIGKILLed mid-batch
every prompt still gets its completions from the survivor, and the dead server is marked down. Faults vLLM cannot produce on demand (5xx, hangs,
every server down) are injected with scripted servers in test_openai_retries.py.

Both servers are shared by the module (each takes 1-2 min to start on 2 CPU cores); the kill test runs last.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest_servers import start_vllm_server, stop_process, wait_vllm_healthy

from space.engines import EngineConfig, make_engine

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = [f"Q: What is {i}+{2 * i + 1}?\nA: " for i in range(40)]
IDS = [f"q{i}" for i in range(40)]
# the kill test's batch is longer: a server that answers its first two requests only late in a 40-prompt batch
# (seen on a loaded machine, both answered in one engine step) never held a request after an answer
LONG_PROMPTS = [f"Q: What is {i}+{2 * i + 1}?\nA: " for i in range(160)]
LONG_IDS = [f"q{i}" for i in range(160)]
N, MAX_TOKENS = 4, 24


@pytest.fixture(scope="module")
def two_servers(tiny_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("pool-logs")
    cores = os.cpu_count() or 1  # a core each where there are two: both on vLLM's auto binding starve one
    servers = [start_vllm_server(tiny_dir, logs / f"vllm-{name}.log", cpus=str(i % cores))
               for i, name in enumerate(("a", "b"))]
    try:
        for server in servers:  # both start at once; wait for each
            wait_vllm_healthy(server, limit=600.0)
        yield servers
    finally:
        for server in servers:
            stop_process(server.proc)


def pool_cfg(urls: list[str]) -> EngineConfig:
    return EngineConfig(kind="openai", openai_base_url=urls, openai_max_concurrency=2, openai_backoff=0.05)


def run(engine, prompts=PROMPTS, ids=IDS) -> list[list[str]]:
    groups = engine.generate(prompts, n=N, temperature=1.0, max_tokens=MAX_TOKENS, seed=7, prompt_ids=ids)
    assert all(len(group) == N for group in groups)
    return [[c.text for c in group] for group in groups]


def posts_logged(server) -> int:
    """Completion requests the server's own access log shows as answered 200."""
    return server.log.read_text().count('"POST /v1/completions HTTP/1.1" 200')


def test_pool_of_two_vllm_servers_spreads_requests_and_matches_one_server(two_servers, tiny_dir):
    a, b = two_servers
    with make_engine(pool_cfg([a.url]), tiny_dir) as alone:
        reference = run(alone, PROMPTS[:16], IDS[:16])
    before = [posts_logged(s) for s in two_servers]
    with make_engine(pool_cfg([a.url, b.url]), tiny_dir) as pool:
        pooled = run(pool, PROMPTS[:16], IDS[:16])
        stats = pool.server_stats()
    print("pool stats:", stats)  # shown with -rP
    assert pooled == reference  # same per-prompt seeds: same samples, in prompt order, whichever server ran them
    assert len({tuple(t) for t in pooled}) == 16
    assert [st["ok"] for st in stats] == [posts_logged(s) - n for s, n in zip(two_servers, before)]
    assert min(st["ok"] for st in stats) >= 2 and sum(st["ok"] for st in stats) == 16  # both took a share
    assert not any(st["down"] or st["failed"] for st in stats)


def kill_when_busy(engine, server, index: int, running) -> dict:
    """SIGKILL `server` (its whole process group) once it has answered a request and holds one in flight (on a
    loaded machine a slow server may answer only two requests of the batch: waiting for two answers missed it)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not running.done():
        stats = engine.server_stats()
        if stats[index]["ok"] >= 1 and stats[index]["in_flight"] >= 1:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=30)
            return {"stats": stats, "done": sum(st["ok"] for st in stats)}
        time.sleep(0.02)
    raise AssertionError(f"the batch ended or stalled before the server was busy: {engine.server_stats()}")


def test_pool_survives_a_vllm_server_killed_mid_batch(two_servers, tiny_dir):
    a, b = two_servers
    with make_engine(pool_cfg([a.url]), tiny_dir) as alone:
        reference = run(alone, LONG_PROMPTS, LONG_IDS)
    a_before = posts_logged(a)
    with make_engine(pool_cfg([a.url, b.url]), tiny_dir) as pool, ThreadPoolExecutor(1) as background:
        running = background.submit(run, pool, LONG_PROMPTS, LONG_IDS)
        at_kill = kill_when_busy(pool, b, 1, running)
        pooled = running.result(timeout=600)
        after_batch = pool.server_stats()
        # whether the rest of that batch still tried B depends on when the kill came; the next batch must:
        # 4 threads, at most 2 requests on A, so the others go to B until it is down
        next_batch = run(pool, PROMPTS, IDS)
        a_stats, b_stats = pool.server_stats()
    print("at kill:", at_kill, "\nafter the batch:", after_batch, "\nafter the next:", a_stats, b_stats)  # -rP
    assert at_kill["done"] < len(LONG_PROMPTS)  # the kill came mid-batch
    assert pooled == reference  # every prompt got its samples, in order; nothing lost or duplicated
    assert next_batch == reference[: len(PROMPTS)]
    assert b_stats["down"] and b_stats["failed"] >= 4  # down after openai_retries + 1 = 4 failures in a row
    assert b_stats["ok"] >= at_kill["stats"][1]["ok"] >= 1  # answers B gave before dying are kept
    assert a_stats["ok"] + b_stats["ok"] == len(LONG_PROMPTS) + len(PROMPTS) and not a_stats["down"]
    assert a_stats["ok"] == posts_logged(a) - a_before  # the survivor's own log agrees
    assert b.proc.poll() is not None
