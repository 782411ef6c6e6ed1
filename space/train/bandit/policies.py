"""The registered allocation policies: the Thompson family, batched UCB, EXP3, SEC and uniform (method.md 4)."""

from __future__ import annotations

import math
import numpy as np

from space.train.bandit import Policy, argmax_random_ties, epoch_rng, register_policy, softmax
from space.train.bandit.feedback import EpochStats


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


@register_policy("tempered")
class TemperedPolicy(Policy):
    """p = softmax(((1 - lambda) u(m_k) + lambda min(1, LP_k / lp_scale)) / tau), then the floor and the cap.

    u = closeness of the smoothed solve rate m_k to s* (in [0, 1]); LP_k is scaled by a fixed lp_scale, not by
    the largest arm's LP (which handed the whole bonus to the noisiest arm), and is noise-aware when lp_noise
    is "se". Deterministic given the state: no posterior draw, so the allocation moves only when
    the evidence moves, and with a temperature and a cap it cannot put an epoch on one arm.
    """

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        return softmax(self.scores() / self.cfg.temperature)

    def scores(self) -> np.ndarray:
        u = target_closeness(self.smoothed_solve_rates(), self.cfg.target_solve_rate)
        lam = self.cfg.lp_weight
        return (1.0 - lam) * u + lam * np.minimum(1.0, self.learning_progress() / self.cfg.lp_scale)

    def arm_values(self) -> np.ndarray:
        return self.scores()


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

    state_arrays = ("Q",)  # the base class starts it at zero per arm
    Q: np.ndarray
    supports_cap = False  # a deterministic slot-by-slot allocator: max_share does not apply

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


@register_policy("exp3")
class Exp3(Policy):
    """p_k = (1 - eta) w_k / sum w + eta/K; importance-weighted slot rewards; log-space weights.

    An epoch's M slots count as M rounds of EXP3: log w_k += eta/K * sum over the arm's slots of rho / p_k. (Earlier
    versions divided the sum by M, so the weights moved by at most eta/K per epoch and the allocation
    stayed uniform at the budgets we ran.)"""

    state_arrays = ("log_w",)  # the base class starts it at zero per arm
    log_w: np.ndarray

    uses_floor = False  # the eta/K mixing replaces the floor

    def mixture(self) -> np.ndarray:
        eta = self.cfg.exp3_eta
        return (1.0 - eta) * softmax(self.log_w) + eta / self.k

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        return self.mixture()

    def update_policy(self, stats: EpochStats) -> None:
        # The weights have not moved since allocate(), so mixture() is the p the slots were drawn from.
        p = self.mixture()
        lp = self.learning_progress()[stats.group_arm]
        rho = bandit_reward(self.cfg.bandit_reward, stats.group_solve, stats.group_abs_adv, lp)
        rho_hat = np.bincount(stats.group_arm, weights=rho, minlength=self.k) / p
        self.log_w = self.log_w + self.cfg.exp3_eta * rho_hat / self.k
        self.log_w -= self.log_w.max()  # keep the log weights bounded; p is unchanged

    def arm_values(self) -> np.ndarray:
        return self.log_w


@register_policy("sec")
class SelfEvolvingCurriculum(Policy):
    """SEC (arXiv 2505.14970): TD(0) on the mean |advantage| of pulled arms, p = softmax(Q / tau)."""

    state_arrays = ("Q",)  # the base class starts it at zero per arm
    Q: np.ndarray

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        return softmax(self.Q / self.cfg.sec_temperature)

    def update_policy(self, stats: EpochStats) -> None:
        pulled = stats.n > 0
        self.Q[pulled] += self.cfg.sec_lr * (stats.a_hat[pulled] - self.Q[pulled])

    def arm_values(self) -> np.ndarray:
        return self.Q


@register_policy("uniform")
class Uniform(Policy):
    """Baseline: p_k = |S_k| / |P|, every prompt of the pool equally likely (plain GRPO on the pool)."""

    uses_floor = False

    def raw_probabilities(self, rng: np.random.Generator, slots: int) -> np.ndarray:
        sizes = np.asarray(self.arm_sizes, dtype=float)
        return sizes / sizes.sum()
