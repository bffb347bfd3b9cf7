"""The packages' layering: housing/ is shared, training_job and model_server never meet.

Walks the AST of every module (function-level and TYPE_CHECKING imports included), so an
import hidden in a function body fails as surely as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.pipeline import REPO

# package -> the first-party packages it must never import
FORBIDDEN = {
    "housing": {"training_job", "model_server"},
    "training_job": {"model_server"},
    "model_server": {"training_job"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in the module at `path`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    modules = sorted((REPO / package).rglob("*.py"))
    assert modules, package
    crossings = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in modules
        for name in sorted(imported_packages(path) & FORBIDDEN[package])
    ]
    assert not crossings, "\n".join(crossings)


def test_the_walk_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "def f():\n"
        "    from model_server.records import x\n"
        "    import training_job.cli\n"
        "    importlib.import_module('housing.policy')\n"
    )
    assert imported_packages(module) >= {"model_server", "training_job", "housing"}
