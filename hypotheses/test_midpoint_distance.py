"""Hypothesis: the model compares the amount with the bracket's mid-point.

Claim. The Mid-point Distance causal model computes ``mid = (low + high) / 2`` and answers
``|amount - mid| <= (high - low) / 2``. Intervening on ``mid`` moves the bracket without changing
its width. For Alpaca the paper found this model aligns poorly (best raw IIA 0.70 against a
no-op floor of about 0.62). Which way it goes for the model under test is a measured fact recorded
in das.yaml: the claim below is the one that is true of the embedded model, with its numbers.

Evidence bar. Boundless DAS at the site ``boundary`` where the boundary variables live; Wilson 95%
interval of IIA against the ``midpoint_distance`` threshold of das.yaml.

Control. ``before:amount`` stays below the threshold as well.
"""

import pytest
from hypothesis import given

from das_assert.strategies import prompt_variants
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat

HYPOTHESIS = "midpoint_distance"


@pytest.fixture(scope="module")
def at_boundary(das_session):
    return das_session.align(HYPOTHESIS, "boundary")


@pytest.fixture(scope="module")
def before_amount(das_session):
    return das_session.align(HYPOTHESIS, "control")


def test_the_midpoint_is_not_a_variable_where_the_boundaries_live(das, at_boundary):
    das.assert_not_aligned(at_boundary, claim="midpoint_distance")


def test_the_midpoint_cannot_live_before_the_amount_is_read(das, before_amount):
    das.assert_not_aligned(before_amount, claim="midpoint_distance")


def test_refitted_under_a_sentence_of_context_the_midpoint_is_still_no_variable(das, das_session):
    """A search of its own on other prompts: the fuzz test below scores the default prompt's
    alignment under each variant, which cannot find a variable that fit missed."""
    in_context = PriceFormat(prefix=TRAIN_PREFIXES[0])  # "Pricing tag game!" before the task
    das.assert_not_aligned(
        das_session.align(HYPOTHESIS, "boundary", fmt=in_context), claim="midpoint_distance"
    )


@given(variant=prompt_variants())
def test_no_prompt_variant_makes_the_midpoint_a_variable(das, at_boundary, variant):
    """The default prompt's alignment stays below under fuzzed prompts: no variant turns it into
    the variable. Scored, not refitted (a fit per variant), so this is no evidence of absence
    under the variant: the test above refits under one."""
    das.assert_robust(at_boundary, variant, claim="midpoint_distance", expect="not_aligned")
