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

Control. Before the amount is read (``before:amount``) no token can know ``amount <= high``.
"""

import pytest

from das_assert import CausalModel, register_causal_model

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
