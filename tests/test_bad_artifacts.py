"""Damaged outputs, the other half of the README's bad-input catalogue: truncated or changed stage artifacts and
checkpoints, corrupt manifests, a disk that fills while a checkpoint or a manifest is written. Each case asserts
the error names the file, or that the stage recomputes and the previous result stays complete.
"""

import json

import polars as pl
import pytest


# ------------------------------------------------------------------------------------------------ artifacts


def test_artifact_truncated_parquet_is_named_downstream(tmp_path):
    from tasks.common import ArtifactError, file_sha256, verify_files

    path = tmp_path / "curation.parquet"
    pl.DataFrame({"x": list(range(50))}).write_parquet(path)
    part = {"path": str(path), "sha": file_sha256(path)}
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ArtifactError, match=r"curation.parquet: content differs .*`space --refresh"):
        verify_files(part)


def test_artifact_corrupt_manifest_makes_the_stage_recompute(tmp_path):
    from tasks.common import read_manifest

    (tmp_path / "space_manifest.json").write_text("{not json")
    assert read_manifest(tmp_path) is None


def test_artifact_truncated_checkpoint_file_is_named(tmp_path):
    from space.train.checkpoint import FORMAT_VERSION, load_checkpoint

    manifest = tmp_path / "space_manifest.json"
    listed = {"model.safetensors": {"size": 100, "sha256": "0" * 64}}
    manifest.write_text(json.dumps({"format_version": FORMAT_VERSION, "files": listed}))
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing or has the wrong size"):
        load_checkpoint(tmp_path)


def test_disk_full_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import torch
    from conftest_models import make_tiny_model_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from space.train.checkpoint import OPTIMIZER, is_complete, load_checkpoint, save_checkpoint

    source = make_tiny_model_dir(tmp_path / "m")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(source), AutoTokenizer.from_pretrained(source)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, optimizer, scheduler, {}, global_step=4, epoch=0)
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        if str(path).endswith(OPTIMIZER):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '.*ckpt.tmp/optimizer.pt'"):
        save_checkpoint(tmp_path / "ckpt", model, tokenizer, optimizer, scheduler, {}, global_step=8, epoch=1)
    assert is_complete(tmp_path / "ckpt") and load_checkpoint(tmp_path / "ckpt").global_step == 4


def test_disk_full_while_a_stage_writes_its_manifest_leaves_the_stage_to_recompute(tmp_path, monkeypatch):
    import errno

    from space import manifest as manifests
    from tasks.common import read_manifest, write_manifest

    (tmp_path / "table.parquet").write_bytes(b"rows")

    def full_disk(fd):  # the bytes sit in the page cache; flushing them to a full disk fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifests.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        write_manifest(tmp_path, {"path": str(tmp_path / "table.parquet")})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]  # no manifest, no temporary file
    assert read_manifest(tmp_path) is None
