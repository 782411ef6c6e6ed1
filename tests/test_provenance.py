"""Cache keys follow the code: the package hash (provenance tags, run keys) and per-stage code keys."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import space
from space.provenance import code_version, source_hash

PACKAGE = Path(space.__file__).resolve().parent
ROOT = PACKAGE.parent
def _copy_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "space", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "space"


def test_code_version_is_the_hash_of_the_package_sources():
    assert code_version() == source_hash(PACKAGE)
    assert code_version() != space.__version__ and len(code_version()) == 16


def _stage_keys_in_fresh_process(root: Path) -> dict[str, str]:
    """Each curation task's code key, computed by a fresh interpreter importing the copies under `root`."""
    script = ("import json, tasks, tasks.curate as c; from space.provenance import function_code_key as k; "
              "print(json.dumps({t.name: k(t.fn) for t in (c.load_data, c.embed, c.estimate_difficulty, "
              "c.build_features, c.cluster, c.select)}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(root),
                              "SPACE_HOME": str(root / "home"), "PREFECT_HOME": str(root / "prefect")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_editing_a_function_changes_the_keys_of_the_stages_that_run_it_and_no_other(tmp_path):
    for package in ("space", "tasks", "flows"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _stage_keys_in_fresh_process(tmp_path)
    features = tmp_path / "space" / "curate" / "features.py"
    text = features.read_text()
    assert "STD_EPS = 1e-8" in text  # the epsilon of the standardised difficulty: a change of behaviour
    features.write_text(text.replace("STD_EPS = 1e-8", "STD_EPS = 1e-9"))
    after = _stage_keys_in_fresh_process(tmp_path)
    assert {name for name in before if before[name] != after[name]} == {"build-features"}
    features.write_text(text)  # restoring the source restores the key: it is content, not time
    assert _stage_keys_in_fresh_process(tmp_path) == before


def test_a_recipe_edit_or_a_new_module_changes_the_hash_and_bytecode_does_not(tmp_path):
    copy = _copy_package(tmp_path)
    base = source_hash(copy)
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    assert source_hash(copy) == base
    (copy / "recipes" / "builtin.yaml").write_text((copy / "recipes" / "builtin.yaml").read_text() + "\n# edit\n")
    edited = source_hash(copy)
    assert edited != base
    (copy / "extra.py").write_text("")
    assert source_hash(copy) != edited
