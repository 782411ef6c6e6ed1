"""The OpenAI engine's retry, timeout, concurrency and server-pool failover logic, against small local HTTP servers
that fail on purpose (the engine against real vLLM servers is in test_engines.py and test_openai_pool.py)."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from space.engines import AllServersDownError, EngineConfig, EngineRequestError, make_engine
from space.seeding import derive_seed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScriptedServer(ThreadingHTTPServer):
    """Answers /v1/completions following a script of failures, then with well-formed choices."""

    daemon_threads = True

    def __init__(self, script: list[str], delay: float = 0.0, then: str = "ok", poison: str | None = None):
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.script, self.delay, self.then, self.poison = list(script), delay, then, poison
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ScriptedHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        server: ScriptedServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.bodies.append(body)
            step = server.script.pop(0) if server.script else server.then
            step = "503" if body["prompt"] == server.poison else step
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        self.answered = False
        try:
            time.sleep(2.0 if step == "hang" else server.delay)
            if step in ("503", "400"):
                self.reply(int(step), {"error": f"scripted {step}"})
            elif step == "short":  # malformed: one choice too few
                self.reply(200, {"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}][: body["n"] - 1]})
            else:
                choices = [{"index": i, "text": f"{body['seed']}-{i}", "finish_reason": "stop",
                            "token_ids": [5] * (i + 1)} for i in range(body["n"])]
                self.reply(200, {"choices": choices[::-1]})  # out of order on purpose
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
        finally:
            self._leave()

    def _leave(self) -> None:
        """Out of the in-flight count once, before the answer goes out: the client may send its next request as
        soon as it has read this one's, before this thread runs again (seen under load as a false 3 > cap 2)."""
        if not self.answered:
            self.answered = True
            with self.server.lock:
                self.server.in_flight -= 1

    def reply(self, status: int, payload: dict) -> None:
        self._leave()
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted():
    servers = []

    def start(script: list[str], delay: float = 0.0, then: str = "ok", poison: str | None = None) -> ScriptedServer:
        server = ScriptedServer(script, delay, then, poison)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def openai_cfg(url: str, **extra) -> EngineConfig:
    return EngineConfig(kind="openai", openai_base_url=url, openai_model="m", openai_backoff=0.01, **extra)


def test_openai_retries_5xx_then_succeeds(scripted):
    server = scripted(["503", "503"])
    with make_engine(openai_cfg(server.base_url), "unused") as engine:
        groups = engine.generate(["x"], n=3, temperature=1.0, max_tokens=8, seed=5, prompt_ids=["id-1"])
    assert len(server.bodies) == 3
    seed = derive_seed(5, "engine-prompt", "id-1", 0)
    assert [c.text for c in groups[0]] == [f"{seed}-0", f"{seed}-1", f"{seed}-2"]  # ordered by index
    assert [c.num_tokens for c in groups[0]] == [1, 2, 3]
    assert server.bodies[0]["seed"] == seed
    assert {k: server.bodies[0][k] for k in ("model", "prompt", "n", "max_tokens", "add_special_tokens")} == {
        "model": "m", "prompt": "x", "n": 3, "max_tokens": 8, "add_special_tokens": False}


def test_openai_retries_after_timeout(scripted):
    server = scripted(["hang"])
    with make_engine(openai_cfg(server.base_url, openai_timeout=0.3), "unused") as engine:
        groups = engine.generate(["x"], n=1, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["id-t"])
    assert len(server.bodies) == 2 and groups[0][0].text.endswith("-0")


def test_openai_gives_up_naming_the_prompt(scripted):
    server = scripted(["ok", "503", "503", "503", "503"])
    with make_engine(openai_cfg(server.base_url, openai_retries=2, openai_max_concurrency=1), "unused") as engine:
        with pytest.raises(EngineRequestError, match=r"prompt_id='bad'.*after 3 attempts.*HTTP 503"):
            engine.generate(["x", "y"], n=1, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["good", "bad"])
    assert len(server.bodies) == 4  # 1 success + 3 attempts for 'bad'


def test_openai_does_not_retry_client_errors(scripted):
    server = scripted(["400"])
    with make_engine(openai_cfg(server.base_url), "unused") as engine:
        with pytest.raises(EngineRequestError, match=r"prompt_id='q'.*HTTP 400"):
            engine.generate(["x"], n=1, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["q"])
    assert len(server.bodies) == 1


def test_openai_malformed_response_fails_the_prompt_without_retry(scripted):
    server = scripted(["short"])
    with make_engine(openai_cfg(server.base_url), "unused") as engine:
        with pytest.raises(EngineRequestError, match=r"prompt_id='m'.*expected 2 choices, got 1"):
            engine.generate(["x"], n=2, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["m"])
        assert engine.server_stats() == [{"url": server.base_url, "in_flight": 0, "sent": 1, "ok": 0, "failed": 0,
                                          "down": False, "last_error": None}]  # not a server failure
    assert len(server.bodies) == 1


def test_openai_connection_refused_raises_after_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with make_engine(openai_cfg(url, openai_retries=1), "unused") as engine:
        with pytest.raises(EngineRequestError, match=r"prompt_id='z'.*after 2 attempts.*Connect"):
            engine.generate(["x"], n=1, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["z"])


def test_openai_bounds_concurrency_and_keeps_order(scripted):
    server = scripted([], delay=0.15)
    prompts = [f"p{i}" for i in range(8)]
    with make_engine(openai_cfg(server.base_url, openai_max_concurrency=2), "unused") as engine:
        groups = engine.generate(prompts, n=1, temperature=1.0, max_tokens=8, seed=1, prompt_ids=prompts)
    assert server.max_in_flight == 2
    assert [g[0].text for g in groups] == [f"{derive_seed(1, 'engine-prompt', p, 0)}-0" for p in prompts]
    assert len({b["seed"] for b in server.bodies}) == 8


def test_openai_greedy_sends_one_sample_and_repeats_it(scripted):
    server = scripted([])
    with make_engine(openai_cfg(server.base_url), "unused") as engine:
        groups = engine.generate(["x"], n=4, temperature=0.0, max_tokens=8, seed=0, prompt_ids=["g"])
    assert server.bodies[0]["n"] == 1 and server.bodies[0]["temperature"] == 0.0
    assert len(groups[0]) == 4 and len({c.text for c in groups[0]}) == 1


# ------------------------------------------------------------------------------------------------ server pool


def expected_texts(prompts: list[str], seed: int) -> list[str]:
    return [f"{derive_seed(seed, 'engine-prompt', p, 0)}-0" for p in prompts]


def pool_generate(engine, prompts: list[str], seed: int = 2) -> list[str]:
    groups = engine.generate(prompts, n=1, temperature=1.0, max_tokens=8, seed=seed, prompt_ids=prompts)
    return [g[0].text for g in groups]


def test_pool_balances_with_a_cap_per_server(scripted):
    servers = [scripted([], delay=0.1), scripted([], delay=0.1)]
    prompts = [f"p{i}" for i in range(12)]
    cfg = openai_cfg([s.base_url for s in servers], openai_max_concurrency=2)
    with make_engine(cfg, "unused") as engine:
        assert pool_generate(engine, prompts) == expected_texts(prompts, 2)
        stats = engine.server_stats()
    assert [s.max_in_flight for s in servers] == [2, 2]  # the cap holds per server, and both were full
    assert [len(s.bodies) for s in servers] == [st["ok"] for st in stats] == [st["sent"] for st in stats]
    assert min(len(s.bodies) for s in servers) >= 4 and sum(len(s.bodies) for s in servers) == 12
    assert not any(st["down"] for st in stats)


def test_pool_marks_a_5xx_server_down_and_fails_over_keeping_order(scripted):
    bad, good = scripted([], then="503"), scripted([], delay=0.02)
    prompts = [f"p{i}" for i in range(10)]
    cfg = openai_cfg([bad.base_url, good.base_url], openai_retries=2, openai_max_concurrency=2)
    with make_engine(cfg, "unused") as engine:
        assert pool_generate(engine, prompts) == expected_texts(prompts, 2)
        bad_stats, good_stats = engine.server_stats()
    assert bad_stats["down"] and bad_stats["ok"] == 0 and "HTTP 503" in bad_stats["last_error"]
    assert 3 <= bad_stats["failed"] == len(bad.bodies)  # down after retries + 1 = 3 failures in a row
    assert good_stats["ok"] == len(good.bodies) == 10 and not good_stats["down"]


def test_pool_marks_a_hanging_server_down_after_timeouts(scripted):
    hung, good = scripted([], then="hang"), scripted([])
    prompts = [f"p{i}" for i in range(6)]
    cfg = openai_cfg([hung.base_url, good.base_url], openai_timeout=0.3, openai_retries=1)
    with make_engine(cfg, "unused") as engine:
        assert pool_generate(engine, prompts) == expected_texts(prompts, 2)
        hung_stats, good_stats = engine.server_stats()
    assert hung_stats["down"] and hung_stats["ok"] == 0 and "Timeout" in hung_stats["last_error"]
    assert good_stats["ok"] == 6


def test_pool_with_every_server_down_names_each_endpoint_and_its_last_error(scripted):
    failing = scripted([], then="503")
    refused = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    cfg = openai_cfg([failing.base_url, refused], openai_retries=1, openai_max_concurrency=1)
    with make_engine(cfg, "unused") as engine:
        with pytest.raises(AllServersDownError) as caught:
            engine.generate(["x", "y", "z"], n=1, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["a", "b", "c"])
    message = str(caught.value)
    assert isinstance(caught.value, EngineRequestError) and "all 2 servers are down" in message
    assert f"{failing.base_url} (down," in message and f"{refused} (down," in message
    assert "HTTP 503" in message and "ConnectError" in message
    assert [s["down"] for s in caught.value.servers] == [True, True]
    copy = pickle.loads(pickle.dumps(caught.value))  # crosses process boundaries intact (Prefect, Ray)
    assert type(copy) is AllServersDownError and str(copy) == message and copy.servers == caught.value.servers


def test_pool_of_unreachable_servers_is_all_down_even_for_one_prompt():
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]  # nothing listens on either
    with make_engine(openai_cfg(urls, openai_retries=1), "unused") as engine:
        with pytest.raises(AllServersDownError, match=r"prompt_id='only': all 2 servers are down after 4 attempts"
                           ) as caught:
            engine.generate(["x"], n=1, temperature=1.0, max_tokens=8, seed=0, prompt_ids=["only"])
    for url, state in zip(urls, caught.value.servers):
        assert f"{url} (down, 2 failed of 2 sent, last error: ConnectError" in str(caught.value)
        assert state["down"] and state["failed"] == 2


def test_pool_prompt_failing_everywhere_is_a_prompt_error_not_servers_down(scripted):
    servers = [scripted([], poison="bad"), scripted([], poison="bad")]
    cfg = openai_cfg([s.base_url for s in servers], openai_retries=3, openai_max_concurrency=1)
    with make_engine(cfg, "unused") as engine:
        with pytest.raises(EngineRequestError, match=r"prompt_id='bad'.*after 4 attempts") as caught:
            pool_generate(engine, ["ok1", "bad", "ok2", "ok3"])
        stats = engine.server_stats()
    assert not isinstance(caught.value, AllServersDownError)
    assert not any(st["down"] for st in stats)  # other prompts' successes keep both servers up
    assert sum(len(s.bodies) for s in servers) >= 4 + 3
