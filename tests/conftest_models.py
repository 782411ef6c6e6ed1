"""Test helper: a tiny random-init causal LM saved as a standard Hugging Face folder.

    from conftest_models import make_tiny_model_dir
    model_dir = make_tiny_model_dir(tmp_path / "tiny")

Character-level WordLevel tokenizer (four specials, then printable ASCII: 100 tokens) and a Llama with
hidden 128, 2 heads (head dim 64: vLLM's CPU attention rejects small head dims, stack.md 5), 2 layers. The
weights are random (seeded), so outputs are gibberish but deterministic: enough to test engines' shapes,
seeding and agreement between backends. Independent of space/models/tiny.py on purpose.
"""

from __future__ import annotations

import string
from pathlib import Path

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}Q: {{ message['content'] }}{{ '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}A: {{ message['content'] }}{{ eos_token }}{{ '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}A: {% endif -%}"
)


def build_vocab() -> dict[str, int]:
    """Specials first, then letters, digits, punctuation, space and newline: 100 entries."""
    chars = string.ascii_letters + string.digits + string.punctuation + " \n"
    return {token: i for i, token in enumerate([*SPECIALS, *chars])}


def build_tokenizer():
    """A one-token-per-character PreTrainedTokenizerFast that pads on the left (set in the constructor)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(build_vocab(), unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        padding_side="left", chat_template=CHAT_TEMPLATE,
    )


def make_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """Build, seed and save the tiny model + tokenizer under `path`; returns `path`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=344, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Random init (std 0.02) gives a near-uniform next-token distribution. Scaling the output layer by 10
    # gives entropy about 2.4 nats (clear greedy winners, varied samples); the EOS row 3x more so that about
    # half of the 32-token samples at T=1 stop early (both finish reasons occur).
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
        model.lm_head.weight[config.eos_token_id].mul_(3.0)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
