"""Hypothesis: from block 1 on, the answer itself is one direction at the last token.

Claim. A causal model of our own: ``in_bracket = low <= amount <= high``, and the answer is
``in_bracket``. Swapping ``in_bracket`` in from a source prompt makes the model give the source's
answer. We claim that after block 1 (das.yaml's site ``decision``, the last token) a single
direction carries it: DAS with a one-dimensional subspace (``method="das:1"``), trained for 10
epochs (at 3 it is still learning: 0.825 under seed 0, against 0.925-0.949 at 10 under seeds 1-4).

Control. At block 0's last token (the site ``boundary``, where Left Boundary is found) one
direction carries the answer only partly: IIA 0.504-0.584 under seeds 1-4, and 0.641 for the
difference of the Yes and No prompts' mean states, untrained (seed 0's test pairs). Far under the
threshold, though above the no-op (0.50) under some seeds: it is "not aligned", not "absent".

How to read the numbers. The intervened variable is the output, so a pair's label is the
source's own answer and about half the pairs keep the base's label: the no-op scores 0.50, and an
IIA of 0.85 means about 70% of the answers that should flip do. A random direction is the no-op
too (0.49-0.51), so the no-op is the baseline that matters here. This is close to what a logit
lens suggests: the unembedding's Yes-minus-No direction alone, untrained, gives 0.926 at block 1.

Why one direction. Boundless DAS, free to choose its width, swaps most of the stream at
``decision`` (108-115 of 128 dimensions under seeds 0-4), and a random subspace of that width does
nearly as well (0.906-0.938 against 0.930-0.958), so its result is no evidence of a variable.

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
    return das_session.fit_config(method="das:1", epochs=10)


def test_the_answer_is_one_direction_after_the_first_block(das, das_session, one_direction):
    result = das_session.align(HYPOTHESIS, "decision", config=one_direction)
    das.assert_aligned(result, claim="decision")


def test_the_answer_is_only_partly_a_direction_where_the_boundaries_live(
    das, das_session, one_direction
):
    result = das_session.align(HYPOTHESIS, "boundary", config=one_direction)
    das.assert_not_aligned(result, claim="decision")
