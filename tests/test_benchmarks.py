"""benchmarks/ and experiments/: every script is listed in its folder's README with a result file that exists,
and none imports a private name or a test module (they run on the library's public API)."""

import ast
import re

import pytest

from .conftest import ROOT

FOLDERS = ("benchmarks", "experiments")
SCRIPTS = [p for d in FOLDERS for p in sorted((ROOT / d).glob("*.py")) if p.name != "common.py"]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _bad_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "tests" or any(_private(x) for x in parts)


def _private_imports(path) -> list[str]:
    """Private names (``_x``, a ``_x`` module, ``obj._x``) and ``tests`` imports in one script."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            bad += [node.module] if _bad_module(node.module) else []
            bad += [f"{node.module}.{a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Import):
            bad += [a.name for a in node.names if _bad_module(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            bad.append(f"{ast.unparse(node.value)}.{node.attr}")
    return bad


def test_there_are_scripts():
    assert {p.parent.name for p in SCRIPTS} == set(FOLDERS)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_uses_public_names_only(path):
    assert _private_imports(path) == []


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_is_listed_with_its_result(path):
    readme = (path.parent / "README.md").read_text()
    rows = [r for r in readme.splitlines() if r.startswith(f"| `{path.name}`")]
    assert rows, f"{path.name} has no row in {path.parent.name}/README.md"
    for row in rows:
        results = [r for r in re.findall(r"`(results/[^`]+\.json)`", row) if "<" not in r]
        assert results, row
        for r in results:
            assert (path.parent / r).is_file(), f"{path.parent.name}/{r}"
