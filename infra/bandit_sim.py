"""Bandit policies in a stationary Bernoulli world: how much of an epoch can one arm take, and how much goes to
arms far from the target solve rate (the curriculum issue's simulation, with the real policy classes).

10 arms with fixed true solve rates 0, 1/9, ..., 1 (true learning progress 0), M = 512 slots of G = 8 rollouts,
6 epochs, 8 seeds. Per configuration: the largest share any arm got in any epoch (max over seeds, and the seed
mean), and the mean share of epochs 3-4 given to arms more than 0.1 from the target 0.5.

    .venv/bin/python infra/bandit_sim.py --out infra/results/curriculum/bandit_sim.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from space.train.bandit import BanditConfig, GroupResult, make_policy

RATES = np.arange(10) / 9
CONFIGS = {
    "ts_lp (floor 0.2, as shipped)": dict(policy="ts_lp", floor=0.2, lp_window=1),
    "ts_lp, lp_weight 0": dict(policy="ts_lp", floor=0.2, lp_window=1, lp_weight=0.0),
    "ts_lp, noise-aware LP": dict(policy="ts_lp", floor=0.2, lp_window=1, lp_noise="se"),
    "ts_lp, noise-aware LP, cap 0.25": dict(policy="ts_lp", floor=0.2, lp_window=1, lp_noise="se", max_share=0.25),
    "learnability (floor 0.2)": dict(policy="learnability", floor=0.2),
    "tempered, noise-aware LP, cap 0.25 (refill arm)": dict(policy="tempered", floor=0.2, lp_window=1,
                                                            lp_noise="se", max_share=0.25),
    "tempered, lp_weight 0, cap 0.25": dict(policy="tempered", floor=0.2, lp_window=1, lp_weight=0.0,
                                            max_share=0.25),
    "exp3 (eta 0.1, M rounds per epoch)": dict(policy="exp3"),
}


def run(cfg: BanditConfig, seed: int, epochs: int = 6, slots: int = 512, g: int = 8) -> list[np.ndarray]:
    policy = make_policy(cfg, [10] * len(RATES), seed=seed)
    rng = np.random.default_rng(1000 + seed)
    shares = []
    for t in range(epochs):
        _, arms = policy.allocate(t, slots)
        shares.append(np.bincount(arms, minlength=len(RATES)) / slots)
        groups = []
        for a in arms:
            solved = rng.random(g) < RATES[a]
            groups.append(GroupResult(int(a), tuple(solved.astype(float)), tuple(bool(s) for s in solved)))
        policy.update(groups)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    far = np.abs(RATES - 0.5) > 0.1
    lines = ["# Bandit policies with stationary arms", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| policy | largest share of an epoch, max over seeds | seed mean | share of epochs 3-4 on arms > 0.1 "
             "from target |", "|---|---|---|---|"]
    for name, kwargs in CONFIGS.items():
        runs = [run(BanditConfig(**kwargs), seed) for seed in range(8)]
        top = [max(s.max() for s in shares) for shares in runs]
        off = [np.mean([s[far].sum() for s in shares[2:4]]) for shares in runs]
        lines.append(f"| {name} | {max(top):.2f} | {np.mean(top):.2f} | {np.mean(off):.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
