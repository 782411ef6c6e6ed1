"""Tests for space.curate.features: PCA block of unit variance plus weighted standardised difficulty (method.md 2.3)."""

from __future__ import annotations

import numpy as np
import pytest

from space.curate.features import FeatureConfig, build_features


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Random embeddings with anisotropic variance, L2-normalised like a real embedder's."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)) * np.linspace(3.0, 0.2, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return unit_rows(300, 64), rng.uniform(0, 1, 300)


def test_shape_dtype_and_block_unit_variance(data):
    emb, d = data
    f, info = build_features(emb, d, FeatureConfig(pca_dims=8))
    assert f.shape == (300, 9) and f.dtype == np.float32
    assert info["pca_dims"] == 8
    block = f[:, :-1].astype(np.float64)
    np.testing.assert_allclose(block.mean(axis=0), 0.0, atol=1e-6)
    assert block.var(axis=0).sum() == pytest.approx(1.0, abs=1e-5)
    # components are ordered by decreasing variance
    assert np.all(np.diff(block.var(axis=0)) <= 1e-7)


def test_difficulty_coordinate_is_standardised_and_weighted(data):
    emb, d = data
    f, _ = build_features(emb, d, FeatureConfig(pca_dims=8, difficulty_weight=2.0))
    last = f[:, -1].astype(np.float64)
    np.testing.assert_allclose(last / 2.0, (d - d.mean()) / d.std(), atol=1e-5)


@pytest.mark.parametrize("w", [0.25, 0.5, 1.0, 2.0, 3.0])
def test_difficulty_variance_share(data, w):
    emb, d = data
    f, info = build_features(emb, d, FeatureConfig(pca_dims=16, difficulty_weight=w))
    var = f.astype(np.float64).var(axis=0)
    expected = w**2 / (1 + w**2)
    assert var[-1] / var.sum() == pytest.approx(expected, abs=1e-5)
    assert info["difficulty_share"] == pytest.approx(expected, abs=1e-5)


def test_zero_weight_is_semantic_only(data):
    emb, d = data
    f0, info = build_features(emb, d, FeatureConfig(pca_dims=8, difficulty_weight=0.0))
    f1, _ = build_features(emb, d, FeatureConfig(pca_dims=8, difficulty_weight=1.0))
    assert np.all(f0[:, -1] == 0.0) and info["difficulty_share"] == 0.0
    np.testing.assert_array_equal(f0[:, :-1], f1[:, :-1])
    f_none, _ = build_features(emb, None, FeatureConfig(pca_dims=8, difficulty_weight=0.0))
    np.testing.assert_array_equal(f_none, f0)
    with pytest.raises(ValueError, match="difficulty is None but difficulty_weight=1.0"):
        build_features(emb, None, FeatureConfig())


def test_block_matches_sklearn_pca_up_to_sign(data):
    from sklearn.decomposition import PCA

    emb, d = data
    f, info = build_features(emb, d, FeatureConfig(pca_dims=5))
    pca = PCA(n_components=5, svd_solver="full").fit(emb.astype(np.float64))
    z = pca.transform(emb.astype(np.float64))
    n = emb.shape[0]
    zhat = z / np.sqrt(pca.explained_variance_.sum() * (n - 1) / n)  # sklearn divides by N - 1, we by N
    np.testing.assert_allclose(np.abs(f[:, :-1]), np.abs(zhat), atol=1e-5)
    np.testing.assert_allclose(info["explained_variance_ratio"], pca.explained_variance_ratio_, rtol=1e-5)


def test_deterministic_and_row_order_invariant(data):
    emb, d = data
    cfg = FeatureConfig(pca_dims=8)
    f1, _ = build_features(emb, d, cfg)
    f2, _ = build_features(emb, d, cfg)
    np.testing.assert_array_equal(f1, f2)
    perm = np.random.default_rng(3).permutation(len(d))
    f3, _ = build_features(emb[perm], d[perm], cfg)
    np.testing.assert_allclose(f3, f1[perm], atol=1e-5)  # same signs whatever the row order


def test_pca_dims_are_capped():
    emb = unit_rows(10, 64)
    f, info = build_features(emb, np.linspace(0, 1, 10), FeatureConfig(pca_dims=32))
    assert info["pca_dims"] == 9 and f.shape == (10, 10)
    emb = unit_rows(100, 6)
    f, info = build_features(emb, np.linspace(0, 1, 100), FeatureConfig(pca_dims=32))
    assert info["pca_dims"] == 5 and f.shape == (100, 6)
    with pytest.raises(ValueError, match="N=1"):
        build_features(unit_rows(1, 8), np.zeros(1), FeatureConfig())


def test_constant_difficulty_gives_zero_coordinate(data):
    emb, _ = data
    f, _ = build_features(emb, np.full(300, 0.4), FeatureConfig(pca_dims=4))
    assert np.all(f[:, -1] == 0.0)


def test_missing_difficulty(data):
    emb, d = data
    d = d.copy()
    d[[4, 7]] = np.nan
    with pytest.raises(ValueError, match=r"null \(NaN\) at 2 rows \(first: \[4, 7\]\)"):
        build_features(emb, d, FeatureConfig(pca_dims=4))
    f, info = build_features(emb, d, FeatureConfig(pca_dims=4, missing_difficulty="mean"))
    assert info["difficulty_imputed"] == 2
    assert f[4, -1] == pytest.approx(0.0, abs=1e-6) and np.isfinite(f).all()
    with pytest.raises(ValueError, match="has 299 values"):
        build_features(emb, d[:-1], FeatureConfig(pca_dims=4))


def test_fitted_transform_reproduces_pool_features_after_a_save(tmp_path):
    from space.curate.features import FeatureTransform, fit_transform

    rng = np.random.default_rng(7)
    emb = rng.normal(size=(60, 12)).astype(np.float32)
    d = rng.uniform(size=60)
    cfg = FeatureConfig(pca_dims=5, difficulty_weight=1.5)
    transform, features, _ = fit_transform(emb, d, cfg)
    assert np.array_equal(features, build_features(emb, d, cfg)[0])
    np.savez(tmp_path / "f.npz", features=features, **transform.arrays())
    loaded = FeatureTransform.from_arrays(np.load(tmp_path / "f.npz"))
    assert np.allclose(loaded.apply(emb, d), features, atol=1e-6)
    # a new prompt with the pool's mean embedding and mean difficulty sits at the origin
    centre = loaded.apply(emb.astype(np.float64).mean(axis=0, keepdims=True), np.array([d.mean()]))
    assert np.allclose(centre, 0.0, atol=1e-6)
    with pytest.raises(KeyError, match="no fitted transform"):
        FeatureTransform.from_arrays({"features": features})


def test_a_memory_mapped_pool_larger_than_a_chunk_gives_the_in_memory_features(tmp_path, monkeypatch):
    """The covariance is accumulated chunk by chunk: with 64-row chunks over a memory map of 300 rows the
    features equal those of one in-memory pass."""
    from space.curate import features as module

    emb, d = unit_rows(300, 64), np.random.default_rng(1).uniform(0, 1, 300)
    whole, _ = build_features(emb, d, FeatureConfig(pca_dims=8))
    np.save(tmp_path / "emb.npy", emb)
    monkeypatch.setattr(module, "CHUNK_ROWS", 64)
    chunked, _ = build_features(np.load(tmp_path / "emb.npy", mmap_mode="r"), d, FeatureConfig(pca_dims=8))
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
