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


def render_prompts(tokenizer: Any, questions: Sequence[str], system_prompt: str | None = None) -> list[str]:
    """Render each question through the tokenizer's chat template, ready for generation."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the model's tokenizer has no chat_template; space renders every prompt through one")
    return [
        tokenizer.apply_chat_template(build_messages(q, system_prompt), add_generation_prompt=True, tokenize=False)
        for q in questions
    ]
