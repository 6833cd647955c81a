"""das_assert: causal hypotheses about language models as pytest tests (Boundless DAS + IIA).

Public names load lazily, so ``import das_assert`` (and the pytest plugin) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CausalModel": "das_assert.causal",
    "Site": "das_assert.sites",
    "parse_site": "das_assert.sites",
    "FitConfig": "das_assert.fit",
    "Experiment": "das_assert.experiment",
    "AlignmentResult": "das_assert.alignment_result",
    "run_experiment": "das_assert.experiment",
    "run_restarts": "das_assert.restarts",
    "load_model": "das_assert.models",
    "load_fitted": "das_assert.saved",
    "PriceFormat": "das_assert.tasks.price_tagging",
    "prompt_pairs": "das_assert.tasks.price_tagging",
    "register_causal_model": "das_assert.tasks.registry",
    "Interchange": "das_assert.featurizers",
    "wilson_interval": "das_assert.metrics",
    "DasError": "das_assert.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'das_assert' has no attribute {name!r}")
