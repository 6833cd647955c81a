"""``das.assert_robust`` confirms a break on fresh pairs before it fails the test: a fuzz test
judges many variants at 95% each, and one chance break among them would fail a true claim."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from judge_support import fake_request, fake_result

from das_assert import robustness
from das_assert.data import encode
from das_assert.errors import PreconditionFailed
from das_assert.evaluate import Evaluation
from das_assert.positions import parse_position
from das_assert.report import robustness_summary
from das_assert.session import IIAClaimFailed
from das_assert.strategies import PromptVariant
from das_assert.summary import unconfirmed_lines
from das_assert.tasks.price_tagging import prompt_pairs


@pytest.fixture
def encoded(tiny_models: dict[str, Any]) -> Any:
    pairs = prompt_pairs("left_boundary", 80, seed=5)
    return encode(tiny_models["llama"], pairs, parse_position("last"))


def _changes_nothing(encoded: Any) -> Evaluation:
    """No answer changes: at the no-op level, so clearly not aligned."""
    base = encoded.base_label_ids
    return Evaluation(encoded, base.clone(), base.clone(), base.clone(), 0.0)


def _right(encoded: Any) -> Evaluation:
    """Every counterfactual answer right: clearly aligned."""
    labels, base = encoded.label_ids, encoded.base_label_ids
    return Evaluation(encoded, labels.clone(), base.clone(), base.clone(), 0.0)


def _judge(
    monkeypatch: pytest.MonkeyPatch,
    first: Any,
    fresh: Any,
    *,
    expect: str = "aligned",
    confirm: bool = True,
) -> tuple[list[dict[str, Any]], list[bool]]:
    """``judge_variant`` on a variant whose own pairs give ``first`` and fresh pairs ``fresh``:
    the fuzz records it made, and which pairs it evaluated (``True`` for fresh ones)."""
    asked: list[bool] = []

    def evaluated(session: Any, result: Any, variant: Any, n: int, *, fresh_pairs: bool) -> Any:
        asked.append(fresh_pairs)
        return fresh if fresh_pairs else first

    monkeypatch.setattr(
        robustness,
        "_evaluate_once",
        lambda session, result, variant, n, fresh=False: evaluated(
            session, result, variant, n, fresh_pairs=fresh
        ),
    )
    request = fake_request("test_fuzz.py::test_variants")
    result = fake_result("block_output[layer=0, pos=last]")
    try:
        robustness.judge_variant(
            request,
            result,
            PromptVariant(),
            claim="left_boundary",
            n=80,
            expect=expect,
            confirm=confirm,
        )
    finally:
        properties = request.node.user_properties
        records = [json.loads(v) for k, v in properties if k == "das_fuzz"]
    return records, asked


def test_a_break_that_fresh_pairs_do_not_confirm_is_inconclusive(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, asked = _judge(monkeypatch, _changes_nothing(encoded), _right(encoded))
    assert asked == [False, True]
    (record,) = records
    assert (record["status"], record["verdict"]) == ("inconclusive", "not_aligned")
    fresh = record["confirmation"]
    assert (fresh["status"], fresh["verdict"], fresh["iia"], fresh["n"]) == (
        "holds",
        "aligned",
        1.0,
        80,
    )
    assert fresh["iia_ci"][0] < 1.0 == fresh["iia_ci"][1]


def test_a_break_that_fresh_pairs_confirm_fails_with_both_sets_of_numbers(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    nothing = _changes_nothing(encoded)
    with pytest.raises(IIAClaimFailed) as caught:
        _judge(monkeypatch, nothing, _changes_nothing(encoded))
    message = str(caught.value)
    assert message.startswith("claim 'left_boundary' breaks under PromptVariant()")
    assert f"IIA {nothing.iia:.3f} (n=80, 95% CI [" in message
    assert f"confirmed on 80 fresh pairs: IIA {nothing.iia:.3f} (95% CI [" in message
    assert ": not_aligned: IIA " in message  # the fresh pairs' own verdict and reason


def test_the_confirmed_break_is_recorded_as_broken_and_not_listed_as_unconfirmed(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: list[dict[str, Any]] = []
    original = robustness._record

    def keeping(request: Any, *args: Any, **kwargs: Any) -> None:
        original(request, *args, **kwargs)
        recorded.extend(json.loads(v) for k, v in request.node.user_properties if k == "das_fuzz")

    monkeypatch.setattr(robustness, "_record", keeping)
    with pytest.raises(IIAClaimFailed):
        _judge(monkeypatch, _changes_nothing(encoded), _changes_nothing(encoded))
    (record,) = recorded
    assert (record["status"], record["confirmation"]["status"]) == ("broken", "broken")
    # It carries its confirmation but counts broken: the reports must not also list it as "a
    # break not confirmed ... counted inconclusive" (a mutant listing every record with a
    # confirmation survived the tests).
    summary = robustness_summary([record | {"test_id": "test_fuzz.py::test_variants"}])
    assert summary["per_family"]["left_boundary"]["default"]["broken"] == 1
    assert summary["unconfirmed"] == []
    assert unconfirmed_lines(summary["unconfirmed"]) == []


def test_without_confirmation_the_first_pairs_decide(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(IIAClaimFailed, match=r"no second draw of pairs \(confirm=False\)"):
        _judge(monkeypatch, _changes_nothing(encoded), _right(encoded), confirm=False)


def test_a_variant_that_holds_draws_no_fresh_pairs(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, asked = _judge(monkeypatch, _right(encoded), _changes_nothing(encoded))
    assert asked == [False]
    assert records[0]["status"] == "holds"
    assert "confirmation" not in records[0]


def test_a_negative_claims_break_is_confirmed_too(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, fresh = _right(encoded), _changes_nothing(encoded)  # aligned, then not
    records, asked = _judge(monkeypatch, first, fresh, expect="not_aligned")
    assert asked == [False, True]
    assert records[0]["status"] == "inconclusive"
    assert records[0]["confirmation"]["status"] == "holds"
    with pytest.raises(IIAClaimFailed, match=r"confirmed on 80 fresh pairs: IIA 1\.000"):
        _judge(monkeypatch, first, _right(encoded), expect="not_aligned")


def test_fresh_pairs_the_model_fails_on_do_not_confirm_a_break(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = PreconditionFailed("task accuracy 0.700 below the gate 0.8")
    records, _ = _judge(monkeypatch, _changes_nothing(encoded), failed)
    assert records[0]["status"] == "inconclusive"
    assert records[0]["confirmation"] == {
        "status": "not judged: task accuracy 0.700 below the gate 0.8",
        "n": 0,
        "threshold": 0.75,
    }


def test_fresh_pairs_on_which_no_label_changes_do_not_confirm_a_break(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    unchanged = _changes_nothing(encoded).subset(lambda p: p.expected == p.base_expected)
    records, _ = _judge(monkeypatch, _changes_nothing(encoded), unchanged)
    assert records[0]["status"] == "inconclusive"
    assert records[0]["confirmation"]["status"] == "untestable"


def test_the_reports_list_each_unconfirmed_break_once(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, _ = _judge(monkeypatch, _changes_nothing(encoded), _right(encoded))
    record = records[0] | {"test_id": "test_fuzz.py::test_variants"}
    summary = robustness_summary([record, record])  # hypothesis drew the variant twice
    (unconfirmed,) = summary["unconfirmed"]
    cell = summary["per_family"]["left_boundary"]["default"]
    assert (cell["inconclusive"], cell["broken"]) == (1, 0)
    (line,) = unconfirmed_lines(summary["unconfirmed"])
    iia, (low, high) = unconfirmed["iia"], unconfirmed["iia_ci"]
    assert line == (
        "a break not confirmed in test_fuzz.py::test_variants: left_boundary under "
        f"PromptVariant(): broke on its 80 pairs, IIA {iia:.3f} [{low:.3f}, {high:.3f}] (bar "
        f"0.75); fresh pairs: holds, 1.000 [{record['confirmation']['iia_ci'][0]:.3f}, 1.000] "
        "on 80; counted inconclusive"
    )


def test_a_break_is_listed_once_per_claim_and_expectation(
    encoded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, _ = _judge(monkeypatch, _changes_nothing(encoded), _right(encoded))
    negated, _ = _judge(
        monkeypatch, _right(encoded), _changes_nothing(encoded), expect="not_aligned"
    )
    test = {"test_id": "test_fuzz.py::test_variants"}
    other_claim = records[0] | test | {"claim": "left_and_right_boundary"}
    fuzz = [records[0] | test, other_claim, negated[0] | test]
    listed = robustness_summary(fuzz)["unconfirmed"]
    assert [(u["claim"], u["expect"]) for u in listed] == [
        ("left_boundary", "aligned"),
        ("left_and_right_boundary", "aligned"),
        ("left_boundary", "not_aligned"),
    ]
    assert (
        "left_boundary, expect not_aligned under PromptVariant()" in (unconfirmed_lines(listed)[2])
    )


def test_fresh_pairs_are_another_draw_of_the_same_variant(tiny_models: dict[str, Any]) -> None:
    from das_assert.experiment import Experiment
    from das_assert.variants import variant_pairs

    exp = Experiment(hypothesis="left_boundary", site="block_output[layer=0, pos=last]")
    variant = PromptVariant(numbers="dollar")
    own, again = variant_pairs(exp, variant, 40), variant_pairs(exp, variant, 40)
    fresh = variant_pairs(exp, variant, 40, fresh=True)
    assert [p.base.text for p in own] == [p.base.text for p in again]  # seeded: a replay
    assert {p.base.text for p in own}.isdisjoint(p.base.text for p in fresh)
    assert all("$" in p.base.text for p in fresh)  # written as the variant, as its own pairs
    labels = torch.tensor([p.expected == fresh[0].expected for p in fresh])
    assert 0 < int(labels.sum()) < len(fresh)  # label-balanced, as every draw is
