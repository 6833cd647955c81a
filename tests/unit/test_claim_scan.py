"""claim_scan reads, from a test's source, the claims its assertions name and those that name
none, without running it."""

from __future__ import annotations

from typing import Any

from das_assert.claim_scan import assertion_calls, claimless_calls, literal_claims


def a_test(das: Any, result: Any, name: str, options: dict) -> None:
    das.assert_aligned(result, claim="left_boundary")
    das.assert_not_aligned(result, claim="control", threshold=0.5)  # judged by its own threshold
    das.assert_aligned(result, claim="spelt_out", threshold=None)  # das.yaml's, as when left out
    das.assert_robust(result, claim=name)  # a variable: left to the run
    das.assert_breaks_on(result, [], claim="limit", where="x")
    das.assert_aligned(result)
    das.assert_not_aligned(result, **options)  # may hold claim=
    das.something_else(result)


def test_literal_claims_names_each_literal_claim_and_its_table() -> None:
    expected = [
        ("left_boundary", "thresholds"),
        ("spelt_out", "thresholds"),
        ("limit", "robustness"),
    ]
    assert literal_claims(assertion_calls(a_test)) == expected


def test_claimless_calls_names_each_assertion_without_a_claim() -> None:
    assert claimless_calls(assertion_calls(a_test)) == ["assert_aligned"]


def test_a_source_that_cannot_be_read_has_no_calls() -> None:
    assert assertion_calls(len) == []
    assert assertion_calls(None) == []
