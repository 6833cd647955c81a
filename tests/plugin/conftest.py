"""Fixtures of the plugin tests: a pytester project with das.yaml and a hypothesis file."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_support import DAS_YAML, HYPOTHESIS_FILE


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]) -> pytest.Pytester:
    pytester.makefile(".yaml", das=DAS_YAML.format(path=tiny_model_dirs["llama"]))
    pytester.makepyfile(test_hyp=HYPOTHESIS_FILE)
    return pytester
