"""Cache keys follow the code: editing a function of `space` changes every stage's fingerprint."""

import shutil
import subprocess
import sys
from pathlib import Path

import space
from space.provenance import code_version, source_hash

PACKAGE = Path(space.__file__).resolve().parent
PRINT_KEY = ("import space, space.config as c; "
             "print(space.__file__); print(c.fingerprint('features', {'pca_dims': 8}))")


def _copy_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "space", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "space"


def _key_in_fresh_process(root: Path) -> str:
    out = subprocess.run([sys.executable, "-c", PRINT_KEY], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, cwd=root)
    where, key = out.stdout.split()
    assert Path(where).resolve().is_relative_to(root.resolve())  # the copy was imported, not the original
    return key


def test_code_version_is_the_hash_of_the_package_sources():
    assert code_version() == source_hash(PACKAGE)
    assert code_version() != space.__version__ and len(code_version()) == 16


def test_editing_a_function_changes_the_fingerprint(tmp_path):
    copy = _copy_package(tmp_path)
    before = _key_in_fresh_process(tmp_path)
    features = copy / "features.py"
    text = features.read_text()
    assert "STD_EPS = 1e-8" in text  # the epsilon of the standardised difficulty: a change of behaviour
    features.write_text(text.replace("STD_EPS = 1e-8", "STD_EPS = 1e-9"))
    after = _key_in_fresh_process(tmp_path)
    assert before != after
    features.write_text(text)  # restoring the source restores the key: it is content, not time
    assert _key_in_fresh_process(tmp_path) == before


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
