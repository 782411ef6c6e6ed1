"""How likely the reference model is to produce a prompt's gold answer: a difficulty signal without sampling.

For a model that answers directly (no reasoning before the answer), the chance that one sample at temperature T
is solved is about the probability of the gold completion in a form the verifier accepts. One teacher-forced
forward pass per prompt and form gives it exactly, where the solve rate needs k sampled completions:

    log p_i = logsumexp over accepted forms a of  sum_t log softmax(z_t / T)[a_t]    (+ the EOS step, summed over
                                                                                    every EOS id, where the form
                                                                                    needs one)

The forms are those of `space.data.lengths.accepted_forms` (the bare answer + EOS; `<answer>...</answer>` or
`\\boxed{...}` for the extract modes that read them). Nucleus truncation (top_p) is ignored, and T = 0 (greedy)
uses T = 1: the value is a ranking signal then. For a model that reasons first, p_i is only a weak signal;
`space.curate.propagate` therefore calibrates it on the measured prompts rather than trusting it.

    logp = answer_logprobs(model_dir, rendered_prompts, answers, extract="none", temperature=1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from space.data.lengths import accepted_forms


def gold_forms(answer: str, extract: str) -> list[tuple[str, bool]]:
    """(completion text, ends with EOS) for each form of `answer` the verifier would score solved."""
    return [(template.format(answer), eos) for _label, template, eos in accepted_forms(extract)]


def answer_logprobs(model_dir: str | Path, prompts: Sequence[str], answers: Sequence[Any], extract: str,
                    temperature: float, batch_size: int = 32,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """log p(gold answer | prompt) per prompt, in the reference model's sampling law at `temperature`.

    `prompts` are rendered (chat template applied), as engines get them; completions are tokenised apart from
    the prompt, as generation produces them. Runs on CUDA when available, else CPU, `batch_size` sequences a pass.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from space.engines.hf import model_eos_ids

    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto" if device.type == "cuda"
                                                 else torch.float32).to(device).eval()
    eos_ids = model_eos_ids(model, tokenizer, model_dir)
    rows = _sequences(tokenizer, prompts, answers, extract, eos_ids[0])
    scores = np.empty(len(rows))
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        scores[start:start + len(batch)] = _batch_logprobs(model, batch, eos_ids, temperature or 1.0, device)
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    forms = len(accepted_forms(extract))
    return np.logaddexp.reduce(scores.reshape(len(prompts), forms), axis=1)


def _sequences(tokenizer: Any, prompts: Sequence[str], answers: Sequence[Any], extract: str,
               eos_id: int) -> list[tuple[list[int], int, bool]]:
    """(token ids, prompt length, ends with EOS) for every prompt x accepted form, prompt-major."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not prompt_ids:
            raise ValueError(f"an empty prompt (answer {answer!r}): the gold answer needs a context to be scored in")
        for text, eos in gold_forms(str(answer), extract):
            completion = tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos_id] if eos else [])
            rows.append((prompt_ids + completion, len(prompt_ids), eos))
    return rows


def _batch_logprobs(model: Any, batch: list[tuple[list[int], int, bool]], eos_ids: list[int],
                    temperature: float, device: Any) -> np.ndarray:
    """Summed completion log-probabilities of a left-padded batch; an EOS step counts every EOS id.

    Left padding lines every completion up at the end, so the model computes logits for the last
    (longest completion + 1) positions only: a 150k-token vocabulary times whole prompts would not fit."""
    import torch

    width = max(len(ids) for ids, _, _ in batch)
    keep = max(len(ids) - start for ids, start, _ in batch) + 1
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, (ids, _, _) in enumerate(batch):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        mask[row, width - len(ids):] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), logits_to_keep=keep).logits.float()
    logp = torch.log_softmax(logits / temperature, dim=-1).cpu()  # position j predicts token width - keep + j + 1
    out = []
    for row, (ids, start, eos) in enumerate(batch):
        completion = ids[start:]
        first = keep - 1 - len(completion)  # the kept position that predicts the completion's first token
        steps = logp[row, torch.arange(first, keep - 1), torch.tensor(completion)]
        if eos:
            steps[-1] = torch.logsumexp(logp[row, keep - 2, eos_ids], dim=0)
        out.append(float(steps.sum()))
    return np.array(out)
