"""Tests for space/integrations/verl.py: against verl's real `AbstractCurriculumSampler` and `DataProto` when
`infra/install_verl.sh` has put verl 0.7.1 in SPACE_VERL_PKGS (default /tmp/verl-pkgs), in a child interpreter
(tests/integrations/verl_replay.py); the trainer-free parts run here.

verl 0.9.x cannot be tested this way: its PyPI wheels (0.8.0, 0.9.0, 0.9.1) no longer ship
`verl/experimental/dataset/sampler.py`, and `pip install --dry-run verl==0.9.*` against infra/constraints.txt
fails (verl needs transformers <5.11, the pinned set has 5.19).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest_integrations import SLOTS, curation, flow_plans
from space.curate.export import ExportError
from space.integrations.verl import VerlCurriculum, dataset_prompt_ids, verl_rows

ROOT = Path(__file__).resolve().parents[2]
VERL_PKGS = os.environ.get("SPACE_VERL_PKGS", "/tmp/verl-pkgs")


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([VERL_PKGS, str(ROOT), str(ROOT / "tests")])}


def verl_importable() -> bool:
    probe = [sys.executable, "-c", "import verl.experimental.dataset.sampler, verl.utils.dataset.rl_dataset"]
    return subprocess.run(probe, env=child_env(), capture_output=True, timeout=600).returncode == 0


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    if not verl_importable():
        pytest.skip(f"verl 0.7.1 is not importable from SPACE_VERL_PKGS={VERL_PKGS}: run infra/install_verl.sh")
    path = tmp_path_factory.mktemp("verl") / "curation.parquet"
    curation().write_parquet(path)
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "integrations" / "verl_replay.py"), str(path)],
                          env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_verl_loads_it_by_class_path_as_its_curriculum_sampler(replay):
    assert replay["verl"] == "0.7.1"
    assert replay["is_abstract_sampler"] and replay["is_curriculum_sampler"] and replay["len"] == SLOTS


def test_verl_sampler_plans_equal_the_flows_for_the_same_rewards(replay):
    flow, flow_state = flow_plans(unjudged=False)
    assert replay["plans"] == flow
    assert replay["bandit"] == flow_state
    assert "bandit/arm_01/solve_rate" in replay["metric_keys"][1] and "bandit/period" in replay["metric_keys"][0]


def test_verl_rewards_for_a_prompt_outside_the_curriculum_are_named(replay):
    assert "prompt_id 'q03', which is not in the curation's training rows" in replay["errors"]["unplanned_id"]


class Rows:
    """An indexable of dicts, the other data source shape the sampler accepts."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def test_prompt_ids_come_from_a_column_or_extra_info_and_a_gap_is_named():
    rows = verl_rows(curation())
    assert dataset_prompt_ids(Rows(rows), "prompt_id") == [r["prompt_id"] for r in rows]
    nested = [{k: v for k, v in r.items() if k != "prompt_id"} for r in rows]
    assert dataset_prompt_ids(Rows(nested), "prompt_id") == [r["prompt_id"] for r in rows]
    nested[4]["extra_info"] = {"index": 4}
    with pytest.raises(KeyError, match="row 4 has no 'prompt_id'"):
        dataset_prompt_ids(Rows(nested), "prompt_id")


def test_a_dataset_row_missing_from_the_curation_is_named(tmp_path):
    path = tmp_path / "curation.parquet"
    curation().write_parquet(path)
    rows = verl_rows(curation()) + [{"prompt_id": "zz9", "extra_info": {}}]
    with pytest.raises(ExportError, match="dataset row 9 has prompt_id 'zz9'"):
        VerlCurriculum(Rows(rows), {"sampler": {"curation": str(path)}})


def test_a_missing_curation_option_is_named():
    with pytest.raises(ValueError, match="data.sampler.curation is not set"):
        VerlCurriculum(Rows([]), {"sampler": {}})


def test_verl_rows_keep_the_selected_prompts_in_verl_format():
    rows = verl_rows(curation())
    assert len(rows) == 9 and rows[0]["reward_model"] == {"style": "rule", "ground_truth": "1"}
    assert rows[0]["prompt"] == [{"role": "user", "content": "question q00"}]
    assert np.array_equal([r["extra_info"]["prompt_id"] for r in rows], [r["prompt_id"] for r in rows])
