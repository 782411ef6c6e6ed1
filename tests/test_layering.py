"""Straight layering (issue 19): no module of `space/`, `tasks/` or `flows/` imports a layer above its own.

The floors, lowest first (CONTRIBUTING.md, "Layering"):

    0 foundations   space/__init__, hashing, seeding, registry, paths, manifest, provenance, optimizer, recipes
    1 data          space/data
    2 engines, models
    3 curate, train  (siblings: neither imports the other)
    4 scaleout      space/scaleout.py (the Ray runner over curation's embedding and rollouts)
    5 config        space/config.py, the aggregate recipe: it only assembles the sections defined below it
    6 analysis      space/analysis (reading results; bench specs resolve recipes)
    7 tasks         Prefect tasks over space
    8 flows         Prefect flows composing tasks, and the CLI

An import is allowed inside one floor's package (space.train.epoch -> space.train.grpo) or to a lower floor.
Imports are read with `ast`, at module level and inside functions alike, so a lazy import counts. Every module
must sit on a floor: a new top-level module of `space` needs a line here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("space", "tasks", "flows")

FLOORS: list[tuple[str, int, tuple[str, ...]]] = [
    ("foundations", 0, ("space", "space.hashing", "space.seeding", "space.registry", "space.paths", "space.manifest",
                        "space.provenance", "space.optimizer", "space.recipes")),
    ("data", 1, ("space.data",)),
    ("engines", 2, ("space.engines",)),
    ("models", 2, ("space.models",)),
    ("curate", 3, ("space.curate",)),
    ("train", 3, ("space.train",)),
    ("scaleout", 4, ("space.scaleout",)),
    ("config", 5, ("space.config",)),
    ("analysis", 6, ("space.analysis",)),
    ("preflight", 6, ("space.preflight",)),
    ("integrations", 6, ("space.integrations",)),
    ("tasks", 7, ("tasks",)),
    ("flows", 8, ("flows",)),
]

# Known upward imports, each with the reason it is tolerated for now. An entry that no longer matches an import
# fails `test_every_allowed_upward_import_still_exists`: remove it then.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules(root: Path) -> dict[str, Path]:
    """Every module of the three packages under `root`, by dotted name."""
    return {module_name(p, root): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its source (module level, functions, TYPE_CHECKING).

    `from a.b import c` counts as importing a.b.c when that is a module, else a.b."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found.update(subs & known or {base})
    return {_deepest_known(m, known) for m in found if m.split(".")[0] in PACKAGES} - {None, name}


def _deepest_known(module: str, known: set[str]) -> str | None:
    parts = module.split(".")
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in known:
            return ".".join(parts[:cut])
    return None


def floor_of(module: str) -> tuple[str, int] | None:
    """(floor name, rank) of a module, None when no floor claims it."""
    best: tuple[int, str, int] | None = None
    for floor, rank, prefixes in FLOORS:
        for prefix in prefixes:
            exact_only = prefix == "space"
            if module == prefix or (not exact_only and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), floor, rank)
    return None if best is None else (best[1], best[2])


def upward_imports(root: Path) -> dict[tuple[str, str], str]:
    """{(importer, imported): "floor -> floor"} for every import that is neither inside a floor nor downward."""
    modules = find_modules(root)
    found = {}
    for name, path in modules.items():
        here = floor_of(name)
        for target in imported_modules(name, path, set(modules)):
            there = floor_of(target)
            if here and there and here[0] != there[0] and there[1] >= here[1]:
                found[(name, target)] = f"{here[0]} (floor {here[1]}) -> {there[0]} (floor {there[1]})"
    return found


def test_every_module_sits_on_a_floor():
    modules = find_modules(ROOT)
    assert len(modules) > 60
    assert [m for m in modules if floor_of(m) is None] == []


def test_no_module_imports_upward_beyond_the_allow_list():
    assert {pair: how for pair, how in upward_imports(ROOT).items() if pair not in ALLOWED_UPWARD} == {}


def test_every_allowed_upward_import_still_exists():
    assert set(ALLOWED_UPWARD) - set(upward_imports(ROOT)) == set()


def test_the_walk_sees_the_import_graph_it_claims_to():
    modules = find_modules(ROOT)
    epoch = imported_modules("space.train.epoch", modules["space.train.epoch"], set(modules))
    assert {"space.train.config", "space.data.verifiers", "space.train.grpo", "space.train.bandit"} <= epoch
    assert "space.analysis.gain" in imported_modules("tasks.gain", modules["tasks.gain"], set(modules))


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in PACKAGES:
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_check_catches_a_function_level_import_of_the_aggregate_config(tmp_path):
    root = _plant(tmp_path, {"space/config.py": "X = 1\n", "space/train/__init__.py": "",
                             "space/train/epoch.py": "def run():\n    from space.config import X\n    return X\n"})
    assert upward_imports(root) == {("space.train.epoch", "space.config"): "train (floor 3) -> config (floor 5)"}


def test_the_check_catches_relative_and_sibling_imports(tmp_path):
    root = _plant(tmp_path, {"space/analysis/__init__.py": "", "space/analysis/stats.py": "",
                             "space/curate/__init__.py": "", "space/curate/x.py": "",
                             "space/train/__init__.py": "from ..analysis import stats\n",
                             "space/train/e.py": "import space.curate.x\nfrom . import __name__ as n\n",
                             "tasks/t.py": "from flows import cli\n", "flows/cli.py": ""})
    assert set(upward_imports(root)) == {("space.train", "space.analysis.stats"), ("space.train.e", "space.curate.x"),
                                         ("tasks.t", "flows.cli")}


def test_downward_and_same_floor_imports_pass(tmp_path):
    root = _plant(tmp_path, {"space/hashing.py": "", "space/train/__init__.py": "", "space/train/a.py": "",
                             "space/train/b.py": "from space.train import a\nfrom space import hashing\n",
                             "flows/f.py": "import tasks\nfrom space.train import b\n"})
    assert upward_imports(root) == {}
