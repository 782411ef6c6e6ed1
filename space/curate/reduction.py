"""Representative prompts per cluster (method.md 2.5): the reduced pool P = union of S_k.

S_k is a subset of cluster C_k with |S_k| = min(l, |C_k|); r_i = ||f_i - mu_k|| is the distance to the own
centroid; ties are broken by prompt id (ascending). Rules, by registry name:

    farthest  the l members with the largest r_i (default; the paper's "farthest")
    maxmin    greedy farthest-point: start at argmax r_i, then add argmax_{i not in S} min_{j in S} ||f_i - f_j||
    nearest   the l members with the smallest r_i (prototypes)
    random    l members uniformly without replacement, seeded by (seed, cluster) via space/seeding.py

`scope: pool` (with `random` only) draws K x l prompts uniformly from the whole pool instead, ignoring the
clusters: the plain random control (a cluster may then get more or fewer than l, or none).

    mask, distances = select_representatives(features, labels, centroids, prompt_ids, SelectionConfig())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from space.registry import Registry
from space.seeding import derive_rng, derive_seed

# A rule gets one cluster's members, already sorted by prompt id: features (n, d), distances r (n,), the
# number to keep and a generator; it returns the chosen positions (into the sorted members).
SelectionRule = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]

_RULES: Registry[SelectionRule] = Registry("selection rule")
RuleName = _RULES.name_type()  # a registered selection rule name


def register_selection(name: str) -> Callable[[SelectionRule], SelectionRule]:
    """Decorator adding a selection rule under `name`; a second rule under the same name is refused."""
    return _RULES.register(name)


def get_selection(name: str) -> SelectionRule:
    """The rule registered under `name`; unknown names fail with the list of known ones."""
    return _RULES.get(name)


def known_selections() -> list[str]:
    """Registered selection rule names, sorted."""
    return _RULES.names()


class SelectionConfig(BaseModel):
    """Which prompts of each cluster are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_cluster: int = Field(
        4, ge=1, description="l, representatives kept per cluster (fewer if the cluster is smaller)."
    )
    selection: RuleName = Field(
        "farthest", description="Selection rule name (see space.curate.reduction)."
    )
    scope: Literal["cluster", "pool"] = Field(
        "cluster", description="cluster: l per cluster; pool: K x l uniformly from the whole pool (the plain "
        "random control; needs selection 'random')")
    seed: int | None = Field(
        None, ge=0, description="Seed of the 'random' rule; cluster k draws from derive_rng(seed, 'selection', k). "
        "None = derived from the recipe seed (Recipe.resolved), so each run seed draws another random subset; "
        "outside a recipe, from seed 0."
    )


def selection_seed(cfg: SelectionConfig, run_seed: int = 0) -> int:
    """cfg.seed when set, else the one derived from the run seed (0 when used outside a recipe)."""
    return cfg.seed if cfg.seed is not None else derive_seed(run_seed, "selection")


@register_selection("farthest")
def select_farthest(feats: np.ndarray, r: np.ndarray, l: int, rng: np.random.Generator) -> np.ndarray:
    """The l largest distances; members arrive id-sorted and the stable sort keeps that order on ties."""
    return np.argsort(-r, kind="stable")[:l]


@register_selection("nearest")
def select_nearest(feats: np.ndarray, r: np.ndarray, l: int, rng: np.random.Generator) -> np.ndarray:
    """The l smallest distances, ties by prompt id."""
    return np.argsort(r, kind="stable")[:l]


@register_selection("maxmin")
def select_maxmin(feats: np.ndarray, r: np.ndarray, l: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy farthest-point traversal from the member farthest from the centroid; argmax takes the first
    (smallest id) on ties."""
    x = feats.astype(np.float64)
    chosen = [int(np.argmax(r))]
    min_dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    min_dist[chosen[0]] = -np.inf
    while len(chosen) < l:
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, np.linalg.norm(x - x[nxt], axis=1))
        min_dist[chosen] = -np.inf
    return np.array(chosen, dtype=np.int64)


@register_selection("random")
def select_random(feats: np.ndarray, r: np.ndarray, l: int, rng: np.random.Generator) -> np.ndarray:
    """l members uniformly without replacement (from the id-sorted list, so input order does not matter)."""
    return rng.choice(r.shape[0], size=l, replace=False)


def centroid_distances(features: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """r_i = ||f_i - mu_{g_i}|| in float64."""
    diff = features.astype(np.float64) - centroids.astype(np.float64)[labels]
    return np.linalg.norm(diff, axis=1)


def check_inputs(features: np.ndarray, labels: np.ndarray, centroids: np.ndarray, ids: np.ndarray) -> None:
    """Shapes agree, labels index centroids, ids are unique."""
    n = features.shape[0]
    if features.ndim != 2 or centroids.ndim != 2 or features.shape[1] != centroids.shape[1]:
        raise ValueError(f"features {features.shape} and centroids {centroids.shape} must be 2-D of equal width")
    if labels.shape != (n,) or ids.shape != (n,):
        raise ValueError(f"labels {labels.shape} and prompt_ids {ids.shape} must have shape ({n},)")
    if n and (labels.min() < 0 or labels.max() >= centroids.shape[0]):
        raise ValueError(f"labels must lie in 0..{centroids.shape[0] - 1}, got {labels.min()}..{labels.max()}")
    if np.unique(ids).size != n:
        raise ValueError("prompt_ids are not unique")


def select_representatives(
    features: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    prompt_ids: Sequence[str],
    cfg: SelectionConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(selected bool mask (N,), distance to own centroid float64 (N,)) with min(l, |C_k|) picks per cluster."""
    features = np.asarray(features)
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(list(prompt_ids), dtype=str)
    centroids = np.asarray(centroids)
    check_inputs(features, labels, centroids, ids)
    r = centroid_distances(features, labels, centroids)
    if cfg.scope == "pool":
        return select_from_pool(ids, centroids.shape[0] * cfg.per_cluster, cfg), r
    rule = get_selection(cfg.selection)
    mask = np.zeros(features.shape[0], dtype=bool)
    for k in range(centroids.shape[0]):
        members = np.flatnonzero(labels == k)
        if members.size == 0:
            continue
        members = members[np.argsort(ids[members], kind="stable")]
        l = min(cfg.per_cluster, members.size)
        picks = rule(features[members], r[members], l, derive_rng(selection_seed(cfg), "selection", k))
        if len(picks) != l or np.unique(picks).size != l:
            raise RuntimeError(
                f"selection rule {cfg.selection!r} returned {len(picks)} picks ({np.unique(picks).size} distinct) "
                f"for cluster {k}, expected {l}"
            )
        mask[members[picks]] = True
    return mask, r


def select_from_pool(ids: np.ndarray, size: int, cfg: SelectionConfig) -> np.ndarray:
    """min(size, N) prompts uniformly from the whole pool, in id order before the draw, seeded by (seed, 'pool')."""
    if cfg.selection != "random":
        raise ValueError(f"selection scope 'pool' draws at random; selection must be 'random', got {cfg.selection!r}")
    order = np.argsort(ids, kind="stable")
    picks = derive_rng(selection_seed(cfg), "selection", "pool").choice(ids.size, size=min(size, ids.size),
                                                                        replace=False)
    mask = np.zeros(ids.size, dtype=bool)
    mask[order[picks]] = True
    return mask
