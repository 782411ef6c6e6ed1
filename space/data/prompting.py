"""Turning questions into the prompt strings that engines and the trainer see.

Every model space uses has a chat template (the built-in tiny model ships a minimal one), so one path
serves all: messages -> `tokenizer.apply_chat_template(..., add_generation_prompt=True)`. Engines and
the GRPO trainer then receive plain strings, which keeps rollouts for difficulty, training and
evaluation byte-identical for the same question.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def build_messages(question: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages for one question (question text only, per method.md 2.1 for embeddings)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}]


def render_prompts(tokenizer: Any, questions: Sequence[str], system_prompt: str | None = None,
                   enable_thinking: bool | None = None) -> list[str]:
    """Render each question through the tokenizer's chat template, ready for generation.

    `enable_thinking` is passed to the template when set (Qwen3's templates think unless it is False);
    None leaves the template's own default."""
    if not getattr(tokenizer, "chat_template", None):
        where = getattr(tokenizer, "name_or_path", "") or "the model"
        raise ValueError(f"the tokenizer of {where} has no chat_template; space renders every prompt through one")
    options = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return [
        tokenizer.apply_chat_template(build_messages(q, system_prompt), add_generation_prompt=True, tokenize=False,
                                      **options)
        for q in questions
    ]


def model_context(model_path: str) -> int | None:
    """The model's context length (`max_position_embeddings`), or None when the config does not say."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    config = getattr(config, "text_config", None) or config
    return getattr(config, "max_position_embeddings", None)


def prompt_lengths(tokenizer: Any, prompts: Sequence[str], batch_size: int = 4096) -> list[int]:
    """Token count of each rendered prompt (special tokens come from the chat template itself), tokenised
    `batch_size` prompts at a time: a fast tokenizer's encodings of a whole 100k pool would hold GBs."""
    return [len(ids) for start in range(0, len(prompts), batch_size)
            for ids in tokenizer(list(prompts[start:start + batch_size]), add_special_tokens=False)["input_ids"]]


def too_long(lengths: Sequence[int], context: int | None, max_new_tokens: int) -> list[int]:
    """Indices of prompts that leave fewer than `max_new_tokens` of the context for the completion."""
    if context is None:
        return []
    return [i for i, n in enumerate(lengths) if n + max_new_tokens > context]
