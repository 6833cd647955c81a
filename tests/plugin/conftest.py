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
def _what_a_fit_imports() -> None:
    """What torch and transformers import lazily on a model's first fit, imported before the
    first in-process run: imported again in a later run (its snapshot dropped them), torch
    registered its operators twice, with a warning that is an error here."""
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig
    from das_assert.models import load_model
    from das_assert.sites import Site

    experiment = Experiment(
        hypothesis="left_boundary", site=Site(0), n_train=16, n_test=16, min_task_accuracy=0
    )
    run_experiment(load_model("embedded"), experiment, FitConfig(epochs=1, batch_size=16))


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]) -> pytest.Pytester:
    pytester.makefile(".yaml", das=DAS_YAML.format(path=tiny_model_dirs["llama"]))
    pytester.makepyfile(test_hyp=HYPOTHESIS_FILE)
    return pytester
