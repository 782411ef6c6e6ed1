"""Tests for space/train/grpo.py: real short GRPO epochs on a tiny random Llama (CPU, transformers generation).

Checks the rollout records against the planned order, the checkpoint, exact resume across epochs, None
rewards, multi-pass generation batches (num_iterations > 1) and input validation.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from conftest_models import make_tiny_model_dir
from space.train.checkpoint import is_complete, load_checkpoint
from space.train.grpo import GRPOSettings, check_rewards, lr_factor, steps_per_epoch, train_epoch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = [("1+1=", "2"), ("2+2=", "4"), ("3+4=", "7"), ("5-1=", "4"), ("9-3=", "6")]


def make_rows(unjudgeable: set[int] = frozenset()) -> list[dict]:
    return [
        {"prompt": f"Q: {q}\nA: ", "prompt_id": f"p{i}", "cluster": i % 2, "answer": a,
         "metadata": json.dumps({"judge": i not in unjudgeable})}
        for i, (q, a) in enumerate(QUESTIONS)
    ]


def exact_match(completions, *, answer, metadata, truncated):
    """1.0 on an exact answer, else 0.0; None where the row's metadata says it cannot be judged."""
    return [None if not json.loads(m)["judge"] else float(c.strip() == a)
            for c, a, m in zip(completions, answer, metadata, strict=True)]


def digit_share(completions, *, answer, metadata, truncated):
    """A dense reward (share of digit characters) so groups have variance and the weights move."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


SETTINGS = GRPOSettings(prompts_per_step=2, num_generations=4, max_completion_length=12, learning_rate=1e-3)
ORDER = [3, 0, 3, 1]  # prompt 3 fills two slots: slots, not prompt ids, define groups


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def truncated_seen() -> list[bool]:
    """The truncated flags the exact_epoch's reward function was called with."""
    return []


@pytest.fixture(scope="module")
def exact_epoch(base_dir, tmp_path_factory, truncated_seen):
    rows = make_rows(unjudgeable={1})
    out = tmp_path_factory.mktemp("exact") / "epoch_000"
    logs = []

    def reward(completions, *, answer, metadata, truncated):
        truncated_seen.extend(truncated)
        return exact_match(completions, answer=answer, metadata=metadata, truncated=truncated)

    result = train_epoch(base_dir, None, out, rows, ORDER, reward, SETTINGS, epoch=0, total_epochs=2, seed=7,
                         progress=lambda done, total, log: logs.append((done, total, log)))
    return rows, result, logs


def test_records_one_row_per_completion_grouped_by_slot(exact_epoch):
    rows, result, _ = exact_epoch
    df = result.rollouts
    assert df.height == len(ORDER) * SETTINGS.num_generations
    assert df.columns == ["epoch", "step", "group", "sample", "prompt_id", "cluster", "completion", "reward", "solved",
                          "truncated"]
    for group in range(len(ORDER)):
        part = df.filter(pl.col("group") == group)
        row = rows[ORDER[group]]
        assert part.height == SETTINGS.num_generations
        assert part["sample"].to_list() == list(range(SETTINGS.num_generations))
        assert set(part["prompt_id"]) == {row["prompt_id"]}
        assert set(part["cluster"]) == {row["cluster"]}
    # two steps of B=2 slots: slots 0-1 feed run-wide step 1, slots 2-3 step 2
    assert df.group_by("group").agg(pl.col("step").first()).sort("group")["step"].to_list() == [1, 1, 2, 2]
    assert set(df["epoch"]) == {0}


def test_recorded_rewards_match_reward_function(exact_epoch):
    rows, result, _ = exact_epoch
    df = result.rollouts
    answers = [rows[ORDER[g]]["answer"] for g in df["group"]]
    metadata = [rows[ORDER[g]]["metadata"] for g in df["group"]]
    expected = exact_match(df["completion"].to_list(), answer=answers, metadata=metadata,
                           truncated=df["truncated"].to_list())
    assert df["reward"].to_list() == expected
    assert df["solved"].to_list() == [None if r is None else r >= 1.0 for r in expected]
    assert any(len(c) > 0 for c in df["completion"])


def test_none_rewards_are_counted_not_zero(exact_epoch):
    _, result, _ = exact_epoch
    df = result.rollouts
    unjudged = df.filter(pl.col("prompt_id") == "p1")  # slot 3 holds row 1, which is unjudgeable
    assert unjudged.height == SETTINGS.num_generations
    assert unjudged["reward"].null_count() == SETTINGS.num_generations
    assert unjudged["solved"].null_count() == SETTINGS.num_generations
    assert df["reward"].null_count() == SETTINGS.num_generations
    assert result.metrics["reward/none_count"] == SETTINGS.num_generations
    assert all(torch.isfinite(w).all() for w in _weights(result.checkpoint_out).values())  # no NaN from None
    judged = df.filter(pl.col("reward").is_not_null())
    assert result.metrics["reward/mean"] == pytest.approx(judged["reward"].mean())


def test_truncated_rollouts_are_flagged_passed_to_the_reward_and_reported(exact_epoch, truncated_seen):
    _, result, _ = exact_epoch
    df = result.rollouts
    limit = SETTINGS.max_completion_length
    assert 0 < df["truncated"].sum() < df.height  # the random tiny model stops early in some samples only
    # one character per token: a completion that ended with EOS within the limit has at most limit - 1 chars
    assert all(len(c) < limit for c in df.filter(~pl.col("truncated"))["completion"])
    assert sorted(truncated_seen) == sorted(df["truncated"].to_list())  # the reward function got the same flags
    assert result.metrics["truncated/all"] == pytest.approx(df["truncated"].mean())
    for (cluster,), part in df.group_by("cluster"):
        assert result.metrics[f"truncated/arm_{cluster:02d}"] == pytest.approx(part["truncated"].mean())
    trl_clipped = np.mean([e["completions/clipped_ratio"] for e in result.log_history if "reward" in e])
    assert result.metrics["truncated/all"] == pytest.approx(trl_clipped)  # TRL's own count agrees


def test_log_history_progress_and_metrics(exact_epoch):
    _, result, logs = exact_epoch
    steps = [e for e in result.log_history if "reward" in e]
    assert [e["step"] for e in steps] == [1, 2]
    for key in ("reward_std", "frac_reward_zero_std", "loss", "completions/mean_length"):
        assert all(key in e for e in steps), key
    assert [(done, total) for done, total, _ in logs] == [(1, 2), (2, 2)]
    assert result.metrics["steps"] == 2 and result.metrics["global_step"] == 2
    assert result.metrics["frac_reward_zero_std"] == pytest.approx(np.mean([e["frac_reward_zero_std"] for e in steps]))


def test_checkpoint_reloads_with_transformers(exact_epoch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, result, _ = exact_epoch
    assert is_complete(result.checkpoint_out)
    model = AutoModelForCausalLM.from_pretrained(result.checkpoint_out)
    tokenizer = AutoTokenizer.from_pretrained(result.checkpoint_out)
    assert model.config.num_hidden_layers == 2 and tokenizer.padding_side == "left"
    state = load_checkpoint(result.checkpoint_out)
    assert state.global_step == 2 and state.epoch == 0
    assert state.extra["order"] == ORDER
    assert state.scheduler_state["last_epoch"] == 2


RESUME_SETTINGS = SETTINGS.model_copy(update={"lr_scheduler": "linear", "warmup_ratio": 0.25})
ORDER_1 = [2, 4, 0, 1]


def run_resume_epoch(base_dir: Path, ckpt_in: Path | None, out: Path, epoch: int, order: list[int]):
    return train_epoch(base_dir, ckpt_in, out, make_rows(), order, digit_share, RESUME_SETTINGS,
                       epoch=epoch, total_epochs=2, seed=3)


@pytest.fixture(scope="module")
def straight_run(base_dir, tmp_path_factory):
    """Epochs 0 and 1 one after the other; the epoch-0 checkpoint is kept for resumed runs."""
    root = tmp_path_factory.mktemp("straight")
    e0 = run_resume_epoch(base_dir, None, root / "a0", 0, ORDER)
    e1 = run_resume_epoch(base_dir, root / "a0", root / "a1", 1, ORDER_1)
    return root, e0, e1


def test_resume_matches_straight_run(base_dir, straight_run, tmp_path):
    root, e0, straight = straight_run
    # a "fresh call": the checkpoint copied elsewhere and the global RNGs disturbed in between
    shutil.copytree(root / "a0", tmp_path / "b0")
    random.random(), np.random.rand(5), torch.rand(7)
    resumed = run_resume_epoch(base_dir, tmp_path / "b0", tmp_path / "b1", 1, ORDER_1)

    assert straight.rollouts.equals(resumed.rollouts)
    assert straight.rollouts["step"].unique().sort().to_list() == [3, 4]
    assert_same_weights(root / "a1", tmp_path / "b1")
    w0, w1 = _weights(root / "a0"), _weights(root / "a1")
    assert max((w0[k] - w1[k]).abs().max().item() for k in w1) > 1e-4  # epoch 1 did train
    s1, s2 = load_checkpoint(root / "a1"), load_checkpoint(tmp_path / "b1")
    steps1 = [v["step"].item() for v in s1.optimizer_state["state"].values()]
    assert steps1 and set(steps1) == {4.0}  # AdamW state carried over from epoch 0 (2 + 2 steps)
    assert steps1 == [v["step"].item() for v in s2.optimizer_state["state"].values()]
    assert s1.scheduler_state["last_epoch"] == s2.scheduler_state["last_epoch"] == 4
    # the schedule spans both epochs: the LR used at run-wide step s is factor(s - 1), warmup 1 of 4 steps
    lr_logged = [e["learning_rate"] for e in e0.log_history + straight.log_history if "learning_rate" in e]
    assert lr_logged == pytest.approx([RESUME_SETTINGS.learning_rate * f for f in (0.5, 1.0, 2 / 3, 1 / 3)])


def test_resume_refuses_a_mismatched_checkpoint(base_dir, straight_run, tmp_path):
    root = straight_run[0]
    with pytest.raises(ValueError, match="is from epoch 0; epoch 2 needs epoch 1's"):
        train_epoch(base_dir, root / "a0", tmp_path / "x", make_rows(), ORDER_1, digit_share, RESUME_SETTINGS,
                    epoch=2, total_epochs=3, seed=3)
    with pytest.raises(ValueError, match=r"\(total_epochs, steps_per_epoch\)=\(2, 2\), this call plans \(3, 2\)"):
        train_epoch(base_dir, root / "a0", tmp_path / "x", make_rows(), ORDER_1, digit_share, RESUME_SETTINGS,
                    epoch=1, total_epochs=3, seed=3)


RESUME_SCRIPT = """
import sys, torch
from pathlib import Path
sys.path[:0] = [{here!r}, {tests!r}, {root!r}]
torch.set_num_threads(1)
from test_grpo import run_resume_epoch
result = run_resume_epoch(Path({base!r}), Path({ckpt!r}), Path({out!r}), 1, {order!r})
result.rollouts.write_parquet(Path({out!r}).with_suffix(".parquet"))
"""


@pytest.mark.slow
def test_resume_in_a_new_process_matches(base_dir, straight_run, tmp_path):
    """What a Prefect worker restarted after a crash does: epoch 1 in a new interpreter."""
    import os
    import subprocess
    import sys

    root, _, straight = straight_run
    out = tmp_path / "c1"
    here = Path(__file__).resolve().parent  # tests/train: this module; tests/: conftest_models; the repository
    script = RESUME_SCRIPT.format(here=str(here), tests=str(here.parent), root=str(here.parents[1]),
                                  base=str(base_dir), ckpt=str(root / "a0"), out=str(out), order=ORDER_1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True, timeout=300)
    assert straight.rollouts.equals(pl.read_parquet(out.with_suffix(".parquet")))
    assert_same_weights(root / "a1", out)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6


def test_multi_pass_batches_record_each_slot_once(base_dir, tmp_path):
    settings = SETTINGS.model_copy(update={"num_iterations": 2, "gradient_accumulation_steps": 2})
    result = train_epoch(base_dir, None, tmp_path / "c0", make_rows(), ORDER, digit_share, settings,
                         epoch=0, total_epochs=1, seed=1)
    df = result.rollouts
    assert df.height == len(ORDER) * settings.num_generations
    assert df.group_by("group").len()["len"].to_list() == [settings.num_generations] * len(ORDER)
    assert result.metrics["steps"] == steps_per_epoch(len(ORDER), settings) == 4
    # each generation batch trains two steps; its rollouts carry the first (steps 1 and 3)
    assert df.group_by("group").agg(pl.col("step").first()).sort("group")["step"].to_list() == [1, 1, 3, 3]


def test_bad_row_names_row_and_key(base_dir, tmp_path):
    rows = make_rows()
    del rows[2]["answer"]
    with pytest.raises(KeyError, match=r"row 2 \(prompt_id='p2'\) has no key 'answer'"):
        train_epoch(base_dir, None, tmp_path / "x", rows, ORDER, exact_match, SETTINGS, 0, 1, 0)
    assert not (tmp_path / "x").exists()


def test_order_must_fill_whole_steps(base_dir, tmp_path):
    with pytest.raises(ValueError, match="not a multiple of prompts_per_step=2"):
        train_epoch(base_dir, None, tmp_path / "x", make_rows(), [0, 1, 2], exact_match, SETTINGS, 0, 1, 0)


def test_reward_output_is_checked():
    check_rewards([1.0, None, np.float32(0.5), 0], 4, "r")
    with pytest.raises(ValueError, match="returned 1 rewards for 2 completions"):
        check_rewards([1.0], 2, "r")
    with pytest.raises(TypeError, match="returned nan for completion 1"):
        check_rewards([1.0, float("nan")], 2, "r")
    with pytest.raises(TypeError, match="returned True for completion 0"):
        check_rewards([True], 1, "r")


def test_lr_schedule_shapes():
    assert [lr_factor(s, kind="constant", warmup=2, total=10) for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1, 1])
    assert lr_factor(6, kind="linear", warmup=2, total=10) == pytest.approx(0.5)
    assert lr_factor(6, kind="cosine", warmup=2, total=10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(10, kind="linear", warmup=0, total=10) == 0.0


def test_settings_are_frozen_and_strict():
    with pytest.raises(ValueError):
        GRPOSettings(prompts_per_stepp=2)
    with pytest.raises(ValueError):
        SETTINGS.beta = 0.1


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


class _Stop(Exception):
    pass


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_colocated_vllm_reseeding_is_undone_before_training(base_dir, tmp_path, monkeypatch):
    """GPU-only path with the GPU parts stubbed (not run on a GPU): a trainer whose constructor seeds every RNG
    with 0, as TRL's colocated vLLM start does, must not decide the epoch's random streams."""
    import types

    import space.train.grpo as grpo
    from transformers import set_seed

    seen = []

    class VllmColocatedTrainer:  # the constructor does what vLLM's LLM(seed=0) does to the global RNGs
        def __init__(self, *args, **kwargs):
            random.seed(0), np.random.seed(0), torch.manual_seed(0)

        def remove_callback(self, callback):
            pass

        def train(self):
            seen.append(_draws())
            raise _Stop

    monkeypatch.setattr(grpo, "make_trainer_class", lambda: VllmColocatedTrainer)
    monkeypatch.setattr(grpo, "build_config", lambda *a, **k: types.SimpleNamespace())  # GPU-only config
    monkeypatch.setattr(grpo, "build_sampler", lambda *a, **k: None)
    settings = SETTINGS.model_copy(update={"use_vllm": True, "vllm_mode": "colocate"})
    with pytest.raises(_Stop):
        train_epoch(base_dir, None, tmp_path / "c", make_rows(), ORDER, exact_match, settings, 0, 1, seed=5)
    set_seed(grpo.derive_seed(5, "grpo-epoch", 0))
    expected = _draws()
    set_seed(0)
    assert seen == [expected] and expected != _draws()
