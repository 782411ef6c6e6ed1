"""Recipes: one typed, frozen configuration per experiment, loaded from YAML.

A recipe is a YAML file whose top-level keys are the sections of `Recipe` below. Recipes shipped in
the package (`space/recipes/*.yaml`) are found by name (`builtin`, `smollm2`, ...), any other
argument is read as a path. A recipe may start from another with `base: NAME`, then overrides
nested keys. Command-line overrides use dotted keys: `--set train.epochs=3`.

Unknown keys and bad values fail at load time with a message naming the key and the file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from space.curate.clustering import kmeans_seed
from space.curate.config import CurateConfig
from space.curate.reduction import selection_seed
from space.data.sources import DataConfig
from space.data.verifiers import VerifierConfig
from space.engines import EngineConfig
from space.hashing import fingerprint  # noqa: F401  (re-exported: callers import it from here)
from space.models.config import ModelConfig
from space.scaleout import RayConfig
from space.train.config import TrainConfig
from space.train.evaluation import EvalConfig

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class Recipe(BaseModel):
    """Everything one experiment needs; logged once to MLflow and saved beside every run."""

    model_config = _FROZEN

    name: str = Field("builtin", description="recipe name, used in run names and tags")
    seed: int = Field(
        0, ge=0, description="the run seed: k-means initialisation, random selection, bandit, prompt picker, GRPO and "
        "evaluation sampling derive distinct streams from it (space/seeding.py). Data generation (data.seed) and "
        "difficulty rollouts (curate.difficulty.seed) keep their own seeds, so runs of several seeds share them"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    runner: Literal["local", "ray"] = Field(
        "local", description="where curation's embedding and difficulty rollouts run: in the flow's process, or "
        "sharded on a Ray cluster (the `ray` section; docs/scale-out.md)"
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="the Ray cluster and shards (runner: ray)")

    @property
    def completion_length(self) -> int:
        """The training completion length, which curation and evaluation follow unless set explicitly."""
        return self.train.grpo.max_completion_length

    _followed: tuple[str, ...] = PrivateAttr(default=())  # the FOLLOWING keys this recipe left to their default

    @model_validator(mode="after")
    def _resolve_once(self) -> Recipe:
        """Every validated recipe is resolved, once, here: a YAML or `--set` load, a Prefect deployment's
        parameter, a `Recipe(...)` built in code. The flows and tasks take the values as they are."""
        self._followed = tuple(key for key in FOLLOWING if _get(self, key) is None)
        filled = self.resolved()
        for section in ("curate", "eval"):
            object.__setattr__(self, section, getattr(filled, section))  # frozen: set once, while validating
        return self

    def __eq__(self, other: object) -> bool:  # the configuration, not how it was reached (`_followed`)
        return isinstance(other, Recipe) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(dump_recipe(self))

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Recipe:
        """A copy; with `update` (another seed, another length), the keys this recipe left to follow their
        default follow it again, unless the update set them itself."""
        copy = super().model_copy(update=update, deep=deep)
        if not update or not self._followed:
            return copy
        raw = copy.model_dump()
        for key in self._followed:
            if _get(copy, key) == _get(self, key):
                _set(raw, key, None)
        return Recipe.model_validate(raw)

    def resolved(self) -> Recipe:
        """This recipe with every follow-the-default field filled (idempotent).

        curate.difficulty.max_tokens and eval.max_tokens: None -> the training completion length;
        curate.clusters.seed and curate.selection.seed: None -> derived from the recipe seed with their own tags.
        Validation calls it (`_resolve_once`), so only a recipe changed with `model_copy(update=...)`, which
        skips validation, needs it again; a resolved recipe keeps the values it was given.
        """
        length, cur = self.completion_length, self.curate
        difficulty = cur.difficulty.model_copy(update={"max_tokens": _given(cur.difficulty.max_tokens, length)})
        clusters = cur.clusters.model_copy(update={"seed": kmeans_seed(cur.clusters, self.seed)})
        selection = cur.selection.model_copy(update={"seed": selection_seed(cur.selection, self.seed)})
        curate = cur.model_copy(update={"difficulty": difficulty, "clusters": clusters, "selection": selection})
        evaluation = self.eval.model_copy(update={"max_tokens": _given(self.eval.max_tokens, length)})
        return self.model_copy(update={"curate": curate, "eval": evaluation})

    def eval_engine(self) -> EngineConfig:
        """The engine evaluation uses: the recipe's, with `eval.engine_kind` swapped in when set."""
        if self.eval.engine_kind is None:
            return self.engine
        return self.engine.model_copy(update={"kind": self.eval.engine_kind})


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


FOLLOWING = ("curate.difficulty.max_tokens", "eval.max_tokens", "curate.clusters.seed", "curate.selection.seed")


def _get(recipe: BaseModel, key: str) -> Any:
    for part in key.split("."):
        recipe = getattr(recipe, part)
    return recipe


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    for part in path:
        raw = raw[part]
    raw[last] = value


class RecipeError(ValueError):
    """A recipe that cannot be loaded; the message names the file and the key."""


def shipped_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("space.recipes").iterdir() if p.name.endswith(".yaml"))


def _recipe_text(name_or_path: str) -> tuple[str, str]:
    shipped = resources.files("space.recipes") / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped.read_text(), f"space/recipes/{name_or_path}.yaml"
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise RecipeError(f"no recipe named {name_or_path!r} (shipped: {shipped_recipes()}) and no such file")
    return path.read_text(), str(path)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _parse_yaml(text: str, origin: str) -> Any:
    """`yaml.safe_load`, with a syntax error or a tag safe_load refuses (`!!python/object/apply:...`, which is
    never constructed) reported as a RecipeError naming the file, line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{origin} line {mark.line + 1}, column {mark.column + 1}" if mark is not None else origin
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"{where}: not a valid recipe YAML: {' '.join(str(problem).split())}") from None


def _read_layers(name_or_path: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    text, origin = _recipe_text(name_or_path)
    data = _parse_yaml(text, origin) or {}
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data, origin
    if base in seen:
        raise RecipeError(f"{origin}: recipe bases form a cycle: {' -> '.join((*seen, base))}")
    parent, _ = _read_layers(base, (*seen, name_or_path))
    return _merge(parent, data), origin


def parse_override(item: str) -> dict[str, Any]:
    """`train.epochs=3` -> {"train": {"epochs": 3}} (the value is read as YAML)."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    value: Any = _parse_yaml(raw, f"override {item!r}") if raw.strip() else ""
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def _describe(err: ValidationError, origin: str) -> str:
    lines = [f"invalid recipe {origin}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {key}: {e['msg']}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" else ""))
    return "\n".join(lines)


def load_recipe(name_or_path: str = "builtin", overrides: list[str] | None = None) -> Recipe:
    """Load a shipped or local recipe, apply `--set` overrides, validate everything."""
    data, origin = _read_layers(name_or_path)
    for item in overrides or []:
        data = _merge(data, parse_override(item))
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        where = origin + (f" with overrides {overrides}" if overrides else "")
        raise RecipeError(_describe(err, where)) from None


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (saved and logged with every run)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def flatten(recipe: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values, for MLflow params."""
    data = recipe.model_dump(mode="json") if isinstance(recipe, BaseModel) else recipe
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        out.update(flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return out


def compare_keys(recipe: Recipe) -> dict[str, str]:
    """What tells runs apart in a comparison, as MLflow tags and params (`space.policy`, `space.K`, ...), so
    MLflow's compare view and `space compare` line the same runs up."""
    return {"space.policy": recipe.train.bandit.policy, "space.pool": recipe.train.pool,
            "space.K": str(recipe.curate.clusters.num_clusters), "space.l": str(recipe.curate.selection.per_cluster),
            "space.seed": str(recipe.seed)}
