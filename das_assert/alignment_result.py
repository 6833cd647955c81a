"""A fitted and evaluated alignment: the numbers a verdict rests on, and the same frozen alignment
judged on other pairs (fresh ones, one variable's, a variant's), without training again.

``run_experiment`` (das_assert.experiment) makes one; the JSON report's result record is its
``to_dict``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from das_assert.data import PromptPair, encode
from das_assert.errors import InvalidArgument, PreconditionFailed
from das_assert.evaluate import Evaluation, evaluate
from das_assert.fit import FitConfig, FittedAlignment
from das_assert.metrics import (
    Verdict,
    bracketed,
    controls_text,
    normalized_iia,
    rounded_interval,
    wilson_interval,
)
from das_assert.models import LoadedModel

if TYPE_CHECKING:
    from das_assert.experiment import Experiment

__all__ = ["PRECONDITION_ADVICE", "AlignmentResult"]

PRECONDITION_ADVICE = (
    "an alignment of a model that does not do the task says nothing. Check the prompt format and "
    "answer words, or lower the gate (--das-min-task-accuracy under pytest, "
    "--min-task-accuracy on the command line, min_task_accuracy in Python)"
)


@dataclass
class AlignmentResult:
    """A fitted and evaluated alignment, with its verdict."""

    def __repr__(self) -> str:
        return f"AlignmentResult({self.experiment.hypothesis}, {self.summary()})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    model: LoadedModel
    experiment: Experiment
    config: FitConfig
    fitted: FittedAlignment
    evaluation: Evaluation
    # "confirmation": fresh pairs, since the test pairs chose it; "given": judged_on's pairs
    test_pairs: str = "test"
    # where a saved alignment was evaluated rather than a fit (--das-frozen): the report's block
    alignment: dict[str, Any] | None = None
    # the engine's checks on this model and site (engine_check.EngineCheck.as_dict())
    engine_check: dict[str, Any] | None = None
    # the best of several fits (das_assert.restarts): every fit seed's development IIA, the chosen
    restarts: dict[str, Any] | None = None

    def confirmed(self) -> AlignmentResult:
        """This frozen alignment evaluated on fresh pairs, no training. A cell picked as the best
        of many by its IIA on the test pairs overstates that IIA (the winner's curse: with 8
        cells at a true IIA on the threshold, the best one's lower bound clears it about 1 time
        in 6); the same size of fresh pairs gives an interval that means what it says."""
        chosen = self.restarts is not None  # a fit chosen on development pairs as well
        fresh = self.judged_on(self.experiment.confirmation_pairs(after_restarts=chosen))
        return replace(fresh, test_pairs="confirmation")

    def judged_on(self, pairs: list[PromptPair]) -> AlignmentResult:
        """This frozen alignment as a result on other pairs of its causal model (fresh ones, or
        more of them), no training, behind the task-accuracy gate; recorded as judged on the
        pairs given (``test_pairs``: given), whose seed is the caller's to state."""
        from das_assert.request_checks import check_pairs

        check_pairs(pairs, self)
        exp = self.experiment
        names = self.variable_names
        claimed = exp.variables or names
        others = sorted({names[p.variable_index] for p in pairs} - set(claimed))
        if others:
            raise InvalidArgument(
                f"these pairs intervene on {', '.join(others)}, which this result does not claim "
                f"(it claims {', '.join(claimed)}): draw them with result.experiment.pairs(n, "
                "seed), or call on_variable after judged_on"
            )
        test = encode(self.model, pairs, exp.site.parsed_position)
        try:
            evaluation = evaluate(
                self.model.model,
                self.fitted,
                test,
                seed=exp.seed,
                min_task_accuracy=exp.min_task_accuracy,
            )
        except PreconditionFailed as exc:
            raise PreconditionFailed(f"{self.model.name}: {exc}; {PRECONDITION_ADVICE}") from None
        return replace(self, evaluation=evaluation, test_pairs="given")

    def on_variable(self, name: str) -> AlignmentResult:
        """This result as a claim on one of its variables: the pairs that intervene on ``name``
        (each pair of a multi-variable alignment intervenes on one), with that variable's box
        alone claimed, the others' untouched; no forward pass is rerun."""
        names = self.experiment.boxes
        claimed = self.experiment.variables or names
        if name not in claimed:
            raise InvalidArgument(
                f"on_variable({name!r}): {self.experiment.hypothesis}'s result claims "
                f"{', '.join(claimed)}"
            )
        index = names.index(name)
        if not any(pair.variable_index == index for pair in self.evaluation.test.pairs):
            raise InvalidArgument(
                f"on_variable({name!r}): none of this result's {self.n} pairs intervene on "
                f"{name!r}: judge it on pairs that do, judged_on(result.experiment.pairs(n, seed))"
            )
        evaluation = self.evaluation.subset(lambda pair: pair.variable_index == index)
        experiment = self.experiment.keeping_definition(variables=(name,))
        return replace(self, experiment=experiment, evaluation=evaluation)

    @property
    def iia(self) -> float:
        return self.evaluation.iia

    @property
    def n(self) -> int:
        return self.evaluation.n

    @property
    def iia_ci(self) -> tuple[float, float]:
        return wilson_interval(self.evaluation.successes, self.n)

    @property
    def baselines(self) -> dict[str, float]:
        return self.evaluation.baselines()

    @property
    def variable_names(self) -> tuple[str, ...]:
        """The causal model's intervened variables, in box order, as when it was fitted."""
        return self.experiment.boxes

    @property
    def collapsed(self) -> bool:
        """True when the box of a variable this claim intervenes on ended empty (a no-op)."""
        names = self.experiment.boxes
        claimed = self.experiment.variables or names
        return self.fitted.collapsed_for(names.index(name) for name in claimed)

    def verdict(self, threshold: float | None = None) -> Verdict:
        """The claim's verdict at ``threshold``, else the experiment's (``Experiment(threshold=
        ...)``); one of them must be given."""
        decided = self._verdict(threshold)
        if decided is None:
            raise InvalidArgument(
                "verdict(): no threshold to judge against; give one, result.verdict(0.73), or "
                "make the experiment with Experiment(..., threshold=0.73)"
            )
        return decided

    def _verdict(self, threshold: float | None = None) -> Verdict | None:
        """``verdict``, or None where neither the call nor the experiment gives a threshold."""
        threshold = self.experiment.threshold if threshold is None else threshold
        if threshold is None:
            return None
        return self.evaluation.verdict(
            threshold,
            controls=self.controls,
            margin=self.experiment.margin,
            collapsed=self.collapsed,
        )

    @property
    def controls(self) -> tuple[str, ...]:
        """The baselines a claim must beat: the no-op, and a random rotation of the learned width,
        except for a whole-vector swap (``method="full"``): that is the same intervention in any
        basis, so a random rotation of it is the method itself. A Boundless or ``das:K`` box that
        grew to the whole vector keeps the control, and cannot beat it: it shows no subspace."""
        interchange = self.fitted.interchange
        whole = interchange.d in interchange.hard_widths()
        if self.config.method == "full" or (whole and interchange.rotation_kind == "identity"):
            return ("noop",)
        return ("noop", "random_rotation")

    def evaluate_on(self, pairs: list[PromptPair], *, seed: int | None = None) -> Evaluation:
        """Evaluate the frozen alignment on other pairs of its causal model (new prompts,
        brackets): no training and no task-accuracy gate (read the evaluation's
        ``task_accuracy``; ``judged_on`` gates and judges)."""
        from das_assert.request_checks import check_pairs

        check_pairs(pairs, self)
        test = encode(self.model, pairs, self.experiment.site.parsed_position)
        return evaluate(
            self.model.model, self.fitted, test, seed=self.experiment.seed if seed is None else seed
        )

    def save(self, path: str | Path) -> Path:
        """Write this alignment to ``path`` (one safetensors file, as ``fit --save`` does); load
        it with ``das_assert.load_fitted(path, model)``."""
        from das_assert.saved import save_result

        return save_result(self, path)

    def summary(self) -> str:
        """One line: IIA, n, interval, site, seed, baselines."""
        low, high = self.iia_ci
        b = self.baselines
        bar = self.experiment.threshold  # a bound is shown on the side of the bar it lies
        interval = f"[{low:.3f}, {high:.3f}]" if bar is None else bracketed(low, high, bar)
        return (
            f"IIA {self.iia:.3f} (n={self.n}"
            f"{' fresh pairs' if self.test_pairs == 'confirmation' else ''}, "
            f"95% CI {interval}) "
            f"at {self.experiment.site} "
            f"seed={self.experiment.seed}; {controls_text(b, self.evaluation.task_accuracy)}; "
            f"boundary {self.boundary_text()} of "
            f"{self.fitted.interchange.d} dims{self.restarts_text()}"
        )

    def restarts_text(self) -> str:
        """``; best of 3 fits ...`` for a result chosen among restarts, ``; fit seed 5`` for a
        fit at another seed than its pairs', else empty."""
        record = self.restarts
        if not record:
            seed = self.config.seed  # a config= that names its own fit seed
            return "" if seed in (None, self.experiment.seed) else f"; fit seed {seed}"
        rows = record["by_fit_seed"]
        each = ", ".join(f"{row['fit_seed']}: {row['dev_iia']:.3f}" for row in rows)
        saved = ""
        if record.get("from_baseline"):
            saved = " (chosen when the baseline was saved)"
        elif record.get("from_file"):
            saved = f" (chosen when {record['from_file']} was saved)"
        return (
            f"; fit seed {record['chosen_fit_seed']}, the best of {record['restarts']} fits by "
            f"IIA on {record['dev_pairs']['n']} development pairs (fit seed: IIA {each}){saved}"
        )

    def boundary_text(self) -> str:
        """Each box's width by its variable, e.g. ``left=12 (not claimed: no pair swaps it),
        right=9``: a claim on some variables shows which boxes it judged; the others' widths
        learned nothing from an interchange of their own."""
        names = self.experiment.boxes
        claimed = self.experiment.variables or names
        return ", ".join(
            f"{name}={width}" + ("" if name in claimed else " (not claimed: no pair swaps it)")
            for name, width in zip(names, self.fitted.boundary_dims, strict=True)
        )

    def changed_labels(self) -> dict[str, int]:
        """``Evaluation.changed_labels`` of the test pairs."""
        return self.evaluation.changed_labels()

    @property
    def unchanged_rate(self) -> float:
        """The share of test pairs whose label is the base's own: what the no-op gets right."""
        return 1 - self.changed_labels()["n"] / self.n

    def to_dict(self, *, test_id: str | None = None, include_pairs: bool = True) -> dict[str, Any]:
        """The result record of the JSON report (see README, "The JSON report")."""
        exp = self.experiment
        ev = self.evaluation
        baselines = self.baselines
        decided = self._verdict()
        by_variable = ev.iia_by_variable()
        record: dict[str, Any] = {
            "test_id": test_id,
            "hypothesis": exp.hypothesis,
            "variable": exp.variable,
            "site": {
                "canonical": str(exp.site),
                "layer": exp.site.layer,
                "position": exp.site.position,
                "component": exp.site.component,
                "module": self.fitted.site.module_path,
            },
            "method": self.config.method,
            "data": exp.data_record(),
            "seed": exp.seed,
            "n_train": self.fitted.n_train,  # a saved alignment's own, not the experiment's
            "n_test": self.n,
            "test_pairs": self.test_pairs,
            "iia": round(self.iia, 6),
            "iia_successes": ev.successes,
            "iia_ci": rounded_interval(*self.iia_ci),
            "iia_by_variable": {
                exp.boxes[k]: {"correct": c, "n": n} for k, (c, n) in by_variable.items()
            },
            "task_accuracy": round(ev.task_accuracy, 6),
            "baselines": {k: round(v, 6) for k, v in baselines.items()},
            "baseline_leads": {name: ev.gap(name).to_dict() for name in self.controls},
            "normalized_iia": _round(
                normalized_iia(self.iia, baselines["majority"], ev.task_accuracy)
            ),
            "unchanged_label_rate": round(self.unchanged_rate, 6),
            "iia_on_changed_labels": self.changed_labels(),
            "off_answers": ev.off_answers(),  # predictions that are no answer word, per run
            "boundary_dims": self.fitted.boundary_dims,
            "hidden_size": self.fitted.interchange.d,
            "collapsed": self.collapsed,
            "threshold": exp.threshold,
            "margin": exp.margin,
            "verdict": decided.outcome if decided else None,
            "verdict_reason": decided.reason if decided else None,
            "verdict_decided_by": list(decided.decided_by) if decided else None,
            "fit": self.config.as_dict(),
            "train_seconds": round(self.fitted.train_seconds, 3),
            "from_cache": self.fitted.from_cache,
            "eval_seconds": round(ev.eval_seconds, 3),
        }
        for name in ("alignment", "engine_check", "restarts"):  # copies: the record is the caller's
            if getattr(self, name) is not None:
                record[name] = copy.deepcopy(getattr(self, name))
        if include_pairs:
            record["pairs"] = ev.pair_records(self.model.tokenizer)
        return record


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
