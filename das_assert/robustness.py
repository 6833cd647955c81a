"""The fuzz assertion (``das.assert_robust``): a frozen alignment judged on one prompt variant as
a claim is judged, each example recorded for the robustness table; and the measured limit
(``das.assert_breaks_on``), recorded for the limits table."""

from __future__ import annotations

import hashlib
import json
from typing import Any, NoReturn

from das_assert.alignment_result import AlignmentResult
from das_assert.errors import InvalidArgument, PreconditionFailed
from das_assert.messages import by_variable_lines, indent, reproduce_line, runnable_nodeid
from das_assert.metrics import bracketed, controls_text, rounded_interval, wilson_interval
from das_assert.variants import evaluate_variant, replay_advice, replay_example

__all__ = ["fuzz_status", "judge_breaking_pairs", "judge_variant"]


def judge_variant(
    request: Any,
    result: AlignmentResult,
    variant: Any,
    *,
    claim: str,
    n: int,
    expect: str,
    confirm: bool = True,
) -> None:
    """``request.assert_robust`` (a ``DasRequest``; see its docstring for the rule)."""
    __tracebackhide__ = True
    from das_assert.session import IIAClaimFailed

    if expect not in ("aligned", "not_aligned"):
        raise InvalidArgument(f"expect={expect!r}: one of 'aligned', 'not_aligned'")
    threshold = request.session.settings.threshold(claim, table="robustness")
    exp = result.experiment
    evaluation = _evaluate_once(request.session, result, variant, n)
    if isinstance(evaluation, InvalidArgument):
        _record(
            request,
            result,
            variant,
            n,
            claim,
            None,
            f"rejected: cannot be built: {evaluation}",
            expect=expect,
        )
        _reject(f"rejected: {str(evaluation)[:60]}", evaluation)
    # The evaluation runs the base prompts first and stops at the task-accuracy gate.
    if isinstance(evaluation, PreconditionFailed):
        _record(request, result, variant, n, claim, None, f"rejected: {evaluation}", expect=expect)
        _reject("rejected: the model fails the task under this variant", evaluation)
    low, high = wilson_interval(evaluation.successes, evaluation.n)
    noop = evaluation.gap("noop")
    # Judged as a claim is, against this variant's own no-op (the random rotation was beaten
    # where the alignment was trained): only a clear verdict breaks or holds the claim.
    judged = evaluation.verdict(threshold, controls=("noop",), margin=exp.margin)
    if judged.untestable:
        why = f"rejected: {judged.reason}"
        _record(request, result, variant, n, claim, evaluation, why, expect=expect)
        _reject(
            "rejected: too few labels change under this variant",
            PreconditionFailed(f"{variant!r} cannot test claim {claim!r}: {judged.reason}"),
        )
    status = fuzz_status(judged.outcome, expect)
    confirmation = None
    if status == "broken" and confirm:  # one break in many variants can be chance: draw again
        confirmation = _confirmation(request.session, result, variant, n, threshold, expect)
        if confirmation["status"] != "broken":
            status = "inconclusive"  # broken on its pairs, not on fresh ones
    _record(
        request,
        result,
        variant,
        n,
        claim,
        evaluation,
        status,
        judged.outcome,
        expect=expect,
        confirmation=confirmation,
    )
    if status == "broken":
        test = runnable_nodeid(request.node)  # as pytest finds it from where it ran
        pair = evaluation.test.pairs[(evaluation.failing_indices() or [0])[0]]
        pinned = replay_example(variant, getattr(request.node, "obj", None))
        lines = [
            f"claim {claim!r} breaks under {variant!r}",
            f"  IIA {evaluation.iia:.3f} (n={evaluation.n}, 95% CI "
            f"{bracketed(low, high, threshold)}) "
            f"at {exp.site}, seed={exp.seed}: {judged.outcome} (robustness threshold "
            f"{threshold}): {judged.reason}; "
            f"{controls_text(evaluation.baselines(), evaluation.task_accuracy)}, "
            f"lead over the no-op {noop.against(exp.margin)}",
            *by_variable_lines(evaluation, result.variable_names),
            *_confirmation_lines(confirmation, threshold),
            f"  a failing pair: base {pair.inputs.get('base')}, source {pair.inputs.get('source')}",
            f"  base prompt:\n{indent(pair.base.text.strip())}",
            f"  source prompt:\n{indent(pair.source.text.strip())}",
            f"  replay: {pinned} on {test}"
            + (f" ({replay_advice()})" if pinned.startswith("@example") else ""),
            reproduce_line(result, test, request.session),
        ]
        raise IIAClaimFailed("\n".join(lines))


def _confirmation(
    session: Any, result: AlignmentResult, variant: Any, n: int, threshold: float, expect: str
) -> dict[str, Any]:
    """The variant judged again, as the first time, on ``n`` fresh pairs (another stream of the
    sampler): its numbers and ``status``, ``broken`` only when these pairs break the claim too
    (else ``holds``, ``inconclusive``, ``untestable`` or ``not judged: why``)."""
    exp = result.experiment
    evaluation = _evaluate_once(session, result, variant, n, fresh=True)
    if isinstance(evaluation, InvalidArgument | PreconditionFailed):
        return {"status": f"not judged: {evaluation}", "n": 0, "threshold": threshold}
    judged = evaluation.verdict(threshold, controls=("noop",), margin=exp.margin)
    return {
        "status": "untestable" if judged.untestable else fuzz_status(judged.outcome, expect),
        "threshold": threshold,
        "verdict": "untestable" if judged.untestable else judged.outcome,
        "reason": judged.reason,
        **_evaluation_numbers(evaluation),
    }


def _confirmation_lines(confirmation: dict[str, Any] | None, threshold: float) -> list[str]:
    """The failure message's line for the fresh pairs that confirmed a break."""
    if confirmation is None:
        return ["  no second draw of pairs (confirm=False): this one decided"]
    low, high = confirmation["iia_ci"]
    return [
        f"  confirmed on {confirmation['n']} fresh pairs: IIA {confirmation['iia']:.3f} (95% CI "
        f"{bracketed(low, high, threshold)}), "
        f"{controls_text(confirmation, confirmation['task_accuracy'])}: "
        f"{confirmation['verdict']}: {confirmation['reason']}"
    ]


def fuzz_status(outcome: str, expect: str) -> str:
    """A judged variant's status: ``broken`` when its verdict is clearly the opposite of
    ``expect`` (only that fails the test), ``holds`` when it is ``expect``, else
    ``inconclusive``: its interval straddles the bar, so it neither holds nor breaks."""
    if outcome == expect:
        return "holds"
    return "broken" if outcome in ("aligned", "not_aligned") else "inconclusive"


def judge_breaking_pairs(
    request: Any, result: AlignmentResult, pairs: list[Any], *, claim: str, where: str
) -> Any:
    """``request.assert_breaks_on`` (a ``DasRequest``; see its docstring for the rule)."""
    __tracebackhide__ = True
    from das_assert.session import IIAClaimFailed

    exp = result.experiment
    threshold = request.session.settings.threshold(claim, table="robustness")
    evaluation = result.evaluate_on(pairs)
    judged = evaluation.verdict(threshold, controls=("noop",), margin=exp.margin)
    record = _limit_record(result, evaluation, claim, where, threshold, judged)
    low, high = wilson_interval(evaluation.successes, evaluation.n)  # not the rounded
    changed = record["changed_labels"]
    numbers = [
        f"  {where}: IIA {evaluation.iia:.3f} (n={evaluation.n}, 95% CI "
        f"{bracketed(low, high, threshold)}) "
        f"at {exp.site}, seed={exp.seed}; "
        f"{controls_text(evaluation.baselines(), evaluation.task_accuracy)}; "
        f"{changed['correct']} of the {changed['n']} answers that must change did",
        *by_variable_lines(evaluation, result.variable_names),
    ]
    gate = exp.min_task_accuracy  # the claim's own, as for its verdict
    if evaluation.task_accuracy < gate:
        status = f"task accuracy below the gate {gate}"
        problem = f"the model fails the task on these pairs (gate {gate}): they cannot show a limit"
    elif judged.untestable:
        status, problem = "untestable", f"these pairs cannot tell: {judged.reason}"
    elif judged.outcome != "not_aligned":
        status = judged.outcome
        problem = f"the alignment was to break here, but it is {judged.outcome}: {judged.reason}"
    else:
        status, problem = "breaks", None
    # For the reports' limits table, as a ``das_limit`` user property: "breaks", else why not.
    record["status"] = status
    request.node.user_properties.append(("das_limit", json.dumps(record)))
    for name, value in [  # for --junitxml, as a claim's: the das_limit record is kept out of it
        *((key, record[key]) for key in ("claim", "where", "iia", "iia_ci")),
        ("n_test", record["n"]),
        ("verdict", record["verdict"]),
        ("status", status),  # breaks, or why it did not
        ("threshold", threshold),
    ]:
        request.node.user_properties.append((f"das_{name}", value))
    if problem is None:
        return evaluation
    rerun = reproduce_line(result, runnable_nodeid(request.node), request.session)
    raise IIAClaimFailed("\n".join([f"claim {claim!r}: {problem}", *numbers, rerun]))


def _reject(event_text: str, error: Exception) -> NoReturn:
    """Drop a variant that cannot test the claim: inside a hypothesis test, as a rejected example
    (``assume``); called directly on one variant, as ``error``, which says why."""
    from hypothesis import assume, event
    from hypothesis.control import currently_in_test_context

    if not currently_in_test_context():
        raise error
    event(event_text)
    assume(False)
    raise AssertionError("unreachable: assume(False) raises")  # for type checkers


#: How many evaluated variants a session keeps for reuse.
VARIANT_MEMO_SIZE = 32


def _evaluate_once(
    session: Any, result: AlignmentResult, variant: Any, n: int, *, fresh: bool = False
) -> Any:
    """``variants.evaluate_variant``, computed once for each (alignment, variant, n, fresh)
    among the session's latest ``VARIANT_MEMO_SIZE`` (a shrinking hypothesis replays recent
    draws). Each holds its encoded prompts, about 5 MiB at n = 400: kept for the whole session,
    a thorough fuzz profile held gigabytes."""
    memo = session._variant_memo
    try:
        key: tuple[int, Any, int, bool] | None = (id(result), variant, n, fresh)
        known = memo.get(key)
    except TypeError:  # a user's variant type that cannot be hashed: no reuse
        key = known = None
    if known is not None:
        memo[key] = memo.pop(key)  # the most recent now
        return known[1]
    gate = result.experiment.min_task_accuracy  # the claim's own, as for its verdict
    outcome = evaluate_variant(result, variant, n, min_task_accuracy=gate, fresh=fresh)
    if key is not None:
        memo[key] = (result, outcome)
        while len(memo) > VARIANT_MEMO_SIZE:
            del memo[next(iter(memo))]  # the least recently used
    return outcome


def _record(
    request: Any,
    result: AlignmentResult,
    variant: Any,
    n: int,
    claim: str,
    evaluation: Any,
    status: str,
    verdict: str | None = None,
    *,
    expect: str,
    confirmation: dict[str, Any] | None = None,
) -> None:
    """One fuzz example for the robustness table, as a ``das_fuzz`` user property: ``status``
    is ``holds`` (the expected verdict), ``inconclusive``, ``broken`` or ``rejected: why``;
    ``confirmation``, where the variant broke its claim, is the same judgement on fresh pairs
    (a break they do not confirm is ``inconclusive``)."""
    record = {
        "claim": claim,
        "expect": expect,
        "site": str(result.experiment.site),
        "seed": result.experiment.seed,
        "alignment": alignment_id(result),
        "variant": repr(variant),
        "families": list(variant.families),
        "status": status,
        "pairs_asked": n,
        "after_failure": request._failed_once,
        "iia": None,
        "n": 0,
    }
    request._failed_once = request._failed_once or status == "broken"
    if evaluation is not None:
        record.update(_evaluation_numbers(evaluation), verdict=verdict)
    if confirmation is not None:
        record["confirmation"] = confirmation
    request.node.user_properties.append(("das_fuzz", json.dumps(record)))


def alignment_id(result: AlignmentResult) -> str:
    """A short digest of what made ``result``'s alignment (the request a frozen run matches it
    by: claim, site, seed, pairs, fit) and of the model's directory and float type. Fuzz
    examples of one variant with the same id scored one alignment, which the robustness table
    counts once; alignments at one site differ. The embedded model counts by that name, not
    by where das_assert is installed: two clones' reports name the same alignments alike."""
    from das_assert.frozen import alignment_request, request_text

    request = alignment_request(result.experiment, result.config)
    request["model"] = [result.model.name, result.model.dtype]  # not the weights' digest
    return hashlib.sha256(request_text(request).encode()).hexdigest()[:16]


def _evaluation_numbers(evaluation: Any) -> dict[str, Any]:
    """An evaluation as the reports record it: IIA with its Wilson interval, n and the correct
    count, the controls' IIAs on the same pairs (no-op, majority label, random rotation) and
    the task accuracy."""
    low, high = wilson_interval(evaluation.successes, evaluation.n)
    baselines = evaluation.baselines()
    return {
        "iia": round(evaluation.iia, 6),
        "iia_ci": rounded_interval(low, high),
        "n": evaluation.n,
        "correct": evaluation.successes,
        **{key: round(baselines[key], 6) for key in ("noop", "majority", "random_rotation")},
        "task_accuracy": round(evaluation.task_accuracy, 6),
    }


def _limit_record(
    result: AlignmentResult,
    evaluation: Any,
    claim: str,
    where: str,
    threshold: float,
    judged: Any,
) -> dict[str, Any]:
    """A measured limit's numbers: where the claim was to break, and how the alignment fared."""
    return {
        "claim": claim,
        "where": where,
        "site": str(result.experiment.site),
        "seed": result.experiment.seed,
        **_evaluation_numbers(evaluation),
        "changed_labels": evaluation.changed_labels(),
        "threshold": threshold,
        "verdict": "untestable" if judged.untestable else judged.outcome,
    }
