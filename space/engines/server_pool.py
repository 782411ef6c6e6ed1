"""A pool of OpenAI-compatible servers behind the openai engine: which server takes the next request, how many
requests each holds at once, and when a server counts as down.

Each request goes to the up server with a free slot and the fewest failures in a row, then the fewest requests
in flight (then the fewest sent), so work spreads evenly and away from failing servers.
A server whose last `down_after` requests all failed with a retryable error (connection refused or reset,
timeout, HTTP 429/5xx) is marked down for the rest of the engine's life; threads waiting for a slot wake up
and go elsewhere. When no server is up, `acquire` raises AllServersDownError naming every endpoint and its
last error. The pool only keeps the books; the engine (openai_engine.py) sends, retries and fails over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class EngineRequestError(RuntimeError):
    """A request for one prompt failed for good (after retries, or at once on a 4xx)."""

    def __init__(self, prompt_id: str, message: str):
        super().__init__(f"prompt_id={prompt_id!r}: {message}")
        self.prompt_id = prompt_id

    def __reduce__(self):  # picklable (Prefect results, Ray) although __init__ takes other arguments than args
        return _restore_error, (type(self), self.args, self.__dict__)


def _restore_error(cls: type, args: tuple, state: dict) -> EngineRequestError:
    """Rebuild a pickled EngineRequestError (or subclass) without calling its __init__."""
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class RetryableError(Exception):
    """A failure worth retrying: connection trouble, timeout, HTTP 429 or 5xx."""


class ServerUnreachable(RetryableError):
    """No connection could be made (refused, connect timeout): the server's fault, never the prompt's."""


@dataclass
class ServerState:
    """One endpoint and its books: requests sent, answered with 2xx, failed; whether it is down and why."""

    url: str
    client: Any  # an httpx.Client of its own, so connection limits are per server
    in_flight: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    failures_in_a_row: int = 0
    down: bool = False
    last_error: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """The books as a plain dict (without the client)."""
        return {"url": self.url, "in_flight": self.in_flight, "sent": self.sent, "ok": self.ok,
                "failed": self.failed, "down": self.down, "last_error": self.last_error}


class AllServersDownError(EngineRequestError):
    """No server of the pool is up: the message names each endpoint and the last error it gave."""

    def __init__(self, prompt_id: str, attempts: int, servers: Sequence[ServerState]):
        self.servers = [s.snapshot() for s in servers]
        lines = "; ".join(f"{s.url} ({describe(s)})" for s in servers)
        super().__init__(prompt_id, f"all {len(servers)} servers are down after {attempts} attempts for this "
                                    f"prompt: {lines}")


def describe(server: ServerState) -> str:
    """Why a server is out: its state and last error."""
    state = "down" if server.down else "up"
    return f"{state}, {server.failed} failed of {server.sent} sent, last error: {server.last_error or 'none'}"


class ServerPool:
    """Thread-safe books over several servers; at most `max_in_flight` requests per server at once."""

    def __init__(self, urls: Sequence[str], max_in_flight: int, down_after: int, make_client: Callable[[], Any]):
        if not urls:
            raise ValueError("a server pool needs at least one base URL")
        self.servers = [ServerState(url, make_client()) for url in urls]
        self.max_in_flight = max_in_flight
        self.down_after = down_after
        self.cond = threading.Condition()

    @property
    def unreachable_budget(self) -> int:
        """Failovers after unreachable servers one request may make without using a retry: enough to mark every
        server down, so only a server that refuses and answers by turns can exhaust it."""
        return self.down_after * len(self.servers)

    @property
    def capacity(self) -> int:
        """Requests the whole pool holds at once."""
        return self.max_in_flight * len(self.servers)

    def acquire(self, prompt_id: str, attempts: int, avoid: ServerState | None = None) -> ServerState:
        """A slot on the best up server (not `avoid` when another is free); waits while all up servers are full.
        Raises AllServersDownError (naming `prompt_id` and its `attempts` so far) once no server is up."""
        with self.cond:
            while True:
                up = [s for s in self.servers if not s.down]
                if not up:
                    raise AllServersDownError(prompt_id, attempts, self.servers)
                free = [s for s in up if s.in_flight < self.max_in_flight]
                if free:
                    best = min(free, key=lambda s: (s.failures_in_a_row, s is avoid, s.in_flight, s.sent))
                    best.in_flight += 1
                    best.sent += 1
                    return best
                self.cond.wait()

    def release(self, server: ServerState, error: str | None = None, answered: bool = True) -> bool:
        """Return a slot. `error` is a retryable failure (counts toward down); `answered=False` with no error
        is a response that was not usable (4xx, malformed), which says nothing about the server's health.
        Returns True when the server is down (now or before)."""
        with self.cond:
            server.in_flight -= 1
            if error is not None:
                server.failed += 1
                server.failures_in_a_row += 1
                server.last_error = error
                if not server.down and server.failures_in_a_row >= self.down_after:
                    server.down = True
                    logger.warning("openai server %s marked down after %d failures in a row (last: %s); "
                                   "its requests go to the other servers", server.url, server.failures_in_a_row,
                                   error)
            elif answered:
                server.ok += 1
                server.failures_in_a_row = 0
            self.cond.notify_all()
            return server.down

    def stats(self) -> list[dict[str, Any]]:
        """Per-server books, in configuration order."""
        with self.cond:
            return [s.snapshot() for s in self.servers]

    def close(self) -> None:
        """Close every server's HTTP client."""
        for server in self.servers:
            server.client.close()
