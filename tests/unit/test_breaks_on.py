"""``das.assert_breaks_on``: a measured limit holds only where the model does the task, enough
labels change to tell, and the frozen alignment is clearly not aligned."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch
from judge_support import fake_request, fake_result

from das_assert.data import encode
from das_assert.evaluate import Evaluation
from das_assert.positions import parse_position
from das_assert.robustness import judge_breaking_pairs
from das_assert.session import IIAClaimFailed
from das_assert.tasks.price_tagging import prompt_pairs


@pytest.fixture
def encoded(tiny_models: dict[str, Any]) -> Any:
    pairs = prompt_pairs("left_boundary", 80, seed=5)
    return encode(tiny_models["llama"], pairs, parse_position("last"))


def _judge(
    evaluation: Evaluation, recorded: list[dict[str, Any]] | None = None, gate: float = 0.8
) -> Evaluation:
    """``judge_breaking_pairs`` on ``evaluation`` of a claim whose gate is ``gate`` (the
    session's is 0.8); the limit it records goes to ``recorded``."""
    request = fake_request(
        "test_limits.py::test_a_limit", reproduce_options=" --das-config=das.yaml"
    )
    site = "block_output[layer=1, pos=last]"
    result = fake_result(site, gate, evaluate_on=lambda pairs: evaluation)
    try:
        return judge_breaking_pairs(request, result, [], claim="left_boundary", where="bracket X")
    finally:
        if recorded is not None:
            properties = request.node.user_properties
            recorded += [json.loads(v) for k, v in properties if k == "das_limit"]


def test_an_alignment_that_changes_nothing_where_the_model_answers_breaks(encoded: Any) -> None:
    base = encoded.base_label_ids
    evaluation = Evaluation(encoded, base.clone(), base.clone(), base.clone(), 0.0)
    recorded: list[dict[str, Any]] = []
    assert _judge(evaluation, recorded) is evaluation
    (limit,) = recorded  # for the reports' table of measured limits
    changed = evaluation.changed_labels()
    assert changed["n"] > 0
    assert changed["correct"] == 0
    assert limit["status"] == "breaks"
    assert limit["verdict"] == "not_aligned"
    assert (limit["where"], limit["site"], limit["seed"]) == (
        "bracket X",
        "block_output[layer=1, pos=last]",
        0,
    )
    assert (limit["n"], limit["changed_labels"]) == (80, changed)
    assert limit["iia"] == pytest.approx(evaluation.iia, abs=1e-6)
    assert limit["iia_ci"][0] < limit["iia"] < limit["iia_ci"][1]


def test_an_alignment_that_holds_fails_the_negative_claim(encoded: Any) -> None:
    labels, base = encoded.label_ids, encoded.base_label_ids
    evaluation = Evaluation(encoded, labels.clone(), base.clone(), base.clone(), 0.0)
    recorded: list[dict[str, Any]] = []
    with pytest.raises(IIAClaimFailed, match=r"was to break here, but it is aligned") as caught:
        _judge(evaluation, recorded)
    assert "bracket X: IIA 1.000 (n=80, 95% CI [" in str(caught.value)
    # every baseline it is read against, as a claim's failure names them
    controls = evaluation.baselines()
    assert (
        f"no-op {controls['noop']:.3f}, majority {controls['majority']:.3f}, random rotation "
        f"{controls['random_rotation']:.3f}" in str(caught.value)
    )
    # it ended without the command that reruns it, which a claim's failure gives
    assert str(caught.value).endswith(
        "reproduce: pytest test_limits.py::test_a_limit --das-seed=0 --das-config=das.yaml"
    )
    assert [(r["status"], r["iia"]) for r in recorded] == [("aligned", 1.0)]  # reported too


def test_pairs_the_model_cannot_answer_show_no_limit(encoded: Any) -> None:
    base = encoded.base_label_ids
    wrong = torch.where(base == encoded.label_ids, base + 1, encoded.label_ids)
    evaluation = Evaluation(encoded, wrong, wrong.clone(), wrong.clone(), 0.0)
    recorded: list[dict[str, Any]] = []
    with pytest.raises(IIAClaimFailed, match=r"fails the task on these pairs \(gate 0.8\)"):
        _judge(evaluation, recorded)
    assert [r["status"] for r in recorded] == ["task accuracy below the gate 0.8"]


def test_the_gate_is_the_claims_own_as_for_its_verdict(encoded: Any) -> None:
    # a claim that lowered its gate (align(..., min_task_accuracy=0.5)) had its limits judged
    # at the session's gate: "the model fails the task on these pairs"
    base = encoded.base_label_ids
    wrong = base.clone()
    wrong[:24] = wrong[:24] + 1  # 70% of the base prompts right: under 0.8, over 0.5
    evaluation = Evaluation(encoded, wrong.clone(), wrong.clone(), wrong.clone(), 0.0)
    assert 0.5 < evaluation.task_accuracy < 0.8
    recorded: list[dict[str, Any]] = []
    assert _judge(evaluation, recorded, gate=0.5) is evaluation
    assert [r["status"] for r in recorded] == ["breaks"]
    with pytest.raises(IIAClaimFailed, match=r"fails the task on these pairs \(gate 0.8\)"):
        _judge(evaluation, gate=0.8)


def test_pairs_whose_labels_do_not_change_cannot_tell(encoded: Any) -> None:
    base = encoded.base_label_ids
    evaluation = Evaluation(encoded, base.clone(), base.clone(), base.clone(), 0.0)
    unchanged = evaluation.subset(lambda pair: pair.expected == pair.base_expected)
    with pytest.raises(IIAClaimFailed, match=r"these pairs cannot tell"):
        _judge(unchanged)


@pytest.mark.parametrize(
    ("outcome", "expect", "status"),
    [
        ("aligned", "aligned", "holds"),
        ("not_aligned", "aligned", "broken"),
        ("inconclusive", "aligned", "inconclusive"),  # was "holds": straddling the bar
        ("not_aligned", "not_aligned", "holds"),
        ("aligned", "not_aligned", "broken"),
        ("inconclusive", "not_aligned", "inconclusive"),
    ],
)
def test_a_fuzz_variant_holds_only_on_the_verdict_it_expects(
    outcome: str, expect: str, status: str
) -> None:
    from das_assert.robustness import fuzz_status

    assert fuzz_status(outcome, expect) == status


def test_a_fuzz_records_alignment_id_does_not_name_where_das_assert_is_installed() -> None:
    # the embedded model counted by its absolute directory: two clones of one commit wrote
    # every fuzz example's `alignment` otherwise, so their reports differed
    from types import SimpleNamespace

    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig
    from das_assert.robustness import alignment_id
    from das_assert.sites import Site

    def result(path: str, name: str, seed: int = 0) -> Any:
        model = SimpleNamespace(path=path, name=name, dtype="float32")
        experiment = Experiment(hypothesis="left_boundary", site=Site(0), seed=seed)
        return SimpleNamespace(experiment=experiment, config=FitConfig(), model=model)

    here = alignment_id(result("/a/das_assert/embedded/price_tagger", "embedded"))
    assert alignment_id(result("/b/das_assert/embedded/price_tagger", "embedded")) == here
    assert alignment_id(result("/m/other", "/m/other")) != here
    assert alignment_id(result("/a/das_assert/embedded/price_tagger", "embedded", 1)) != here


def test_the_majority_baseline_is_the_share_of_the_commonest_label(encoded: Any) -> None:
    # 56 of 80 counterfactual labels are one answer, 24 the other: always answering the first
    # scores 0.7 (guards against the share of the rarest label, which balanced labels hide).
    yes, no = sorted(set(encoded.label_ids.tolist()))[:2]
    labels = torch.tensor([yes] * 24 + [no] * 56)
    unbalanced = dataclasses.replace(encoded, label_ids=labels)
    base = encoded.base_label_ids
    evaluation = Evaluation(unbalanced, labels.clone(), base.clone(), base.clone(), 0.0)
    assert evaluation.baselines()["majority"] == pytest.approx(0.7)


def test_an_evaluation_prints_its_interval_and_controls(encoded: Any) -> None:
    # das.assert_breaks_on returns one: a user's own assert on it shows its repr
    labels, base = encoded.label_ids, encoded.base_label_ids
    evaluation = Evaluation(encoded, labels.clone(), base.clone(), base.clone(), 0.0)
    text = repr(evaluation)
    assert text.startswith("Evaluation(iia=1.000, n=80, ci95=[0.954, 1.000], noop=")
    for control in ("majority=", "random_rotation=", "task_accuracy="):
        assert control in text
