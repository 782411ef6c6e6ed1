"""Verifiers: score model completions against gold answers, by name.

Every verifier is a plain batch function with TRL's reward-function shape,

    verifier(completions, *, answer, metadata=None, truncated=None, **columns) -> list[float | None]

so it can be handed to `GRPOTrainer` as a reward function and used for difficulty estimation and
evaluation alike. A score lies in [0, 1]; `None` means "cannot judge this row" (for instance a gold
answer that does not parse) and must be counted by the caller, never read as a wrong answer. Errors
inside a scorer are raised with the row number; they are never turned into a score of 0, because a
bandit fed by solve rates would read a bug as a hard prompt.

**Truncated completions.** `truncated` (one bool per completion; default: the completion's own `.truncated`,
else False) marks completions that hit the length limit before EOS. Such a text is cut mid-answer, so the
fallback extractions (`none`: the whole text; `last_line`; `auto`'s "answer is" and last-line fallbacks) never
read it: a truncated completion scores 0.0 (judged, not solved; not an error and not None) unless it holds a
complete explicit answer marker that the extract mode reads - a closed `<answer>...</answer>` (`auto`,
`answer_tag`) or a balanced `\boxed{...}` (`auto`, `boxed`) - which is then scored as usual. The completion
length check (space/data/lengths.py) uses the same rule to decide how many tokens an answer needs.

Verifiers are safe to call from worker threads: math-verify's signal-based timeouts are switched off
outside the main thread (they only work there, see docs/libraries.md, reasoning-gym and math-verify).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from space.registry import Registry

ExtractMode = Literal["auto", "none", "answer_tag", "boxed", "last_line"]

_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_IS = re.compile(r"answer\s*(?:is\s*:?|:)\s*([^\n]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


class Verifier(Protocol):
    """A batch scorer with TRL's reward-function signature."""

    __name__: str

    def __call__(
        self, completions: Sequence[Any], *, answer: Sequence[str], metadata: Sequence[str] | None = None,
        truncated: Sequence[bool] | None = None, **columns: Any
    ) -> list[float | None]: ...


_REGISTRY: Registry[Callable[..., Verifier]] = Registry("verifier", known_label="known verifiers")
VerifierName = _REGISTRY.name_type()  # a registered verifier name, for configs


def register_verifier(name: str) -> Callable[[Callable[..., Verifier]], Callable[..., Verifier]]:
    """Register a verifier factory under `name`; a second factory under the same name is refused."""
    return _REGISTRY.register(name)


def get_verifier(name: str, **options: Any) -> Verifier:
    """Build the verifier registered as `name` with its options (e.g. `extract="auto"`)."""
    verifier = _REGISTRY.get(name)(**options)
    verifier.__name__ = name  # TRL names reward columns after the function
    return verifier


def known_verifiers() -> list[str]:
    return _REGISTRY.names()


# the metadata key each verifier that reads row metadata needs in every row (checked before any engine starts,
# space/preflight.py); verifiers not listed need only the gold answer
METADATA_NEEDS = {"reasoning_gym": "source_dataset"}


# ---------------------------------------------------------------------------------------------
# Answer extraction


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, an engine output whose `.text` is a string, or a chat message list
    (TRL's conversational format) whose last message has a string `content`.

    Anything else is a TypeError naming what came: a missing text is a bug upstream, not an empty answer
    (which the verifier would score as wrong)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        last = completion[-1] if completion else None
        if isinstance(last, dict) and isinstance(last.get("content"), str):
            return last["content"]
        raise TypeError(f"a message-list completion needs a last message with a str 'content', got {last!r}")
    text = getattr(completion, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"completion of type {type(completion).__name__} is neither str, a message list, "
                        "nor has a str .text")
    return text


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _strip_answer(text: str) -> str:
    return text.strip().rstrip(".").strip().strip("*").strip()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    if "=" in line:  # "7 + 5 = 12." -> "12."
        line = line.rsplit("=", 1)[1]
    return line.strip().rstrip(".").strip()


def extract_complete_answer(text: str, mode: ExtractMode, truncated: bool) -> str | None:
    """The answer of a completion, or None when it was truncated and holds no complete explicit marker."""
    if not truncated:
        return extract_answer(text, mode)
    if mode in ("auto", "answer_tag"):
        tags = _TAG.findall(text)
        if tags:
            return tags[-1].strip()
    if mode in ("auto", "boxed"):
        boxed = _last_boxed(text)
        if boxed is not None:
            return boxed.strip()
    return None


def extract_answer(text: str, mode: ExtractMode = "auto") -> str:
    """The answer part of a completion.

    `none` keeps the whole (stripped) text, which suits models trained to emit the bare answer.
    `auto` takes the last `<answer>` block, else the last `\\boxed{}`, else what follows the last
    "answer is" / "answer:", else the last line (after its last `=`); free-text instruct models need this.
    """
    if mode == "none":
        return text.strip()
    if mode in ("auto", "answer_tag"):
        tags = _TAG.findall(text)
        if tags:
            return tags[-1].strip()
        if mode == "answer_tag":
            return ""
    if mode in ("auto", "boxed"):
        boxed = _last_boxed(text)
        if boxed is not None:
            return boxed.strip()
        if mode == "boxed":
            return ""
    if mode == "auto":
        stated = _ANSWER_IS.findall(text)
        if stated:
            return _strip_answer(stated[-1])
    return _last_line(text)


def _rows(completions: Sequence[Any], answer: Sequence[str], metadata: Sequence[str] | None,
          truncated: Sequence[bool] | None, mode: ExtractMode):
    """(row, extracted answer or None when truncated without a marker, gold, metadata) per completion."""
    for name, column in (("answers", answer), ("metadata entries", metadata), ("truncated flags", truncated)):
        if column is not None and len(column) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(column)} {name}")
    for row, completion in enumerate(completions):
        cut = bool(truncated[row]) if truncated is not None else bool(getattr(completion, "truncated", False))
        extracted = extract_complete_answer(completion_text(completion), mode, cut)
        yield row, extracted, answer[row], (metadata[row] if metadata is not None else None)


# ---------------------------------------------------------------------------------------------
# reasoning-gym


def _parse_metadata(raw: str | dict | None, row: int) -> dict:
    if raw is None:
        raise ValueError(f"row {row}: the reasoning_gym verifier needs the 'metadata' column")
    meta = json.loads(raw) if isinstance(raw, str) else raw
    if METADATA_NEEDS["reasoning_gym"] not in meta:
        raise KeyError(f"row {row}: metadata has no 'source_dataset' key, so its reasoning-gym task is unknown")
    return meta


class ReasoningGymVerifier:
    """Delegates to the reasoning-gym task's own scorer, found from `metadata["source_dataset"]`, with known
    scorer bugs corrected (`space.data.builtin_tasks.score_item`)."""

    def __init__(self, extract: ExtractMode = "auto"):
        self.extract = extract

    def __call__(self, completions, *, answer, metadata=None, truncated=None, **columns):
        scores: list[float | None] = []
        for row, text, gold, raw_meta in _rows(completions, answer, metadata, truncated, self.extract):
            from space.data.builtin_tasks import score_item

            meta = _parse_metadata(raw_meta, row)
            if text is None:  # truncated, no complete marker: judged and not solved
                scores.append(0.0)
                continue
            try:
                score = score_item(text, "", gold, meta)
            except Exception as err:  # re-raised with context: a scorer bug must not look like a wrong answer
                raise RuntimeError(f"row {row}: reasoning-gym scorer for {meta['source_dataset']!r} failed: {err}") from err
            scores.append(float(score))
        return scores


@register_verifier("reasoning_gym")
def reasoning_gym_verifier(extract: ExtractMode = "auto") -> Verifier:
    return ReasoningGymVerifier(extract)


# ---------------------------------------------------------------------------------------------
# math-verify


class MathVerifier:
    """math-verify equivalence, gold first; `None` (not judged) when the gold answer does not parse or when
    math-verify fails while parsing or comparing (an error or a timeout). math-verify's default
    `raise_on_error=False` would turn such failures into "not equal", i.e. a score of 0."""

    def __init__(self, extract: ExtractMode = "none"):
        self.extract = extract

    def __call__(self, completions, *, answer, metadata=None, truncated=None, **columns):
        # signal.alarm timeouts only work in the main thread (docs/libraries.md, math-verify)
        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        return [_math_score(text, str(gold), timeout)
                for _, text, gold, _ in _rows(completions, answer, metadata, truncated, self.extract)]


def _math_score(prediction: str | None, gold: str, timeout: int | None) -> float | None:
    """1/0 when math-verify can compare; None (not judged, counted by the caller, never a 0) when it cannot.

    `prediction` None is a truncated completion without a complete answer marker: judged, not solved."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    try:
        gold_parsed = _parse_gold(gold, parse, timeout)
        if gold_parsed is None:
            return None
        if prediction is None:
            return 0.0
        pred = parse(prediction, parsing_timeout=timeout, raise_on_error=True)
        return 1.0 if verify(gold_parsed, pred, timeout_seconds=timeout, raise_on_error=True) else 0.0
    except (Exception, TimeoutException):  # noqa: BLE001
        return None


def _parse_gold(gold: str, parse: Callable, timeout: int | None) -> list | None:
    """Gold answers are LaTeX-ish: try them in math mode, then as they are; a parse that yields only
    strings (no mathematical object) means math-verify cannot judge against this gold."""
    for text in (gold if "$" in gold or "\\boxed" in gold else f"${gold}$", gold):
        parsed = parse(text, parsing_timeout=timeout, raise_on_error=True)
        if any(not isinstance(item, str) for item in parsed):
            return parsed
    return None


@register_verifier("math")
def math_verifier(extract: ExtractMode = "none") -> Verifier:
    return MathVerifier(extract)


# ---------------------------------------------------------------------------------------------
# exact and numeric


def normalize_text(text: str) -> str:
    return " ".join(str(text).strip().casefold().split())


class ExactVerifier:
    """1.0 when the extracted answer equals the gold answer after case and whitespace folding."""

    def __init__(self, extract: ExtractMode = "auto"):
        self.extract = extract

    def __call__(self, completions, *, answer, metadata=None, truncated=None, **columns):
        return [
            float(text is not None and normalize_text(text) == normalize_text(gold))
            for _, text, gold, _ in _rows(completions, answer, metadata, truncated, self.extract)
        ]


@register_verifier("exact")
def exact_verifier(extract: ExtractMode = "auto") -> Verifier:
    return ExactVerifier(extract)


def parse_number(text: str) -> float | None:
    """The last number in `text` (commas, decimals and simple fractions), or None."""
    found = _NUMBER.findall(str(text))
    if not found:
        return None
    token = found[-1].replace(",", "")
    if "/" in token:
        num, den = token.split("/")
        return float(num) / float(den) if float(den) != 0 else None
    return float(token)


class NumericVerifier:
    """Compares the last number of the answer with the gold number (GSM8K's `#### 42` is understood)."""

    def __init__(self, extract: ExtractMode = "auto", rel_tol: float = 1e-6):
        self.extract, self.rel_tol = extract, rel_tol

    def __call__(self, completions, *, answer, metadata=None, truncated=None, **columns):
        scores: list[float | None] = []
        for _, text, gold, _ in _rows(completions, answer, metadata, truncated, self.extract):
            gold_value = parse_number(str(gold).split("####")[-1])
            if gold_value is None:
                scores.append(None)
                continue
            value = None if text is None else parse_number(text)
            ok = value is not None and math.isclose(value, gold_value, rel_tol=self.rel_tol, abs_tol=1e-9)
            scores.append(float(ok))
        return scores


@register_verifier("numeric")
def numeric_verifier(extract: ExtractMode = "auto", rel_tol: float = 1e-6) -> Verifier:
    return NumericVerifier(extract, rel_tol)


def solved_flags(scores: Sequence[float | None], theta_solve: float = 1.0) -> list[bool | None]:
    """c(x, y) = 1[R >= theta_solve]; None stays None (unjudged is not unsolved)."""
    return [None if s is None else bool(s >= theta_solve) for s in scores]


class VerifierConfig(BaseModel):
    """How completions are scored and when a completion counts as solved (the recipe's `verifier` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: VerifierName = Field("reasoning_gym", description="a registered verifier name (space/data/verifiers.py)")
    extract: ExtractMode = Field("auto", description="how the answer is cut out of a completion (none: the whole text)")
    theta_solve: float = Field(1.0, ge=0.0, le=1.0, description="a completion is solved when its score >= this")
