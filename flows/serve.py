"""Serve a flow as a scheduled Prefect deployment from this process, and stop promptly on SIGTERM/SIGINT.

    space serve --recipe builtin --interval 3600     # the CLI front end (needs PREFECT_API_URL)

Prefect's own `flow.serve` pauses the deployment's schedule on shutdown through the API; once the server
has gone away those calls retry for minutes and the process ignores further signals. Here the runner's
event loop lives in a worker thread and the main thread owns the signals: on SIGTERM or SIGINT it checks
that the server answers, pauses the schedule only if it does, asks the runner to stop and waits at most
`grace` seconds before leaving anyway.
"""

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any

import httpx
from prefect import Flow
from prefect.runner import Runner
from prefect.settings import PREFECT_API_URL

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def server_answers(timeout: float = 2.0) -> bool:
    """True when the configured Prefect API's /health endpoint answers 200 within `timeout` seconds."""
    try:
        return httpx.get(f"{PREFECT_API_URL.value().rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def serve_flow(flow: Flow, name: str, *, cron: str | None, interval: int | None, parameters: dict[str, Any],
               tags: list[str], limit: int = 1, grace: float = 30.0) -> int:
    """Register the deployment, poll for its runs until a signal arrives; returns the process exit code."""
    stop = threading.Event()
    received: list[int] = []
    # before add_flow: it registers the deployment, and a signal from then on must pause its schedule
    previous = {sig: signal.signal(sig, lambda sig, _frame: (received.append(sig), stop.set())) for sig in SIGNALS}
    try:
        runner = Runner(name=name, pause_on_shutdown=True, limit=limit)
        runner.add_flow(flow, name=name, cron=cron, interval=interval, parameters=parameters, tags=tags)
        loop = asyncio.new_event_loop()
        worker = threading.Thread(target=loop.run_until_complete, args=(runner.start(),), name="space-serve",
                                  daemon=True)
        print(f"serving deployment '{flow.name}/{name}' (at most {limit} run(s) at a time); "
              "stop with Ctrl-C or SIGTERM", flush=True)
        worker.start()
        while worker.is_alive() and not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not received:
        return 1  # the runner stopped on its own (its error is in the log above)
    return _shut_down(runner, loop, worker, signal.Signals(received[0]).name, grace)


def _shut_down(runner: Runner, loop: asyncio.AbstractEventLoop, worker: threading.Thread, name: str,
               grace: float) -> int:
    if server_answers():
        print(f"{name}: stopping; the deployment's schedule is paused", flush=True)
    else:
        runner.pause_on_shutdown = False  # every API call would retry for minutes
        print(f"{name}: the Prefect server does not answer; stopping without pausing the schedule",
              file=sys.stderr, flush=True)
    deadline = time.monotonic() + grace
    while not runner.started and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)  # a signal right after start-up: astop refuses a runner that has not started yet
    asyncio.run_coroutine_threadsafe(runner.astop(), loop)
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        print(f"runner did not stop within {grace:.0f} s; exiting anyway", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)  # the runner thread is stuck in client retries; nothing left to clean up in-process
    return 0
