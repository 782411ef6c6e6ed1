"""Training checkpoints: everything one GRPO epoch needs to continue exactly where the last one stopped.

A checkpoint is a directory that transformers and vLLM load directly (`from_pretrained(dir)`), plus:

    optimizer.pt         optimizer.state_dict()   (AdamW moments and per-parameter step counts)
    scheduler.pt         scheduler.state_dict()   (the LR scheduler's step counter)
    rng.pt               python / numpy / torch RNG states when the checkpoint was written
    trainer_state.json   {"global_step", "epoch", "extra"}
    space_manifest.json  written last: format version and every file with its size and sha256

Writes are atomic in the usual sense: everything goes into `<dir>.tmp`, the manifest is written last,
then the folder is renamed to `<dir>`. So "manifest present and all listed files with their sizes" means
"checkpoint complete" (`is_complete`, cheap: sizes only), the same rule nanochat's dataset loader uses for
downloads. Loading checks more: the manifest's format version must be the one this code writes, and every
file must have the sha256 recorded at save time, so a checkpoint altered in place (same size, other bytes)
or written by an incompatible version fails with its path and the file named instead of training on.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from space.hashing import sha256_file
from space.manifest import MANIFEST_NAME, write_manifest

MANIFEST = MANIFEST_NAME
TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
RNG = "rng.pt"
FORMAT_VERSION = 2  # 2: files map to {"size", "sha256"} (1: size only)


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be trusted: unknown format version or a file whose hash changed."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the states to hand back to the optimizer and scheduler, and its bookkeeping.

    The model itself is not loaded here: `AutoModelForCausalLM.from_pretrained(checkpoint.path)` does that.
    """

    path: Path
    global_step: int
    epoch: int
    extra: dict[str, Any]
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any]
    rng_state: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)


def capture_rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and, if present, CUDA) global RNG states, in a torch.load-safe form."""
    import numpy as np
    import torch

    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back RNG states captured by `capture_rng_state`."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    directory: Path,
    model: Any,
    tokenizer: Any,
    optimizer: Any,
    scheduler: Any,
    extra: dict[str, Any],
    *,
    global_step: int,
    epoch: int,
) -> Path:
    """Write a complete checkpoint to `directory` (replacing an older one there) and return its path.

    `extra` must be JSON-serialisable (settings, seeds, the epoch's prompt order, ...); it is stored in
    `trainer_state.json`. The RNG states saved are the current global ones.
    """
    import torch

    directory = Path(directory)
    state_text = _to_json({"global_step": int(global_step), "epoch": int(epoch), "extra": extra})
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # leftover of an interrupted write
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    torch.save(scheduler.state_dict(), tmp / SCHEDULER)
    torch.save(capture_rng_state(), tmp / RNG)
    (tmp / TRAINER_STATE).write_text(state_text)
    _write_manifest(tmp, global_step=global_step, epoch=epoch)
    _swap_in(tmp, directory)
    return directory


def _to_json(state: dict[str, Any]) -> str:
    """trainer_state.json's text; fails before anything is written when `extra` is not JSON-serialisable."""
    try:
        return json.dumps(state, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint {TRAINER_STATE}: 'extra' is not JSON-serialisable ({err})") from err


def _write_manifest(directory: Path, *, global_step: int, epoch: int) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(directory.iterdir()) if p.is_file()}
    write_manifest(directory, {"format_version": FORMAT_VERSION, "global_step": int(global_step), "epoch": int(epoch),
                               "files": files})


def _swap_in(tmp: Path, directory: Path) -> None:
    """Rename `tmp` to `directory`; an existing `directory` is moved aside first and then deleted.

    A directory cannot be renamed over a non-empty one on POSIX, so there is a short window in which
    neither exists; `is_complete` is false then, which is the safe answer.
    """
    old = directory.with_name(directory.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    if old.exists():
        shutil.rmtree(old)


def is_complete(directory: Path) -> bool:
    """True when `directory` holds a manifest and every file it lists, with the listed sizes."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return False
    files = manifest.get("files", {})
    return all(_has_file(directory / name, _size(entry)) for name, entry in files.items())


def _size(entry: int | dict[str, Any]) -> int:
    return entry["size"] if isinstance(entry, dict) else entry  # format 1 recorded the size alone


def _has_file(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


def verify_checkpoint(directory: Path) -> dict[str, Any]:
    """The manifest of a checkpoint whose format version is current and whose files all match it.

    Raises FileNotFoundError when the manifest or a listed file is missing or has the wrong size (an
    interrupted or truncated write), CheckpointError for another format version or a changed file."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} is incomplete: {MANIFEST} is missing")
    manifest = json.loads(manifest_path.read_text())
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {directory} has format version {version}; this version of space reads format "
            f"{FORMAT_VERSION} only: train again from the base model (or use the space version that wrote it)"
        )
    for name, entry in manifest["files"].items():
        if not _has_file(directory / name, entry["size"]):
            raise FileNotFoundError(f"checkpoint {directory} is incomplete: {name} is missing or has the wrong size")
        if sha256_file(directory / name) != entry["sha256"]:
            raise CheckpointError(
                f"checkpoint {directory}: {name} differs from the sha256 recorded when it was saved "
                f"({entry['sha256'][:16]}...); the checkpoint was altered after it was written"
            )
    return manifest


def load_checkpoint(directory: Path) -> Checkpoint:
    """Read a verified checkpoint's states and bookkeeping (tensors on CPU); fails naming what is wrong."""
    import torch

    directory = Path(directory)
    manifest = verify_checkpoint(directory)
    state = json.loads((directory / TRAINER_STATE).read_text())
    return Checkpoint(
        path=directory,
        global_step=int(state["global_step"]),
        epoch=int(state["epoch"]),
        extra=state["extra"],
        optimizer_state=torch.load(directory / OPTIMIZER, map_location="cpu", weights_only=True),
        scheduler_state=torch.load(directory / SCHEDULER, map_location="cpu", weights_only=True),
        rng_state=torch.load(directory / RNG, map_location="cpu", weights_only=True),
        manifest=manifest,
    )
