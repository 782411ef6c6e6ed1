"""Tests for space/train/checkpoint.py: round trip, completeness, atomic replacement and RNG capture."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest_models import make_tiny_model_dir
from space.train.checkpoint import (
    FORMAT_VERSION,
    MANIFEST,
    CheckpointError,
    capture_rng_state,
    is_complete,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model, tokenizer, AdamW and LambdaLR after two real optimiser steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = make_tiny_model_dir(tmp_path_factory.mktemp("base") / "tiny")
    model = AutoModelForCausalLM.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    ids = torch.tensor([tokenizer("1+1=2").input_ids])
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, tokenizer, optimizer, scheduler


def save(trained, directory: Path, step: int = 2, extra: dict | None = None) -> Path:
    model, tokenizer, optimizer, scheduler = trained
    return save_checkpoint(directory, model, tokenizer, optimizer, scheduler, extra or {"order": [3, 1]},
                           global_step=step, epoch=0)


def test_round_trip(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    model, _, optimizer, _ = trained
    path = save(trained, tmp_path / "ckpt")
    assert is_complete(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no .tmp / .old left behind
    ckpt = load_checkpoint(path)
    assert (ckpt.global_step, ckpt.epoch, ckpt.extra) == (2, 0, {"order": [3, 1]})
    assert ckpt.scheduler_state["last_epoch"] == 2
    saved, live = ckpt.optimizer_state["state"], optimizer.state_dict()["state"]
    assert saved.keys() == live.keys() and len(saved) > 0
    for key in live:
        assert torch.equal(saved[key]["exp_avg"], live[key]["exp_avg"])
        assert saved[key]["step"].item() == 2
    reloaded = AutoModelForCausalLM.from_pretrained(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    listed = json.loads((path / MANIFEST).read_text())["files"]
    expected = {"config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json"}
    assert expected <= set(listed)


def test_states_load_into_fresh_optimizer(trained, tmp_path):
    model, _, optimizer, _ = trained
    ckpt = load_checkpoint(save(trained, tmp_path / "ckpt"))
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(ckpt.optimizer_state)
    first = next(iter(optimizer.state))
    assert torch.equal(fresh.state[first]["exp_avg_sq"], optimizer.state[first]["exp_avg_sq"])
    sched = torch.optim.lr_scheduler.LambdaLR(fresh, lambda step: 1.0 / (step + 1))
    sched.load_state_dict(ckpt.scheduler_state)
    assert sched.last_epoch == 2


@pytest.mark.parametrize("damage", ["manifest", "truncate"])
def test_incomplete_checkpoint_is_detected(trained, tmp_path, damage):
    path = save(trained, tmp_path / "ckpt")
    if damage == "manifest":
        (path / MANIFEST).unlink()
        message = MANIFEST
    else:
        data = (path / "optimizer.pt").read_bytes()
        (path / "optimizer.pt").write_bytes(data[: len(data) // 2])
        message = "optimizer.pt"
    assert not is_complete(path)
    with pytest.raises(FileNotFoundError, match=message):
        load_checkpoint(path)


def test_a_file_changed_in_place_fails_to_load_naming_it(trained, tmp_path):
    path = save(trained, tmp_path / "ckpt")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte different
    weights.write_bytes(bytes(data))
    assert is_complete(path)  # sizes still match: only loading reads the hashes
    with pytest.raises(CheckpointError, match=r"model\.safetensors differs from the sha256"):
        load_checkpoint(path)


def test_the_manifest_records_each_files_sha256(trained, tmp_path):
    import hashlib

    path = save(trained, tmp_path / "ckpt")
    listed = json.loads((path / MANIFEST).read_text())["files"]
    assert listed["optimizer.pt"]["sha256"] == hashlib.sha256((path / "optimizer.pt").read_bytes()).hexdigest()
    assert listed["optimizer.pt"]["size"] == (path / "optimizer.pt").stat().st_size


@pytest.mark.parametrize("version", [1, FORMAT_VERSION + 1, None])
def test_another_format_version_is_refused_with_both_versions(trained, tmp_path, version):
    path = save(trained, tmp_path / "ckpt")
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["format_version"] = version
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"format version {version}; .* reads format {FORMAT_VERSION}"):
        load_checkpoint(path)


def test_missing_directory_is_not_complete(tmp_path):
    assert not is_complete(tmp_path / "nothing")


def test_overwrite_replaces_and_clears_leftovers(trained, tmp_path):
    target = tmp_path / "ckpt"
    stale = tmp_path / "ckpt.tmp"
    stale.mkdir()
    (stale / "junk").write_text("from a crashed write")
    save(trained, target, step=2)
    save(trained, target, step=5)
    assert load_checkpoint(target).global_step == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert not (target / "junk").exists()


def test_unserialisable_extra_fails_before_writing(trained, tmp_path):
    with pytest.raises(TypeError, match="'extra' is not JSON-serialisable"):
        save(trained, tmp_path / "ckpt", extra={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_rng_state_round_trip(trained, tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.standard_normal()  # leaves a cached gauss in numpy's legacy state
    state = capture_rng_state()
    path = save(trained, tmp_path / "ckpt")
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(path).rng_state)
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == expected
    restore_rng_state(state)
    assert random.random() == expected[0]
