"""Console progress for the long stages: a rich bar with ETA on a terminal, a plain periodic line elsewhere.

    with progress_bar("embed", total=1000, unit="prompts") as update:
        update(250, 1000)                 # (done, total), optionally a short note: update(3, 60, "loss 1.23")

The `space` library reports through plain callbacks (`progress(done, total, ...)`); the adapters below turn
them into `update` calls. Tasks run in the CLI's own process (flows call them directly), so one process-wide
setting decides the mode: `rich` when stderr is a terminal, `plain` otherwise (CI, pipes, tests: rich's live
display prints nothing until it stops when the output is not a terminal), `off` to print nothing. The
environment variable SPACE_PROGRESS (rich, plain or off) overrides the choice.

Lines go straight to stderr, not through `print`, so Prefect's `log_prints` does not turn them into log records.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Update = Callable[..., None]  # update(done, total, note="")
PLAIN_EVERY_SECONDS = 15.0
MODES = ("rich", "plain", "off")


def progress_mode() -> str:
    """SPACE_PROGRESS when set, else rich on a terminal and plain otherwise."""
    mode = os.environ.get("SPACE_PROGRESS", "").strip().lower()
    if mode:
        if mode not in MODES:
            raise ValueError(f"SPACE_PROGRESS={mode!r}: expected one of {', '.join(MODES)}")
        return mode
    return "rich" if sys.stderr.isatty() else "plain"


def clock(seconds: float) -> str:
    """0:01:05 for 65 seconds."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class PlainProgress:
    """One line at the start, then at most one every `every` seconds, and one at the end, each with the ETA."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO | None = None,
                 every: float = PLAIN_EVERY_SECONDS, now: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit, self.every, self.now = label, total, unit, every, now
        self.stream = stream
        self.started = self.last = now()
        self.done = 0
        self.note = ""
        self._write(f"{label}: started" + (f" ({total} {unit})" if total else ""))

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done, self.total, self.note = done, total or self.total, note
        if self.now() - self.last >= self.every and (self.total is None or done < self.total):
            self.last = self.now()
            self._write(self.line())

    def line(self) -> str:
        """`label: done/total unit (pct), elapsed, ETA` (ETA from the mean rate so far)."""
        elapsed = self.now() - self.started
        if not self.total:
            return f"{self.label}: {self.done} {self.unit}, {clock(elapsed)} elapsed{self._note()}"
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        return (f"{self.label}: {self.done}/{self.total} {self.unit} ({self.done / self.total:.0%}), "
                f"{clock(elapsed)} elapsed, ETA {clock(eta) if eta is not None else '?'}{self._note()}")

    def finish(self) -> None:
        took = clock(self.now() - self.started)
        if not self.total and not self.done:  # a wait without units (an engine starting)
            self._write(f"{self.label}: done in {took}")
            return
        count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        self._write(f"{self.label}: done, {count} in {took}{self._note()}")

    def _note(self) -> str:
        return f", {self.note}" if self.note else ""


class RichProgress:
    """A rich bar (description, bar, count, elapsed, ETA, note) on stderr; it stays as one line when done."""

    def __init__(self, label: str, total: int | None, unit: str):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[note]}"), console=Console(stderr=True))
        self.task = self.progress.add_task(label, total=total, note="")
        self.progress.start()

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.progress.update(self.task, completed=done, total=total, note=note)

    def finish(self) -> None:
        self.progress.stop()


@contextmanager
def progress_bar(label: str, total: int | None = None, unit: str = "steps") -> Iterator[Update]:
    """Show progress while the block runs; yields `update(done, total=None, note="")`."""
    mode = progress_mode()
    if mode == "off":
        yield lambda *args, **kwargs: None
        return
    shown: Any = RichProgress(label, total, unit) if mode == "rich" else PlainProgress(label, total, unit)
    try:
        yield shown.update
    finally:
        shown.finish()


# adapters from the `space` library's callbacks


def sft_progress(update: Update, total_steps: int) -> Callable[[int, dict[str, float]], None]:
    """space.models.tiny's `progress(step, {"sft/loss": ...})`."""
    return lambda step, metrics: update(step, total_steps, f"loss {metrics['sft/loss']:.3f}")


def grpo_progress(update: Update) -> Callable[[int, int, dict[str, Any]], None]:
    """space.train.grpo.train_epoch's `progress(done, total, log)`; the note is the step's mean reward."""
    def report(done: int, total: int, log: dict[str, Any]) -> None:
        reward = log.get("reward")
        update(done, total, f"reward {reward:.3f}" if reward is not None else "")

    return report


def start_engine(cfg: Any, model_dir: str) -> Any:
    """`space.engines.make_engine` under a bar without a total, so the wait for vLLM's start (tens of
    seconds on CPU, its own logs quiet) shows elapsed time instead of nothing."""
    from space.engines import make_engine, resolve_kind

    with progress_bar(f"starting the {resolve_kind(cfg)} engine", unit=""):
        return make_engine(cfg, model_dir)


def generate_with_progress(generate: Callable[..., Any], label: str) -> Callable[..., Any]:
    """An engine's `generate` that shows one bar per call: `label (greedy)` or `label (n samples)`."""
    def run(prompts: Any, *args: Any, **kwargs: Any) -> Any:
        greedy = kwargs.get("temperature", 1.0) == 0
        kind = "greedy" if greedy else f"{kwargs.get('n', 1)} samples"
        with progress_bar(f"{label} ({kind})", len(prompts), "prompts") as update:
            return generate(prompts, *args, progress=update, **kwargs)

    return run
