"""Nothing left behind: a watchdog process that takes down what a `space` command started once that command dies.

    start_watchdog()                      # the CLI, before any flow: python flows/watchdog.py <space pid>

A `space` process starts children that are not its own code: Prefect's temporary API server (a `uvicorn`
subprocess that `prefect.server.api.server.SubprocessASGIServer` starts with a plain `subprocess.Popen`, stopped
only by an `atexit` hook), vLLM's engine-core processes (multiprocessing; they block on a queue and never look
at their parent), a local Ray cluster (Ray gives its gcs_server and raylet a parent-death signal, not its
dashboard and runtime-env agents, which also outlived SIGTERM for the whole grace in tests/test_killed_command.py),
torchrun and its ranks (`train.distributed.processes > 1`; torchrun puts each rank in a session of its own).
When the command is SIGKILLed no atexit hook runs, and all of them stay up with parent 1 (a 350 MB server, a model
and its KV cache, ranks that train on and write a checkpoint). tests/test_killed_command.py and
tests/test_distributed_faults.py check that nothing is left.

Prefect and vLLM offer no hook to set a parent-death signal on those children (`PR_SET_PDEATHSIG` would also
fire when the *thread* that started them ends, and Prefect may start its server from a worker thread), so the
watchdog works from outside: every half second it records the command's descendants (psutil, with their
start times, so a reused pid is never mistaken for one of them); when the command is gone it sends SIGTERM to
those still alive, waits up to `GRACE_SECONDS`, then SIGKILLs the rest, and exits. It ignores SIGINT, SIGTERM
and SIGHUP: a Ctrl-C, a closed terminal or `timeout` signal the whole process group, and the command may survive
them (vLLM handles SIGTERM itself while an engine starts), so only the command's end, or SIGKILL, ends the
watchdog. A child started less than `INTERVAL_SECONDS` before the kill may be missed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

INTERVAL_SECONDS = 0.5
GRACE_SECONDS = 10.0


def start_watchdog() -> subprocess.Popen:
    """Start the watchdog on this process (a script run by path: it imports nothing of space)."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def watch(parent_pid: int, interval: float = INTERVAL_SECONDS, grace: float = GRACE_SECONDS) -> int:
    """Record `parent_pid`'s descendants until it ends, then stop those still running; returns how many."""
    import psutil

    try:
        parent = psutil.Process(parent_pid)
    except psutil.NoSuchProcess:
        return 0
    me, known = os.getpid(), {}
    while True:
        try:  # a killed parent stays a zombie until its own parent reaps it: gone all the same
            if not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE:
                break
            known.update({p.pid: p for p in parent.children(recursive=True) if p.pid != me})
        except psutil.NoSuchProcess:
            break
        known = {pid: p for pid, p in known.items() if p.is_running()}
        time.sleep(interval)
    left = [p for p in known.values() if p.is_running()]
    for process in left:
        _signal(process, "terminate")
    _, alive = psutil.wait_procs(left, timeout=grace)
    for process in alive:
        _signal(process, "kill")
    return len(left)


def _signal(process, how: str) -> None:
    import psutil

    try:
        getattr(process, how)()
    except psutil.Error:  # gone meanwhile, or its pid reused (psutil checks the start time)
        pass


if __name__ == "__main__":
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    watch(int(sys.argv[1]))
