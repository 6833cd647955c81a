"""The ``>>>`` examples in das_assert's docstrings run as written: an example that drifts from
the code misleads the reader who copies it."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import das_assert

PACKAGE = Path(das_assert.__file__).parent
WITH_EXAMPLES = sorted(
    ".".join(("das_assert", *path.relative_to(PACKAGE).with_suffix("").parts))
    for path in PACKAGE.rglob("*.py")
    if ">>> " in path.read_text(encoding="utf-8")
)


def test_the_modules_with_examples_are_found() -> None:
    assert "das_assert.metrics" in WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_the_docstring_examples_run_as_written(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert attempted > 0
    assert failed == 0
