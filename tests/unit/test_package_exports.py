"""What ``import das_assert`` offers: lazy names, and the same names to a type checker."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import das_assert


def _type_checking_imports() -> dict[str, str]:
    """``name -> module`` of the imports under ``if TYPE_CHECKING:`` in das_assert/__init__.py."""
    tree = ast.parse(Path(das_assert.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_a_type_checker_sees_every_lazy_name_from_its_module() -> None:
    # py.typed was shipped while every top-level name was Any to mypy: the README's
    # `from das_assert import FitConfig` accepted FitConfig(epochs="three").
    assert _type_checking_imports() == das_assert._EXPORTS


def test_every_lazy_name_loads_from_the_module_it_names() -> None:
    for name, module in das_assert._EXPORTS.items():
        assert getattr(das_assert, name) is getattr(importlib.import_module(module), name)
