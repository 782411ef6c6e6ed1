"""Size limits (issue 9): no module of `space`, `flows`, `tasks` or `infra` over 400 lines, no function over 60.

Functions are found with `ast` (methods and nested functions included) and measured from the `def` line to
their last line, decorators excluded.
"""

import ast
from pathlib import Path

import space

ROOT = Path(space.__file__).parents[1]
SOURCES = sorted(p for package in ("space", "flows", "tasks", "infra") for p in (ROOT / package).rglob("*.py"))
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in `source` longer than `limit` lines."""
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [(n.name, n.end_lineno - n.lineno + 1) for n in nodes if n.end_lineno - n.lineno + 1 > limit]


def test_no_module_of_the_code_is_over_400_lines():
    assert len(SOURCES) > 30
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in SOURCES}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_of_the_code_is_over_60_lines():
    found = {p.relative_to(ROOT).as_posix(): long_functions(p.read_text(), MAX_FUNCTION_LINES) for p in SOURCES}
    assert {name: funcs for name, funcs in found.items() if funcs} == {}


def test_the_function_check_catches_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert long_functions(f"def short():\n    pass\n\n\ndef long():\n{body}\n", 60) == [("long", 61)]
