"""The transformers rollout engine: per-row seeded sampling with `generate`, on CPU or GPU."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from space.engines import BaseEngine, Completion, EngineConfig, register_engine
from space.seeding import derive_seed

logger = logging.getLogger(__name__)


class SeededSampler:
    """A logits processor that samples each row with its own torch.Generator and leaves only that token.

    Plugged into greedy `generate`, the argmax then takes the sampled token, so HF handles caching, padding and
    EOS while the randomness stays per row: a row's draws depend only on its own seed, never on the batch.
    """

    def __init__(self, generators: list[Any], temperature: float, top_p: float):
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs = nucleus(probs, self.top_p)
        picks = torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picks, 0.0)


def nucleus(probs: Any, top_p: float) -> Any:
    """Zero out tokens outside the smallest set whose mass reaches top_p (the top token always stays)."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


@register_engine("transformers")
class TransformersEngine(BaseEngine):
    """Batched HF `generate` with left padding, on CUDA when available, else CPU.

    Sampling: row j of prompt i uses a torch.Generator seeded with derive_seed(prompt seed, "engine-sample", j). So a
    prompt's samples do not depend on which other prompts share the call or on batch_size; the only
    difference is floating-point noise from padding lengths, which can flip a draw on a near-tie (rare).
    Generation stops at any EOS id of the model's generation config or tokenizer; the model's own sampling
    defaults (temperature, top_k, repetition penalty, ...) are ignored so all engines sample the same law.
    """

    kind = "transformers"

    def __init__(self, cfg: EngineConfig, model_dir: str | Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=self._torch_dtype())
        self.eos_ids = model_eos_ids(model, self.tokenizer, model_dir)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        # A clean generation config: no sampling defaults of the model leak into greedy decoding.
        model.generation_config = GenerationConfig(eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        self.model = model.to(self.device).eval()

    def _torch_dtype(self) -> Any:
        import torch

        if self.cfg.dtype == "auto":
            return "auto" if self.device.type == "cuda" else torch.float32
        return getattr(torch, self.cfg.dtype)

    def progress_unit(self, n: int) -> int:
        return max(1, self.cfg.batch_size // n)  # whole batches: the same batches as without progress

    def _sample(self, prompts, keys, seeds, n, temperature, max_tokens):
        per_batch = self.progress_unit(n)
        groups: list[list[Completion]] = []
        for start in range(0, len(prompts), per_batch):
            stop = start + per_batch
            groups.extend(self._sample_batch(prompts[start:stop], seeds[start:stop], n, temperature, max_tokens))
        return groups

    def _sample_batch(self, prompts: list[str], seeds: list[int], n: int, temperature: float,
                      max_tokens: int) -> list[list[Completion]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        rows = [p for p in prompts for _ in range(n)]
        enc = self.tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        processors = LogitsProcessorList()
        if temperature > 0:
            generators = [torch.Generator(device=self.device).manual_seed(derive_seed(s, "engine-sample", j))
                          for s in seeds for j in range(n)]
            processors.append(SeededSampler(generators, temperature, self.cfg.top_p))
        config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=self.eos_ids,
                                  pad_token_id=self.pad_id)
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=config, logits_processor=processors)
        new_tokens = out[:, enc["input_ids"].shape[1]:].tolist()
        done = [self._completion(tokens) for tokens in new_tokens]
        return [done[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _completion(self, tokens: list[int]) -> Completion:
        """Cut at the first EOS (counted in num_tokens); without EOS the row ran to max_tokens."""
        eos = set(self.eos_ids)
        end = next((i for i, t in enumerate(tokens) if t in eos), None)
        if end is None:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            return Completion(text=text, num_tokens=len(tokens), finish_reason="length")
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        return Completion(text=text, num_tokens=end + 1, finish_reason="stop")

    def close(self) -> None:
        self.model = None
        gc.collect()


def model_eos_ids(model: Any, tokenizer: Any, model_dir: str | Path) -> list[int]:
    """Every EOS id of the model's generation config, then the tokenizer's; fails when neither defines one."""
    ids = collect_eos_ids(model.generation_config.eos_token_id, tokenizer.eos_token_id)
    if not ids:
        raise ValueError(f"{model_dir}: neither generation_config nor tokenizer defines an EOS token")
    return ids


def collect_eos_ids(*sources: Any) -> list[int]:
    """EOS ids from ints, lists or Nones, first-seen order, no duplicates."""
    ids: list[int] = []
    for source in sources:
        for value in source if isinstance(source, (list, tuple)) else [source]:
            if value is not None and int(value) not in ids:
                ids.append(int(value))
    return ids
