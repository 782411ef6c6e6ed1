"""The core library stays free of the orchestrator and the tracker, and cheap to import.

`space` and every module and subpackage of it (found by walking the package, not listed by hand) is imported
alone in a fresh interpreter, which must not load prefect or mlflow, nor the heavy libraries torch, vllm,
faiss and ray (imported lazily inside the functions that use them).
"""

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import space

FORBIDDEN = ("prefect", "mlflow", "torch", "vllm", "faiss", "ray")
HEAVY = ("torch", "ray", "vllm")
MODULES = sorted(m.name for m in pkgutil.walk_packages(space.__path__, "space."))
CHECK = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
         "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2].split(',')))))")


def _forbidden_after_import(module: str, root: Path, forbidden: tuple[str, ...] = FORBIDDEN) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CHECK, module, ",".join(forbidden)], capture_output=True,
                         text=True, check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    return [name for name in out.stdout.strip().split(",") if name]


def test_the_walk_finds_every_module():
    files = {p.relative_to(Path(space.__file__).parent.parent).with_suffix("").as_posix().replace("/", ".")
             for p in Path(space.__file__).parent.rglob("*.py") if p.name != "__init__.py"}
    assert files <= set(MODULES)
    packages = {p.parent.relative_to(Path(space.__file__).parent.parent).as_posix().replace("/", ".")
                for p in Path(space.__file__).parent.rglob("__init__.py")}
    assert packages - {"space"} <= set(MODULES)
    assert {"space.train.evaluation", "space.train.checkpoint", "space.analysis.plots", "space.models.smollm2",
            "space.train.sampler", "space.train.bandit", "space.engines"} <= set(MODULES)


@pytest.mark.parametrize("module", ["space", *MODULES])
def test_module_imports_no_orchestrator_tracker_or_heavy_library(module):
    root = Path(space.__file__).resolve().parent.parent
    assert _forbidden_after_import(module, root) == []


def test_the_check_catches_an_mlflow_import(tmp_path):
    shutil.copytree(Path(space.__file__).parent, tmp_path / "space", ignore=shutil.ignore_patterns("__pycache__"))
    evaluation = tmp_path / "space" / "train" / "evaluation.py"
    evaluation.write_text(evaluation.read_text() + "\nimport mlflow  # the regression the issue describes\n")
    assert _forbidden_after_import("space.train.evaluation", tmp_path) == ["mlflow"]


def test_the_check_catches_a_module_level_torch_import(tmp_path):
    shutil.copytree(Path(space.__file__).parent, tmp_path / "space", ignore=shutil.ignore_patterns("__pycache__"))
    sampler = tmp_path / "space" / "train" / "sampler.py"
    sampler.write_text(sampler.read_text() + "\nimport torch.utils.data  # what sampler.py used to do\n")
    assert _forbidden_after_import("space.train.sampler", tmp_path) == ["torch"]


@pytest.mark.parametrize("module", ["space", "space.config", "space.scaleout"])
def test_recipes_and_the_ray_scaleout_module_load_without_torch_or_ray(module):
    root = Path(space.__file__).resolve().parent.parent
    assert _forbidden_after_import(module, root, HEAVY) == []


def test_the_check_catches_a_ray_import(tmp_path):
    shutil.copytree(Path(space.__file__).parent, tmp_path / "space", ignore=shutil.ignore_patterns("__pycache__"))
    scaleout = tmp_path / "space" / "scaleout.py"
    scaleout.write_text(scaleout.read_text() + "\nimport ray.data  # eager: what the lazy imports avoid\n")
    assert _forbidden_after_import("space.scaleout", tmp_path, HEAVY) == ["ray"]
