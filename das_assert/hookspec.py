"""Hooks that a ``conftest.py`` can implement to adapt das_assert. PYTEST_DONT_REWRITE"""

from __future__ import annotations

from typing import Any

import pluggy
import pytest

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(firstresult=True)
def pytest_das_load_model(config: pytest.Config, path: str) -> Any:
    """Load the model under test yourself; return a ``das_assert.models.LoadedModel`` or None.

    Example, in conftest.py (``optionalhook``: pytest refuses an unknown hook when the plugin
    is off, ``-p no:das_assert``)::

        @pytest.hookimpl(optionalhook=True)
        def pytest_das_load_model(config, path):
            from das_assert.models import load_model
            return load_model(path, dtype="bfloat16", device_map="auto")
    """


@hookspec
def pytest_das_result(config: pytest.Config, record: dict[str, Any]) -> None:
    """Called on the controller for every IIA claim judged, with its JSON-report record.

    Example, in conftest.py::

        @pytest.hookimpl(optionalhook=True)
        def pytest_das_result(config, record):
            print(record["test_id"], record["iia"], record["verdict"])
    """
