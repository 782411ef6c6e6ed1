"""The built-in tiny model: a character-level causal LM that space builds and SFT-trains on CPU.

It gives the whole pipeline (difficulty estimation, curation, GRPO, evaluation) a policy that is partly
able on the builtin reasoning-gym mix (space/data/builtin_tasks.py) without downloading anything:

    items = generate_items("sft", 12000, seed=0)        # the recipe's data.sft_size and data.seed
    manifest = bootstrap_tiny(models_dir() / "tiny", cfg, items)

The directory loads with `AutoTokenizer`, `AutoModelForCausalLM` and `vllm.LLM`. Prompts go through the
tokenizer's chat template, `Q: {question}\\nA: `, and the model answers with the bare answer and `</s>`.
Built as docs/libraries.md describes (Tokenizers, the tiny model and SmolLM2): a char-level WordLevel tokenizer
and a Llama config with head dim 64, which vLLM's CPU attention needs. `space_manifest.json` is written last:
its presence means "complete".
"""

from __future__ import annotations

import hashlib
import math
import platform
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from space.manifest import MANIFEST_NAME, read_manifest, write_manifest  # noqa: F401 (re-exported)
from space.optimizer import adamw
from space.data.prompting import render_prompts

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
HEAD_DIM = 64  # vLLM's CPU attention rejects small head dims (16 fails), 64 runs (docs/libraries.md, vLLM on CPU)

# User turns become "Q: ...\n", the generation prompt is "A: ", assistant turns end with </s>.
# System messages are ignored: the tiny model was never trained on them.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}Q: {{ message['content'] }}{{ '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}A: {{ message['content'] }}{{ eos_token }}{{ '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}A: {% endif -%}"
)

ProgressFn = Callable[[int, dict[str, float]], None]


class TinyModelConfig(BaseModel):
    """How the tiny model is shaped and SFT-trained.

    The defaults (0.54 M parameters, 2,000 steps of 64 sequences) build in about 145 s on the 2-core CPU
    box with both threads. On the builtin pool (2,000 prompts, 8 samples at temperature 1) they gave, over
    seeds 0-2: 45-50 % of prompts with a solve rate strictly between 0 and 1, greedy accuracy 63-70 %, and
    mean solve rates falling level by level in every task.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(128, gt=0, description="model width; a multiple of 64 (head dim 64)")
    num_layers: int = Field(2, gt=0, description="transformer blocks")
    intermediate_size: int = Field(512, gt=0, description="MLP inner width")
    max_length: int = Field(128, gt=8, description="longest prompt + answer + EOS in tokens; longer SFT items fail")
    sft_steps: int = Field(2000, ge=0, description="SFT optimiser steps")
    batch_size: int = Field(64, gt=0, description="SFT sequences per step")
    lr: float = Field(3e-3, gt=0, description="peak AdamW learning rate (linear warm-up, cosine decay)")
    warmup_steps: int = Field(100, ge=0, description="linear learning-rate warm-up steps")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    log_every: int = Field(10, gt=0, description="report the running loss every this many steps")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds initialisation, batch order and the SFT split")

    @property
    def num_heads(self) -> int:
        """Attention heads: hidden / 64, so the head dim is 64."""
        return self.hidden_size // HEAD_DIM

    @model_validator(mode="after")
    def _check_head_dim(self) -> TinyModelConfig:
        if self.hidden_size % HEAD_DIM:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of {HEAD_DIM} (head dim 64 for vLLM)")
        return self


# ---------------------------------------------------------------------------------------------
# tokenizer


def build_vocab() -> dict[str, int]:
    """Specials, then printable ASCII letters, digits, punctuation, space and newline (100 tokens)."""
    chars = string.ascii_letters + string.digits + string.punctuation + " \n"
    return {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}


def build_tokenizer() -> Any:
    """A character-level `PreTrainedTokenizerFast` with left padding and the `Q:/A:` chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(build_vocab(), unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # one token per character
    core.decoder = decoders.Fuse()  # join characters back without spaces
    # padding_side must go to the constructor: set afterwards it is not saved (docs/libraries.md)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


# ---------------------------------------------------------------------------------------------
# model


def build_model(cfg: TinyModelConfig) -> Any:
    """A randomly initialised Llama causal LM (tied embeddings, head dim 64), seeded by cfg.seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(build_vocab()),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        head_dim=HEAD_DIM,
        max_position_embeddings=max(256, cfg.max_length),
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.bos_token_id = BOS_ID
    return model


def count_parameters(model: Any) -> int:
    """Distinct trainable parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# SFT


def encode_sft_items(tokenizer: Any, items: Sequence[Mapping[str, Any]], max_length: int) -> list[tuple[list[int], int]]:
    """(token ids of prompt + answer + EOS, prompt length) per item; too-long items fail by row."""
    encoded = []
    for row, item in enumerate(items):
        for key in ("question", "answer"):
            if key not in item:
                raise KeyError(f"SFT item {row}: missing key {key!r}")
        prompt = tokenizer.encode(render_prompts(tokenizer, [str(item["question"])])[0], add_special_tokens=False)
        answer = tokenizer.encode(str(item["answer"]), add_special_tokens=False)
        ids = prompt + answer + [EOS_ID]
        if len(ids) > max_length:
            raise ValueError(f"SFT item {row}: {len(ids)} tokens exceed max_length={max_length}")
        if UNK_ID in ids:
            raise ValueError(f"SFT item {row}: characters outside the tiny vocabulary in {item['question']!r}")
        encoded.append((ids, len(prompt)))
    return encoded


def collate_sft(batch: Sequence[tuple[list[int], int]]) -> tuple[Any, Any, Any]:
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        labels[row, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
    return input_ids, mask, labels


def iter_batches(data: Sequence[tuple[list[int], int]], batch_size: int, gen: Any) -> Iterator[list[Any]]:
    """Endless seeded batches; within chunks of 32 batches items are grouped by length to cut padding."""
    import torch

    chunk = batch_size * 32
    while True:
        order = torch.randperm(len(data), generator=gen).tolist()
        for lo in range(0, len(order), chunk):
            part = sorted(order[lo : lo + chunk], key=lambda i: len(data[i][0]))
            groups = [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
            for g in torch.randperm(len(groups), generator=gen).tolist():
                yield [data[i] for i in groups[g]]


def lr_at(step: int, cfg: TinyModelConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 10 % of it."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.sft_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def sft_train(
    model: Any,
    tokenizer: Any,
    items: Sequence[Mapping[str, Any]],
    cfg: TinyModelConfig,
    progress: ProgressFn | None = None,
) -> dict[str, float]:
    """Supervised fine-tuning on answer tokens + EOS with AdamW; returns loss and timing metrics.

    Batches are drawn by a generator seeded with cfg.seed (epochs of seeded permutations). `progress`,
    if given, receives (step, {"sft/loss": ..., "sft/lr": ...}) every cfg.log_every steps, the loss being
    the mean over those steps. Runs on torch's current thread count (the caller picks it).
    """
    import torch

    data = encode_sft_items(tokenizer, items, cfg.max_length)
    if not data:
        raise ValueError("sft_train needs at least one item")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    optim = adamw(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    model.train()
    batches = iter_batches(data, cfg.batch_size, gen)
    first_loss, last_loss, window = float("nan"), float("nan"), []  # window: losses since the last report
    start = time.perf_counter()
    for step in range(cfg.sft_steps):
        input_ids, mask, labels = collate_sft(next(batches))
        for group in optim.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optim.step()
        window.append(float(loss.detach()))
        first_loss = window[0] if step == 0 else first_loss
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.sft_steps:
            last_loss, window = sum(window) / len(window), []
            if progress is not None:
                progress(step + 1, {"sft/loss": last_loss, "sft/lr": lr_at(step, cfg)})
    model.eval()
    seconds = time.perf_counter() - start
    return {
        "sft/first_loss": first_loss,
        "sft/final_loss": last_loss,
        "sft/steps": float(cfg.sft_steps),
        "sft/items": float(len(data)),
        "sft/seconds": seconds,
    }


# ---------------------------------------------------------------------------------------------
# saving


def save_model(model: Any, tokenizer: Any, out_dir: str | Path) -> list[str]:
    """Write model and tokenizer (safetensors, tokenizer.json, chat template); returns the file names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sorted(p.name for p in out.iterdir() if p.is_file())


def hash_items(items: Sequence[Mapping[str, Any]]) -> str:
    """A content hash of the SFT items (question and answer, in order), for provenance."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item['question']}\x1f{item['answer']}\x1e".encode())
    return digest.hexdigest()


def bootstrap_tiny(
    out_dir: str | Path,
    cfg: TinyModelConfig,
    sft_items: Sequence[Mapping[str, Any]],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Build tokenizer and model, SFT-train on `sft_items`, save to `out_dir`; the manifest goes last.

    An existing manifest is removed first, so an interrupted rebuild never looks complete. Training uses
    torch's current thread count: call `torch.set_num_threads(2)` first to use both cores of the CPU box
    (the defaults build in about 2.5 minutes there).
    """
    import torch
    import transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    start = time.perf_counter()
    tokenizer = build_tokenizer()
    model = build_model(cfg)
    metrics = sft_train(model, tokenizer, sft_items, cfg, progress=progress)
    files = save_model(model, tokenizer, out)
    manifest = {
        "kind": "space-tiny",
        "config": cfg.model_dump(),
        "sft_items_sha256": hash_items(sft_items),
        "parameters": count_parameters(model),
        "metrics": metrics,
        "build_seconds": time.perf_counter() - start,
        "torch_threads": torch.get_num_threads(),
        "files": files,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }
    write_manifest(out, manifest)
    return manifest
