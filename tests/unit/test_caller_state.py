"""What a caller's own settings do to das_assert, and what das_assert leaves of them: a fit under
``torch.no_grad()`` or another default float type, a model left in training mode or with its
weights asking for gradients, arguments given as lists, the progress bars of transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from das_assert import experiment as experiment_module
from das_assert.data import encode
from das_assert.errors import InvalidArgument
from das_assert.evaluate import base_answers
from das_assert.experiment import Experiment, run_experiment
from das_assert.fit import FitConfig
from das_assert.models import load_model
from das_assert.search import search
from das_assert.sites import Site
from das_assert.strategies import PromptVariant
from das_assert.tasks.price_tagging import prompt_pairs

EXPERIMENT = {"hypothesis": "left_boundary", "n_train": 16, "n_test": 16, "min_task_accuracy": 0}
CONFIG = FitConfig(epochs=1, batch_size=8)


@pytest.fixture
def fresh_llama(tiny_model_dirs: dict[str, Path]) -> Any:
    """A model of its own: these tests change its mode and its parameters' flags."""
    return load_model(tiny_model_dirs["llama"])


def _experiment(**changes: Any) -> Experiment:
    return Experiment(**{**EXPERIMENT, "site": Site(1, "last"), **changes})


def test_a_fit_under_no_grad_trains_and_one_under_inference_mode_is_refused(
    tiny_models: dict[str, Any],
) -> None:
    # A notebook's evaluation cell: the fit died in its first backward with autograd's error.
    model = tiny_models["llama"]
    plain = run_experiment(model, _experiment(), CONFIG)
    with torch.no_grad():
        quiet = run_experiment(model, _experiment(), CONFIG)
    assert torch.equal(
        quiet.fitted.interchange.rotation_matrix(), plain.fitted.interchange.rotation_matrix()
    )
    assert torch.is_grad_enabled()
    with pytest.MonkeyPatch.context() as patch, torch.inference_mode():
        patch.setattr(experiment_module, "check_engine", pytest.fail)  # refused before any pass
        with pytest.raises(InvalidArgument, match=r"outside torch\.inference_mode\(\)"):
            run_experiment(model, _experiment(seed=1), CONFIG)


def test_another_default_float_type_neither_breaks_a_fit_nor_changes_it(
    tiny_models: dict[str, Any],
) -> None:
    # The rotation's draws took torch's default type: float64 against float32 activations.
    model = tiny_models["llama"]
    plain = run_experiment(model, _experiment(seed=2), CONFIG)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = run_experiment(model, _experiment(seed=2), CONFIG)
    finally:
        torch.set_default_dtype(previous)
    assert wide.fitted.interchange.rotation_matrix().dtype == torch.float32
    assert wide.evaluation.predicted.tolist() == plain.evaluation.predicted.tolist()


def test_a_model_in_training_mode_with_weights_asking_for_gradients_is_measured_frozen(
    fresh_llama: Any,
) -> None:
    # A fit filled every weight's .grad (a copy of the model at 7B, for the caller's next
    # optimizer step to apply), and dropout made each evaluation of one alignment another IIA.
    model = fresh_llama.model
    for module in model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.5
    model.train().requires_grad_(True)
    result = run_experiment(fresh_llama, _experiment(), CONFIG)
    assert all(parameter.grad is None for parameter in model.parameters())
    assert all(module.training for module in model.modules())
    assert all(parameter.requires_grad for parameter in model.parameters())
    pairs = result.experiment.pairs(16, 11)
    first, second = result.evaluate_on(pairs), result.evaluate_on(pairs)
    assert first.predicted.tolist() == second.predicted.tolist()
    assert model.training


def test_the_passes_made_outside_an_evaluation_see_no_dropout_either() -> None:
    # A fuzz variant's task gate (and `check`) ran the base prompts in training mode: the
    # embedded model at dropout 0.5 answered 0.43 of them right, and the variant was rejected.
    loaded = load_model()
    test = encode(loaded, prompt_pairs("left_boundary", 64, seed=11), Site(0).parsed_position)
    plain = base_answers(loaded.model, test).tolist()
    for module in loaded.model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.5
    loaded.model.train()
    assert [base_answers(loaded.model, test).tolist() for _ in range(2)] == [plain, plain]
    assert loaded.model.training


def test_a_bracket_or_variant_given_as_lists_is_the_same_as_tuples(
    tiny_models: dict[str, Any],
) -> None:
    # A list bracket passed run_experiment, then failed a search (and the pytest session's
    # memo) with "unhashable type: 'list'"; a variant's list of the default answers counted
    # as a format change.
    listed = _experiment(bracket=[130, 855])
    assert listed == _experiment(bracket=(130, 855))
    assert hash(listed) == hash(_experiment(bracket=(130, 855)))
    model = tiny_models["llama"]

    def align(hypothesis: str, site: Site, **changes: Any) -> Any:
        experiment = Experiment(**{**EXPERIMENT, "hypothesis": hypothesis, "site": site, **changes})
        return run_experiment(model, experiment, CONFIG)

    grid = search(align, "left_boundary", layers=[1], positions=["last"], bracket=[130, 855])
    assert len(grid.results) == 1
    assert PromptVariant(answers=["Yes", "No"]) == PromptVariant()
    assert PromptVariant(answers=["Yes", "No"]).families == PromptVariant().families
    assert hash(PromptVariant(bracket=[100, 500])) == hash(PromptVariant(bracket=(100, 500)))


def test_loading_a_model_leaves_the_callers_progress_bars_and_its_fingerprint_its_own(
    tiny_model_dirs: dict[str, Path],
) -> None:
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    try:
        hf_logging.enable_progress_bar()
        disable_progress_bars()  # each library's own switch, as the caller set them
        loaded = load_model(tiny_model_dirs["llama"])
        assert hf_logging.is_progress_bar_enabled()  # switched off for good before
        assert are_progress_bars_disabled()  # switched on by transformers' switch
    finally:
        enable_progress_bars()
    described = loaded.describe()["fingerprint"]
    described.clear()  # a caller's edit of a report's block changed the model's cache keys
    assert loaded.fingerprint
