"""Hypothesis: the model decides "is the amount at least the lower bound?" as a variable.

Claim. The Left Boundary causal model (Wu et al. 2023) computes ``left = amount >= low`` and
answers ``left and amount <= high``. We claim a subspace of the residual stream at the site
``boundary`` (das.yaml; for the embedded model the last prompt token of a middle layer) plays
``left``: swapping it in from a source prompt makes the model answer as the causal model does.

Evidence bar. Boundless DAS trained on ``n_train`` label-balanced pairs; IIA with a hard mask on
``n_test`` fresh pairs; the Wilson 95% lower bound must reach the ``left_boundary`` threshold of
das.yaml and IIA must beat the no-op and random-rotation baselines by 0.05.

Control. Before the amount is read (``before:amount``, the newline after "### Input:") no token
can know ``amount >= low``: the same search there must stay below the threshold.
"""

import pytest
from hypothesis import given

from das_assert.strategies import prompt_variants

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


@given(variant=prompt_variants())
def test_left_boundary_survives_changed_prompts_brackets_and_context(das, at_boundary, variant):
    """The frozen alignment, no retraining, on pairs written as a fuzzed variant of the prompt."""
    das.assert_robust(at_boundary, variant, claim="left_boundary")
