"""Hypothesis: the model carries the bracket (low, high) as one unit and checks the amount in it.

Claim. The Bracket Identity causal model answers ``low <= amount <= high`` with the bracket as an
intermediate variable; intervening on it transplants the whole source bracket. The paper found it
aligns poorly in Alpaca (best raw IIA 0.72, floor about 0.60). The claim below is the one true of
the embedded model, with the numbers in das.yaml.

Evidence bar. Boundless DAS at the site ``boundary``; Wilson 95% interval of IIA against the
``bracket_identity`` threshold of das.yaml.

Control. ``before:amount``: only the bracket has been read there, so a bracket variable *could*
exist at that token; the claim there is measured like any other.
"""

import pytest
from hypothesis import given

from das_assert.strategies import prompt_variants
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat

HYPOTHESIS = "bracket_identity"


@pytest.fixture(scope="module")
def at_boundary(das_session):
    return das_session.align(HYPOTHESIS, "boundary")


@pytest.fixture(scope="module")
def before_amount(das_session):
    return das_session.align(HYPOTHESIS, "control")


def test_the_bracket_is_not_a_variable_where_the_boundaries_live(das, at_boundary):
    das.assert_not_aligned(at_boundary, claim="bracket_identity")


def test_the_bracket_at_the_token_before_the_amount(das, before_amount):
    das.assert_not_aligned(before_amount, claim="bracket_identity.control")


def test_refitted_under_a_sentence_of_context_the_bracket_is_still_no_variable(das, das_session):
    """A search of its own on other prompts: the fuzz test below scores the default prompt's
    alignment under each variant, which cannot find a variable that fit missed."""
    in_context = PriceFormat(prefix=TRAIN_PREFIXES[0])  # "Pricing tag game!" before the task
    das.assert_not_aligned(
        das_session.align(HYPOTHESIS, "boundary", fmt=in_context), claim="bracket_identity"
    )


@given(variant=prompt_variants())
def test_no_prompt_variant_makes_the_bracket_a_variable(das, at_boundary, variant):
    """The default prompt's alignment stays below under fuzzed prompts: no variant turns it into
    the variable. Scored, not refitted (a fit per variant), so this is no evidence of absence
    under the variant: the test above refits under one."""
    das.assert_robust(at_boundary, variant, claim="bracket_identity", expect="not_aligned")
