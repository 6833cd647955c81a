"""Hypothesis: the model keeps two booleans, ``amount >= low`` and ``amount <= high``.

Claim. The Left and Right Boundary causal model computes ``left = amount >= low`` and
``right = amount <= high`` and answers ``left and right`` — the model the paper found in Alpaca.
One rotation of the residual stream at the site ``boundary`` holds both, in two disjoint boxes of
rotated coordinates; each pair intervenes on one of them (50/50).

Evidence bar. Joint IIA over both variables: Wilson 95% lower bound >= the
``left_and_right_boundary`` threshold (das.yaml), baselines beaten by 0.05. Multi-variable claim:
each box is non-empty (they are disjoint by construction), and each variable alone, intervened
on with the other's box untouched, is aligned by the same rule against
``left_and_right_boundary.each``, on fresh
pairs: about 1,600 per variable, for a lead over the no-op of about 0.1 needs that many to clear
the 0.05 margin (on 400, the left boolean was inconclusive under seeds 0, 1 and 2).

Robustness. The frozen alignment is fuzzed over wording, context, answer words, number style,
amounts on a bound and fixed brackets of the trained widths (2.50-7.50) whose low bound is at most
4.50 and high bound at least 4.00 (a variant the model fails the task under, as most number
styles and amounts on a bound, is rejected and counted, not judged). At both ends of the range it
breaks, and the last two tests say so with their numbers: on [7.45, 9.95] and on [0.50, 2.50] the
model answers, but the alignment does not carry the booleans. In between it is fragile: a
bracket from 5.46 with a sentence before the instruction was inconclusive or not aligned under 9
of 10 seeds (README, Robustness).

Control. ``before:amount``, where neither boolean can be known yet, stays below the threshold.
"""

import pytest
from hypothesis import given

from das_assert.strategies import brackets, prompt_variants

HYPOTHESIS = "left_and_right_boundary"


@pytest.fixture(scope="module")
def at_boundary(das_session):
    return das_session.align(HYPOTHESIS, "boundary")


@pytest.fixture(scope="module")
def before_amount(das_session):
    return das_session.align(HYPOTHESIS, "control")


def test_both_booleans_are_variables_at_the_boundary_site(das, at_boundary):
    das.assert_aligned(at_boundary, claim="left_and_right_boundary")


def test_each_boolean_has_coordinates_of_its_own_in_one_rotation(das_session, at_boundary):
    """What could fail is a box learned empty. The boxes cannot overlap: they are consecutive
    runs of one rotated basis (the engine's oracle tests check it), so that is not asserted
    here. Together they may fill the stream: on the embedded model (seed 0) they take 66 and 62
    of its 128 coordinates, the right box's learned width cut at the last one. The widths are
    read before the verdict: a box learned empty makes the joint alignment not aligned (a
    collapse), which skipped this test before it could fail."""
    left, right = at_boundary.fitted.boundary_dims
    assert left > 0, f"left box is empty: {at_boundary.summary()}"
    assert right > 0, f"right box is empty: {at_boundary.summary()}"
    judged = at_boundary.verdict(das_session.threshold(HYPOTHESIS))
    if judged.outcome != "aligned":  # then the boxes hold no variable, whatever their shape
        pytest.skip(f"the joint alignment is {judged.outcome}: {at_boundary.summary()}")


@pytest.fixture(scope="module")
def on_fresh_pairs(at_boundary):
    """The frozen alignment on 3,200 fresh pairs (seed + 7); each intervenes on one boolean."""
    exp = at_boundary.experiment
    return at_boundary.judged_on(exp.pairs(4 * exp.n_test, exp.seed + 7, fmt=None))


@pytest.mark.parametrize("variable", ["left", "right"])
def test_each_boolean_is_a_variable_when_intervened_on_alone(das, on_fresh_pairs, variable):
    one = on_fresh_pairs.on_variable(variable)
    das.assert_aligned(one, claim="left_and_right_boundary.each")


def test_left_and_right_cannot_live_before_the_amount_is_read(das, before_amount):
    das.assert_not_aligned(before_amount, claim="left_and_right_boundary")


TRAINED_BRACKETS = brackets(min_width=250, max_width=750, min_low=100, max_low=450, min_high=400)


@given(variant=prompt_variants(bracket=TRAINED_BRACKETS))
def test_both_booleans_survive_changed_prompts_brackets_and_context(das, at_boundary, variant):
    """The frozen two-variable alignment on pairs written as a fuzzed variant of the prompt."""
    das.assert_robust(at_boundary, variant, claim="left_and_right_boundary")


def test_both_booleans_do_not_survive_a_bracket_at_the_top_of_the_range(das, at_boundary):
    """A negative, measured claim: fuzzing found it (the model answers, the alignment does not).

    Training drew a low bound of 6.50 or more for about 1% of its prompts. On [7.45, 9.95] with the
    default prompt the model still answers (task accuracy 0.870-0.917 over seeds 0-9), but the
    frozen alignment does no better than leaving the run alone: IIA 0.575-0.672 against a no-op
    of 0.662-0.750, not aligned under all ten seeds (``python -m das_assert.stability``,
    2026-12-04). Seed 0: 0.627 [0.579, 0.673], no-op 0.700 (0.632 on an AMD CPU). Both boxes
    fail: in the first measurement (one-thread fits), swapping ``left`` made 30-53 of the 90-124
    answers that must change do so, and swapping ``right``, where almost no answer must change,
    changed 57-85 of the 184-213 that must stay. Judged as a fuzz variant is: the interval below
    the robustness threshold, or IIA clearly no better than the no-op's.
    """
    pairs = at_boundary.experiment.pairs(400, at_boundary.experiment.seed + 43, bracket=(745, 995))
    das.assert_breaks_on(
        at_boundary, pairs, claim="left_and_right_boundary", where="bracket [7.45, 9.95]"
    )


def test_both_booleans_do_not_survive_a_bracket_at_the_bottom_of_the_range(das, at_boundary):
    """A negative, measured claim: the other end of the range breaks the alignment too.

    On [0.50, 2.50] the model answers (task accuracy 0.920-0.965 over seeds 0-9), but the frozen
    alignment scores below leaving the run alone: IIA 0.555-0.623 against a no-op of 0.657-0.693
    (upper bounds at most 0.669, robustness threshold 0.75), not aligned under all ten seeds; only
    13-48 of the 108-133 answers that must change do. It is the place, not the width: the same
    2.00-wide bracket at [4.00, 6.00] is aligned under all ten (0.932-0.970), and [2.50, 4.50]
    under nine (one inconclusive). Seed 0: 0.600 [0.551, 0.647], no-op 0.667, n=400.
    """
    pairs = at_boundary.experiment.pairs(400, at_boundary.experiment.seed + 47, bracket=(50, 250))
    das.assert_breaks_on(
        at_boundary, pairs, claim="left_and_right_boundary", where="bracket [0.50, 2.50]"
    )
