"""Hypothesis: the model decides "is the amount at least the lower bound?" as a variable.

Claim. The Left Boundary causal model (Wu et al. 2023) computes ``left = amount >= low`` and
answers ``left and amount <= high``. We claim a subspace of the residual stream at the site
``boundary`` (das.yaml; for the embedded model the last prompt token of block 0) plays
``left``: swapping it in from a source prompt makes the model answer as the causal model does.

Evidence bar. Boundless DAS trained on ``n_train`` label-balanced pairs; IIA with a hard mask on
``n_test`` fresh pairs; the Wilson 95% lower bound must reach the ``left_boundary`` threshold of
das.yaml and IIA must beat the no-op and random-rotation baselines by 0.05.

Robustness. The frozen alignment is fuzzed over wording, context, answer words, number style,
amounts on a bound and fixed brackets *of the widths the model was trained on* (2.50-7.50, low
bound from 1.00 to 4.50, high bound from 4.00), where training put most of its brackets. A
variant under which the model fails the task, as it does under most number styles and amounts on
a bound, is rejected and counted in the robustness table, not judged. Far
outside that range it breaks, and the last two tests say so with their numbers: on the narrow
bracket [0.05, 1.40], with amounts on both sides of its low bound, the model answers correctly,
but the alignment changes few of the answers that must change; on [7.45, 9.95] likewise.

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


TRAINED_BRACKETS = brackets(min_width=250, max_width=750, min_low=100, max_low=450, min_high=400)


@given(variant=prompt_variants(bracket=TRAINED_BRACKETS))
def test_left_boundary_survives_changed_prompts_brackets_and_context(das, at_boundary, variant):
    """The frozen alignment, no retraining, on pairs written as a fuzzed variant of the prompt."""
    das.assert_robust(at_boundary, variant, claim="left_boundary")


def _amounts_on_both_sides_of_the_low_bound(inputs, rng, role):
    """Half the amounts below the low bound, half inside the bracket: ``left`` varies."""
    if rng.random() < 0.5:
        return {**inputs, "x": rng.randint(1, inputs["lo"] - 1)}
    return {**inputs, "x": rng.randint(inputs["lo"], inputs["hi"])}


def test_left_boundary_does_not_survive_a_narrow_bracket_near_zero(das, at_boundary):
    """A negative, measured claim: fuzzing found it (the model answers, the alignment does not).

    On the bracket [0.05, 1.40] amounts drawn as usual are almost never below the low bound, so
    almost no label changes and nothing could be shown (3 of 400 under seed 0). Here the amounts
    lie on both sides of the low bound, so ``left`` varies and about half the labels change. The
    model answers these prompts (task accuracy 0.968 under seed 0), but the alignment makes only
    47 of the 203 answers that must change do so: IIA 0.583 [0.534, 0.630] against the no-op's
    0.485. Judged as a fuzz variant is: the interval below the robustness threshold, or IIA
    clearly no better than the no-op's. Over seeds 0-9: 0.540-0.598 (upper bounds at most 0.644),
    no-op 0.463-0.515, task accuracy 0.968-0.998; not aligned under all ten.
    """
    exp = at_boundary.experiment
    pairs = exp.pairs(
        400, exp.seed + 41, bracket=(5, 140), edit=_amounts_on_both_sides_of_the_low_bound
    )
    where = "bracket [0.05, 1.40], amounts on both sides of 0.05"
    das.assert_breaks_on(at_boundary, pairs, claim="left_boundary", where=where)


def test_left_boundary_does_not_survive_a_bracket_at_the_top_of_the_range(das, at_boundary):
    """A negative, measured claim: fuzzing found it (the model answers, the alignment does not).

    Training drew a low bound of 6.50 or more for about 1% of its prompts. On [7.45, 9.95] with the
    default prompt the model answers (task accuracy 0.870-0.910 over seeds 0-9), but the frozen
    alignment scores IIA 0.575-0.630 against a no-op of 0.472-0.540. It leads the no-op, yet its
    interval stays below the robustness threshold (highest upper bound 0.676): not aligned under
    all ten seeds (``python -m das_assert.stability``, 2026-12-04). Seed 0: 0.613 [0.564, 0.659],
    72 of the 204 answers that must change do.
    """
    pairs = at_boundary.experiment.pairs(400, at_boundary.experiment.seed + 43, bracket=(745, 995))
    das.assert_breaks_on(at_boundary, pairs, claim="left_boundary", where="bracket [7.45, 9.95]")
