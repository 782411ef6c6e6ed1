"""Tests for space.curate.clustering with real faiss, including a quality check on embedded reasoning-gym prompts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from space.curate.clustering import ClusterConfig, cluster_features, faiss_has_gpu


def blobs(n_per: int, centers: np.ndarray, scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around `centers`: (points float32, true labels)."""
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.normal(c, scale, size=(n_per, centers.shape[1])) for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(len(centers)), n_per)


CENTERS = np.array([[0, 0, 0], [12, 0, 0], [0, 12, 0], [0, 0, 12]], dtype=np.float64)


def test_every_point_in_exactly_one_nonempty_cluster():
    x, _ = blobs(50, CENTERS)
    labels, centroids, info = cluster_features(x, ClusterConfig(num_clusters=4))
    assert labels.dtype == np.int64 and labels.shape == (200,)
    assert centroids.shape == (4, 3) and centroids.dtype == np.float32
    sizes = np.bincount(labels, minlength=4)
    assert sizes.sum() == 200 and (sizes > 0).all() and labels.max() == 3
    assert info["sizes"] == sizes.tolist() and info["num_clusters"] == 4 and info["dropped_empty"] == 0
    # each point's label is its nearest centroid
    nearest = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(labels, nearest)


def test_recovers_separated_blobs():
    x, truth = blobs(40, CENTERS, seed=5)
    labels, _, _ = cluster_features(x, ClusterConfig(num_clusters=4, seed=7))
    assert adjusted_rand_score(truth, labels) == 1.0


def test_more_clusters_than_points_is_a_clear_error():
    x, _ = blobs(1, CENTERS[:3])
    with pytest.raises(ValueError, match=r"num_clusters=5 exceeds the pool size N=3"):
        cluster_features(x, ClusterConfig(num_clusters=5))
    with pytest.raises(ValueError, match=r"empty pool into num_clusters=2"):
        cluster_features(np.zeros((0, 3), np.float32), ClusterConfig(num_clusters=2))
    labels, _, _ = cluster_features(x, ClusterConfig(num_clusters=3))  # K = N is allowed
    assert sorted(labels.tolist()) == [0, 1, 2]


def test_deterministic_for_a_seed():
    x, _ = blobs(60, np.random.default_rng(2).normal(0, 3, size=(6, 8)), seed=3)
    cfg = ClusterConfig(num_clusters=6, seed=99)
    l1, c1, i1 = cluster_features(x, cfg)
    l2, c2, i2 = cluster_features(x, cfg)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(c1, c2)
    assert i1 == i2


def test_trains_on_all_points_beyond_faiss_subsampling_cap():
    """With 1000 points per centroid faiss would subsample to 256 unless the cap is raised; then the centroids
    would be means of a subsample (off by ~0.06 here) instead of the means of their members."""
    x, _ = blobs(1000, np.array([[0, 0, 0, 0], [20, 20, 20, 20]], dtype=np.float64))
    labels, centroids, _ = cluster_features(x, ClusterConfig(num_clusters=2))
    for k in range(2):
        np.testing.assert_allclose(centroids[k], x[labels == k].astype(np.float64).mean(axis=0), atol=1e-3)


def test_a_training_sample_still_assigns_every_point():
    """train_points_per_cluster=100: faiss trains on a seeded sample of 200 of the 2000 points, so the centroids
    are means of that sample (off the members' means by more than the full fit's 1e-3), yet every point gets
    its nearest centroid and the blobs are recovered."""
    x, truth = blobs(1000, np.array([[0, 0, 0, 0], [20, 20, 20, 20]], dtype=np.float64))
    cfg = ClusterConfig(num_clusters=2, train_points_per_cluster=100)
    labels, centroids, info = cluster_features(x, cfg)
    assert info["trained_on"] == 200 and labels.shape == (2000,)
    assert adjusted_rand_score(truth, labels) == 1.0
    offsets = [np.abs(centroids[k] - x[labels == k].astype(np.float64).mean(axis=0)).max() for k in range(2)]
    assert max(offsets) > 1e-2, offsets
    again = cluster_features(x, cfg)
    np.testing.assert_array_equal(again[1], centroids)  # faiss's sample is seeded


def test_empty_clusters_are_dropped_and_reindexed():
    x = np.array([[0.0, 0.0]] * 10 + [[5.0, 5.0]] * 10, dtype=np.float32)  # two distinct points, K = 3
    labels, centroids, info = cluster_features(x, ClusterConfig(num_clusters=3))
    assert info["num_clusters_requested"] == 3 and info["num_clusters"] == 2 and info["dropped_empty"] == 1
    assert centroids.shape == (2, 2) and set(labels.tolist()) == {0, 1}
    assert labels[0] != labels[-1] and len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1


def test_bad_features_raise():
    x = np.ones((5, 2), np.float32)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at rows \[3\]"):
        cluster_features(x, ClusterConfig(num_clusters=2))
    with pytest.raises(ValueError, match="2-D"):
        cluster_features(np.ones(5, np.float32), ClusterConfig(num_clusters=2))


def test_gpu_choice_follows_faiss():
    x, _ = blobs(10, CENTERS[:2])
    _, _, info = cluster_features(x, ClusterConfig(num_clusters=2, use_gpu="auto"))
    assert info["gpu"] == faiss_has_gpu()
    _, _, info = cluster_features(x, ClusterConfig(num_clusters=2, use_gpu="no"))
    assert info["gpu"] is False
    if not faiss_has_gpu():
        with pytest.raises(RuntimeError, match="use_gpu='yes'"):
            cluster_features(x, ClusterConfig(num_clusters=2, use_gpu="yes"))


# --- quality: semantic clusters of real prompts recover their tasks -------------------------------------------

RG_TASKS = ["basic_arithmetic", "leg_counting", "spell_backward", "number_sorting", "gcd"]


def task_ari(embedder, questions: list[str], tasks: list[str]) -> float:
    """Embed, semantic-only features (w_d = 0), K = number of tasks, ARI of clusters vs task labels."""
    from space.curate.embedding import embed_texts
    from space.curate.features import FeatureConfig, build_features

    emb = embed_texts(embedder, questions, batch_size=64)
    features, _ = build_features(emb, None, FeatureConfig(difficulty_weight=0.0))
    names = sorted(set(tasks))
    labels, _, info = cluster_features(features, ClusterConfig(num_clusters=len(names)))
    ari = adjusted_rand_score([names.index(t) for t in tasks], labels)
    print(f"ARI={ari:.3f} over {len(questions)} prompts of {len(names)} tasks, sizes {info['sizes']}")
    return ari


@pytest.mark.slow  # the embedder's first call warms up (about 10 s on a shared core)
def test_clusters_recover_reasoning_gym_tasks(embedder):
    import reasoning_gym

    questions, tasks = [], []
    for name in RG_TASKS:
        for item in reasoning_gym.create_dataset(name, size=30, seed=11):
            questions.append(item["question"])
            tasks.append(name)
    assert task_ari(embedder, questions, tasks) >= 0.7


def test_clusters_recover_builtin_tasks(embedder):
    from space.data.builtin_tasks import generate_items

    items = generate_items("pool", 184, seed=0)
    tasks = [item["source"] for item in items]
    assert len(set(tasks)) >= 4
    assert task_ari(embedder, [item["question"] for item in items], tasks) >= 0.7
