"""Hypothesis: the model decides "is the amount at least the lower bound?" as a variable.

Claim. The Left Boundary causal model (Wu et al. 2023) computes ``left = amount >= low`` and
answers ``left and amount <= high``. We claim a subspace of the residual stream at the site
``boundary`` (das.yaml; for the embedded model the last prompt token of a middle layer) plays
``left``: swapping it in from a source prompt makes the model answer as the causal model does.

Evidence bar. Boundless DAS trained on ``n_train`` label-balanced pairs; IIA with a hard mask on
``n_test`` fresh pairs; the Wilson 95% lower bound must reach the ``left_boundary`` threshold of
das.yaml and IIA must beat the no-op and random-rotation baselines by 0.05.

Robustness. The frozen alignment is fuzzed over wording, context, answer words, number style,
amounts on a bound and fixed brackets *of the widths the model was trained on* (2.50-7.50, low
bound from 1.00). Outside that range it breaks, and the last test says so with its numbers: for
the narrow bracket [0.05, 1.40] the model still answers correctly, but the alignment falls to the
no-op level.

Control. Before the amount is read (``before:amount``, the newline after "### Input:") no token
can know ``amount >= low``: the same search there must stay below the threshold.
"""

import pytest
from hypothesis import given

from das_assert.strategies import brackets, prompt_variants

HYPOTHESIS = "left_boundary"


@pytest.fixture(scope="module")
def at_boundary(das_session):
    return das_session.align(HYPOTHESIS, "boundary")


@pytest.fixture(scope="module")
def before_amount(das_session):
    return das_session.align(HYPOTHESIS, "control")


def test_left_boundary_is_a_variable_at_the_boundary_site(das, at_boundary):
    das.assert_aligned(at_boundary, claim="left_boundary")


def test_left_boundary_cannot_live_before_the_amount_is_read(das, before_amount):
    das.assert_not_aligned(before_amount, claim="left_boundary")


@given(variant=prompt_variants(bracket=brackets(min_width=250, max_width=750, min_low=100)))
def test_left_boundary_survives_changed_prompts_brackets_and_context(das, at_boundary, variant):
    """The frozen alignment, no retraining, on pairs written as a fuzzed variant of the prompt."""
    das.assert_robust(at_boundary, variant, claim="left_boundary")


def test_left_boundary_does_not_survive_a_narrow_bracket_near_zero(das_session, at_boundary):
    """A negative, measured claim: fuzzing found it (the model answers, the alignment does not).

    Not aligned as every claim is judged: the interval below the robustness threshold, or no more
    than the no-op intervention gives (on such narrow brackets few labels change, so the no-op
    level itself can exceed the threshold: 0.848 under seed 1).
    """
    from das_assert.metrics import verdict, wilson_interval
    from das_assert.strategies import PromptVariant
    from das_assert.tasks.price_tagging import prompt_pairs

    variant = PromptVariant(bracket=(5, 140))
    pairs = prompt_pairs(
        HYPOTHESIS,
        400,
        seed=at_boundary.experiment.seed + 41,
        fmt=variant.format(),
        bracket=variant.bracket,
        edit=variant.edit,
    )
    evaluation = at_boundary.evaluate_on(pairs)
    low, high = wilson_interval(evaluation.successes, evaluation.n)
    threshold = das_session.settings.threshold("left_boundary", table="robustness")
    numbers = (
        f"{variant!r}: IIA {evaluation.iia:.3f} (n={evaluation.n}, 95% CI [{low:.3f}, "
        f"{high:.3f}]), task accuracy {evaluation.task_accuracy:.3f}, no-op "
        f"{evaluation.baselines()['noop']:.3f}, at {at_boundary.experiment.site}, "
        f"seed={at_boundary.experiment.seed}"
    )
    baselines = evaluation.baselines()
    judged = verdict(
        iia_ci=(low, high),
        iia=evaluation.iia,
        threshold=threshold,
        baselines={name: baselines[name] for name in ("noop", "random_rotation")},
        margin=at_boundary.experiment.margin,
    )
    assert evaluation.task_accuracy >= das_session.min_task_accuracy, numbers
    assert judged.outcome == "not_aligned", f"{numbers}: {judged.reason}"
