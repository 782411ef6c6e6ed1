"""SPaCe's curriculum as a verl curriculum sampler (verl's `AbstractCurriculumSampler`, verl <= 0.7.1).

verl 0.5-0.7 builds a custom sampler from the data config and, after every training step, hands it the step's
batch (`RayPPOTrainer.fit` calls `sampler.update(batch=batch)` when the sampler is an `AbstractCurriculumSampler`):

    data:
      dataloader_num_workers: 0        # verl requires it for curriculum samplers: no prefetch before the plan
      sampler:
        class_path: pkg://space.integrations.verl
        class_name: SpaceCurriculumSampler
        curation: /abs/path/to/export  # a `space export` folder
        bandit: {policy: ts_lp}        # space.train.bandit.BanditConfig fields
        seed: 0
        slots_per_epoch: 512           # prompts per epoch (default: one per planned row)

Each epoch `__iter__` feeds the previous epoch's groups to the bandit and plans the epoch's prompts (verl repeats
each prompt `rollout.n` times itself). `update(batch)` reads the prompt ids and the sequence rewards of the batch:
the id from `non_tensor_batch["prompt_id"]` (a top-level dataset column, see `verl_rows`) or from each row's
`extra_info["prompt_id"]`, the reward as `batch.batch["token_level_scores"].sum(-1)` (option `reward_key`), one
group per `uid`. The bandit's metrics are kept in `sampler.metrics`: verl has no hook to log a sampler's metrics.

verl 0.8.0-0.9.1 on PyPI no longer ship `verl/experimental/dataset/sampler.py` nor the `data.sampler.class_path`
branch of `create_rl_sampler`; there the sampler can be passed as `RayPPOTrainer(train_sampler=...)`, but nothing
calls its `update`, so the bandit would never learn (docs/integrations.md). The class is built on first access
(module `__getattr__`), on verl's base class when importable, else on torch's `Sampler`, so importing this module
imports neither verl nor torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from space.integrations.curriculum import Curriculum
from space.train.config import INFORMATIVE_MIN_SIGNAL


class VerlCurriculum:
    """The sampler's behaviour, free of verl and torch (the class verl loads adds their base classes)."""

    def __init__(self, data_source: Any, data_config: Any) -> None:
        options = plain(data_config.get("sampler") or {})
        if not options.get("curation"):
            raise ValueError("data.sampler.curation is not set: give the folder written by `space export`")
        self.id_key = options.get("id_key", "prompt_id")
        self.reward_key = options.get("reward_key", "token_level_scores")
        seed = options.get("seed", data_config.get("seed", 0))
        self.curriculum = Curriculum(options["curation"], dataset_prompt_ids(data_source, self.id_key),
                                     options.get("bandit"), seed=0 if seed is None else int(seed),
                                     pool=options.get("pool", "reduced"),
                                     theta_solve=float(options.get("theta_solve", 1.0)),
                                     min_signal=float(options.get("informative_min_signal", INFORMATIVE_MIN_SIGNAL)))
        self.slots = int(options.get("slots_per_epoch") or self.curriculum.table.height)
        self.metrics: dict[str, float] = {}

    def __iter__(self) -> Iterator[int]:
        rows = self.curriculum.plan(self.slots)
        self.metrics.update(self.curriculum.pop_metrics())
        return iter(rows)

    def __len__(self) -> int:
        return self.slots

    def update(self, batch: Any, *args: Any, **kwargs: Any) -> None:
        """Record the step's groups (one per `uid`) for the next plan; extra arguments (a step number in some
        verl forks) are ignored."""
        for pid, rewards in batch_groups(batch, self.id_key, self.reward_key):
            self.curriculum.record_group(pid, rewards)

    def state_dict(self) -> dict[str, Any]:
        return self.curriculum.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state)


def batch_groups(batch: Any, id_key: str, reward_key: str) -> list[tuple[str, list[float]]]:
    """(prompt id, rewards) per GRPO group of a verl `DataProto`, groups in first-seen order of their `uid`."""
    extra = batch.non_tensor_batch
    if "uid" not in extra:
        raise KeyError("the batch has no non_tensor_batch['uid']: cannot tell its GRPO groups apart")
    if reward_key not in batch.batch.keys():
        raise KeyError(f"the batch has no batch[{reward_key!r}] (keys: {sorted(batch.batch.keys())}): set "
                       "data.sampler.reward_key")
    ids = row_ids(extra, id_key, "the batch's non_tensor_batch")
    scores = batch.batch[reward_key].sum(-1).tolist()
    groups: dict[Any, tuple[str, list[float]]] = {}
    for uid, pid, score in zip(extra["uid"].tolist(), ids, scores):
        group = groups.setdefault(uid, (pid, []))
        if group[0] != pid:
            raise ValueError(f"uid {uid!r} holds prompt ids {group[0]!r} and {pid!r}: not one GRPO group")
        group[1].append(float(score))
    return list(groups.values())


def dataset_prompt_ids(data_source: Any, id_key: str) -> list[str]:
    """The prompt id of each row of verl's dataset (`RLHFDataset.dataframe`, or any indexable of dicts)."""
    frame = getattr(data_source, "dataframe", None)
    if frame is not None and hasattr(frame, "column_names"):
        columns = {name: frame[name] for name in (id_key, "extra_info") if name in frame.column_names}
        return row_ids(columns, id_key, "the dataset")
    rows = [data_source[i] for i in range(len(data_source))]
    return row_ids({key: [r.get(key) for r in rows] for key in (id_key, "extra_info")}, id_key, "the dataset")


def row_ids(columns: Any, id_key: str, where: str) -> list[str]:
    """Ids from a top-level column `id_key`, else from each row's `extra_info[id_key]`; names the first gap."""
    if id_key in columns and columns[id_key] is not None and not all(v is None for v in columns[id_key]):
        values = list(columns[id_key])
    elif "extra_info" in columns:
        values = [(info or {}).get(id_key) for info in columns["extra_info"]]
    else:
        raise KeyError(f"{where} has neither a {id_key!r} column nor an 'extra_info' column holding {id_key!r}")
    for i, value in enumerate(values):
        if value is None:
            raise KeyError(f"{where}: row {i} has no {id_key!r} (top-level or in extra_info)")
    return [str(v) for v in values]


def verl_rows(curation: Any, data_source: str = "space", pool: str = "reduced") -> list[dict[str, Any]]:
    """An exported curation as rows of verl's RL parquet format (prompt messages, data_source, reward_model,
    extra_info) plus a top-level `prompt_id`, ready for `pl.DataFrame(rows).write_parquet(...)`."""
    import polars as pl

    from space.curate.export import read_curation

    table = read_curation(curation)
    if pool == "reduced":
        table = table.filter(pl.col("selected"))
    meta = table["metadata"] if "metadata" in table.columns else pl.Series(["{}"] * table.height)
    return [{"data_source": data_source, "prompt": [{"role": "user", "content": row["question"]}],
             "ability": "reasoning", "reward_model": {"style": "rule", "ground_truth": row["answer"]},
             "extra_info": {"prompt_id": row["prompt_id"], "index": i, "metadata": m},
             "prompt_id": row["prompt_id"]}
            for i, (row, m) in enumerate(zip(table.iter_rows(named=True), meta.to_list()))]


def plain(value: Any) -> Any:
    """An omegaconf DictConfig/ListConfig as plain dicts and lists (other values unchanged)."""
    if hasattr(value, "items") and not isinstance(value, dict):
        try:
            from omegaconf import OmegaConf

            return OmegaConf.to_container(value, resolve=True)
        except ImportError:
            return {k: plain(v) for k, v in value.items()}
    return value


def __getattr__(name: str) -> Any:
    if name != "SpaceCurriculumSampler":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler as base
    except ImportError:  # verl >= 0.8 or no verl: a torch Sampler with the same methods
        from torch.utils.data import Sampler as base
    cls = type("SpaceCurriculumSampler", (VerlCurriculum, base), {"__module__": __name__,
                                                                  "__doc__": VerlCurriculum.__doc__})
    globals()[name] = cls
    return cls
