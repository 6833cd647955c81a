"""What the pytest fixtures hand to hypothesis files: one model per session, alignments learned
once and shared, and assertions that turn an interval into a verdict and a readable failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from das_assert.cache import AlignmentCache, cache_key
from das_assert.errors import InvalidArgument
from das_assert.experiment import AlignmentResult, Experiment, run_experiment
from das_assert.fit import FitConfig
from das_assert.messages import failure_message
from das_assert.models import LoadedModel
from das_assert.settings import ModelSettings

__all__ = ["DasRequest", "DasSession", "IIAClaimFailed", "IIAInconclusive"]


class IIAClaimFailed(AssertionError):
    """A claim about IIA is contradicted by the interval."""


class IIAInconclusive(AssertionError):
    """The interval straddles the threshold: more pairs are needed to decide."""


@dataclass
class DasSession:
    """Session-wide state: the model under test, its das.yaml settings, the alignments learned."""

    model: LoadedModel
    settings: ModelSettings
    seed: int = 0
    cache: AlignmentCache | None = None
    min_task_accuracy: float = 0.8
    inconclusive: str = "fail"  # fail | xfail | pass
    fit_overrides: dict[str, Any] = field(default_factory=dict)
    _memo: dict[str, AlignmentResult] = field(default_factory=dict, repr=False)

    def site(self, name: str) -> Any:
        """The site called ``name`` for this model in das.yaml."""
        return self.settings.site(name)

    def threshold(self, claim: str) -> float:
        return self.settings.threshold(claim)

    def experiment(self, hypothesis: str, site: str | Any, **changes: Any) -> Experiment:
        """An ``Experiment`` with this model's data sizes, the session seed and gate."""
        resolved = self.site(site) if isinstance(site, str) else site
        fields = {
            "hypothesis": hypothesis,
            "site": resolved,
            "n_train": self.settings.n_train,
            "n_test": self.settings.n_test,
            "seed": self.seed,
            "min_task_accuracy": self.min_task_accuracy,
        }
        fields.update(changes)
        return Experiment(**fields)

    def fit_config(self, **changes: Any) -> FitConfig:
        base = {"epochs": self.settings.epochs, "seed": self.seed, **self.fit_overrides}
        base.update(changes)
        return FitConfig(**base)

    def align(
        self, hypothesis: str, site: str | Any, *, config: FitConfig | None = None, **changes: Any
    ) -> AlignmentResult:
        """Learn (or reuse) the alignment of ``hypothesis`` at ``site`` and evaluate it.

        The same request in one session is computed once; across sessions and xdist workers the
        disk cache (with a lock per key) makes sure it is trained once.
        """
        experiment = self.experiment(hypothesis, site, **changes)
        config = config or self.fit_config()
        key = cache_key(self.model.fingerprint, experiment, config)
        if key not in self._memo:
            with self._lock(key):
                self._memo[key] = run_experiment(self.model, experiment, config, cache=self.cache)
        return self._memo[key]

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        if self.cache is None or not self.cache.writes:
            yield
            return
        lock_path = Path(self.cache.directory) / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class DasRequest:
    """The function-scoped ``das`` fixture: assertions that record what they measured."""

    session: DasSession
    node: Any  # the pytest item
    records: list[dict[str, Any]] = field(default_factory=list)

    def align(self, hypothesis: str, site: str | Any, **changes: Any) -> AlignmentResult:
        return self.session.align(hypothesis, site, **changes)

    def assert_aligned(
        self, result: AlignmentResult, *, claim: str, threshold: float | None = None
    ) -> None:
        """Assert the variable is found: Wilson lower bound >= threshold, baselines beaten."""
        __tracebackhide__ = True
        self._judge(result, claim=claim, threshold=threshold, expect="aligned")

    def assert_not_aligned(
        self, result: AlignmentResult, *, claim: str, threshold: float | None = None
    ) -> None:
        """Assert the variable is *not* found: the Wilson upper bound < threshold."""
        __tracebackhide__ = True
        self._judge(result, claim=claim, threshold=threshold, expect="not_aligned")

    def _judge(
        self, result: AlignmentResult, *, claim: str, threshold: float | None, expect: str
    ) -> None:
        __tracebackhide__ = True
        if expect not in ("aligned", "not_aligned"):
            raise InvalidArgument(f"expect={expect!r}")
        threshold = self.session.threshold(claim) if threshold is None else threshold
        judged = replace(result, experiment=replace(result.experiment, threshold=threshold))
        verdict = judged.verdict()
        assert verdict is not None
        record = judged.to_dict(test_id=self.node.nodeid)
        record.update(claim=claim, expected_verdict=expect, passed=verdict.outcome == expect)
        record["model"] = self.session.model.describe()
        self.records.append(record)
        self.node.user_properties.append(("das_result", json.dumps(record)))
        for name in ("iia", "iia_ci", "n_test", "verdict", "threshold"):
            self.node.user_properties.append((f"das_{name}", record[name]))
        if verdict.outcome == expect:
            return
        message = failure_message(judged, claim=claim, expect=expect, verdict=verdict,
                                  nodeid=self.node.nodeid, session=self.session)
        if verdict.outcome == "inconclusive":
            if self.session.inconclusive == "pass":
                return
            if self.session.inconclusive == "xfail":
                import pytest

                pytest.xfail(message)
            raise IIAInconclusive(message)
        raise IIAClaimFailed(message)
