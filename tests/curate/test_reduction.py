"""Tests for space.curate.reduction: the four selection rules on hand-built point sets (method.md 2.5)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from space.curate.reduction import (
    SelectionConfig,
    get_selection,
    known_selections,
    register_selection,
    select_representatives,
)


def line_cluster(xs: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """One cluster of points on the x axis with its centroid at the origin; ids p0, p1, ... in input order."""
    f = np.array([[x, 0.0] for x in xs], dtype=np.float32)
    return f, np.zeros(len(xs), dtype=np.int64), np.zeros((1, 2), np.float32), [f"p{i}" for i in range(len(xs))]


def picked(xs: list[float], rule: str, l: int) -> set[float]:
    f, labels, cents, ids = line_cluster(xs)
    mask, _ = select_representatives(f, labels, cents, ids, SelectionConfig(per_cluster=l, selection=rule))
    return {xs[i] for i in np.flatnonzero(mask)}


XS = [-9.5, -9.0, 0.0, 9.0, 10.0, 1.0, -2.0]


def test_farthest_picks_largest_distances():
    # -9 (p1) and 9 (p3) tie at distance 9: the smaller prompt id wins
    assert picked(XS, "farthest", 3) == {10.0, -9.5, -9.0}
    assert picked(XS, "farthest", 4) == {10.0, -9.5, -9.0, 9.0}
    assert picked(XS, "farthest", 1) == {10.0}


def test_nearest_picks_smallest_distances():
    assert picked(XS, "nearest", 3) == {0.0, 1.0, -2.0}


def test_maxmin_spreads_picks():
    # start at 10 (largest r), then -9.5 (farthest from 10), then 0 (its min distance 9.5 beats 9's 1 and -9's 0.5)
    assert picked(XS, "maxmin", 3) == {10.0, -9.5, 0.0}
    assert picked(XS, "farthest", 3) == {10.0, -9.5, -9.0}  # the literal rule keeps two boundary neighbours


def test_maxmin_greedy_order():
    f, _, _, _ = line_cluster(XS)
    order = get_selection("maxmin")(f, np.abs(f[:, 0]).astype(np.float64), 4, np.random.default_rng(0))
    # 4th step: min distances are -9: 0.5, 9: 1, 1: 1, -2: 2, so -2 comes next
    assert [XS[i] for i in order] == [10.0, -9.5, 0.0, -2.0]


def test_maxmin_in_two_dimensions_prefers_uncovered_directions():
    pts = [[5.0, 0.0], [4.9, 0.1], [0.0, 4.0], [-3.0, 0.0], [4.8, -0.1]]
    f = np.array(pts, np.float32)
    ids = ["a", "b", "c", "d", "e"]
    mask, _ = select_representatives(
        f, np.zeros(5, np.int64), np.zeros((1, 2), np.float32), ids, SelectionConfig(per_cluster=3, selection="maxmin")
    )
    assert [ids[i] for i in np.flatnonzero(mask)] == ["a", "c", "d"]
    mask, _ = select_representatives(
        f,
        np.zeros(5, np.int64),
        np.zeros((1, 2), np.float32),
        ids,
        SelectionConfig(per_cluster=3, selection="farthest"),
    )
    assert [ids[i] for i in np.flatnonzero(mask)] == ["a", "b", "e"]


@pytest.mark.parametrize("rule", ["farthest", "nearest", "maxmin"])
def test_ties_broken_by_prompt_id_whatever_the_row_order(rule):
    f = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], np.float32)  # all at distance 1
    ids = np.array(["d", "b", "a", "c"])
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        mask, _ = select_representatives(
            f[perm],
            np.zeros(4, np.int64),
            np.zeros((1, 2), np.float32),
            ids[perm],
            SelectionConfig(per_cluster=1, selection=rule),
        )
        assert ids[perm][mask].tolist() == ["a"]


def multi_cluster(sizes: list[int], seed: int = 0):
    """Clusters of the given sizes around spread centroids, with shuffled ids."""
    rng = np.random.default_rng(seed)
    cents = np.arange(len(sizes), dtype=np.float32)[:, None] * np.array([[10.0, 0.0, 0.0]], np.float32)
    labels = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    f = (cents[labels] + rng.normal(size=(labels.size, 3))).astype(np.float32)
    ids = [f"id{j:03d}" for j in rng.permutation(labels.size)]
    return f, labels, cents, ids


@pytest.mark.parametrize("rule", ["farthest", "maxmin", "nearest", "random"])
def test_selects_min_of_l_and_cluster_size(rule):
    f, labels, cents, ids = multi_cluster([2, 5, 10, 1])
    mask, r = select_representatives(f, labels, cents, ids, SelectionConfig(per_cluster=4, selection=rule))
    assert mask.dtype == bool and mask.shape == (18,)
    assert np.bincount(labels[mask], minlength=4).tolist() == [2, 4, 4, 1]
    np.testing.assert_allclose(r, np.linalg.norm(f - cents[labels], axis=1), rtol=1e-6)


def test_random_is_seeded_and_order_invariant():
    f, labels, cents, ids = multi_cluster([30, 30])
    cfg = SelectionConfig(per_cluster=4, selection="random", seed=5)
    m1, _ = select_representatives(f, labels, cents, ids, cfg)
    m2, _ = select_representatives(f, labels, cents, ids, cfg)
    np.testing.assert_array_equal(m1, m2)
    other, _ = select_representatives(f, labels, cents, ids, cfg.model_copy(update={"seed": 6}))
    assert not np.array_equal(m1, other)
    perm = np.random.default_rng(1).permutation(60)
    m3, _ = select_representatives(f[perm], labels[perm], cents, [ids[i] for i in perm], cfg)
    assert sorted(np.array(ids)[m1]) == sorted(np.array(ids)[perm][m3])


def test_random_is_uniform_over_members():
    f, labels, cents, ids = multi_cluster([10])
    counts = np.zeros(10)
    trials = 2000
    for seed in range(trials):
        mask, _ = select_representatives(
            f, labels, cents, ids, SelectionConfig(per_cluster=3, selection="random", seed=seed)
        )
        counts += mask
    expected = trials * 3 / 10  # 600 each; binomial std about 20
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(trials * 0.3 * 0.7))


def test_pool_scope_draws_k_times_l_ignoring_clusters_seeded_and_order_invariant():
    f, labels, cents, ids = multi_cluster([30, 2, 28])
    cfg = SelectionConfig(per_cluster=4, selection="random", scope="pool", seed=3)
    mask, _ = select_representatives(f, labels, cents, ids, cfg)
    assert mask.sum() == 12  # K x l = 3 x 4, however the clusters are sized
    perm = np.random.default_rng(2).permutation(60)
    again, _ = select_representatives(f[perm], labels[perm], cents, [ids[i] for i in perm], cfg)
    assert sorted(np.array(ids)[mask]) == sorted(np.array(ids)[perm][again])
    counts = sum(np.bincount(labels[select_representatives(f, labels, cents, ids, cfg.model_copy(
        update={"seed": s}))[0]], minlength=3) for s in range(300))
    assert counts[1] < counts[0] / 5  # cluster sizes, not clusters, set the odds: 2 of 60 prompts
    with pytest.raises(ValueError, match="selection must be 'random'"):
        select_representatives(f, labels, cents, ids, cfg.model_copy(update={"selection": "farthest"}))


def test_registry_refuses_duplicates_and_unknown_names():
    assert known_selections() == ["farthest", "maxmin", "nearest", "random"]
    with pytest.raises(ValueError, match="'farthest' is already registered"):
        register_selection("farthest")(lambda f, r, l, rng: np.arange(l))
    with pytest.raises(KeyError, match=r"unknown selection rule 'median'; known: \['farthest', 'maxmin'"):
        get_selection("median")
    with pytest.raises(ValidationError, match="selection"):
        SelectionConfig(selection="median")


def test_bad_inputs_raise():
    f, labels, cents, ids = multi_cluster([3, 3])
    with pytest.raises(ValueError, match=r"labels must lie in 0..1"):
        select_representatives(f, labels + 1, cents[:2], ids, SelectionConfig())
    with pytest.raises(ValueError, match="not unique"):
        select_representatives(f, labels, cents[:2], ["x"] * 6, SelectionConfig())
    with pytest.raises(ValueError, match="must have shape"):
        select_representatives(f, labels[:5], cents[:2], ids, SelectionConfig())
