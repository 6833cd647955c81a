"""What the pytest fixtures hand to hypothesis files: one model per session, alignments learned
once and shared, and assertions that turn an interval into a verdict and a readable failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from das_assert import request_checks as checks
from das_assert.alignment_result import AlignmentResult
from das_assert.cache import AlignmentCache, cache_key
from das_assert.data import PromptPair
from das_assert.errors import (
    IIAClaimFailed,
    IIAInconclusive,
    IIARegression,
    InvalidArgument,
    OutputWriteError,
    SiteError,
    did_you_mean,
)
from das_assert.evaluate import Evaluation
from das_assert.experiment import Experiment, check_site, run_experiment
from das_assert.fit_config import FitConfig
from das_assert.frozen import frozen_alignment, frozen_restart
from das_assert.gate import (
    compare_search_cells,
    compare_with_baseline,
    regression_message,
    save_claim_alignment,
    save_search_alignments,
)
from das_assert.messages import failure_message, reproduce_line, runnable_nodeid
from das_assert.model_state import check_unchanged, model_snapshot
from das_assert.models import LoadedModel
from das_assert.restarts import check_restarts, run_restarts
from das_assert.settings import ModelSettings
from das_assert.sites import Site
from das_assert.tasks.price_tagging import ALPACA_TEMPLATE, PriceFormat

# What das_session.align(hypothesis, site, ...) may change of its Experiment.
#: The threshold is the assertion's (or das.yaml's), not the experiment's: ``align`` refuses it.
_FIT_FIELDS = frozenset(f.name for f in dataclasses.fields(FitConfig) if f.init)
_EXPERIMENT_CHANGES = frozenset(
    f.name
    for f in dataclasses.fields(Experiment)
    if f.init and f.name not in ("hypothesis", "site", "threshold")
)

__all__ = [
    "DasRequest",
    "DasSession",
    "IIAClaimFailed",
    "IIAInconclusive",
    "IIARegression",
]


@dataclass
class DasSession:
    """Session-wide state: the model under test, its das.yaml settings, the alignments learned."""

    def __repr__(self) -> str:
        return f"DasSession(model={self.model.name!r}, settings={self.settings.key!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    model: LoadedModel
    settings: ModelSettings
    seed: int = 0
    cache: AlignmentCache | None = None
    min_task_accuracy: float = 0.8
    inconclusive: str = "fail"  # fail | xfail | pass
    fit_overrides: dict[str, Any] = field(default_factory=dict)
    plots_dir: Path | None = None
    save_to: Path | None = None  # <baseline dir>/<model>/NNNN_name (without .json)
    baseline: tuple[Path, dict[str, Any]] | None = None  # the baseline compared with
    frozen: tuple[Path, dict[str, Any]] | None = None  # --das-frozen: its alignments, no fits
    compare_checks: list[Any] = field(default_factory=list)
    reproduce_options: str = ""  # the run's non-default das options, for a failure's last line
    reproduce_threads: str = ""  # ``OMP_NUM_THREADS=N `` where the run chose its CPU threads
    # The wrapper this model reads prompts in (das.yaml's prompt_template, resolved); None:
    # Alpaca's, the paper's.
    prompt_template: str | None = None
    _memo: dict[str, AlignmentResult] = field(default_factory=dict, repr=False)
    sites_checked: set[str] = field(default_factory=set, repr=False)  # das.yaml's, on its prompt
    # Fuzz examples that repeat a variant (hypothesis often draws the plain prompt again) reuse
    # its evaluation: the alignment is frozen and the pairs are seeded, so it cannot differ.
    # Keyed by id(result), with the result kept alive beside its outcome so the id stays unique,
    # the variant, n, and whether the pairs are the fresh ones that confirm a break.
    _variant_memo: dict[tuple[int, Any, int, bool], tuple[AlignmentResult, Any]] = field(
        default_factory=dict, repr=False
    )
    # The model as the session began: its alignments and their cache are keyed by its weight
    # files, so a hook or an edit made since would be measured under the unchanged model's name.
    _model_at_start: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._model_at_start = model_snapshot(self.model.model)

    def check_model_unchanged(self, what: str) -> None:
        """``model_state.check_unchanged`` against the model at the session's start."""
        check_unchanged(self.model.model, self._model_at_start, what)

    def site(self, name: str) -> Any:
        """The site called ``name`` for this model in das.yaml, or one written out in full,
        ``block_output[layer=0, pos=last]``, as a search grid's cells are."""
        from das_assert.sites import parse_site

        if name not in self.settings.sites and "[" in name:
            return parse_site(name)
        return self.settings.site(name)

    def threshold(self, claim: str) -> float:
        return self.settings.threshold(claim)

    def experiment(self, hypothesis: str, site: str | Any, **changes: Any) -> Experiment:
        """An ``Experiment`` with this model's data sizes, the session seed and gate."""
        if "threshold" in changes:
            raise InvalidArgument(
                f"align() takes no threshold (given {changes['threshold']!r}): a threshold "
                "judges a result, so it goes to the assertion, "
                "das.assert_aligned(result, claim=..., threshold=0.8), or to das.yaml's "
                "thresholds under the claim's name"
            )
        unknown = sorted(set(changes) - _EXPERIMENT_CHANGES)
        training = [name for name in unknown if name in _FIT_FIELDS]
        if training:
            settings = ", ".join(f"{name}={changes[name]!r}" for name in training)
            raise InvalidArgument(
                f"{', '.join(training)}: a training setting, not the experiment's; pass "
                f"config=das_session.fit_config({settings}) to align()"
            )
        if unknown:
            raise InvalidArgument(
                f"unknown keyword(s) {', '.join(unknown)}; an experiment takes these: "
                f"{', '.join(sorted(_EXPERIMENT_CHANGES))} (and align(), config= and restarts=)."
                + did_you_mean(unknown[0], [*_EXPERIMENT_CHANGES, "config", "restarts"])
            )
        resolved = self.site(site) if isinstance(site, str) else site
        if isinstance(resolved, Site) and resolved.layer < 0:  # one block, one cache key
            with contextlib.suppress(SiteError):  # a layer it lacks: align says so, with context
                resolved = resolved.in_blocks_of(self.model.model)
        fields = {
            "hypothesis": hypothesis,
            "site": resolved,
            "n_train": self.settings.n_train,
            "n_test": self.settings.n_test,
            "seed": self.seed,
            "min_task_accuracy": self.min_task_accuracy,
        }
        fields.update(changes)
        if self.prompt_template is not None or self.settings.answers is not None:
            fields["fmt"] = self._in_model_format(fields.get("fmt", PriceFormat()))
        return Experiment(**fields)

    def _in_model_format(self, fmt: Any) -> Any:
        """``fmt`` in this model's wrapper and answer words (das.yaml's), where it names none of
        its own: the instruction and context are the hypothesis's."""
        if not isinstance(fmt, PriceFormat):
            return fmt  # Experiment says what it must be
        if self.prompt_template is not None and fmt.template == ALPACA_TEMPLATE:
            fmt = fmt.with_(template=self.prompt_template)
        if self.settings.answers is not None and fmt.answers == PriceFormat().answers:
            fmt = fmt.with_(answers=self.settings.answers)
        return fmt

    def check(
        self,
        hypothesis: str,
        site: str | Any,
        *,
        config: FitConfig | None = None,
        restarts: int = 1,
        **changes: Any,
    ) -> None:
        """Refuse, before anything trains, what ``align`` would refuse with the same arguments:
        a site this model or its prompt cannot have, a bad ``config`` or ``restarts``."""
        checks.check_align_arguments(site, config)
        experiment = self.experiment(hypothesis, site, **changes)
        check_restarts(restarts, (config or self.fit_config()).with_seed(experiment.seed))
        check_site(self.model, experiment)

    def search_settings(self) -> dict[str, Any]:
        """das.yaml's ``search:`` for this model ({} if none), its layers and positions checked
        against the model and its prompt first: an error names the key, before any cell
        trains. Called by a search test, so a search the model cannot run fails only that."""
        from das_assert.grid_checks import checked_search

        return checked_search(self)

    def fit_config(self, **changes: Any) -> FitConfig:
        base = {
            "epochs": self.settings.epochs,
            "batch_size": self.settings.batch_size,
            "seed": self.seed,
            **self.fit_overrides,
        }
        checks.check_fit_changes(changes)
        return FitConfig(**{**base, **changes})

    def align(
        self,
        hypothesis: str,
        site: str | Any,
        *,
        config: FitConfig | None = None,
        restarts: int = 1,
        **changes: Any,
    ) -> AlignmentResult:
        """Learn (or reuse) the alignment of ``hypothesis`` at ``site`` and evaluate it.

        The same request in one session is computed once; across sessions and xdist workers the
        disk cache (with a lock per key) makes sure it is trained once. In a frozen session
        (``--das-frozen``) the baseline's alignment for the request is evaluated instead
        (``frozen.frozen_alignment``), and nothing is trained. ``restarts=k`` fits k times, at
        fit seeds from the config's on, and keeps the fit with the best IIA on development pairs
        (``das_assert.restarts``); a frozen session takes the one its baseline kept.
        """
        checks.check_align_arguments(site, config)
        self.check_model_unchanged("das_session.align")
        experiment = self.experiment(hypothesis, site, **changes)
        if isinstance(site, str) and site in self.settings.sites:
            checks.check_das_yaml_site(self, site, experiment)
        # One seed for the pairs and the fit: align(..., seed=3) fits at 3 as well, also with a
        # config= at the session's seed (das_session.fit_config(epochs=1)), not one of its own.
        config = (config or self.fit_config(seed=experiment.seed)).with_seed(experiment.seed)
        if "seed" in changes and config.seed == self.seed:
            config = replace(config, seed=experiment.seed)
        restarts = check_restarts(restarts, config)
        if restarts == 1:
            return self._align_one(experiment, config, site)
        key = cache_key(self.model, experiment, config)
        memo_key = f"{self._memo_key(key, experiment)}/restarts={restarts}"
        if memo_key not in self._memo and self.frozen is not None:
            chosen, record = frozen_restart(self.frozen, experiment, config, restarts)
            result = self._align_one(experiment, chosen, site)
            self._memo[memo_key] = replace(result, restarts={**record, "from_baseline": True})
        if memo_key not in self._memo:
            self._memo[memo_key] = run_restarts(
                self.model,
                experiment,
                config,
                restarts,
                fit=lambda one: self._align_one(experiment, one, site),
            )
        return self._memo[memo_key]

    def _align_one(self, experiment: Experiment, config: FitConfig, site: Any) -> AlignmentResult:
        """One fit of ``experiment`` (or the frozen baseline's), memoised and cached."""
        key = cache_key(self.model, experiment, config)
        memo_key = self._memo_key(key, experiment)
        if memo_key not in self._memo and self.frozen is not None:
            fitted, source = frozen_alignment(self.frozen, self.model, experiment, config)
            result = run_experiment(self.model, experiment, config, fitted=fitted)
            self._memo[memo_key] = replace(result, alignment=source)
        if memo_key not in self._memo:
            try:  # run_experiment holds the cache's lock of the key while it trains
                self._memo[memo_key] = run_experiment(
                    self.model, experiment, config, cache=self.cache
                )
            except SiteError as exc:
                if not isinstance(site, str) or site not in self.settings.sites:
                    raise
                entry = f"models.{self.settings.key}.sites.{site}"
                where = f"{self.settings.source}: {entry} = {self.settings.sites[site]!r}"
                raise SiteError(f"{where}: {exc}") from None
        return self._memo[memo_key]

    @staticmethod
    def _memo_key(key: str, experiment: Experiment) -> str:
        # The disk cache keys the training; the result also carries how it was evaluated and judged.
        judged = (experiment.n_test, experiment.min_task_accuracy, experiment.margin)
        return f"{key}/{judged!r}"


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
            except OutputWriteError as exc:  # the search stands; the baseline cannot be saved
                record.update(alignment_unwritten=str(exc))
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
        self, result: AlignmentResult, *, claim: str, threshold: float | None = None
    ) -> None:
        """Assert the variable is found: Wilson lower bound >= threshold, baselines beaten."""
        __tracebackhide__ = True
        self._judge(result, claim=claim, threshold=threshold, expect="aligned")

    def assert_not_aligned(
        self, result: AlignmentResult, *, claim: str, threshold: float | None = None
    ) -> None:
        """Assert the variable is *not* found: the Wilson upper bound < threshold, or the upper
        bound of IIA's lead over the no-op or random-rotation baseline < the margin wherever IIA's
        interval lies (the site clearly does no more than leaving the run alone), or a claimed
        box is empty (``metrics.verdict``)."""
        __tracebackhide__ = True
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
            except OutputWriteError as exc:  # the verdict stands; the baseline cannot be saved
                unwritten = {"alignment_unwritten": str(exc)}
                record.update(baseline_file=f"{self.session.save_to}.json", **unwritten)
        baseline = self.session.baseline
        regressions = (
            compare_with_baseline(self.session, self.node, judged, record) if baseline else []
        )
        if regressions:  # the claim holds, but not as well as its baseline: it fails
            record.update(regressions=regressions, passed=False)
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
        self, result: AlignmentResult, pairs: list[PromptPair], *, claim: str, where: str
    ) -> Evaluation:
        """Assert a measured limit of ``claim``'s robustness: on ``pairs`` (other brackets or
        prompts, e.g. from ``prompt_pairs``) the model does the task, enough labels change to
        tell, and the frozen alignment is clearly not aligned, judged as ``assert_robust`` judges
        a variant. ``where`` names the pairs in the message, with the per-variable lines."""
        __tracebackhide__ = True
        from das_assert.robustness import judge_breaking_pairs

        checks.check_result(result, "assert_breaks_on")
        checks.check_claim(claim, result)
        checks.check_pairs(pairs, result)
        self.session.check_model_unchanged("das.assert_breaks_on")
        return judge_breaking_pairs(self, result, pairs, claim=claim, where=where)
