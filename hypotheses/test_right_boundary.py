"""Hypothesis: the model decides "is the amount at most the upper bound?" as a variable.

Claim. A causal model of our own, not one of the paper's four: ``right = amount <= high``, and
the answer is ``right and amount >= low``. It is defined and registered below, which is how any
hypothesis file brings its own causal model. We claim a subspace of the residual stream at the
site ``boundary`` (das.yaml) plays ``right``. Its counterfactual labels are those of the
Left and Right Boundary model with only ``right`` intervened on; the alignment here has one box,
not two, so it is a separate claim with a separate fit.

Evidence bar. As for every claim: the Wilson 95% lower bound of IIA on ``n_test`` fresh pairs must
reach the ``right_boundary`` threshold of das.yaml, and IIA must beat the no-op and
random-rotation baselines by 0.05.

Robustness. The frozen alignment is fuzzed as Left and Right Boundary's is: wording, context,
answer words, number style, amounts on a bound, and fixed brackets 2.50-7.50 wide whose low bound
is at most 4.50 and high bound at least 4.00 (``right_boundary`` under das.yaml's
``robustness``). Near the top of the amount range it breaks, and a measured test says so with
its numbers: on [8.60, 9.95], the mirror of Left Boundary's narrow bracket near zero, the model
answers but the alignment does not carry ``right``. Under ``--das-profile=thorough`` the fuzz
test finds a second place, True/False answers on a low fixed bracket, where it depends on the
seed: the last two tests pin seeds 0 (breaks) and 1 (holds).

Control. Before the amount is read (``before:amount``) no token can know ``amount <= high``.
"""

import pytest
from hypothesis import given

from das_assert import CausalModel, register_causal_model
from das_assert.strategies import brackets, prompt_variants

HYPOTHESIS = register_causal_model(
    CausalModel(
        name="right_boundary",
        inputs=("lo", "hi", "x"),  # the bracket and the amount, in cents
        mechanisms={
            "right": lambda x, hi: x <= hi,
            "answer": lambda right, x, lo: right and x >= lo,
        },
        output="answer",
    ),
    intervened=("right",),
)


@pytest.fixture(scope="module")
def at_boundary(das_session):
    return das_session.align(HYPOTHESIS, "boundary")


@pytest.fixture(scope="module")
def before_amount(das_session):
    return das_session.align(HYPOTHESIS, "control")


def test_right_boundary_is_a_variable_at_the_boundary_site(das, at_boundary):
    das.assert_aligned(at_boundary, claim="right_boundary")


def test_right_boundary_cannot_live_before_the_amount_is_read(das, before_amount):
    das.assert_not_aligned(before_amount, claim="right_boundary")


# Fixed brackets of the trained widths, bounds away from the ends of the amount range (cents).
TRAINED_BRACKETS = brackets(min_width=250, max_width=750, min_low=100, max_low=450, min_high=400)


@given(variant=prompt_variants(bracket=TRAINED_BRACKETS))
def test_right_boundary_survives_changed_prompts_brackets_and_context(das, at_boundary, variant):
    das.assert_robust(at_boundary, variant, claim="right_boundary")


def _amounts_on_both_sides_of_the_high_bound(inputs, rng, role):
    """Half the amounts above the high bound, half inside the bracket: ``right`` varies."""
    if rng.random() < 0.5:
        return {**inputs, "x": rng.randint(inputs["hi"] + 1, 999)}
    return {**inputs, "x": rng.randint(inputs["lo"], inputs["hi"])}


def test_right_boundary_does_not_survive_a_narrow_bracket_near_the_top(das, at_boundary):
    """A negative, measured claim: the mirror of Left Boundary's narrow bracket near zero.

    On [8.60, 9.95] amounts drawn as usual are almost never above the high bound (the amounts end
    at 9.99), so almost no label changes. Here half the amounts lie above it (9.96-9.99) and half
    inside, so ``right`` varies. The model answers (task accuracy 0.938-0.955 over seeds 0-9), but
    the frozen alignment scores 0.470-0.625 against a no-op of 0.463-0.527 (upper bounds at most
    0.671, robustness threshold 0.75): not aligned under all ten seeds. It is the place, not the
    edit: the same amounts on both sides of the high bound of [4.00, 6.00] are aligned under all
    ten (0.850-0.915). Seed 0: 0.570 [0.521, 0.618], no-op 0.482, n=400; 43 of the 209 answers
    that must change do (``python -m das_assert.stability``, 2026-12-04). Judged as a fuzz variant
    is: the interval below the robustness threshold, or IIA clearly no better than the no-op's.
    """
    exp = at_boundary.experiment
    pairs = exp.pairs(
        400, exp.seed + 59, bracket=(860, 995), edit=_amounts_on_both_sides_of_the_high_bound
    )
    where = "bracket [8.60, 9.95], amounts on both sides of 9.95"
    das.assert_breaks_on(at_boundary, pairs, claim="right_boundary", where=where)


# True/False answers on a fixed bracket near the bottom of the trained ones: found by the fuzz
# test under --das-profile=thorough (confirmed on fresh pairs), and there the alignment depends on
# the seed Boundless DAS starts from. The two tests below pin their seeds, whatever --das-seed is.
TRUE_FALSE_ANSWERS, LOW_BRACKET = ("True", "False"), (150, 400)


def _true_false_pairs_on_the_low_bracket(found, n=800):
    exp = found.experiment
    answers = exp.fmt.with_(answers=TRUE_FALSE_ANSWERS)
    return exp.pairs(n, exp.seed + 61, fmt=answers, bracket=LOW_BRACKET)


def test_the_alignment_from_seed_0_does_not_carry_true_false_answers_on_a_low_bracket(
    das, das_session
):
    """A negative, measured claim about one seed's alignment.

    Under --das-profile=thorough the fuzz test above fails at seed 0 on True/False answers with
    the bracket fixed at [1.50, 4.00]: 0.658 [0.610, 0.702] on the variant's 400 pairs and
    0.695 [0.648, 0.738] on 400 fresh ones (2026-12-05). Over seeds 0-9 the alignment Boundless
    DAS finds breaks there under seeds 0, 4, 7 and 9 (also on [1.00, 4.00] and [2.00, 4.50]),
    holds under 1, 2, 3, 5 and 6 (0.80-0.92) and is inconclusive under 8; each is aligned on the
    claim's own pairs (0.809-0.844). Seed 0's: aligned (0.815), yet on 800 True/False pairs of
    [1.50, 4.00] 0.662 [0.629, 0.694] against a no-op of 0.497, 116 of the 359 answers that must
    change do; the model answers (task accuracy 0.906). One and two threads give these numbers
    alike; an AMD EPYC's rounding gives 0.619 [0.585, 0.652], 91 of 359, breaking too.
    """
    found = das_session.align(HYPOTHESIS, "boundary", seed=0)
    das.assert_aligned(found, claim="right_boundary.by_seed")  # saved, for a frozen run
    where = "True/False answers, [1.50, 4.00], seed 0"
    pairs = _true_false_pairs_on_the_low_bracket(found)
    das.assert_breaks_on(found, pairs, claim="right_boundary", where=where)


def test_the_alignment_from_seed_1_carries_them(das, das_session):
    """The other half of the finding: seed 1's alignment, aligned on the claim's pairs (0.809),
    is aligned on the same kind of pairs too (0.881 [0.857, 0.902], n=800, no-op 0.481)."""
    found = das_session.align(HYPOTHESIS, "boundary", seed=1)
    das.assert_aligned(found, claim="right_boundary.by_seed")
    on_them = found.judged_on(_true_false_pairs_on_the_low_bracket(found))
    das.assert_aligned(on_them, claim="right_boundary.true_false")
