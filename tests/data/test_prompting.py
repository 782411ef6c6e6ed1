"""Prompt rendering: the chat template sees `enable_thinking`; prompt lengths against the model's context."""

from space.config import load_recipe
from space.models.tiny import build_tokenizer
from space.data.prompting import prompt_lengths, render_prompts, too_long

# The switch as Qwen3's templates implement it: an empty think block when thinking is turned off.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def _tokenizer():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = THINKING_TEMPLATE
    return tokenizer


def test_enable_thinking_false_reaches_the_template():
    off = render_prompts(_tokenizer(), ["2+2?"], enable_thinking=False)
    assert off == ["<|user|>2+2?\n<|assistant|><think>\n\n</think>\n\n"]


def test_enable_thinking_unset_keeps_the_template_default():
    assert render_prompts(_tokenizer(), ["2+2?"]) == ["<|user|>2+2?\n<|assistant|>"]
    assert render_prompts(_tokenizer(), ["2+2?"], enable_thinking=True) == ["<|user|>2+2?\n<|assistant|>"]


def test_enable_thinking_is_a_recipe_option():
    assert load_recipe("builtin").model.enable_thinking is None
    assert load_recipe("builtin", ["model.enable_thinking=false"]).model.enable_thinking is False


def test_too_long_counts_the_completion_budget():
    tokenizer = build_tokenizer()  # one token per character
    lengths = prompt_lengths(tokenizer, ["abcd", "ab", "abcdefgh"])
    assert lengths == [4, 2, 8]
    assert too_long(lengths, context=10, max_new_tokens=4) == [2]
    assert too_long(lengths, context=10, max_new_tokens=6) == [2]  # 4 + 6 fits exactly
    assert too_long(lengths, context=10, max_new_tokens=7) == [0, 2]
    assert too_long(lengths, context=None, max_new_tokens=6) == []


def test_prompt_lengths_in_batches_keep_every_prompt_in_order():
    tokenizer = build_tokenizer()  # one token per character
    prompts = ["a" * n for n in (4, 2, 8, 1, 5)]
    assert prompt_lengths(tokenizer, prompts, batch_size=2) == [4, 2, 8, 1, 5]
    assert prompt_lengths(tokenizer, prompts[:0], batch_size=2) == []
