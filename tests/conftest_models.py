"""Test helper: a tiny random-init causal LM saved as a standard Hugging Face folder.

    from conftest_models import make_tiny_model_dir
    model_dir = make_tiny_model_dir(tmp_path / "tiny")

The built-in tiny model's character tokenizer and chat template with a random-init Llama of hidden 128,
2 heads (head dim 64: vLLM's CPU attention rejects small head dims, docs/libraries.md), 2 layers, untied
output.
The weights are random (seeded), so outputs are gibberish but deterministic: enough to test engines'
shapes, seeding and agreement between backends without the minutes an SFT build takes.
"""

from __future__ import annotations

from pathlib import Path

from space.models.tiny import build_tokenizer


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
