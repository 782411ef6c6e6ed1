"""The built-in tiny model: tokenizer, config, SFT and a bootstrapped directory that HF and vLLM load.

The bootstrap here uses a very small config and a few SFT steps (seconds); the tuned defaults take about
2.5 minutes on two cores and are measured outside the test suite. Nothing builds an engine at import time,
so the module is safe under a spawned vLLM engine core.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch

from space.data.builtin_tasks import generate_items
from space.data.prompting import render_prompts
from space.models.tiny import (
    EOS_ID,
    MANIFEST_NAME,
    TinyModelConfig,
    bootstrap_tiny,
    build_model,
    build_tokenizer,
    count_parameters,
    encode_sft_items,
    read_manifest,
    sft_train,
)

SMALL = TinyModelConfig(
    hidden_size=64, num_layers=1, intermediate_size=128, sft_steps=40, batch_size=16, lr=3e-3, warmup_steps=5,
    log_every=5,
)


@pytest.fixture(scope="module")
def sft_items():
    return generate_items("sft", 240, seed=SMALL.seed)


WRITTEN_BEFORE_MANIFEST: set[str] = set()


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory, sft_items) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("{}")  # a stale manifest from an earlier, interrupted build
    seen: list[tuple[int, bool]] = []

    def progress(step: int, metrics: dict[str, float]) -> None:
        seen.append((step, (out / MANIFEST_NAME).exists()))

    import space.models.tiny as tiny

    real_write = tiny.write_manifest

    def recording_write(out_dir: Path, manifest: dict) -> None:  # what existed when the manifest was written
        WRITTEN_BEFORE_MANIFEST.update(p.name for p in out_dir.iterdir())
        real_write(out_dir, manifest)

    tiny.write_manifest = recording_write
    try:
        manifest = bootstrap_tiny(out, SMALL, sft_items, progress=progress)
    finally:
        tiny.write_manifest = real_write
    assert seen and not any(exists for _, exists in seen), "the manifest must be absent until the build ends"
    assert [s for s, _ in seen] == list(range(5, 41, 5))
    assert manifest["parameters"] > 0 and manifest["config"] == SMALL.model_dump()
    return out


# ------------------------------------------------------------------------------------------------ tokenizer


def test_tokenizer_is_char_level_and_round_trips():
    tok = build_tokenizer()
    text = string.ascii_letters + string.digits + string.punctuation + " \n"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(tok) == 100 and len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.encode("</s>", add_special_tokens=False) == [EOS_ID]
    assert tok.decode(tok.encode("rev ab</s>", add_special_tokens=False), skip_special_tokens=True) == "rev ab"


def test_chat_template_renders_the_qa_format_and_ignores_system_messages():
    tok = build_tokenizer()
    assert render_prompts(tok, ["rev abc"]) == ["Q: rev abc\nA: "]
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "rev abc"}]
    assert tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == "Q: rev abc\nA: "
    full = tok.apply_chat_template([*messages, {"role": "assistant", "content": "cba"}], tokenize=False)
    assert full == "Q: rev abc\nA: cba</s>\n"


def test_tokenizer_pads_left_after_save_and_reload(tmp_path):
    from transformers import AutoTokenizer

    build_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.padding_side == "left" and tok.pad_token_id == 0 and tok.eos_token_id == EOS_ID
    batch = tok(["ab", "abcd"], padding=True, add_special_tokens=False)
    assert batch["input_ids"][0][:2] == [0, 0] and batch["attention_mask"][0] == [0, 0, 1, 1]
    assert render_prompts(tok, ["x"]) == ["Q: x\nA: "]
    assert tok.decode(tok.encode("Hello, World!\n 42", add_special_tokens=False)) == "Hello, World!\n 42"


# ------------------------------------------------------------------------------------------------ config, model


def test_config_is_frozen_strict_and_needs_head_dim_64():
    with pytest.raises(ValueError, match="multiple of 64"):
        TinyModelConfig(hidden_size=96)
    with pytest.raises(ValueError, match="extra"):
        TinyModelConfig(hidden=128)
    with pytest.raises(ValueError, match="frozen"):
        TinyModelConfig().sft_steps = 3  # type: ignore[misc]


def test_default_model_is_small_llama_with_head_dim_64_and_tied_embeddings():
    model = build_model(TinyModelConfig())
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.hidden_size // cfg.num_attention_heads == 64 and cfg.head_dim == 64
    assert cfg.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert 300_000 < count_parameters(model) < 800_000


def test_model_init_is_seeded():
    a, b = build_model(SMALL), build_model(SMALL)
    c = build_model(SMALL.model_copy(update={"seed": 1}))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


# ------------------------------------------------------------------------------------------------ SFT


def test_sft_items_mask_the_prompt_and_fail_by_row():
    tok = build_tokenizer()
    [(ids, prompt_len)] = encode_sft_items(tok, [{"question": "rev ab", "answer": "ba"}], max_length=32)
    assert tok.decode(ids[:prompt_len]) == "Q: rev ab\nA: " and ids[prompt_len:] == [*tok.encode("ba"), EOS_ID]
    with pytest.raises(ValueError, match="SFT item 1: .* exceed max_length=20"):
        encode_sft_items(tok, [{"question": "a", "answer": "b"}, {"question": "x" * 30, "answer": "y"}], 20)
    with pytest.raises(ValueError, match="SFT item 0: characters outside"):
        encode_sft_items(tok, [{"question": "caf\u00e9", "answer": "1"}], 32)
    with pytest.raises(KeyError, match="SFT item 0: missing key 'answer'"):
        encode_sft_items(tok, [{"question": "a"}], 32)


def test_sft_loss_decreases_and_is_reproducible(sft_items):
    tok = build_tokenizer()
    logged: list[float] = []
    model = build_model(SMALL)
    metrics = sft_train(model, tok, sft_items, SMALL, progress=lambda step, m: logged.append(m["sft/loss"]))
    assert len(logged) == SMALL.sft_steps // SMALL.log_every
    assert metrics["sft/final_loss"] < 0.7 * metrics["sft/first_loss"]
    assert logged[-1] < logged[0]
    short = SMALL.model_copy(update={"sft_steps": 3})
    a, b = build_model(short), build_model(short)
    sft_train(a, tok, sft_items, short)
    sft_train(b, tok, sft_items, short)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)


# ------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_writes_a_directory_that_transformers_reloads_and_generates_from(built_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = {p.name for p in built_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MANIFEST_NAME} <= files
    assert files - {MANIFEST_NAME} <= WRITTEN_BEFORE_MANIFEST  # the manifest came last
    assert MANIFEST_NAME not in WRITTEN_BEFORE_MANIFEST  # the stale one was removed before the build
    manifest = read_manifest(built_dir)
    assert manifest["kind"] == "space-tiny" and len(manifest["sft_items_sha256"]) == 64
    assert manifest["metrics"]["sft/steps"] == SMALL.sft_steps

    tok = AutoTokenizer.from_pretrained(built_dir)
    model = AutoModelForCausalLM.from_pretrained(built_dir)
    assert tok.padding_side == "left"
    prompts = render_prompts(tok, ["rev abc", "count a in banana"])
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=24, do_sample=False)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert model.generation_config.eos_token_id == EOS_ID and model.generation_config.pad_token_id == 0


def test_read_manifest_is_none_for_an_unfinished_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert read_manifest(tmp_path) is None


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_loads_the_bootstrapped_directory_and_agrees_with_transformers(built_dir):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams

    tok = AutoTokenizer.from_pretrained(built_dir)
    prompts = render_prompts(tok, ["rev abc", "pal aab", "rot90\n1 2\n3 4"])
    llm = LLM(model=str(built_dir), dtype="float32", max_model_len=256, enforce_eager=True, seed=0,
              gpu_memory_utilization=0.2)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=8), use_tqdm=False)
    finally:
        llm.llm_engine.engine_core.shutdown()  # else vLLM force-kills its engine process at exit
    model = AutoModelForCausalLM.from_pretrained(built_dir)
    for prompt, out in zip(prompts, outs, strict=True):
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        hf = model.generate(**ids, max_new_tokens=8, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()
        assert list(out.outputs[0].token_ids) == hf[: len(out.outputs[0].token_ids)]
