"""Fixtures of the plugin tests: a pytester project with das.yaml and a hypothesis file."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from plugin_support import DAS_YAML, HYPOTHESIS_FILE

import das_assert

# Every das_assert module in sys.modules before the first in-process pytester run. A run's
# snapshot drops the modules first imported inside it, while the package attribute
# (`das_assert.fit`) still names that copy: a test patching it, or one module's state read
# through another (sharing's scopes), would then live in a copy the next run does not import.
for _module in pkgutil.walk_packages(das_assert.__path__, "das_assert."):
    if not _module.name.endswith("__main__"):
        importlib.import_module(_module.name)


@pytest.fixture(scope="session", autouse=True)
def _in_process_runs(what_a_fit_imports: None) -> None:
    """Every plugin test may run pytest in this process."""


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]) -> pytest.Pytester:
    pytester.makefile(".yaml", das=DAS_YAML.format(path=tiny_model_dirs["llama"]))
    pytester.makepyfile(test_hyp=HYPOTHESIS_FILE)
    return pytester
