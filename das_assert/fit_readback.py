"""What a fit reads back from the device, and when.

Each read of a GPU tensor's value makes the host wait until the device has run everything queued
before it, and then the device waits for the host to queue more. A fit reads a step's losses one
step later (``StepLosses``: by then the device is busy with that step's backward, so the wait
costs it nothing) and its history once, at the end (``History``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from das_assert.errors import TrainingDiverged

__all__ = ["History", "StepLosses"]


@dataclass(frozen=True)
class StepLosses:
    """One step's losses, one per site, not read back yet."""

    values: torch.Tensor
    step: int
    epoch: int

    def raise_if_diverged(self, sites: Sequence[Any], config: Any) -> None:
        """``TrainingDiverged`` naming the first site whose loss is not finite, and what to
        lower (``config``: the fit's ``FitConfig``)."""
        if bool(torch.isfinite(self.values).all()):
            return
        for value, site in zip(self.values.tolist(), sites, strict=True):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the alignment loss became {value} at step {self.step} "
                    f"(epoch {self.epoch}) at {site.site}; lower the learning rates "
                    f"(lr_rotation={config.lr_rotation}, lr_boundary={config.lr_boundary}) or "
                    f"the boundary penalty ({config.boundary_penalty}), or check the model for "
                    "NaN outputs"
                )


@dataclass
class History:
    """Each site's task loss, temperature and hard widths at some steps, kept as tensors until
    ``rows`` reads them."""

    _kept: list[tuple[int, list[float], list[torch.Tensor], list[torch.Tensor]]] = field(
        default_factory=list
    )

    def add(self, step: int, interchanges: Sequence[Any], task_losses: Sequence[Any]) -> None:
        self._kept.append(
            (
                step,
                [interchange.temperature for interchange in interchanges],
                [loss.detach() for loss in task_losses],
                [interchange.hard_width_counts() for interchange in interchanges],
            )
        )

    def rows(self, sites: int) -> list[list[dict[str, Any]]]:
        """Each site's history, one dict per kept step."""
        histories: list[list[dict[str, Any]]] = [[] for _ in range(sites)]
        for step, temperatures, losses, widths in self._kept:
            for cell, history in enumerate(histories):
                history.append(
                    {
                        "step": step,
                        "loss": round(losses[cell].item(), 5),
                        "temperature": round(temperatures[cell], 4),
                        "widths": [int(v) for v in widths[cell].tolist()],
                    }
                )
        return histories
