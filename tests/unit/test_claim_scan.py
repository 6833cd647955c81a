"""claim_scan reads, from a test's source, the claims its assertions name and those that name
none, without running it."""

from __future__ import annotations

from typing import Any

import pytest

from das_assert.claim_scan import assertion_calls, claimless_calls, literal_claims, site_names
from das_assert.errors import IIAClaimFailed


def a_test(das: Any, result: Any, name: str, options: dict) -> None:
    das.assert_aligned(result, claim="left_boundary")
    das.assert_not_aligned(result, claim="control", threshold=0.5)  # judged by its own threshold
    das.assert_aligned(result, claim="spelt_out", threshold=None)  # das.yaml's, as when left out
    das.assert_robust(result, claim=name)  # a variable: left to the run
    das.assert_breaks_on(result, [], claim="limit", where="x")
    das.assert_aligned(result)
    das.assert_not_aligned(result, **options)  # may hold claim=
    das.something_else(result)
    with pytest.raises(KeyError):  # expected to fail: an unknown claim is refused
        das.assert_aligned(result, claim="no_such_claim")
    with pytest.raises(TypeError):  # and one without claim=
        das.assert_not_aligned(result)
    with pytest.raises(IIAClaimFailed):  # a claim that must not hold: das.yaml must know it
        das.assert_aligned(result, claim="expected_to_fail")


def test_literal_claims_names_each_literal_claim_and_its_table() -> None:
    # a reviewer's case: a claim named inside pytest.raises stopped the whole run (exit 4),
    # "das.yaml has no entry for a claim that tests make", as one without claim= did
    expected = [
        ("left_boundary", "thresholds"),
        ("spelt_out", "thresholds"),
        ("limit", "robustness"),
        ("expected_to_fail", "thresholds"),
    ]
    assert literal_claims(assertion_calls(a_test)) == expected


def test_claimless_calls_names_each_assertion_without_a_claim() -> None:
    assert claimless_calls(assertion_calls(a_test)) == ["assert_aligned"]


def test_a_source_that_cannot_be_read_has_no_calls() -> None:
    assert assertion_calls(len) == []
    assert assertion_calls(None) == []


def fixture_sites(das_session: Any, other: Any, site: str) -> None:
    das_session.align("left_boundary", "boundary")
    das_session.align("left_boundary", site="control")
    das_session.align("left_boundary", "block_output[layer=0, pos=last]")  # written out
    das_session.align("left_boundary", site)  # a variable: left to the run
    other.align("left_boundary", "not_a_das_yaml_site")  # another object's align
    with pytest.raises(KeyError):  # expected to fail: no reason to stop the run
        das_session.align("left_boundary", "nosuch")
    with pytest.raises(IIAClaimFailed):  # a claim expected not to hold: its site must exist
        das_session.align("left_boundary", "elsewhere")


def guarded_by_das_yaml(das_session: Any) -> None:
    if "deep" not in das_session.settings.sites:
        pytest.skip("this model's entry has no deep site")
    das_session.align("left_boundary", "deep")


def test_site_names_are_the_literal_das_yaml_names_that_align_calls_ask_for() -> None:
    # a reviewer's cases: names inside pytest.raises, or asked for only where das.yaml has them,
    # stopped the whole run before any test
    assert site_names(fixture_sites) == ["boundary", "control", "elsewhere"]
    assert site_names(guarded_by_das_yaml) == []
    assert site_names(len) == []
