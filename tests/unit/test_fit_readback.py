"""A fit reads its losses back one step late and its history at the end, with the same results.

Reading a GPU tensor's value makes the host wait for the device (``fit_readback``); these tests
hold that the deferred reads report what the eager ones did: the step and site of a loss that
stopped being finite, however late in the fit, and the same history.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from das_assert import fit_readback
from das_assert.data import encode
from das_assert.errors import TrainingDiverged
from das_assert.fit import FitConfig, fit_alignment
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs

CONFIG = FitConfig(epochs=2, batch_size=4, seed=0)  # 8 pairs: 2 steps an epoch, 4 in all


@pytest.fixture
def small_fit(tiny_llama: Any) -> tuple[Any, Any, Any]:
    site = Site(1, "last")
    train = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=0), site.parsed_position)
    return tiny_llama, site.resolve(tiny_llama.model), train


def nan_at_call(monkeypatch: pytest.MonkeyPatch, bad_call: int) -> None:
    """The alignment's task loss becomes NaN at its ``bad_call``-th computation (from 0)."""
    original = torch.nn.functional.cross_entropy
    calls = iter(range(10**6))

    def cross_entropy(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = original(*args, **kwargs)
        return loss * float("nan") if next(calls) == bad_call else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", cross_entropy)


@pytest.mark.parametrize(("bad_step", "epoch"), [(0, 0), (2, 1), (3, 1)])
def test_a_loss_that_stops_being_finite_names_its_step_even_the_last(
    small_fit: tuple[Any, Any, Any], monkeypatch: pytest.MonkeyPatch, bad_step: int, epoch: int
) -> None:
    loaded, site, train = small_fit
    nan_at_call(monkeypatch, bad_step)
    pattern = rf"the alignment loss became nan at step {bad_step} \(epoch {epoch}\) at "
    with pytest.raises(TrainingDiverged, match=pattern + r".*lower the learning rates"):
        fit_alignment(loaded.model, site, train, CONFIG)


def test_the_history_read_at_the_end_is_what_reading_each_step_gave(
    small_fit: tuple[Any, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, site, train = small_fit
    eager: list[dict[str, Any]] = []
    add = fit_readback.History.add

    def add_and_read_now(self: Any, step: int, interchanges: Any, task_losses: Any) -> None:
        (interchange,) = interchanges
        eager.append(
            {
                "step": step,
                "loss": round(task_losses[0].item(), 5),
                "temperature": round(interchange.temperature, 4),
                "widths": interchange.hard_widths(),
            }
        )
        add(self, step, interchanges, task_losses)

    monkeypatch.setattr(fit_readback.History, "add", add_and_read_now)
    fitted = fit_alignment(loaded.model, site, train, CONFIG)
    assert [row["step"] for row in fitted.history] == [1, 2, 3, 4]
    assert fitted.history == eager
    assert fitted.history[-1]["widths"] == fitted.interchange.hard_widths()
