"""Bandit policies that split each epoch's prompt slots across clusters (method.md sections 3-4).

Pure numpy: each arm is a cluster of the reduced pool. A policy plans one epoch (an arm id per slot),
is told the epoch's GRPO groups once (`update`), and round-trips through a JSON-friendly state dict.

    cfg = BanditConfig(policy="learnability")
    policy = make_policy(cfg, arm_sizes=[4, 4, 4, 4], seed=0)
    arms = policy.plan(epoch=0, slots=16)          # int arm id per slot
    metrics = policy.update([GroupResult(arm=2, rewards=(1.0, 0.0), solved=(True, False)), ...])

Randomness: every draw of epoch t comes from `derive_rng(seed, "bandit", t)` (space/seeding.py), so `plan` is a pure
function of (state, seed, epoch, slots) and a policy restored from `state_dict()` plans identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from space.seeding import derive_rng

PolicyName = Literal["ts_hard", "ts_lp", "learnability", "ucb", "exp3", "sec", "uniform"]
ADV_EPS = 1e-4  # TRL GRPOTrainer: advantages / (std_rewards + 1e-4)


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


@dataclass(frozen=True)
class GroupResult:
    """One prompt's GRPO group: its arm, the G verifier scores and whether each rollout solved it."""

    arm: int
    rewards: tuple[float, ...]
    solved: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.rewards) != len(self.solved):
            raise ValueError(f"GroupResult(arm={self.arm}): {len(self.rewards)} rewards but {len(self.solved)} solved")
        if len(self.rewards) < 2:
            raise ValueError(f"GroupResult(arm={self.arm}): a group needs >= 2 rollouts, got {len(self.rewards)}")
        if not all(math.isfinite(r) for r in self.rewards):
            raise ValueError(f"GroupResult(arm={self.arm}): non-finite reward in {self.rewards}")


def group_advantages(rewards: Sequence[float]) -> np.ndarray:
    """GRPO advantages of one group, scaled as TRL's GRPOTrainer does (scale_rewards="group").

    TRL divides by `nanstd`, which applies Bessel's correction (unbiased sample std, like torch.std),
    so we use ddof=1 here, plus the same eps of 1e-4.
    """
    r = np.asarray(rewards, dtype=float)
    return (r - r.mean()) / (r.std(ddof=1) + ADV_EPS)


@dataclass(frozen=True)
class EpochStats:
    """Per-arm feedback of one epoch (arrays of length K; NaN rates for arms not pulled)."""

    n: np.ndarray  # prompts (groups) per arm
    o: np.ndarray  # rollouts per arm
    y: np.ndarray  # solved rollouts per arm
    s_hat: np.ndarray  # y / o
    z: np.ndarray  # share of the arm's groups whose rewards are all equal
    a_hat: np.ndarray  # mean |A| over the arm's rollouts
    group_arm: np.ndarray  # per group: arm id
    group_solve: np.ndarray  # per group: solved share
    group_abs_adv: np.ndarray  # per group: mean |A|


def summarise_epoch(groups: Sequence[GroupResult], num_arms: int) -> EpochStats:
    """Count n_k, o_k, y_k and compute s_hat_k, z_k, a_hat_k from the epoch's groups."""
    if not groups:
        raise ValueError("update needs at least one GroupResult")
    for j, g in enumerate(groups):
        if not 0 <= g.arm < num_arms:
            raise ValueError(f"groups[{j}].arm = {g.arm} is outside 0..{num_arms - 1}")
    arm = np.array([g.arm for g in groups], dtype=np.int64)
    size = np.array([len(g.rewards) for g in groups], dtype=float)
    solved = np.array([sum(bool(s) for s in g.solved) for g in groups], dtype=float)
    stds = np.array([np.std(g.rewards, ddof=1) for g in groups])
    abs_adv_sum = np.array([np.abs(group_advantages(g.rewards)).sum() for g in groups])
    zero = np.isclose(stds, 0.0).astype(float)  # TRL's frac_reward_zero_std uses torch.isclose(std, 0)
    n = np.bincount(arm, minlength=num_arms).astype(float)
    o = np.bincount(arm, weights=size, minlength=num_arms)
    y = np.bincount(arm, weights=solved, minlength=num_arms)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_hat = y / o
        z = np.bincount(arm, weights=zero, minlength=num_arms) / n
        a_hat = np.bincount(arm, weights=abs_adv_sum, minlength=num_arms) / o
    return EpochStats(n, o, y, s_hat, z, a_hat, arm, solved / size, abs_adv_sum / size)


def draw_slots(p: np.ndarray, slots: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `slots` arm ids i.i.d. from Categorical(p); arms with p = 0 are never drawn."""
    p = np.asarray(p, dtype=float)
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"p must be a probability vector, got {p}")
    return rng.choice(len(p), size=slots, p=p / p.sum()).astype(np.int64)


def argmax_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of a (rows, K) array, ties broken uniformly at random (clipping makes ties common)."""
    best = scores == scores.max(axis=1, keepdims=True)
    return np.argmax(best * (1.0 + rng.random(scores.shape)), axis=1)


def apply_floor(p: np.ndarray, floor: float) -> np.ndarray:
    """Exploration floor: p <- (1 - eps) p + eps / K."""
    return (1.0 - floor) * p + floor / len(p)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# ----------------------------------------------------------------------------------------------------------------
# registry

_POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator adding a policy under `name`; a second class under the same name is refused."""

    def decorate(cls: type[Policy]) -> type[Policy]:
        if name in _POLICIES:
            raise ValueError(f"bandit policy {name!r} is already registered ({_POLICIES[name].__name__})")
        cls.name = name
        _POLICIES[name] = cls
        return cls

    return decorate


def registered_policies() -> list[str]:
    return sorted(_POLICIES)


def make_policy(
    cfg: BanditConfig,
    arm_sizes: Sequence[int],
    seed: int,
    prior_solve_rates: Sequence[float | None] | None = None,
) -> Policy:
    """Build the policy named by `cfg.policy` for arms of the given sizes (|S_k|, all > 0)."""
    if cfg.policy not in _POLICIES:
        raise KeyError(f"unknown bandit policy {cfg.policy!r}; known: {registered_policies()}")
    return _POLICIES[cfg.policy](cfg, arm_sizes, seed, prior_solve_rates)


# ----------------------------------------------------------------------------------------------------------------
# base class: discounted counts, smoothed solve rates, learning progress, plan/update/state


class Policy:
    """Common arm state (N, Y, O, history h_k) and the plan/update/state API of every policy."""

    name: ClassVar[str] = ""
    uses_floor: ClassVar[bool] = True

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
        self.updates = 0

    # --- quantities of method.md section 3

    def smoothed_solve_rates(self) -> np.ndarray:
        """m_k = (Y_k + a0) / (O_k + a0 + b0)."""
        return (self.Y + self.alpha0) / (self.O + self.alpha0 + self.beta0)

    def learning_progress(self) -> np.ndarray:
        """LP_k over the pulled-epoch history h_k with window w; 0 until 2w epochs exist."""
        w = self.cfg.lp_window
        lp = np.zeros(self.k)
        for k, h in enumerate(self.history):
            if len(h) >= 2 * w:
                delta = float(np.mean(h[-w:]) - np.mean(h[-2 * w : -w]))
                lp[k] = abs(delta) if self.cfg.lp_mode == "abs" else max(0.0, delta)
        return lp

    def normalised_learning_progress(self) -> np.ndarray:
        lp = self.learning_progress()
        top = lp.max()
        return lp / top if top > 0 else np.zeros(self.k)

    # --- planning

    def plan(self, epoch: int, slots: int) -> np.ndarray:
        """Arm id per slot for this epoch (length `slots`)."""
        return self.allocate(epoch, slots)[1]

    def probabilities(self, epoch: int, slots: int) -> np.ndarray:
        """The p^(t) that `plan(epoch, slots)` draws from (floor applied)."""
        return self.allocate(epoch, slots)[0]

    def allocate(self, epoch: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
        """(p, arm per slot), both from the rng seeded by (seed, epoch)."""
        rng = epoch_rng(self.seed, epoch, slots)
        p = self.raw_probabilities(rng, slots)
        if self.uses_floor:
            p = apply_floor(p, self.cfg.floor)
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
        self.load_extra_state(d["extra"])

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        if extra:
            raise ValueError(f"unexpected extra state keys for policy {self.name!r}: {sorted(extra)}")

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


# ----------------------------------------------------------------------------------------------------------------
# Thompson family: p = win frequency of argmax score over `slots` independent posterior samples


class ThompsonPolicy(Policy):
    def sample_posterior(self, rng: np.random.Generator, draws: int) -> np.ndarray:
        """(draws, K) solve-rate samples theta~."""
        if self.cfg.posterior == "gaussian":
            std = self.cfg.sigma0 / np.sqrt(self.N + 1.0)
            theta = self.smoothed_solve_rates() + std * rng.standard_normal((draws, self.k))
            return np.clip(theta, 0.0, 1.0)
        a = self.alpha0 + self.Y
        b = self.beta0 + np.maximum(self.O - self.Y, 0.0)
        return rng.beta(a, b, size=(draws, self.k))

    def score(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        winners = argmax_random_ties(self.score(self.sample_posterior(rng, slots)), rng)
        return np.bincount(winners, minlength=self.k) / slots


def target_closeness(theta: np.ndarray, target: float) -> np.ndarray:
    """u(theta) = 1 - |theta - s*| / max(s*, 1 - s*), in [0, 1] with 1 at the target."""
    return 1.0 - np.abs(theta - target) / max(target, 1.0 - target)


@register_policy("ts_hard")
class HardThompson(ThompsonPolicy):
    """Paper v1: Gaussian TS on the negated solve rate, hard clusters first."""

    def score(self, theta: np.ndarray) -> np.ndarray:
        return 1.0 - theta


@register_policy("ts_lp")
class LearningProgressThompson(ThompsonPolicy):
    """(1 - lambda) u(theta~) + lambda LP^_k, u = closeness to s* (target) or 1 - theta (hard)."""

    def score(self, theta: np.ndarray) -> np.ndarray:
        if self.cfg.solve_term == "target":
            u = target_closeness(theta, self.cfg.target_solve_rate)
        else:
            u = 1.0 - theta
        lam = self.cfg.lp_weight
        return (1.0 - lam) * u + lam * self.normalised_learning_progress()


@register_policy("learnability")
class LearnabilityThompson(ThompsonPolicy):
    """-|theta~ - s*|: clusters nearest the solve rate where a binary group's variance peaks."""

    def score(self, theta: np.ndarray) -> np.ndarray:
        return -np.abs(theta - self.cfg.target_solve_rate)


# ----------------------------------------------------------------------------------------------------------------
# reward-driven policies


def bandit_reward(kind: str, solve_rate: np.ndarray, abs_adv: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """Reward rho of `bandit_reward`: learnability 4s(1-s), hard 1-s, lp LP_k, abs_adv mean |A|.

    Called per arm (ucb: the epoch's s_hat_k, a_hat_k) or per slot (exp3: the slot's own group).
    """
    if kind == "learnability":
        return 4.0 * solve_rate * (1.0 - solve_rate)
    if kind == "hard":
        return 1.0 - solve_rate
    if kind == "lp":
        return lp
    if kind == "abs_adv":
        return abs_adv
    raise KeyError(f"unknown bandit_reward {kind!r}; known: ['abs_adv', 'hard', 'learnability', 'lp']")


def reserved_slots(floor: float, slots: int, epoch: int) -> tuple[int, int]:
    """(first round-robin position, number) of the exploration slots reserved in `epoch`: the running total
    floor(eps * slots * t) is spread over epochs, so a fractional eps * slots (0.4 at M = 8) is not rounded
    away to 0 every epoch."""
    total = lambda t: math.floor(floor * slots * t + 1e-9)  # noqa: E731
    return total(epoch), min(slots, total(epoch + 1) - total(epoch))


@register_policy("ucb")
class BatchedUCB(Policy):
    """Batched discounted UCB1 with virtual pulls.

    Slots are assigned one at a time to argmax Q_k/N_k + c sqrt(ln sum_j N'_j / N'_k), with N' = N plus this
    epoch's assignments so far (virtual pulls shrink an arm's bonus but leave its mean estimate alone; an arm
    never pulled has mean 0 and is served first). Project reading of the floor for this deterministic
    allocator: eps * slots slots per epoch are reserved round-robin over the arms, carried over between epochs
    when fractional (`reserved_slots`: at M = 8, eps = 0.05, two slots every five epochs), so each arm keeps a
    long-run share of eps/K. `probabilities` returns the realised shares.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.Q = np.zeros(self.k)

    def allocate(self, epoch: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
        rng = epoch_rng(self.seed, epoch, slots)
        start, reserved = reserved_slots(self.cfg.floor, slots, epoch)
        arms = [(start + i) % self.k for i in range(reserved)]
        virtual = np.bincount(arms, minlength=self.k).astype(float)
        for _ in range(slots - reserved):
            k = int(argmax_random_ties(self.ucb_index(virtual)[None, :], rng)[0])
            arms.append(k)
            virtual[k] += 1.0
        arms_arr = rng.permutation(np.asarray(arms, dtype=np.int64))  # mix arms across the epoch's batches
        return np.bincount(arms_arr, minlength=self.k) / slots, arms_arr

    def ucb_index(self, virtual: np.ndarray) -> np.ndarray:
        pulls = self.N + virtual
        unpulled = pulls == 0
        if unpulled.any():
            return np.where(unpulled, np.inf, -np.inf)
        mean = np.divide(self.Q, self.N, out=np.zeros(self.k), where=self.N > 0)
        return mean + self.cfg.ucb_c * np.sqrt(math.log(max(pulls.sum(), 1.0)) / pulls)

    def update_policy(self, stats: EpochStats) -> None:
        rho = bandit_reward(self.cfg.bandit_reward, stats.s_hat, stats.a_hat, self.learning_progress())
        rho = np.where(stats.n > 0, rho, 0.0)  # unpulled arms (NaN rates) only decay
        self.Q = self.cfg.discount * self.Q + stats.n * rho

    def arm_values(self) -> np.ndarray:
        return np.divide(self.Q, self.N, out=np.zeros(self.k), where=self.N > 0)

    def extra_state(self) -> dict[str, Any]:
        return {"Q": self.Q.tolist()}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.Q = np.asarray(extra["Q"], dtype=float)


@register_policy("exp3")
class Exp3(Policy):
    """p_k = (1 - eta) w_k / sum w + eta/K; importance-weighted slot rewards; log-space weights."""

    uses_floor = False  # the eta/K mixing replaces the floor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_w = np.zeros(self.k)

    def mixture(self) -> np.ndarray:
        eta = self.cfg.exp3_eta
        return (1.0 - eta) * softmax(self.log_w) + eta / self.k

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        return self.mixture()

    def update_policy(self, stats: EpochStats) -> None:
        # The weights have not moved since plan(), so mixture() is the p the slots were drawn from.
        p = self.mixture()
        lp = self.learning_progress()[stats.group_arm]
        rho = bandit_reward(self.cfg.bandit_reward, stats.group_solve, stats.group_abs_adv, lp)
        slots = len(stats.group_arm)
        rho_hat = np.bincount(stats.group_arm, weights=rho, minlength=self.k) / (slots * p)
        self.log_w = self.log_w + self.cfg.exp3_eta * rho_hat / self.k
        self.log_w -= self.log_w.max()  # keep the log weights bounded; p is unchanged

    def arm_values(self) -> np.ndarray:
        return self.log_w

    def extra_state(self) -> dict[str, Any]:
        return {"log_w": self.log_w.tolist()}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.log_w = np.asarray(extra["log_w"], dtype=float)


@register_policy("sec")
class SelfEvolvingCurriculum(Policy):
    """SEC (arXiv 2505.14970): TD(0) on the mean |advantage| of pulled arms, p = softmax(Q / tau)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.Q = np.zeros(self.k)

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        return softmax(self.Q / self.cfg.sec_temperature)

    def update_policy(self, stats: EpochStats) -> None:
        pulled = stats.n > 0
        self.Q[pulled] += self.cfg.sec_lr * (stats.a_hat[pulled] - self.Q[pulled])

    def arm_values(self) -> np.ndarray:
        return self.Q

    def extra_state(self) -> dict[str, Any]:
        return {"Q": self.Q.tolist()}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.Q = np.asarray(extra["Q"], dtype=float)


@register_policy("uniform")
class Uniform(Policy):
    """Baseline: p_k = |S_k| / |P|, every prompt of the pool equally likely (plain GRPO on the pool)."""

    uses_floor = False

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        sizes = np.asarray(self.arm_sizes, dtype=float)
        return sizes / sizes.sum()
