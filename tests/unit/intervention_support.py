"""A soft boundless intervention for tests that compare passes: one mixer, shared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from das_assert.featurizers import Interchange
from das_assert.runner import source_vectors


def mixer(
    loaded: Any, site: Any, encoded: Any, index: torch.Tensor
) -> tuple[Interchange, Callable[[torch.Tensor], torch.Tensor]]:
    """A fresh boundless ``Interchange`` at ``site`` and the mix that applies it (soft mask) to
    rows ``index`` of ``encoded``, from their own source activations."""
    interchange = Interchange.boundless(loaded.config.hidden_size)
    sources = source_vectors(loaded.model, site, encoded)[index]
    variables = encoded.variable_index[index]

    def mix(base: torch.Tensor) -> torch.Tensor:
        return interchange(base, sources, variables, hard=False)

    return interchange, mix
