"""Same results before and after a refactoring: one JSON document of what the method computes, to diff.

Bandit allocations, metrics and states of every policy over six epochs of a seeded Bernoulli world; k-means
labels and the four selection rules' picks on seeded features; two `run_epoch` epochs (ts_lp and ucb) on a
tiny random Llama: slot orders, arms, probabilities, metrics (timings left out), completions, bandit state.
Run it with each tree first on the path and compare the outputs (a code-only change must print the same):

    PYTHONPATH=/path/to/old/tree python infra/same_results.py /tmp/old-work > before.json
    PYTHONPATH=$PWD python infra/same_results.py /tmp/new-work > after.json
    python -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); a.pop('space'); b.pop('space'); print(a == b)" before.json after.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # conftest_models
import space
from space.train.bandit import BanditConfig, GroupResult, make_policy
from space.config import TrainConfig, VerifierConfig, load_recipe
from space.curate.clustering import cluster_features
from space.curate.reduction import select_representatives, SelectionConfig
from space.train.epoch import run_epoch
from space.train.grpo import GRPOSettings
from conftest_models import make_tiny_model_dir

out = {"space": space.__file__}
rates = [0.1, 0.5, 0.8, 0.3]
for name in ["ts_hard", "ts_lp", "learnability", "ucb", "exp3", "sec", "uniform"]:
    policy = make_policy(BanditConfig(policy=name), [3, 4, 5, 6], seed=7, prior_solve_rates=[0.2, None, 0.5, 0.9])
    rng = np.random.default_rng(1)
    rows = []
    for t in range(6):
        p, arms = policy.allocate(t, 16)
        draws = [rng.random(4) < rates[a] for a in arms]  # G = 4 Bernoulli rollouts per slot
        groups = [GroupResult(int(a), tuple(float(x) for x in d), tuple(bool(x) for x in d)) for a, d in zip(arms, draws)]
        m = policy.update(groups)
        rows.append({"p": [round(float(x), 12) for x in p], "arms": arms.tolist(), "metrics": {k: round(v, 12) for k, v in sorted(m.items())}})
    out[name] = rows
    out[f"{name}_state"] = policy.state_dict()

feats = np.random.default_rng(3).normal(size=(60, 8)).astype(np.float32)
recipe = load_recipe("builtin", ["curate.clusters.num_clusters=4", "curate.selection.per_cluster=3"])
labels, centroids = cluster_features(feats, recipe.curate.clusters)[:2]
for rule in ["farthest", "maxmin", "nearest", "random"]:
    mask, _ = select_representatives(feats, labels, centroids, [f"p{i}" for i in range(60)],
                                     SelectionConfig(per_cluster=3, selection=rule, seed=5))
    out[f"select_{rule}"] = np.flatnonzero(mask).tolist()
out["labels"] = np.asarray(labels).tolist()

ROWS = [("1+1=", "2", 0), ("2+2=", "4", 0), ("3+4=", "7", 1), ("5-1=", "4", 1), ("9-3=", "6", 1)]
table = pl.DataFrame({"prompt": [f"Q: {q}\nA: " for q, _, _ in ROWS], "prompt_id": [f"p{i}" for i in range(5)],
                      "cluster": [c for _, _, c in ROWS], "answer": [a for _, a, _ in ROWS], "metadata": ["{}"] * 5})
ARMS = [{"cluster": 0, "ref_solve_rate": 0.5}, {"cluster": 1, "ref_solve_rate": None}]
root = Path(sys.argv[1])
base = make_tiny_model_dir(root / "tiny")
for policy in ["ts_lp", "ucb"]:
    cfg = TrainConfig(epochs=2, slots_per_epoch=4, bandit=BanditConfig(policy=policy),
                      grpo=GRPOSettings(prompts_per_step=2, num_generations=4, max_completion_length=8))
    state, ckpt = None, None
    for epoch in range(2):
        o = run_epoch(table, ARMS, cfg, VerifierConfig(name="exact", extract="none"), base, seed=3, epoch=epoch,
                      checkpoint_in=ckpt, state_in=state, checkpoint_out=root / f"{policy}{epoch}")
        state, ckpt = json.loads(json.dumps(o.state)), o.checkpoint_out
        out[f"epoch_{policy}_{epoch}"] = {"order": o.order, "arms": o.arms, "p": o.probabilities,
            "metrics": {k: v for k, v in sorted(o.metrics.items()) if "seconds" not in k and "runtime" not in k and "per_second" not in k},
            "completions": o.rollouts["completion"].to_list(), "state": o.state}
print(json.dumps(out, sort_keys=True, default=str))
