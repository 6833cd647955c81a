"""The function-scoped ``das`` fixture's object: the assertions of a hypothesis file (claims,
fuzz variants, measured limits, searches), each recording what it measured for the reports
and baselines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from das_assert import request_checks as checks
from das_assert.alignment_result import AlignmentResult
from das_assert.data import PromptPair
from das_assert.errors import (
    IIAClaimFailed,
    IIAInconclusive,
    IIARegression,
    InvalidArgument,
    OutputWriteError,
)
from das_assert.evaluate import Evaluation
from das_assert.gate import (
    compare_search_cells,
    compare_with_baseline,
    regression_message,
    save_claim_alignment,
    save_search_alignments,
)
from das_assert.messages import failure_message, reproduce_line, runnable_nodeid
from das_assert.session import DasSession

__all__ = ["DasRequest"]


@dataclass
class DasRequest:
    """The function-scoped ``das`` fixture: assertions that record what they measured."""

    def __repr__(self) -> str:
        return f"DasRequest(test={self.node.nodeid!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    session: DasSession
    node: Any  # the pytest item
    records: list[dict[str, Any]] = field(default_factory=list)
    # Set by the first broken fuzz example: hypothesis stops drawing there, and what runs after
    # (its shrinking, the final replay) is chosen near the failure, not drawn: kept out of pooling.
    _failed_once: bool = field(default=False, repr=False)

    def align(self, hypothesis: str, site: str | Any, **changes: Any) -> AlignmentResult:
        return self.session.align(hypothesis, site, **changes)

    def record_search(self, grid: Any) -> None:
        """Put every cell of a search (``das_assert.search.search``) in the reports."""
        from das_assert.search import search_record

        record = search_record(grid)
        if self.session.baseline is not None:  # its heatmap against the baseline's
            record["baseline"] = compare_search_cells(grid, self.session.baseline, self.node.nodeid)
        if self.session.save_to is not None:  # its cells, so that a frozen run can judge it
            try:
                save_search_alignments(self.session, grid, record, self.node.nodeid)
            except Exception as exc:  # the search stands; the baseline cannot be saved
                # the file named however early the save failed, so that the baseline is refused
                unwritten = {"alignment_unwritten": _unwritten(exc)}
                record.update(baseline_file=f"{self.session.save_to}.json", **unwritten)
        if self.session.plots_dir is not None:  # a picture that cannot be written loses no cell
            try:
                record["heatmap"] = str(self._save_heatmap(grid).resolve())
            except OutputWriteError as exc:  # said among the notes, and the exit is not 0
                record.update(heatmap=None, heatmap_unwritten=str(exc))
        self.node.user_properties.append(("das_search", json.dumps(record)))

    def _save_heatmap(self, grid: Any) -> Path:
        """``--das-plots DIR``: the grid's heatmap, named after the test, its causal model and
        which of its searches it is (``unique_name``: ids that slug alike get their own)."""
        from das_assert.baseline import unique_name
        from das_assert.search import save_heatmap

        assert self.session.plots_dir is not None
        recorded = sum(name == "das_search" for name, _ in self.node.user_properties)
        key = f"{self.node.nodeid}::{grid.hypothesis}::search{recorded}"
        path = self.session.plots_dir / f"{unique_name(key)}.png"
        title = f"{grid.hypothesis} on {self.session.model.name}: IIA per cell"
        return save_heatmap(grid, path, title=title)

    def assert_aligned(
        self,
        result: AlignmentResult,
        *,
        claim: str,
        threshold: float | None = None,
        **unknown: NoReturn,
    ) -> None:
        """Assert the variable is found: Wilson lower bound >= threshold, baselines beaten."""
        __tracebackhide__ = True
        checks.refuse_unknown_keywords("assert_aligned", unknown, ("claim", "threshold"))
        self._judge(result, claim=claim, threshold=threshold, expect="aligned")

    def assert_not_aligned(
        self,
        result: AlignmentResult,
        *,
        claim: str,
        threshold: float | None = None,
        **unknown: NoReturn,
    ) -> None:
        """Assert the variable is *not* found: the Wilson upper bound < threshold, or the upper
        bound of IIA's lead over the no-op or random-rotation baseline < the margin wherever IIA's
        interval lies (the site clearly does no more than leaving the run alone), or a claimed
        box is empty (``metrics.verdict``)."""
        __tracebackhide__ = True
        checks.refuse_unknown_keywords("assert_not_aligned", unknown, ("claim", "threshold"))
        self._judge(result, claim=claim, threshold=threshold, expect="not_aligned")

    def _judge(
        self, result: AlignmentResult, *, claim: str, threshold: float | None, expect: str
    ) -> None:
        __tracebackhide__ = True
        if expect not in ("aligned", "not_aligned"):
            raise InvalidArgument(f"expect={expect!r}")
        checks.check_result(result, f"assert_{expect}")
        checks.check_claim(claim, result)
        if any(r["claim"] == claim for r in self.records):
            raise InvalidArgument(
                f"claim {claim!r} is asserted twice in {self.node.nodeid}: reports and baselines "
                "know a claim by its test and name, so the second would replace the first. Give "
                "each assertion its own test (@pytest.mark.parametrize over the sites) or its own "
                "claim name with an explicit threshold="
            )
        threshold = self.session.threshold(claim) if threshold is None else threshold
        experiment = result.experiment.keeping_definition(threshold=threshold)
        judged = replace(result, experiment=experiment)
        verdict = judged.verdict()
        record = judged.to_dict(test_id=self.node.nodeid)
        record.update(claim=claim, expected_verdict=expect, passed=verdict.outcome == expect)
        record["model"] = self.session.model.describe()
        self.records.append(record)
        if self.session.save_to is not None:
            try:
                save_claim_alignment(self.session, judged, record)
            except Exception as exc:  # the verdict stands; the baseline cannot be saved
                unwritten = {"alignment_unwritten": _unwritten(exc)}
                record.update(baseline_file=f"{self.session.save_to}.json", **unwritten)
        baseline = self.session.baseline
        regressions = (
            compare_with_baseline(self.session, self.node, judged, record) if baseline else []
        )
        if baseline:  # [] where none: a reader of a compare run's records finds the key
            record["regressions"] = regressions
        if regressions:  # the claim holds, but not as well as its baseline: it fails
            record["passed"] = False
        regressed = (
            regression_message(claim, record, regressions, baseline[0])
            if baseline and regressions
            else ""
        )
        self.node.user_properties.append(("das_result", json.dumps(record)))
        for name in ("claim", "iia", "iia_ci", "n_test", "verdict", "threshold"):
            self.node.user_properties.append((f"das_{name}", record[name]))
        if verdict.outcome == expect:
            if regressions:
                raise IIARegression(
                    regressed
                    + "\n"
                    + reproduce_line(judged, runnable_nodeid(self.node), self.session)
                )
            return
        message = failure_message(
            judged,
            claim=claim,
            expect=expect,
            verdict=verdict,
            nodeid=runnable_nodeid(self.node),
            session=self.session,
            regressed=bool(regressions),
        )
        if regressions:  # before the last line, the reproduce line
            head, _, last = message.rpartition("\n")
            message = f"{head}\n{regressed}\n{last}"
        if verdict.outcome == "inconclusive":
            if regressions:  # --das-inconclusive judges the verdict, never the gate
                raise IIARegression(message)
            if self.session.inconclusive == "pass":
                return
            if self.session.inconclusive == "xfail":
                import pytest

                # one line of -rx's summary, which is all pytest shows of an xfailed test
                first_line = message.partition("\n")[0]
                pytest.xfail(
                    f"{first_line} (the whole message: --das-inconclusive=fail; the numbers: "
                    "the JSON report)"
                )
            raise IIAInconclusive(message)
        raise IIAClaimFailed(message)

    def assert_robust(
        self,
        result: AlignmentResult,
        variant: Any,
        *,
        claim: str,
        n: int = 400,
        expect: str = "aligned",
        confirm: bool = True,
        **unknown: NoReturn,
    ) -> None:
        """Evaluate the frozen alignment on ``n`` pairs written as ``variant``, judged as a claim
        is against the ``robustness`` threshold of ``claim`` and the variant's own no-op: fail
        when the verdict is clearly not aligned (with ``expect="not_aligned"``: clearly aligned).
        400 pairs by default: at 96 a do-nothing alignment still "held" (upper bound 0.799).

        A variant that breaks the claim is judged again on ``n`` fresh pairs and fails the test
        only if they break it too (else it counts as inconclusive; fresh pairs that cannot be
        judged do not confirm): a fuzz test judges many variants at 95% each, and one chance
        break among them would fail a true claim. A direct call on one variant is confirmed
        the same way; ``confirm=False`` lets the first pairs decide.

        Variants the model itself cannot do (task accuracy below the gate), whose labels cannot
        be balanced, or on which too few labels change to tell, are rejected as preconditions
        (``hypothesis.assume``) and counted; called outside a hypothesis test, such a variant
        raises the error that says why.
        """
        __tracebackhide__ = True
        from das_assert.robustness import judge_variant

        known = ("claim", "n", "expect", "confirm")
        checks.refuse_unknown_keywords("assert_robust", unknown, known)
        checks.check_result(result, "assert_robust")
        checks.check_claim(claim, result)
        checks.check_variant(variant)
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:  # a typo, not a variant
            raise InvalidArgument(f"n={n!r}: the pairs per variant, an integer of at least 2")
        if not isinstance(confirm, bool):
            raise InvalidArgument(f"confirm={confirm!r}: True or False")
        self.session.check_model_unchanged("das.assert_robust")
        judge_variant(self, result, variant, claim=claim, n=n, expect=expect, confirm=confirm)

    def assert_breaks_on(
        self,
        result: AlignmentResult,
        pairs: list[PromptPair],
        *,
        claim: str,
        where: str,
        **unknown: NoReturn,
    ) -> Evaluation:
        """Assert a measured limit of ``claim``'s robustness: on ``pairs`` (other brackets or
        prompts, e.g. from ``prompt_pairs``) the model does the task, enough labels change to
        tell, and the frozen alignment is clearly not aligned, judged as ``assert_robust`` judges
        a variant. ``where`` names the pairs in the message, with the per-variable lines."""
        __tracebackhide__ = True
        from das_assert.robustness import judge_breaking_pairs

        checks.refuse_unknown_keywords("assert_breaks_on", unknown, ("claim", "where"))
        checks.check_result(result, "assert_breaks_on")
        checks.check_claim(claim, result)
        checks.check_pairs(pairs, result)
        self.session.check_model_unchanged("das.assert_breaks_on")
        return judge_breaking_pairs(self, result, pairs, claim=claim, where=where)


def _unwritten(exc: Exception) -> str:
    """Why an alignment file of a baseline was not written. Any error, not only a write's
    (``OutputWriteError`` names the file and the cause): one that escaped failed the test and
    left the claim out of a baseline saved as if complete."""
    return str(exc) if isinstance(exc, OutputWriteError) else f"{type(exc).__name__}: {exc}"
