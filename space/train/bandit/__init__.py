"""Bandit policies that split each epoch's prompt slots across clusters (method.md sections 3-4).

Pure numpy: each arm is a cluster of the reduced pool. A policy plans one epoch (an arm id per slot),
is told the epoch's GRPO groups once (`update`), and round-trips through a JSON-friendly state dict.

    cfg = BanditConfig(policy="learnability")
    policy = make_policy(cfg, arm_sizes=[4, 4, 4, 4], seed=0)
    p, arms = policy.allocate(epoch=0, slots=16)   # allocation probabilities, int arm id per slot
    metrics = policy.update([GroupResult(arm=2, rewards=(1.0, 0.0), solved=(True, False)), ...])

Randomness: every draw of epoch t comes from `derive_rng(seed, "bandit", t)` (space/seeding.py), so `allocate` is a pure
function of (state, seed, epoch, slots) and a policy restored from `state_dict()` plans identically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# feedback is re-exported: callers import GroupResult, group_advantages and ADV_EPS from space.train.bandit
from space.registry import Registry
from space.train.bandit.feedback import ADV_EPS, EpochStats, GroupResult, group_advantages, summarise_epoch  # noqa: F401
from space.seeding import derive_rng
from space.train.bandit.allocation import (  # noqa: F401  (re-exported: callers import them from space.train.bandit)
    apply_floor, apportion_slots, argmax_random_ties, cap_shares, draw_slots, softmax, window_difference_se,
)

_POLICIES: Registry[type[Policy]] = Registry("bandit policy")
PolicyName = _POLICIES.name_type()  # a registered policy name (the policies register below)


class BanditConfig(BaseModel):
    """Bandit parameters of method.md section 5 (CPU defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: PolicyName = Field("ts_lp", description="Registry name of the allocation policy (method.md section 4).")
    posterior: Literal["gaussian", "beta"] = Field(
        "gaussian", description="Thompson posterior: N(m_k, sigma0^2/(N_k+1)) clipped to [0,1], or Beta(a0+Y, b0+O-Y)."
    )
    sigma0: float = Field(0.5, gt=0, description="Gaussian posterior scale sigma0; the std is sigma0/sqrt(N_k+1).")
    discount: float = Field(
        0.9, gt=0, le=1, description="Per-epoch discount gamma of N, Y, O (and ucb's Q); 1 = plain running sum."
    )
    lp_window: int = Field(2, ge=1, description="Learning-progress window w over an arm's pulled-epoch solve rates.")
    lp_weight: float = Field(0.5, ge=0, le=1, description="ts_lp weight lambda of the normalised learning progress.")
    lp_mode: Literal["abs", "signed"] = Field(
        "abs", description="abs: |recent - older| mean solve rate; signed: max(0, recent - older), improvement only."
    )
    lp_noise: Literal["none", "se"] = Field(
        "none", description="none: LP as the raw window difference; se: the difference minus lp_z standard errors "
        "(binomial, from the windows' rollout counts), floored at 0, so an arm whose rate only moves by sampling "
        "noise scores ~0."
    )
    lp_z: float = Field(2.0, ge=0, description="standard errors subtracted from the LP difference (lp_noise: se).")
    max_share: float = Field(
        1.0, gt=0, le=1, description="cap on any arm's share of an epoch's slots (after the floor); below 1 the "
        "slots are apportioned to the capped probabilities (largest remainder) instead of drawn i.i.d., so no arm "
        "exceeds ceil(max_share * M) slots. Needs max_share * K >= 1; not for ucb."
    )
    temperature: float = Field(
        0.1, gt=0, description="tempered policy: p = softmax(score / temperature), score in [0, 1]."
    )
    lp_scale: float = Field(
        0.1, gt=0, description="with lp_noise se (and always in tempered): LP counts as min(1, LP / lp_scale), so "
        "a change in solve rate of lp_scale beyond the noise earns the whole lp_weight bonus."
    )
    target_solve_rate: float = Field(
        0.5, gt=0, lt=1, description="Target solve rate s* of learnability and of ts_lp's target term."
    )
    floor: float = Field(
        0.05, ge=0, lt=1, description="Exploration floor eps: p <- (1-eps)p + eps/K (all policies but uniform, exp3)."
    )
    solve_term: Literal["target", "hard"] = Field(
        "target", description="ts_lp solve term u(theta): closeness to s* (target) or 1 - theta (hard)."
    )
    bandit_reward: Literal["learnability", "hard", "lp", "abs_adv"] = Field(
        "learnability", description="Epoch reward of ucb and exp3: 4s(1-s), 1-s, LP_k, or mean |advantage|."
    )
    prior_strength: float = Field(
        0.0, ge=0, description="kappa0: Beta prior a0 = 1 + kappa0*s_ref, b0 = 1 + kappa0*(1-s_ref) from curation."
    )
    ucb_c: float = Field(0.5, ge=0, description="ucb exploration constant c.")
    exp3_eta: float = Field(0.1, gt=0, le=1, description="exp3 learning rate and uniform-mixing share eta.")
    sec_lr: float = Field(0.5, gt=0, le=1, description="sec TD(0) learning rate alpha_sec.")
    sec_temperature: float = Field(0.4, gt=0, description="sec softmax temperature tau.")


# ----------------------------------------------------------------------------------------------------------------
# registry

def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator adding a policy under `name`; a second class under the same name is refused."""

    def decorate(cls: type[Policy]) -> type[Policy]:
        _POLICIES.register(name)(cls)
        cls.name = name
        return cls

    return decorate


def registered_policies() -> list[str]:
    return _POLICIES.names()


def make_policy(
    cfg: BanditConfig,
    arm_sizes: Sequence[int],
    seed: int,
    prior_solve_rates: Sequence[float | None] | None = None,
) -> Policy:
    """Build the policy named by `cfg.policy` for arms of the given sizes (|S_k|, all > 0)."""
    return _POLICIES.get(cfg.policy)(cfg, arm_sizes, seed, prior_solve_rates)


# ----------------------------------------------------------------------------------------------------------------
# base class: discounted counts, smoothed solve rates, learning progress, plan/update/state


class Policy:
    """Common arm state (N, Y, O, history h_k) and the allocate/update/state API of every policy."""

    name: ClassVar[str] = ""
    uses_floor: ClassVar[bool] = True
    supports_cap: ClassVar[bool] = True
    state_arrays: ClassVar[tuple[str, ...]] = ()  # per-arm arrays the policy keeps beyond the shared counts

    def __init__(
        self,
        cfg: BanditConfig,
        arm_sizes: Sequence[int],
        seed: int,
        prior_solve_rates: Sequence[float | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.arm_sizes = validate_arm_sizes(arm_sizes)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.k = len(self.arm_sizes)
        self.alpha0, self.beta0 = prior_pseudo_counts(cfg.prior_strength, prior_solve_rates, self.k)
        self.N = np.zeros(self.k)
        self.Y = np.zeros(self.k)
        self.O = np.zeros(self.k)
        self.history: list[list[float]] = [[] for _ in range(self.k)]
        self.history_n: list[list[float]] = [[] for _ in range(self.k)]  # rollouts behind each history entry
        self.updates = 0
        if cfg.max_share < 1.0 and not self.supports_cap:
            raise ValueError(f"bandit max_share {cfg.max_share} < 1 is not supported by policy {cfg.policy!r}")
        if cfg.max_share < 1.0 and cfg.max_share * self.k < 1.0 - 1e-9:
            raise ValueError(f"bandit max_share {cfg.max_share} x {self.k} arms < 1: raise max_share to at least "
                             f"1/{self.k}")
        for key in self.state_arrays:  # Q (ucb, sec), log_w (exp3): zero per arm at the start
            setattr(self, key, np.zeros(self.k))

    # --- quantities of method.md section 3

    def smoothed_solve_rates(self) -> np.ndarray:
        """m_k = (Y_k + a0) / (O_k + a0 + b0)."""
        return (self.Y + self.alpha0) / (self.O + self.alpha0 + self.beta0)

    def learning_progress(self) -> np.ndarray:
        """LP_k over the pulled-epoch history h_k with window w; 0 until 2w epochs exist. With lp_noise "se" the
        difference is shrunk by lp_z of its binomial standard errors and floored at 0."""
        w = self.cfg.lp_window
        lp = np.zeros(self.k)
        for k, h in enumerate(self.history):
            if len(h) >= 2 * w:
                delta = float(np.mean(h[-w:]) - np.mean(h[-2 * w : -w]))
                size = abs(delta) if self.cfg.lp_mode == "abs" else max(0.0, delta)
                if self.cfg.lp_noise == "se":
                    size = max(0.0, size - self.cfg.lp_z * window_difference_se(h[-2 * w:], self.history_n[k][-2 * w:]))
                lp[k] = size
        return lp

    def normalised_learning_progress(self) -> np.ndarray:
        """LP in [0, 1]: divided by the largest arm's LP (lp_noise "none", method.md), or, noise-aware, by the
        fixed lp_scale (dividing a noise-shrunk LP by the largest would again hand one arm the whole bonus)."""
        lp = self.learning_progress()
        if self.cfg.lp_noise == "se":
            return np.minimum(1.0, lp / self.cfg.lp_scale)
        top = lp.max()
        return lp / top if top > 0 else np.zeros(self.k)

    # --- planning

    def allocate(self, epoch: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
        """(p, arm per slot), both from the rng seeded by (seed, epoch)."""
        rng = epoch_rng(self.seed, epoch, slots)
        p = self.raw_probabilities(rng, slots)
        if self.uses_floor:
            p = apply_floor(p, self.cfg.floor)
        if self.cfg.max_share < 1.0:
            p = cap_shares(p, self.cfg.max_share)
            return p, apportion_slots(p, slots, rng)
        return p, draw_slots(p, slots, rng)

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        raise NotImplementedError

    # --- feedback

    def update(self, groups: Sequence[GroupResult]) -> dict[str, float]:
        """Apply one epoch's groups; return metrics named `bandit/arm_03/solve_rate` etc."""
        stats = summarise_epoch(groups, self.k)
        g = self.cfg.discount
        self.N = g * self.N + stats.n
        self.Y = g * self.Y + stats.y
        self.O = g * self.O + stats.o
        for k in np.flatnonzero(stats.n > 0):
            self.history[k].append(float(stats.s_hat[k]))
            self.history_n[k].append(float(stats.o[k]))
        self.update_policy(stats)
        self.updates += 1
        return self.epoch_metrics(stats)

    def update_policy(self, stats: EpochStats) -> None:
        """Policy-specific state change after the shared counts moved (nothing for Thompson/uniform)."""

    def arm_values(self) -> np.ndarray | None:
        """Policy-specific value per arm for logging (Q, weights), or None."""
        return None

    def epoch_metrics(self, stats: EpochStats) -> dict[str, float]:
        m = self.smoothed_solve_rates()
        lp = self.learning_progress()
        values = self.arm_values()
        slots = float(stats.n.sum())
        out: dict[str, float] = {
            "bandit/solve_rate": float(stats.y.sum() / stats.o.sum()),
            "bandit/zero_std": float(np.nansum(stats.z * stats.n) / slots),
            "bandit/groups": slots,
        }
        for k in range(self.k):
            key = f"bandit/arm_{k:02d}"
            out[f"{key}/pulls"] = float(stats.n[k])
            out[f"{key}/lp"] = float(lp[k])
            out[f"{key}/smoothed_solve_rate"] = float(m[k])
            if values is not None:
                out[f"{key}/value"] = float(values[k])
            if stats.n[k] > 0:
                out[f"{key}/solve_rate"] = float(stats.s_hat[k])
                out[f"{key}/zero_std"] = float(stats.z[k])
                out[f"{key}/abs_adv"] = float(stats.a_hat[k])
        return out

    # --- persistence and logging

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists, floats, ints), including each arm's history h_k."""
        return {
            "policy": self.name,
            "seed": self.seed,
            "arm_sizes": list(self.arm_sizes),
            "alpha0": self.alpha0.tolist(),
            "beta0": self.beta0.tolist(),
            "updates": self.updates,
            "N": self.N.tolist(),
            "Y": self.Y.tolist(),
            "O": self.O.tolist(),
            "history": [list(map(float, h)) for h in self.history],
            "history_n": [list(map(float, h)) for h in self.history_n],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore from `state_dict()`; refuses a state of another policy, seed, arm layout or prior."""
        own = {"policy": self.name, "seed": self.seed, "arm_sizes": list(self.arm_sizes)}
        for key, value in own.items():
            if d[key] != value:
                raise ValueError(f"state_dict[{key!r}] = {d[key]!r} does not match this policy's {value!r}")
        for key in ("alpha0", "beta0"):
            if not np.allclose(d[key], getattr(self, key)):
                raise ValueError(f"state_dict[{key!r}] does not match this policy's prior (prior_solve_rates differ)")
        self.updates = int(d["updates"])
        self.N, self.Y, self.O = (np.asarray(d[key], dtype=float) for key in ("N", "Y", "O"))
        self.history = [list(map(float, h)) for h in d["history"]]
        # states written before history_n existed: unknown counts, so a noise-aware LP stays 0 for those epochs
        self.history_n = [list(map(float, h)) for h in d.get("history_n", [[0.0] * len(h) for h in self.history])]
        self.load_extra_state(d["extra"])

    def extra_state(self) -> dict[str, Any]:
        """The policy's own per-arm arrays (named in `state_arrays`), as lists."""
        return {key: getattr(self, key).tolist() for key in self.state_arrays}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        if not self.state_arrays and extra:
            raise ValueError(f"unexpected extra state keys for policy {self.name!r}: {sorted(extra)}")
        for key in self.state_arrays:
            setattr(self, key, np.asarray(extra[key], dtype=float))

    def arm_table(self) -> list[dict[str, Any]]:
        """One row per arm for logging tables."""
        m, lp, values = self.smoothed_solve_rates(), self.learning_progress(), self.arm_values()
        lp_norm = self.normalised_learning_progress()
        rows = []
        for k in range(self.k):
            row = {
                "arm": k,
                "size": self.arm_sizes[k],
                "pulls_discounted": float(self.N[k]),
                "rollouts_discounted": float(self.O[k]),
                "solved_discounted": float(self.Y[k]),
                "smoothed_solve_rate": float(m[k]),
                "lp": float(lp[k]),
                "lp_norm": float(lp_norm[k]),
                "epochs_pulled": len(self.history[k]),
                "last_solve_rate": self.history[k][-1] if self.history[k] else None,
            }
            if values is not None:
                row["value"] = float(values[k])
            rows.append(row)
        return rows


def validate_arm_sizes(arm_sizes: Sequence[int]) -> list[int]:
    sizes = [int(s) for s in arm_sizes]
    if not sizes:
        raise ValueError("arm_sizes is empty: a bandit needs at least one arm")
    for k, s in enumerate(sizes):
        if s <= 0:
            raise ValueError(f"arm_sizes[{k}] = {s}: every arm needs at least one prompt (drop empty clusters)")
    return sizes


def prior_pseudo_counts(
    kappa0: float, prior_solve_rates: Sequence[float | None] | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """a0 = 1 + kappa0 * s_ref, b0 = 1 + kappa0 * (1 - s_ref); a0 = b0 = 1 without a prior, and for an arm
    whose s_ref is None (unknown is no prior, not "never solved")."""
    if prior_solve_rates is None:
        if kappa0 > 0:
            raise ValueError(f"prior_strength = {kappa0} > 0 needs prior_solve_rates")
        return np.ones(k), np.ones(k)
    if len(prior_solve_rates) != k:
        raise ValueError(f"prior_solve_rates has {len(prior_solve_rates)} values for {k} arms")
    known = np.array([r is not None for r in prior_solve_rates])
    s = np.array([0.0 if r is None else float(r) for r in prior_solve_rates])
    bad = np.flatnonzero(~((s >= 0) & (s <= 1)))
    if bad.size:
        raise ValueError(f"prior_solve_rates[{bad[0]}] = {s[bad[0]]} is outside [0, 1]")
    weight = np.where(known, kappa0, 0.0)
    return 1.0 + weight * s, 1.0 + weight * (1.0 - s)


def epoch_rng(seed: int, epoch: int, slots: int) -> np.random.Generator:
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    return derive_rng(seed, "bandit", epoch)


# The policies register themselves on import.
import space.train.bandit.policies  # noqa: E402,F401
