"""The benchmarks are collected only where a ``-m`` expression names them: a user's own ``-m``
(``pytest -m "not slow" tests/``) replaces addopts' ``-m 'not bench'`` and ran them all."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "bench" in (config.option.markexpr or ""):
        return
    benchmarks = [item for item in items if item.get_closest_marker("bench")]
    if benchmarks:
        config.hook.pytest_deselected(items=benchmarks)
        items[:] = [item for item in items if not item.get_closest_marker("bench")]
