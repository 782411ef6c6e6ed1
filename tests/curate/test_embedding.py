"""Tests for space.curate.embedding with the real bundled all-MiniLM-L6-v2 (offline, CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from space.curate.embedding import (
    EmbeddingConfig,
    embed_prompts,
    embed_texts,
    embedding_dim,
    load_embeddings,
    resolve_model_path,
    save_embeddings,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEXTS = [
    "Calculate 5 - 3 - 6.",
    "What is 17 + 25?",
    "Spell this word backward (example: sun -> nus): ammonia",
    "How many legs are there in total if you have 3 spiders and 2 cats?",
    "Sort these numbers in ascending order: 19.0, -26.01, -5.19",
    "Find the Greatest Common Divisor (GCD) of these numbers: 780, 461.",
]


def test_builtin_resolves_to_bundled_files():
    path = Path(resolve_model_path("builtin:all-MiniLM-L6-v2"))
    assert (path / "model.safetensors").is_file()
    assert resolve_model_path("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    with pytest.raises(ValueError, match="unknown builtin embedder 'nope'"):
        resolve_model_path("builtin:nope")


def test_config_is_frozen_and_strict():
    with pytest.raises(ValidationError, match="batch"):
        EmbeddingConfig(batch=3)
    cfg = EmbeddingConfig()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.batch_size = 2  # type: ignore[misc]


def test_embeddings_are_float32_unit_rows(embedder):
    emb = embed_texts(embedder, TEXTS, batch_size=4)
    assert emb.dtype == np.float32
    assert emb.shape == (len(TEXTS), 384) and embedding_dim(embedder) == 384
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embeddings_equal_direct_encode(embedder):
    ours = embed_texts(embedder, TEXTS, batch_size=4)
    direct = embedder.encode(TEXTS, batch_size=4, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(ours, direct, atol=1e-6)


def test_embed_is_one_encode_call(embedder, monkeypatch):
    """No overhead over encode: a single pass over all texts (the real encode still runs)."""
    calls = []
    real = embedder.encode

    def spy(inputs, **kwargs):
        calls.append(list(inputs))
        return real(inputs, **kwargs)

    monkeypatch.setattr(embedder, "encode", spy)
    embed_texts(embedder, TEXTS, batch_size=2)
    assert calls == [TEXTS]


@pytest.mark.parametrize("normalize", [True, False])
def test_embed_prompts_passes_the_configs_batch_size_and_normalisation(embedder, monkeypatch, normalize):
    seen = []
    real = embedder.encode

    def spy(inputs, **kwargs):
        seen.append((kwargs["batch_size"], kwargs["normalize_embeddings"]))
        return real(inputs, **kwargs)

    monkeypatch.setattr(embedder, "encode", spy)
    out = embed_prompts(embedder, TEXTS, EmbeddingConfig(batch_size=3, normalize=normalize))
    assert seen == [(3, normalize)] and out.shape == (len(TEXTS), 384)


def test_embeddings_carry_meaning(embedder):
    emb = embed_texts(embedder, ["What is 2 + 3?", "Calculate 4 + 9.", "Spell this word backward: apple"])
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1


def test_empty_and_bad_inputs(embedder):
    assert embed_texts(embedder, []).shape == (0, 384)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        embed_texts(embedder, ["ok", 3])  # type: ignore[list-item]


def test_save_load_roundtrip(tmp_path):
    ids = ["a1", "b2", "c3"]
    arr = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    path = save_embeddings(tmp_path / "sub" / "emb.npz", ids, arr)
    assert path == tmp_path / "sub" / "emb.npz"
    got_ids, got = load_embeddings(path)
    assert got_ids == ids and got.dtype == np.float32
    np.testing.assert_array_equal(got, arr)
    assert sorted(p.name for p in path.parent.iterdir()) == ["emb.npz"]  # no temp file left behind


def test_npy_embeddings_come_back_memory_mapped_with_their_ids(tmp_path):
    ids = ["a1", "b2", "c3"]
    arr = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    path = save_embeddings(tmp_path / "embeddings.npy", ids, arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.ids.npy", "embeddings.npy"]
    got_ids, got = load_embeddings(path)
    assert got_ids == ids and isinstance(got, np.memmap) and not got.flags.writeable
    np.testing.assert_array_equal(got, arr)
    (tmp_path / "embeddings.ids.npy").unlink()
    with pytest.raises(ValueError, match=r"embeddings\.npy has no ids file beside it \(embeddings\.ids\.npy\)"):
        load_embeddings(path)


def test_save_overwrites_atomically_and_validates(tmp_path):
    path = tmp_path / "emb.npz"
    save_embeddings(path, ["a"], np.zeros((1, 2), np.float32))
    save_embeddings(path, ["b", "c"], np.ones((2, 2), np.float32))
    assert load_embeddings(path)[0] == ["b", "c"]
    with pytest.raises(ValueError, match="2 ids but 3 embedding rows"):
        save_embeddings(path, ["a", "b"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        save_embeddings(path, ["a", "a"], np.zeros((2, 2)))
    assert load_embeddings(path)[0] == ["b", "c"]  # failed writes leave the old file intact
