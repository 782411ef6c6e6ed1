"""Tests for space/integrations/trl.py and curriculum.py: the plug-in plans as `space train` does, keeps TRL's
layout, and names the id or column when the dataset, curation and rewards disagree.

The replay test feeds the same seeded rewards through the flow's bandit path (`make_policy`,
`ClusterPromptPicker`, `plan_epoch`, `group_results`, state saved and restored between epochs as `run_epoch` does)
and through the plug-in (its sampler under a real `trl.GRPOConfig`, its tracked reward called group by group as
TRL calls it), and compares the planned prompt ids epoch by epoch.
"""

from __future__ import annotations

import polars as pl
import pytest

from conftest_integrations import BANDIT, EPOCHS, G, PER_CHUNK, SEED, SLOTS, curation, flow_plans, reward
from space.curate.export import ExportError
from space.integrations.curriculum import Curriculum, split_groups
from space.integrations.trl import SpaceCurriculum


def grpo_args(tmp_path):
    from trl import GRPOConfig

    return GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=G * PER_CHUNK, num_generations=G,
                      use_cpu=True, report_to="none", max_completion_length=8)


def plugin_plans(tmp_path) -> tuple[list[list[str]], dict, list[dict]]:
    """The plug-in's plans for the same rewards, on a shuffled dataset, with the reward called per generation batch."""
    plugin = SpaceCurriculum(curation(), bandit=BANDIT, seed=SEED, slots_per_epoch=SLOTS)
    dataset = plugin.train_dataset().shuffle(seed=1)
    sampler = plugin.sampler(dataset, grpo_args(tmp_path))
    tracked = plugin.reward(lambda prompts, completions, **columns: [float(c) if c != "x" else None
                                                                     for c in completions])
    plans, logged = [], []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        indices = list(iter(sampler))
        assert len(indices) == len(sampler) == SLOTS * G
        ids = [dataset[i]["prompt_id"] for i in indices[::G]]
        plans.append(ids)
        for start in range(0, len(indices), G * PER_CHUNK):  # one TRL reward call per generation batch
            rows = [dataset[i] for i in indices[start:start + G * PER_CHUNK]]
            scores = [reward(r["prompt_id"], epoch, j % G, r["cluster"]) for j, r in enumerate(rows)]
            tracked(prompts=[r["prompt"] for r in rows], completions=["x" if s is None else str(s) for s in scores],
                    prompt_id=[r["prompt_id"] for r in rows], trainer_state=None)
        logged.append(plugin.curriculum.pop_metrics())
    plugin.curriculum.update()
    return plans, plugin.curriculum.policy.state_dict(), logged


def test_plugin_plans_equal_the_flows_epoch_by_epoch_for_the_same_rewards(tmp_path):
    flow, flow_state = flow_plans()
    plugin, plugin_state, logged = plugin_plans(tmp_path)
    for epoch, (a, b) in enumerate(zip(flow, plugin)):
        assert a == b, f"epoch {epoch}: flow planned {a}, plug-in {b}"
    assert len({tuple(p) for p in flow}) > 1  # the plans moved with the rewards: the comparison is not vacuous
    assert plugin_state == flow_state
    assert logged[1]["bandit/period"] == 1.0 and "bandit/arm_02/solve_rate" in logged[1]


def test_sampler_yields_each_prompt_num_generations_times_in_chunks(tmp_path):
    plugin = SpaceCurriculum(curation(), bandit={"policy": "uniform"}, seed=0, slots_per_epoch=SLOTS)
    dataset = plugin.train_dataset()
    indices = list(iter(plugin.sampler(dataset, grpo_args(tmp_path))))
    groups = [indices[i:i + G] for i in range(0, len(indices), G)]
    assert all(len(set(g)) == 1 for g in groups) and len(groups) == SLOTS
    assert {dataset[g[0]]["prompt_id"] for g in groups} <= set(curation().filter(pl.col("selected"))["prompt_id"])


def test_plan_every_steps_sizes_the_period_in_optimiser_steps(tmp_path):
    plugin = SpaceCurriculum(curation(), plan_every_steps=2)
    sampler = plugin.sampler(plugin.train_dataset(), grpo_args(tmp_path))
    assert sampler.slots == 2 * PER_CHUNK and len(sampler) == 2 * PER_CHUNK * G


def test_a_dataset_id_missing_from_the_curation_is_named(tmp_path):
    from datasets import Dataset

    plugin = SpaceCurriculum(curation())
    dataset = Dataset.from_dict({"prompt": ["a", "b"], "prompt_id": ["q00", "nope-7"]})
    with pytest.raises(ExportError, match="dataset row 1 has prompt_id 'nope-7'"):
        plugin.sampler(dataset, grpo_args(tmp_path))


def test_a_dataset_without_prompt_id_column_is_refused(tmp_path):
    from datasets import Dataset

    with pytest.raises(ValueError, match="no column 'prompt_id'"):
        SpaceCurriculum(curation()).sampler(Dataset.from_dict({"prompt": ["a"]}), grpo_args(tmp_path))


def test_rewards_for_a_prompt_outside_the_plan_are_named():
    curriculum = Curriculum(curation(), curation()["prompt_id"], {"policy": "uniform"}, seed=0)
    curriculum.plan(2)  # 2 of the 9 selected prompts
    absent = next(p for p in curriculum.table["prompt_id"] if p not in curriculum.planned_ids)
    with pytest.raises(ValueError, match=f"prompt_id '{absent}', which period 0's plan does not contain"):
        curriculum.record_group(absent, [1.0, 0.0])
    with pytest.raises(ExportError, match="prompt_id 'q03', which is not in the curation's training rows"):
        curriculum.record_group("q03", [1.0, 0.0])  # q03 is in the curation but not selected


def test_a_curation_without_cluster_column_is_named():
    with pytest.raises(ExportError, match="no column 'cluster'"):
        SpaceCurriculum(curation().drop("cluster"))


def test_split_groups_refuses_a_batch_that_mixes_ids_inside_a_group():
    assert split_groups(["a", "a", "b", "b"], [1, 0, None, 1], 2) == [("a", [1, 0]), ("b", [None, 1])]
    with pytest.raises(ValueError, match=r"rollouts 0..1 mix prompt ids \['a', 'b'\]"):
        split_groups(["a", "b", "b", "b"], [1, 0, 0, 1], 2)


def test_rewards_computed_in_evaluate_do_not_reach_the_bandit(tmp_path):
    """A real GRPOTrainer (tiny random model) evaluates before any training: the tracked reward runs, records
    nothing, and does not complain that no plan exists yet."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from conftest_models import make_tiny_model_dir

    model_dir = make_tiny_model_dir(tmp_path / "tiny")
    plugin = SpaceCurriculum(curation(), slots_per_epoch=SLOTS)
    dataset = plugin.train_dataset(AutoTokenizer.from_pretrained(model_dir))
    calls = []

    def count(prompts, completions, **_):
        calls.append(len(completions))
        return [0.0] * len(completions)

    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=G * PER_CHUNK,
                      per_device_eval_batch_size=G * PER_CHUNK, num_generations=G, max_completion_length=4,
                      use_cpu=True, report_to="none", save_strategy="no", dataloader_num_workers=0)
    trainer = plugin.trainer(GRPOTrainer)(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                                          train_dataset=dataset, eval_dataset=dataset.select(range(PER_CHUNK)),
                                          reward_funcs=[plugin.reward(count)])
    trainer.evaluate()
    assert sum(calls) == PER_CHUNK * G and plugin.curriculum is None and plugin.recording


def test_the_informative_pool_plans_only_prompts_the_reference_solved_sometimes():
    curriculum = Curriculum(curation(), curation()["prompt_id"], {"policy": "uniform"}, seed=0, pool="informative")
    # q21 has solve rate 0.0; q23's is unknown, so its predicted rate 1 - 0.2 stands in: 8 samples at 0.8 mix
    # successes and failures with probability 0.83, above min_signal 0.5 (and below 0.9)
    assert sorted(curriculum.table["prompt_id"]) == sorted(set(curation()["prompt_id"]) - {"q21"})
    strict = Curriculum(curation(), curation()["prompt_id"], {"policy": "uniform"}, pool="informative", min_signal=0.9)
    assert sorted(strict.table["prompt_id"]) == sorted(set(curation()["prompt_id"]) - {"q21", "q23"})
    planned = {curriculum.table["prompt_id"][i] for i in range(curriculum.table.height)}
    assert "q21" not in {curation()["prompt_id"][r] for r in curriculum.plan(22)} and len(planned) == 11
    with pytest.raises(ValueError, match="'informative'"):
        Curriculum(curation(), curation()["prompt_id"], pool="refill")


def test_the_informative_pool_reads_k_from_the_whole_curation_when_the_dataset_holds_no_measured_prompt():
    unmeasured = {"q02": 0.98, "q03": 0.2, "q13": 0.5, "q23": 0.2}  # predicted difficulty, no rollouts
    rows = curation().with_columns(
        pl.when(pl.col("prompt_id").is_in(list(unmeasured))).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("solve_rate", "k")).with_columns(
        pl.col("prompt_id").replace_strict(unmeasured, default=pl.col("difficulty")).alias("difficulty"))
    curriculum = Curriculum(rows, sorted(unmeasured), {"policy": "uniform"}, seed=0, pool="informative")
    # k = 8 from the curation's measured rows: q02 (p 0.02) mixes with probability 0.15 < 0.5 and is dropped; its
    # cluster keeps q03. Reading k from the dataset's rows alone found none and kept all four.
    assert sorted(curriculum.table["prompt_id"]) == ["q03", "q13", "q23"]
