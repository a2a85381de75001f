"""Size limits from ARCHITECTURE.md: no module over 400 lines, no function or method over 80.

Lines are counted in the source as committed (the tree is ruff-formatted, so that is "after
formatting"); a function spans ``end_lineno - lineno + 1``, its decorators not included. Every
Python file of the project counts, tests and benchmarks too; virtual environments, build
output and run folders do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["device", "cli", "workflows", "train", "export", "benchmarks", "tools", "tests"]
SKIP = {".venv", "venv", "build", "runs", "__pycache__"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def oversized(source: str, name: str) -> list[str]:
    """One line per limit ``source`` breaks: the module itself, then each long function."""
    found = []
    n_lines = len(source.splitlines())
    if n_lines > MAX_MODULE_LINES:
        found.append(f"MODULE {name}: {n_lines} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            span = (node.end_lineno or node.lineno) - node.lineno + 1
            if span > MAX_FUNCTION_LINES:
                found.append(
                    f"FUNC {name}:{node.lineno} {node.name}: {span} lines "
                    f"(limit {MAX_FUNCTION_LINES})"
                )
    return found


def project_files() -> list[Path]:
    files = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if SKIP.isdisjoint(path.relative_to(ROOT).parts):
                files.append(path)
    return files


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines - 2))
    return f"{indent}def {name}():\n{body}{indent}    return 0\n"


def test_checker_reports_a_long_function_and_method_and_module():
    at_limit = _function("fits", MAX_FUNCTION_LINES)
    assert oversized(at_limit, "ok.py") == []
    too_long = _function("long", MAX_FUNCTION_LINES + 1)
    method = "class C:\n" + _function("meth", MAX_FUNCTION_LINES + 1, indent="    ")
    found = oversized(too_long + method, "bad.py")
    assert "FUNC bad.py:1 long: 81 lines (limit 80)" in found
    assert any(line.startswith("FUNC bad.py:") and " meth: 81 lines" in line for line in found)
    padded = "x = 0\n" * (MAX_MODULE_LINES + 1)
    assert oversized(padded, "big.py") == ["MODULE big.py: 401 lines (limit 400)"]
    assert oversized("x = 0\n" * MAX_MODULE_LINES, "fits.py") == []


def test_walk_sees_every_layer_and_skips_virtualenvs():
    files = project_files()
    seen = {path.relative_to(ROOT).parts[0] for path in files}
    for folder in ["device", "cli", "workflows", "train", "export", "benchmarks", "tests"]:
        assert folder in seen, f"no Python files found under {folder}/"
    assert Path(__file__).resolve() in files
    assert not any(SKIP & set(path.relative_to(ROOT).parts) for path in files)


def test_no_module_or_function_over_the_limits():
    found = []
    for path in project_files():
        rel = path.relative_to(ROOT).as_posix()
        found += oversized(path.read_text(encoding="utf-8"), rel)
    assert not found, "split these (ARCHITECTURE.md: modules <= 400 lines, functions <= 80):\n" + (
        "\n".join(found)
    )
