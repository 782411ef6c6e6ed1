"""Which code produced a result: content hashes of sources, part of every cache key.

A version string never changes between commits, so a cache keyed on it silently reuses results computed
by old code. `code_version()` hashes the bytes of every `.py` source and shipped recipe of the `space`
package (sorted relative path + content), once per process: provenance tags and MLflow run keys use it.
`function_code_key(fn)` hashes only the code a stage function reaches, so an edit recomputes the stages
that run it and leaves the others cached (tasks/common.py folds it into stage keys).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

SOURCE_SUFFIXES = (".py", ".yaml")
PACKAGES = ("space", "tasks", "flows")  # whose code a stage key follows
THIN = ("tasks", "flows")  # Prefect layers: their modules' top-level statements count, not every function


def _add(digest: Any, name: str, data: bytes) -> None:
    """Feed (name, data) to a hash with both lengths first, so no two sequences of pairs collide."""
    key = name.encode()
    digest.update(len(key).to_bytes(8, "little") + key + len(data).to_bytes(8, "little") + data)


def source_hash(root: Path, suffixes: tuple[str, ...] = SOURCE_SUFFIXES) -> str:
    """sha256 over the sorted (relative path, bytes) of the files under `root` with these suffixes."""
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)
    for path in files:
        _add(digest, path.relative_to(root).as_posix(), path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_version() -> str:
    """The content hash of the installed `space` package's sources (computed once per process)."""
    return source_hash(Path(__file__).resolve().parent)


# ------------------------------------------------------------------------------------------ per-function keys
# A stage's key should change when the code *it* runs changes, not with any edit anywhere. What a function
# runs is found statically: the modules it imports inside its body, the modules of the globals it uses
# (helpers of its own module are followed into), then every module those import, transitively (all
# import statements of a module count, including lazy ones inside functions: conservative by design).


@lru_cache(maxsize=None)
def _module_file(name: str) -> Path | None:
    """The source file of a module, found without importing it (its parent packages are imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _package_of(name: str) -> str:
    """The package relative imports in module `name` start from (itself for a package's __init__)."""
    path = _module_file(name)
    return name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]


def _from_module(node: ast.ImportFrom, package: str | None) -> str:
    """The absolute module of a `from ... import` statement (relative ones resolved against `package`)."""
    base = node.module or ""
    if node.level and package:
        parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{parent}.{base}" if base else parent
    return base


def _imported_modules(tree: ast.AST, package: str | None, packages: tuple[str, ...]) -> set[str]:
    """Names of the modules of `packages` imported anywhere in `tree` (relative imports resolved)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_module(node, package)
            if base.split(".")[0] in packages:  # never look up (and so import) other libraries' modules
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names
                             if _module_file(f"{base}.{alias.name}") is not None)
    return {name for name in found if name.split(".")[0] in packages and _module_file(name) is not None}


@lru_cache(maxsize=None)
def _module_imports(name: str, packages: tuple[str, ...]) -> frozenset[str]:
    """The modules of `packages` that module `name` imports anywhere (parsed once per process)."""
    tree = ast.parse(_module_file(name).read_bytes())
    return frozenset(_imported_modules(tree, _package_of(name), packages))


def module_closure(roots: set[str], packages: tuple[str, ...] = PACKAGES) -> set[str]:
    """`roots` and every module of `packages` they import, transitively, with their parent packages."""
    seen: set[str] = set()
    todo = [r for r in roots if r.split(".")[0] in packages]
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        todo.extend(_module_imports(name, packages) | parents)
    return seen


def function_modules(fn: Callable[..., Any], packages: tuple[str, ...] = PACKAGES
                     ) -> tuple[set[str], set[str], dict[str, str]]:
    """What a function runs: (modules to hash whole, with what they import; modules whose top-level
    statements alone are hashed; the source of every function followed, by qualified name).

    Functions it calls from `packages` are followed one by one; a class or another module-level object
    brings the whole module that defines it in; the thin `tasks` and `flows` modules contribute their
    top-level statements (constants, cache policies), not every other task's code."""
    whole: set[str] = set()
    skeletons: set[str] = set()
    sources: dict[str, str] = {}
    todo, seen = [inspect.unwrap(fn)], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        skeletons.add(current.__module__)
        source = sources[f"{current.__module__}.{current.__qualname__}"] = inspect.getsource(current)
        tree = ast.parse(textwrap.dedent(source))
        whole |= _imported_modules(tree, current.__module__.rpartition(".")[0], packages)
        for name in _global_names(current.__code__):
            if name not in current.__globals__:
                continue  # a builtin, an attribute name
            kind, target = _classify(current.__globals__[name], _origin(current.__module__, name), packages)
            if kind == "function":
                todo.append(target)
            elif kind == "module":
                (skeletons if target.split(".")[0] in THIN else whole).add(target)
    return whole, skeletons, sources


def _classify(value: Any, home: str, packages: tuple[str, ...]) -> tuple[str, Any]:
    """('function', fn) to follow, ('module', name) to hash, or ('', None) for what lies outside `packages`."""
    inner = getattr(value, "fn", value)  # a Prefect task called from a task: its function
    inner = inspect.unwrap(inner) if callable(inner) else inner
    if inspect.ismodule(value):
        return ("module", value.__name__) if value.__name__.split(".")[0] in packages else ("", None)
    if inspect.isfunction(inner):
        return ("function", inner) if inner.__module__.split(".")[0] in packages else ("", None)
    module = value.__module__ if inspect.isclass(value) else home  # any other object: where it is defined
    return ("module", module) if module and module.split(".")[0] in packages else ("", None)


@lru_cache(maxsize=None)
def _imported_names(module: str) -> dict[str, str]:
    """name -> source module of the `from X import name [as alias]` statements at a module's top level."""
    path = _module_file(module)
    if path is None:
        return {}
    package = _package_of(module)
    return {alias.asname or alias.name: _from_module(node, package)
            for node in ast.parse(path.read_bytes()).body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def _origin(module: str, name: str) -> str:
    """The module a global `name` of `module` comes from: where it was imported from, else `module`."""
    return _imported_names(module).get(name, module)


@lru_cache(maxsize=None)
def module_skeleton(name: str) -> str:
    """A module's top-level statements without its function and class bodies (imports, constants)."""
    tree = ast.parse(_module_file(name).read_bytes())
    tree.body = [node for node in tree.body
                 if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    return ast.unparse(tree)


def _global_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_names(const)
    return names


def modules_hash(modules: set[str]) -> str:
    """sha256 over the sorted (module name, source bytes) of these modules."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        _add(digest, name, _module_file(name).read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def function_code_key(fn: Callable[..., Any]) -> str:
    """The content hash of the code `fn` runs (see `function_modules`): whole modules with everything they
    import, the top-level statements of the `tasks` modules involved, and the source of each function
    followed. Editing code a stage does not run leaves its key alone."""
    whole, skeletons, sources = function_modules(fn)
    digest = hashlib.sha256(modules_hash(module_closure(whole)).encode())
    for name in sorted(skeletons):
        _add(digest, name, module_skeleton(name).encode())
    for name in sorted(sources):
        _add(digest, name, sources[name].encode())
    return digest.hexdigest()[:16]
