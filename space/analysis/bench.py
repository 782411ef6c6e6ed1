"""Bench specs: a grid of arms (recipe + overrides) x seeds at one rollout budget, read from YAML.

    name: headline
    seeds: [0, 1, 2]
    reference: uniform-full           # paired differences and the 90%-of-gain step count are against this arm
    max_parallel: 1                   # cells run at once (threads of one process)
    budget:                           # overrides applied to every arm (the rollout budget and shared settings)
      - train.epochs=10
      - train.slots_per_epoch=64
    arms:
      - name: spaCe-ts_lp
        recipe: builtin
        set: [train.bandit.policy=ts_lp]
      - name: uniform-full
        recipe: uniform-full

Each cell's recipe = the arm's recipe, then `model.tiny.seed=<seed>` (unless `vary_base_model: false`), then
`budget`, then the arm's `set`, then `name=<arm>` and `seed=<seed>`. Every arm must end with the same rollout budget (epochs x slots x rollouts per prompt);
an arm whose overrides change it is an error naming the arm. A recipe given as a relative path is read
relative to the spec file when such a file exists there.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from space.config import Recipe, RecipeError, load_recipe, shipped_recipes

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class BenchArm(BaseModel):
    """One arm of the grid: a recipe plus `--set`-style overrides."""

    model_config = _FROZEN

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="arm name (run names, tags, report rows)")
    recipe: str = Field("builtin", description="shipped recipe name or YAML path (relative to the spec file)")
    set: tuple[str, ...] = Field((), description="overrides section.key=value, applied after the budget")
    description: str = Field("", description="what the arm tests, shown in the report")


class BenchSpec(BaseModel):
    """A bench: arms x seeds at one budget, compared against a reference arm."""

    model_config = _FROZEN

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="bench name (results folder, MLflow run name)")
    seeds: tuple[int, ...] = Field(min_length=1, description="recipe seeds; every arm runs every seed")
    budget: tuple[str, ...] = Field((), description="overrides applied to every arm before its own")
    reference: str = Field("uniform-full", description="arm the others are compared with")
    max_parallel: int = Field(1, ge=1, description="cells run concurrently (threads; mind memory and cores)")
    vary_base_model: bool = Field(
        True, description="each seed builds its own tiny base model (model.tiny.seed = the cell's seed), so the "
        "intervals over seeds include the base model's variance; false: every seed shares the recipe's base model")
    arms: tuple[BenchArm, ...] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        return seeds

    @model_validator(mode="after")
    def _arms_named_once(self) -> BenchSpec:
        names = [arm.name for arm in self.arms]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"arm names must be unique; repeated: {repeated}")
        if self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not one of the arms {names}")
        return self


class BenchCell(BaseModel):
    """One (arm, seed) cell with its fully resolved recipe."""

    model_config = _FROZEN

    arm: str
    seed: int
    recipe: Recipe


class BenchSpecError(ValueError):
    """A bench spec that cannot be used; the message names the file and the key or arm."""


def load_bench_spec(path: str | Path) -> BenchSpec:
    """Read and validate a bench spec YAML file."""
    path = Path(path)
    if not path.is_file():
        raise BenchSpecError(f"no bench spec at {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise BenchSpecError(f"{path}: a bench spec must be a mapping, got {type(data).__name__}")
    try:
        return BenchSpec.model_validate(data)
    except ValidationError as err:
        lines = [f"invalid bench spec {path}:"]
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  {key}: {e['msg']}")
        raise BenchSpecError("\n".join(lines)) from None


def _recipe_source(recipe: str, spec_dir: Path) -> str:
    if recipe in shipped_recipes():
        return recipe
    beside = spec_dir / recipe
    return str(beside) if beside.is_file() else recipe


def rollout_budget(recipe: Recipe) -> int:
    """Rollouts a run consumes in training: epochs x slots per epoch x rollouts per prompt."""
    return recipe.train.epochs * recipe.train.slots_per_epoch * recipe.train.grpo.num_generations


def resolve_cells(spec: BenchSpec, spec_dir: str | Path = ".") -> list[BenchCell]:
    """Every (arm, seed) cell with its validated recipe, arm-major; checks one rollout budget for all arms."""
    spec_dir = Path(spec_dir)
    cells: list[BenchCell] = []
    budgets: dict[str, int] = {}
    for arm in spec.arms:
        for seed in spec.seeds:
            base = [f"model.tiny.seed={seed}"] if spec.vary_base_model else []
            overrides = [*base, *spec.budget, *arm.set, f"name={arm.name}", f"seed={seed}"]
            try:
                recipe = load_recipe(_recipe_source(arm.recipe, spec_dir), overrides)
            except RecipeError as err:
                raise BenchSpecError(f"arm {arm.name!r} (recipe {arm.recipe!r}): {err}") from None
            budgets[arm.name] = rollout_budget(recipe)
            cells.append(BenchCell(arm=arm.name, seed=seed, recipe=recipe))
    if len(set(budgets.values())) > 1:
        raise BenchSpecError(f"{spec.name}: arms differ in rollout budget (epochs x slots x generations): "
                             f"{budgets}; put the budget keys under `budget`, not in an arm's `set`")
    return cells
