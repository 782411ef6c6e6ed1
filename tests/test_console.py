"""The console: progress lines and adapters, engine and embedding progress that change no result, the
stage record kept by Prefect hooks, the summary table, and quiet logging by default."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import pytest

from flows.console import QUIET_ENVIRONMENT, StageRow, quiet_environment, quiet_loggers, render_summary, stage_label, stage_rows
from tasks.progress import PlainProgress, generate_with_progress, grpo_progress, progress_bar, sft_progress
from tasks.stages import StageRun


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_start_periodic_lines_with_eta_and_the_end():
    out, clock = io.StringIO(), FakeClock()
    bar = PlainProgress("embed", 100, "prompts", stream=out, every=10, now=clock)
    clock.now = 4
    bar.update(20, 100)  # under 10 s since the last line: nothing
    clock.now = 12
    bar.update(40, 100, "loss 1.500")
    clock.now = 15
    bar.update(50, 100)  # 3 s after the last line: nothing
    clock.now = 24
    bar.update(100, 100)  # the end is reported by finish, not twice
    bar.finish()
    assert out.getvalue().splitlines() == [
        "embed: started (100 prompts)",
        "embed: 40/100 prompts (40%), 0:00:12 elapsed, ETA 0:00:18, loss 1.500",
        "embed: done, 100/100 prompts in 0:00:24",
    ]


def test_plain_progress_without_a_total_counts_and_has_no_eta():
    out, clock = io.StringIO(), FakeClock()
    bar = PlainProgress("rollouts", None, "groups", stream=out, every=5, now=clock)
    clock.now = 3725
    bar.update(7)
    bar.finish()
    assert out.getvalue().splitlines() == ["rollouts: started", "rollouts: 7 groups, 1:02:05 elapsed",
                                           "rollouts: done, 7 groups in 1:02:05"]


def test_progress_mode_off_prints_nothing_and_a_bad_mode_is_named(monkeypatch, capsys):
    monkeypatch.setenv("SPACE_PROGRESS", "off")
    with progress_bar("embed", 3) as update:
        update(3, 3)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SPACE_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="SPACE_PROGRESS='fancy'"):
        with progress_bar("embed", 3):
            pass


def test_plain_mode_writes_to_stderr_not_stdout(monkeypatch, capsys):
    monkeypatch.setenv("SPACE_PROGRESS", "plain")
    with progress_bar("train epoch 1/2", 4, "GRPO steps") as update:
        update(4, 4, "reward 0.250")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[0] == "train epoch 1/2: started (4 GRPO steps)"
    assert captured.err.splitlines()[-1].startswith("train epoch 1/2: done, 4/4 GRPO steps in 0:00:0")
    assert captured.err.splitlines()[-1].endswith(", reward 0.250")


def test_adapters_turn_library_callbacks_into_updates():
    calls = []

    def update(*args):
        calls.append(args)

    sft_progress(update, 60)(50, {"sft/loss": 1.23456, "sft/lr": 0.001})
    grpo = grpo_progress(update)
    grpo(1, 4, {"reward": 0.5, "loss": 0.1})
    grpo(2, 4, {"loss": 0.1})
    assert calls == [(50, 60, "loss 1.235"), (1, 4, "reward 0.500"), (2, 4, "")]


def test_engine_progress_reports_every_piece_and_changes_no_completion(tiny_dir, monkeypatch, capsys):
    from space.engines import EngineConfig, make_engine

    prompts = [f"<s>{a}+{b}=" for a in range(6) for b in range(5)]  # 30 prompts
    ids = [f"p{i}" for i in range(len(prompts))]
    seen = []
    with make_engine(EngineConfig(kind="transformers", batch_size=8), tiny_dir) as engine:
        whole = engine.generate(prompts, n=2, temperature=1.0, max_tokens=8, seed=5, prompt_ids=ids)
        pieces = engine.generate(prompts, n=2, temperature=1.0, max_tokens=8, seed=5, prompt_ids=ids,
                                 progress=lambda done, total: seen.append((done, total)))
        monkeypatch.setenv("SPACE_PROGRESS", "plain")
        shown = generate_with_progress(engine.generate, "evaluate-base")
        greedy = shown(prompts, n=2, temperature=0.0, max_tokens=8, seed=5, prompt_ids=ids)
    assert pieces == whole
    # batch 8 / n=2 = 4 prompts per batch; pieces are whole batches of >= 30/20 prompts: 4 each
    assert seen == [(4, 30), (8, 30), (12, 30), (16, 30), (20, 30), (24, 30), (28, 30), (30, 30)]
    assert len(greedy) == 30 and all(len(g) == 2 and g[0] == g[1] for g in greedy)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluate-base")]
    assert lines[0] == "evaluate-base (greedy): started (30 prompts)"
    assert lines[-1].startswith("evaluate-base (greedy): done, 30/30 prompts in ")


def test_embedding_progress_reports_pieces_and_gives_the_same_vectors():
    from space.curate.embedding import EmbeddingConfig, embed_texts, load_embedder

    embedder = load_embedder(EmbeddingConfig(device="cpu"))
    texts = [f"What is {a} plus {b}?" for a in range(9) for b in range(5)]  # 45 texts
    seen = []
    whole = embed_texts(embedder, texts, batch_size=2)
    pieces = embed_texts(embedder, texts, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    assert pieces.shape == whole.shape == (45, 384)
    assert seen[-1] == (45, 45) and [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) == 12


def test_stage_label_strips_prefect_default_suffix_and_keeps_given_names():
    assert stage_label("embed-3fa") == "embed"
    assert stage_label("build-tiny-model-0b9") == "build-tiny-model"
    assert stage_label("train-epoch-2 of 3") == "train-epoch 2 of 3"
    assert stage_label("evaluate-base") == "evaluate base"
    assert stage_label("evaluate-after epoch 10 of 12") == "evaluate after epoch 10 of 12"
    assert stage_label("cluster") == "cluster"


def test_stage_rows_group_runs_by_stage_in_order_and_count_cached():
    runs = [StageRun("load-data-a1b", "Cached", 0.01, True), StageRun("embed-c2d", "Completed", 3.5, False),
            StageRun("log-epoch-e3f", "Completed", 0.5, False), StageRun("train-epoch-1 of 2", "Completed", 40.0, True),
            StageRun("log-epoch-0a1", "Completed", 0.25, False), StageRun("evaluate-base", "Cached", 0.02, True),
            StageRun("log-epoch-99f", "Cached", 0.0, True)]
    assert stage_rows(runs) == [StageRow("load-data", 1, 0.01, 1), StageRow("embed", 1, 3.5, 0),
                                StageRow("log-epoch", 3, 0.75, 1), StageRow("train-epoch 1 of 2", 1, 40.0, 1),
                                StageRow("evaluate base", 1, 0.02, 1)]
    assert [r.cached_text for r in stage_rows(runs)] == ["yes", "no", "1 of 3", "yes", "yes"]


def test_summary_renders_exact_rows_accuracy_and_ids():
    rows = [StageRow("build-tiny-model", 1, 212.04, 0), StageRow("embed", 1, 0.0, 1),
            StageRow("train-epoch 1 of 2", 1, 61.25, 0), StageRow("evaluate final", 2, 9.5, 1)]
    text = render_summary(rows, {"greedy accuracy": (0.5, 0.5625), "pass@1": (0.40625, 0.5)},
                          {"MLflow parent run": "abc123", "Prefect flow run": "0f-1e"})
    assert text.splitlines() == [
        "space run summary",
        "",
        "  stage                runs   seconds   cached",
        " " + "─" * 46,
        "  build-tiny-model        1     212.0   no",
        "  embed                   1       0.0   yes",
        "  train-epoch 1 of 2      1      61.2   no",
        "  evaluate final          2       9.5   1 of 2",
        " " + "─" * 46,
        "  all stages              5     282.8   2 of 5",
        "",
        "held-out greedy accuracy: base 0.500 -> final 0.562",
        "held-out pass@1: base 0.406 -> final 0.500",
        "MLflow parent run: abc123",
        "Prefect flow run: 0f-1e",
    ]


@pytest.mark.server  # the flow starts Prefect's temporary local server
def test_stage_options_record_computed_and_cached_task_runs():
    import tasks  # noqa: F401  (Prefect's home and result storage under the test SPACE_HOME)
    from prefect import flow, task
    from prefect.cache_policies import INPUTS

    from tasks.stages import RECORDED, STAGE_OPTIONS

    @task(**STAGE_OPTIONS, name="square", cache_policy=INPUTS, persist_result=True)
    def square(x: int) -> int:
        return x * x

    @flow(name="console-hooks")
    def twice(x: int) -> int:
        return square(x) + square.with_options(task_run_name="square-again")(x)

    first = len(RECORDED)
    assert twice(os.getpid()) == 2 * os.getpid() ** 2
    recorded = RECORDED[first:]
    assert [(r.name.startswith("square-"), r.state, r.cached) for r in recorded] == [
        (True, "Completed", False), (True, "Cached", True)]
    assert recorded[1].name == "square-again" and all(r.seconds >= 0 for r in recorded)


def _uses_numpy(x):
    return np.sum(x)


@pytest.mark.server  # the flow starts Prefect's temporary local server
def test_stage_tasks_leave_stdout_to_library_code_under_a_printing_flow():
    """dill reads a function's globals off `dis.dis` written to a swapped `sys.stdout` (datasets fingerprints
    TRL's maps so). Under a flow with log_prints, a plain task loses that output to Prefect's log; a stage
    task keeps it, so dill finds the globals."""
    import dill.detect
    import tasks  # noqa: F401
    from prefect import flow, task

    from tasks.stages import STAGE_OPTIONS

    def globals_of_probe() -> list[str]:
        return sorted(dill.detect.nestedglobals(_uses_numpy))

    stage = task(**STAGE_OPTIONS, name="stage-probe")(globals_of_probe)
    plain = task(name="plain-probe")(globals_of_probe)

    @flow(name="console-prints", log_prints=True)
    def both() -> tuple[list[str], list[str]]:
        return stage(), plain()

    ours, theirs = both()
    assert ours == ["np"]
    assert theirs == []  # the failure the option avoids, seen on a task without it


def test_quiet_by_default_and_verbose_leaves_library_defaults(monkeypatch):
    for key in QUIET_ENVIRONMENT:  # set, then removed: monkeypatch restores them afterwards
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    monkeypatch.setenv("DATASETS_VERBOSITY", "info")  # what the user exported wins
    quiet_environment(verbose=True)
    assert "VLLM_LOGGING_LEVEL" not in os.environ
    quiet_environment(verbose=False)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR" and os.environ["TQDM_DISABLE"] == "1"
    assert os.environ["DATASETS_VERBOSITY"] == "info"

    handler = logging.StreamHandler(io.StringIO())
    logging.getLogger("prefect.console-test").addHandler(handler)
    try:
        for name in ("vllm", "transformers", "httpx"):
            monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
        quiet_loggers(verbose=True)
        assert logging.getLogger("httpx").level == logging.NOTSET and handler.level == logging.NOTSET
        quiet_loggers(verbose=False)
        assert logging.getLogger("vllm").level == logging.ERROR
        assert logging.getLogger("transformers").level == logging.WARNING
        assert handler.level == logging.WARNING
    finally:
        logging.getLogger("prefect.console-test").removeHandler(handler)


@pytest.mark.vllm
def test_vllm_import_time_warnings_follow_vllm_logging_level():
    """vLLM logs "Triton is installed, but doesn't include CPU backend" while being imported, before it applies
    VLLM_LOGGING_LEVEL; importing `tasks` first (as `space` and vLLM's engine processes under it do) applies it."""
    import subprocess
    import sys

    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}

    def stderr_of(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300).stderr

    assert "Triton is installed" in stderr_of("import vllm.triton_utils")  # vLLM alone: printed anyway
    assert "Triton is installed" not in stderr_of("import tasks; import vllm.triton_utils")


def test_cli_offers_verbose_before_the_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert "--verbose" in out.stdout and "-v" in out.stdout
