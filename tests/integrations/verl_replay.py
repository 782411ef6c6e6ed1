"""Run by tests/integrations/test_verl_sampler.py in a child interpreter whose path starts with the real verl
(`infra/install_verl.sh` puts verl 0.7.1 and the few modules it imports into one folder, --no-deps; the child keeps
their antlr4/omegaconf versions out of the test session). Prints one JSON object:

    python tests/integrations/verl_replay.py CURATION.parquet

The sampler is loaded as verl 0.7.1's `create_rl_sampler` loads it (`load_extern_object` on
`data.sampler.class_path`/`class_name`, built from `data_source, data_config`), iterated through a torch
DataLoader with verl's own `collate_fn`, and told each step's batch as `RayPPOTrainer.fit` tells it: a real
`DataProto` with `uid`s, repeated `rollout.n` times (interleaved), rewards in `token_level_scores`.
"""

from __future__ import annotations

import json
import sys
import uuid

import numpy as np
import torch
from omegaconf import OmegaConf

import verl
from conftest_integrations import BANDIT, EPOCHS, G, PER_CHUNK, SEED, SLOTS, curation, reward
from verl import DataProto
from verl.experimental.dataset.sampler import AbstractCurriculumSampler, AbstractSampler
from verl.utils.dataset.rl_dataset import collate_fn
from verl.utils.import_utils import load_extern_object

from space.integrations.verl import verl_rows


class RowsDataset(torch.utils.data.Dataset):
    """The part of verl's RLHFDataset the sampler reads: `dataframe` and rows as dicts (no tokenisation here)."""

    def __init__(self, rows):
        from datasets import Dataset

        self.dataframe = Dataset.from_list(rows)

    def __len__(self):
        return len(self.dataframe)

    def __getitem__(self, i):
        return {**self.dataframe[i], "input_ids": torch.zeros(3, dtype=torch.long)}


def step_batch(batch_dict: dict, epoch: int) -> DataProto:
    """What RayPPOTrainer.fit holds after generation and reward: uid per prompt, n rollouts each, scores."""
    batch = DataProto.from_single_dict(batch_dict)
    batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch.batch))], dtype=object)
    batch = batch.repeat(repeat_times=G, interleave=True)
    clusters = dict(zip(curation()["prompt_id"], curation()["cluster"]))
    scores = torch.zeros(len(batch.batch), 5)
    for i, pid in enumerate(batch.non_tensor_batch["prompt_id"]):
        scores[i, -1] = reward(pid, epoch, i % G, clusters[pid], unjudged=False)
    return batch.union(DataProto.from_single_dict({"token_level_scores": scores}))


def main(curation_path: str) -> dict:
    config = OmegaConf.create({"dataloader_num_workers": 0, "sampler": {
        "class_path": "pkg://space.integrations.verl", "class_name": "SpaceCurriculumSampler",
        "curation": curation_path, "bandit": BANDIT.model_dump(), "seed": SEED, "slots_per_epoch": SLOTS}})
    data = RowsDataset(verl_rows(curation()))
    cls = load_extern_object(config.sampler.class_path, config.sampler.class_name)
    sampler = cls(data_source=data, data_config=config)
    loader = torch.utils.data.DataLoader(data, batch_size=PER_CHUNK, sampler=sampler, num_workers=0,
                                         drop_last=True, collate_fn=collate_fn)
    plans, metrics = [], []
    for epoch in range(EPOCHS):
        plan = []
        for batch_dict in loader:
            plan += list(batch_dict["prompt_id"])
            sampler.update(batch=step_batch(batch_dict, epoch))
        plans.append(plan)
        metrics.append(sorted(sampler.metrics))
    sampler.curriculum.update()
    errors = {}
    try:
        wrong = step_batch(next(iter(loader)), 0)
        wrong.non_tensor_batch["prompt_id"] = np.array(["q03"] * len(wrong), dtype=object)
        sampler.update(batch=wrong)
    except Exception as err:  # noqa: BLE001  (the message is what the test checks)
        errors["unplanned_id"] = str(err)
    return {"verl": verl.__version__, "is_abstract_sampler": isinstance(sampler, AbstractSampler),
            "is_curriculum_sampler": isinstance(sampler, AbstractCurriculumSampler), "len": len(sampler),
            "plans": plans, "bandit": sampler.curriculum.policy.state_dict(), "metric_keys": metrics,
            "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
