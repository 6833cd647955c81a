"""The fuzz assertion (``das.assert_robust``): a frozen alignment judged on one prompt variant as
a claim is judged, each example recorded for the robustness table."""

from __future__ import annotations

import json
from typing import Any

from das_assert.errors import InvalidArgument, PreconditionFailed
from das_assert.experiment import AlignmentResult
from das_assert.messages import indent
from das_assert.metrics import wilson_interval
from das_assert.variants import evaluate_variant, replay_advice

__all__ = ["judge_variant"]


def judge_variant(
    request: Any, result: AlignmentResult, variant: Any, *, claim: str, n: int, expect: str
) -> None:
    """``request.assert_robust`` (a ``DasRequest``; see its docstring for the rule)."""
    __tracebackhide__ = True
    from hypothesis import assume, event

    from das_assert.session import IIAClaimFailed

    threshold = request.session.settings.threshold(claim, table="robustness")
    exp = result.experiment
    evaluation = _evaluate_once(request.session, result, variant, n)
    if isinstance(evaluation, InvalidArgument):
        event(f"rejected: {str(evaluation)[:60]}")
        _record(
            request, result, variant, n, claim, None, f"rejected: cannot be built: {evaluation}"
        )
        assume(False)
    # The evaluation runs the base prompts first and stops at the task-accuracy gate.
    if isinstance(evaluation, PreconditionFailed):
        event("rejected: the model fails the task under this variant")
        _record(request, result, variant, n, claim, None, f"rejected: {evaluation}")
        assume(False)
    low, high = wilson_interval(evaluation.successes, evaluation.n)
    noop = evaluation.baselines()["noop"]
    beats_noop = evaluation.iia - noop >= exp.margin
    if expect == "aligned":  # as for a claim: an IIA at the no-op level transferred nothing
        broken = high < threshold or not beats_noop
    else:  # beating the threshold only counts if the intervention did something
        broken = low >= threshold and beats_noop
    _record(request, result, variant, n, claim, evaluation, "broken" if broken else "holds")
    if broken:
        pair = evaluation.test.pairs[(evaluation.failing_indices() or [0])[0]]
        raise IIAClaimFailed(
            f"claim {claim!r} breaks under {variant!r}\n"
            f"  IIA {evaluation.iia:.3f} (n={evaluation.n}, 95% CI [{low:.3f}, {high:.3f}]) "
            f"{_why_broken(expect, high, threshold, beats_noop, exp.margin)} "
            f"at {exp.site}, seed={exp.seed}; task accuracy {evaluation.task_accuracy:.3f}, "
            f"no-op {noop:.3f}\n"
            f"  a failing pair: base {pair.inputs.get('base')}, "
            f"source {pair.inputs.get('source')}"
            f"\n  base prompt:\n{indent(pair.base.text.strip())}\n  source prompt:\n"
            f"{indent(pair.source.text.strip())}\n"
            f"  replay: pytest {request.node.nodeid} ({replay_advice()})"
        )


def _evaluate_once(session: Any, result: AlignmentResult, variant: Any, n: int) -> Any:
    """``variants.evaluate_variant``, computed once per session for each (alignment, variant,
    n)."""
    try:
        key: tuple[int, Any, int] | None = (id(result), variant, n)
        known = session._variant_memo.get(key)
    except TypeError:  # a user's variant type that cannot be hashed: no reuse
        key = known = None
    if known is not None:
        return known[1]
    outcome = evaluate_variant(result, variant, n, min_task_accuracy=session.min_task_accuracy)
    if key is not None:
        session._variant_memo[key] = (result, outcome)
    return outcome


def _record(
    request: Any,
    result: AlignmentResult,
    variant: Any,
    n: int,
    claim: str,
    evaluation: Any,
    status: str,
) -> None:
    """One fuzz example for the robustness table, as a ``das_fuzz`` user property."""
    record = {
        "claim": claim,
        "site": str(result.experiment.site),
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
        record.update(
            iia=round(evaluation.iia, 6),
            n=evaluation.n,
            correct=evaluation.successes,
            task_accuracy=round(evaluation.task_accuracy, 6),
            noop=round(evaluation.baselines()["noop"], 6),
        )
    request.node.user_properties.append(("das_fuzz", json.dumps(record)))


def _why_broken(expect: str, high: float, threshold: float, beats_noop: bool, margin: float) -> str:
    """Why a variant broke the claim, for its failure message."""
    if expect != "aligned":
        return f">= robustness threshold {threshold}"
    if high < threshold:
        return f"< robustness threshold {threshold}"
    return f"does not beat this variant's no-op by the margin {margin}"
