"""A claim that the variable is absent passes only where the intervention keeps the model
answering: a broken hook or engine that writes noise into the hidden state scores a low IIA
too, which is no evidence of absence (found by running the suite on sabotaged engines)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import das_assert.evaluate as evaluate_module
from das_assert import Experiment, FitConfig, load_model, run_experiment
from das_assert.metrics import ANSWERS_KEPT, Gap, verdict

LEADS = {"noop": Gap(0.66, -0.2, -0.25, -0.15)}


def test_a_low_iia_with_answers_broken_is_inconclusive_not_absent() -> None:
    judged = verdict(
        iia_ci=(0.40, 0.49), iia=0.445, threshold=0.72, gaps=LEADS, off_answers=(93, 0, 400)
    )
    assert judged.outcome == "inconclusive"
    assert judged.decided_by == (ANSWERS_KEPT,)
    assert "93 of 400 intervened predictions are no answer word" in judged.reason


def test_a_lead_lost_with_answers_broken_is_inconclusive_not_absent() -> None:
    # The IIA interval (0.66, 0.74) contains the threshold 0.72, but the lead over the no-op is
    # clearly lost: a not_aligned verdict from the lead alone. With 120 of 400 predictions no
    # answer word, that loss is no evidence of absence either (guards against broken answers
    # overruling only a verdict the threshold decides).
    judged = verdict(
        iia_ci=(0.66, 0.74),
        iia=0.70,
        threshold=0.72,
        gaps={"noop": Gap(0.72, -0.02, -0.06, 0.02)},
        off_answers=(120, 0, 400),
    )
    assert judged.outcome == "inconclusive"
    assert judged.decided_by == (ANSWERS_KEPT,)
    assert "120 of 400 intervened predictions are no answer word" in judged.reason


@pytest.mark.parametrize("off", [(0, 0, 800), (1, 0, 800), (40, 30, 800)])
def test_answers_the_plain_run_also_misses_change_no_verdict(off: tuple[int, int, int]) -> None:
    judged = verdict(iia_ci=(0.40, 0.49), iia=0.445, threshold=0.72, gaps=LEADS, off_answers=off)
    assert judged.outcome == "not_aligned"


def test_a_negative_claim_on_an_engine_that_writes_noise_is_not_called_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def noise(*_: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return lambda base: base + 50.0 * torch.randn(base.shape, generator=generator)

    monkeypatch.setattr(evaluate_module, "_hard_mix", noise)
    site = "block_output[layer=0, pos=last]"
    experiment = Experiment(
        hypothesis="bracket_identity", site=site, n_train=64, n_test=200, threshold=0.72
    )

    result = run_experiment(load_model(), experiment, FitConfig(epochs=1))

    off = result.evaluation.off_answers()
    assert off["intervened"] > 20
    assert off["base"] == 0
    assert result.verdict().outcome == "inconclusive"
    assert result.to_dict()["off_answers"] == off
