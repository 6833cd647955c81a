"""das_assert: causal hypotheses about language models as pytest tests (Boundless DAS + IIA).

Public names load lazily, so ``import das_assert`` (and the pytest plugin) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what a type checker sees of the lazy names below (py.typed is shipped)
    from das_assert.alignment_result import AlignmentResult as AlignmentResult
    from das_assert.causal import CausalModel as CausalModel
    from das_assert.data import PromptPair as PromptPair
    from das_assert.errors import DasError as DasError
    from das_assert.evaluate import Evaluation as Evaluation
    from das_assert.experiment import Experiment as Experiment
    from das_assert.experiment import run_experiment as run_experiment
    from das_assert.featurizers import Interchange as Interchange
    from das_assert.fit import FitConfig as FitConfig
    from das_assert.fit import FittedAlignment as FittedAlignment
    from das_assert.metrics import Gap as Gap
    from das_assert.metrics import Verdict as Verdict
    from das_assert.metrics import wilson_interval as wilson_interval
    from das_assert.models import LoadedModel as LoadedModel
    from das_assert.models import load_model as load_model
    from das_assert.restarts import run_restarts as run_restarts
    from das_assert.saved import load_fitted as load_fitted
    from das_assert.sites import ResolvedSite as ResolvedSite
    from das_assert.sites import Site as Site
    from das_assert.sites import parse_site as parse_site
    from das_assert.tasks.price_tagging import (
        PriceFormat as PriceFormat,
    )
    from das_assert.tasks.price_tagging import (
        RenderedPrompt as RenderedPrompt,
    )
    from das_assert.tasks.price_tagging import (
        prompt_pairs as prompt_pairs,
    )
    from das_assert.tasks.registry import register_causal_model as register_causal_model

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
    # what the functions above return, for a caller's annotations
    "LoadedModel": "das_assert.models",
    "FittedAlignment": "das_assert.fit",
    "Evaluation": "das_assert.evaluate",
    "Verdict": "das_assert.metrics",
    "Gap": "das_assert.metrics",
    "ResolvedSite": "das_assert.sites",
    "PromptPair": "das_assert.data",
    "RenderedPrompt": "das_assert.tasks.price_tagging",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'das_assert' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names beside the module's own: ``help(das_assert)`` and a notebook's tab
    completion listed none of the lazily imported ones."""
    return sorted({*globals(), *_EXPORTS})
