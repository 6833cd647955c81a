"""What a training step lets go of, and when: nothing it no longer needs sits beside the next pass.

At Llama-7B's width the rotation's gradient is a d x d float32 matrix (64 MiB), and a step's
prefix cache holds the keys and values its pass gathered (316 MiB at batch 16, site at layer
15). Held one phase too long, either adds to the fit's peak.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch

from das_assert import fit, runner
from das_assert.data import encode
from das_assert.fit import FitConfig, fit_alignment
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs

CONFIG = FitConfig(epochs=2, batch_size=4, seed=0)


@pytest.fixture
def small_fit(tiny_llama: Any) -> tuple[Any, Any, Any]:
    site = Site(1, "last")
    train = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=0), site.parsed_position)
    return tiny_llama, site.resolve(tiny_llama.model), train


def test_no_gradient_is_held_while_the_next_step_runs_its_passes(
    small_fit: tuple[Any, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, site, train = small_fit
    seen: list[bool] = []
    optimizers: list[torch.optim.Optimizer] = []
    adam = torch.optim.Adam

    def recorded_adam(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizers.append(adam(*args, **kwargs))
        return optimizers[-1]

    joint_logits = runner.BaseRun.joint_logits

    def checked(self: Any, interventions: Any) -> torch.Tensor:
        params = [p for group in optimizers[0].param_groups for p in group["params"]]
        seen.append(all(p.grad is None for p in params))
        return joint_logits(self, interventions)

    monkeypatch.setattr(fit.torch.optim, "Adam", recorded_adam)
    monkeypatch.setattr(runner.BaseRun, "joint_logits", checked)
    fit_alignment(loaded.model, site, train, CONFIG)
    assert seen == [True] * 4


def test_a_steps_prefix_cache_is_let_go_before_its_backward(
    small_fit: tuple[Any, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, site, train = small_fit
    runs: list[weakref.ref[Any]] = []
    alive_at_backward: list[int] = []
    init = runner.BaseRun.__init__

    def tracked(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        runs.append(weakref.ref(self))

    backward = torch.autograd.backward

    def counted(*args: Any, **kwargs: Any) -> Any:
        gc.collect()
        alive_at_backward.append(sum(run() is not None for run in runs))
        return backward(*args, **kwargs)

    monkeypatch.setattr(runner.BaseRun, "__init__", tracked)
    monkeypatch.setattr(torch.autograd, "backward", counted)
    fit_alignment(loaded.model, site, train, CONFIG)
    assert alive_at_backward == [0] * 4
