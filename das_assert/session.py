"""What the pytest fixtures hand to hypothesis files: one model per session, alignments learned
once and shared, and assertions that turn an interval into a verdict and a readable failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from das_assert import request_checks as checks
from das_assert.alignment_result import AlignmentResult
from das_assert.cache import AlignmentCache, cache_key
from das_assert.errors import (
    IIAClaimFailed,
    IIAInconclusive,
    IIARegression,
    InvalidArgument,
    SiteError,
    did_you_mean,
)
from das_assert.experiment import Experiment, check_site, run_experiment
from das_assert.fit_config import FitConfig
from das_assert.frozen import frozen_alignment, frozen_restart
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


def __getattr__(name: str) -> Any:
    """``DasRequest``, which lived here, from ``das_assert.request`` (imported late: it imports
    this module)."""
    if name == "DasRequest":
        from das_assert.request import DasRequest

        return DasRequest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
