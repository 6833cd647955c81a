"""Hypothesis: the answer itself is decided after the first block, as one direction.

Claim. A causal model of our own: ``in_bracket = low <= amount <= high``, and the answer is
``in_bracket``. Swapping ``in_bracket`` in from a source prompt makes the model give the source's
answer. We claim that after block 1 (das.yaml's site ``decision``, the last token) a single
direction carries it: DAS with a one-dimensional subspace (``method="das:1"``).

Control. At the site ``boundary`` (block 0, the last token), where the Left Boundary variable
is found, the answer is not yet a direction: the boundaries are read there, their conjunction is
computed later.

Why one direction. Boundless DAS, free to choose its width, swaps most of the stream at
``decision`` (108-115 of 128 dimensions under seeds 0-4) and reaches IIA 0.930-0.958; but a random
subspace of that width reaches 0.906-0.938, because it carries most of the stream too. That is
no evidence of a variable (it would be "not aligned", for not beating the random rotation by
0.05, under those seeds by 0.001-0.043: too near that line for a gate). One direction is a claim
the random rotation cannot match: 0.50, the no-op.

Evidence bar. As for every claim: the Wilson 95% interval of IIA on ``n_test`` fresh pairs
against the ``decision`` threshold of das.yaml, and the no-op and random-rotation baselines.
"""

import pytest

from das_assert import CausalModel, register_causal_model

HYPOTHESIS = register_causal_model(
    CausalModel(
        name="decision",
        inputs=("lo", "hi", "x"),
        mechanisms={
            "in_bracket": lambda lo, hi, x: lo <= x <= hi,
            "answer": lambda in_bracket: in_bracket,
        },
        output="answer",
    ),
    intervened=("in_bracket",),
)


@pytest.fixture(scope="module")
def one_direction(das_session):
    return das_session.fit_config(method="das:1")


def test_the_answer_is_one_direction_after_the_first_block(das, das_session, one_direction):
    result = das_session.align(HYPOTHESIS, "decision", config=one_direction)
    das.assert_aligned(result, claim="decision")


def test_the_answer_is_not_yet_a_direction_where_the_boundaries_live(
    das, das_session, one_direction
):
    result = das_session.align(HYPOTHESIS, "boundary", config=one_direction)
    das.assert_not_aligned(result, claim="decision")
