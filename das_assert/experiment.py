"""One claim, end to end: generate pairs, check the task precondition, fit, evaluate, judge.

``run_experiment(model, Experiment(...))`` is what the CLI's ``fit`` and the pytest fixtures call.
Its ``AlignmentResult`` carries everything the JSON report needs (n, interval, site, seed,
baselines, the pairs themselves) and can re-evaluate the frozen alignment on new pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from das_assert.cache import AlignmentCache, cache_key
from das_assert.data import EncodedPairs, PromptPair, TokenizedPairs, encode, tokenize
from das_assert.errors import InvalidArgument, PreconditionFailed, did_you_mean
from das_assert.evaluate import Evaluation, base_answers, evaluate
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment
from das_assert.metrics import Verdict, check_threshold, normalized_iia, wilson_interval
from das_assert.models import LoadedModel
from das_assert.positions import parse_position
from das_assert.sharing import shared
from das_assert.sites import Site
from das_assert.tasks.price_tagging import (
    INTERVENED_VARIABLES,
    PriceFormat,
    causal_model,
    check_bracket,
    prompt_pairs,
)

__all__ = ["AlignmentResult", "Experiment", "check_site", "run_experiment", "task_accuracy"]


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A price-tagging claim: which causal model, which variables, which site, how much data."""

    hypothesis: str
    site: Site
    variables: tuple[str, ...] | None = None  # default: every variable the model intervenes on
    n_train: int = 2000
    n_test: int = 500
    seed: int = 0
    fmt: PriceFormat = field(default_factory=PriceFormat)
    bracket: tuple[int, int] | None = None
    threshold: float | None = None
    margin: float = 0.05
    min_task_accuracy: float = 0.8

    def __post_init__(self) -> None:
        cm = causal_model(self.hypothesis)
        boxes = INTERVENED_VARIABLES[self.hypothesis]
        variables = self.variables or boxes
        if isinstance(variables, str) or len(set(variables)) != len(variables):
            raise InvalidArgument(
                f"variables={variables!r} must name each variable once, e.g. {list(boxes)}"
            )
        others = [name for name in variables if name not in boxes]
        if others:  # named among the boxes, not the causal model's every variable
            raise InvalidArgument(
                f"variables {others} have no box in {self.hypothesis}'s alignment, which has one "
                f"for each of {list(boxes)}; choose among those." + did_you_mean(others[0], boxes)
            )
        cm.check_intervenable(list(variables))
        # In the alignment's box order, so that the same subset is the same claim.
        object.__setattr__(self, "variables", tuple(v for v in boxes if v in variables))
        for name, value in (("n_train", self.n_train), ("n_test", self.n_test)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{name}={value!r}: a number of pairs, an integer")
            if value < 2:
                raise InvalidArgument(f"{name}={value}: need at least 2 pairs")
        check_bracket(self.bracket)
        if self.threshold is not None and (problem := check_threshold(self.threshold)):
            raise InvalidArgument(f"threshold={self.threshold!r}: {problem}")
        if isinstance(self.margin, bool) or not 0 <= self.margin < 1:
            raise InvalidArgument(
                f"margin={self.margin!r} must lie in [0, 1): how much IIA must beat each baseline "
                "by (default 0.05)"
            )
        if not 0 <= self.min_task_accuracy <= 1:
            raise InvalidArgument(f"min_task_accuracy={self.min_task_accuracy} must lie in [0, 1]")

    @property
    def variable(self) -> str:
        return "+".join(self.variables or ())

    def pairs(self, n: int, seed: int, fmt: PriceFormat | None = None) -> list[PromptPair]:
        return prompt_pairs(
            self.hypothesis,
            n,
            seed=seed,
            fmt=fmt or self.fmt,
            bracket=self.bracket,
            variables=self.variables,
        )

    def train_pairs(self) -> list[PromptPair]:
        return self.pairs(self.n_train, self.seed)

    def test_pairs(self) -> list[PromptPair]:
        return self.pairs(self.n_test, self.seed + 100_003)  # a disjoint stream of the sampler

    def confirmation_pairs(self) -> list[PromptPair]:
        """Fresh test pairs for a result chosen on its test pairs (a search's best cell)."""
        return self.pairs(self.n_test, self.seed + 200_003)


def task_accuracy(model: LoadedModel, test: EncodedPairs, batch_size: int = 64) -> float:
    """The model's accuracy on the base prompts' own (factual) answers."""
    return _accuracy(base_answers(model.model, test, batch_size=batch_size), test)


def _accuracy(answers: torch.Tensor, test: EncodedPairs) -> float:
    return int((answers == test.base_label_ids).sum()) / len(test)


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

    def confirmed(self) -> AlignmentResult:
        """This frozen alignment evaluated on fresh pairs, no training. A cell picked as the best
        of many by its IIA on the test pairs overstates that IIA (the winner's curse: with 8
        cells at a true IIA on the threshold, the best one's lower bound clears it about 1 time
        in 6); the same size of fresh pairs gives an interval that means what it says."""
        fresh = self.judged_on(self.experiment.confirmation_pairs())
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
            raise PreconditionFailed(f"{self.model.name}: {exc}; {_PRECONDITION_ADVICE}") from None
        return replace(self, evaluation=evaluation, test_pairs="given")

    def on_variable(self, name: str) -> AlignmentResult:
        """This result as a claim on one of its variables: the pairs that intervene on ``name``
        (each pair of a multi-variable alignment intervenes on one), with that variable's box
        alone claimed, the others' untouched; no forward pass is rerun."""
        names = self.variable_names
        claimed = self.experiment.variables or names
        if name not in claimed:
            raise InvalidArgument(
                f"on_variable({name!r}): {self.experiment.hypothesis}'s result claims "
                f"{', '.join(claimed)}"
            )
        index = names.index(name)
        evaluation = self.evaluation.subset(lambda pair: pair.variable_index == index)
        return replace(
            self, experiment=replace(self.experiment, variables=(name,)), evaluation=evaluation
        )

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
        """The causal model's intervened variables, in box order."""
        return INTERVENED_VARIABLES[self.experiment.hypothesis]

    @property
    def collapsed(self) -> bool:
        """True when the box of a variable this claim intervenes on ended empty (a no-op)."""
        names = INTERVENED_VARIABLES[self.experiment.hypothesis]
        claimed = self.experiment.variables or names
        return self.fitted.collapsed_for(names.index(name) for name in claimed)

    def verdict(self, threshold: float | None = None) -> Verdict | None:
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
        """Evaluate the frozen alignment on other pairs (new prompts, brackets): no training."""
        test = encode(self.model, pairs, self.experiment.site.parsed_position)
        return evaluate(
            self.model.model, self.fitted, test, seed=self.experiment.seed if seed is None else seed
        )

    def summary(self) -> str:
        """One line: IIA, n, interval, site, seed, baselines."""
        low, high = self.iia_ci
        b = self.baselines
        return (
            f"IIA {self.iia:.3f} (n={self.n}"
            f"{' fresh pairs' if self.test_pairs == 'confirmation' else ''}, "
            f"95% CI [{low:.3f}, {high:.3f}]) "
            f"at {self.experiment.site} "
            f"seed={self.experiment.seed}; no-op {b['noop']:.3f}, majority {b['majority']:.3f}, "
            f"random rotation {b['random_rotation']:.3f}, task accuracy "
            f"{self.evaluation.task_accuracy:.3f}; boundary {self.boundary_text()} of "
            f"{self.fitted.interchange.d} dims"
        )

    def boundary_text(self) -> str:
        """Each box's learned width by its variable, e.g. ``left=12 (not claimed), right=9``: a
        claim on some variables shows which boxes it judged."""
        names = INTERVENED_VARIABLES[self.experiment.hypothesis]
        claimed = self.experiment.variables or names
        return ", ".join(
            f"{name}={width}" + ("" if name in claimed else " (not claimed)")
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
        decided = self.verdict()
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
            "data": {  # the prompts it ran on: results on other prompts are not comparable
                "instruction": exp.fmt.instruction,
                "answers": list(exp.fmt.answers),
                "prefix": exp.fmt.prefix,
                "suffix": exp.fmt.suffix,
                "numbers": exp.fmt.numbers,
                "template": exp.fmt.template,
                "bracket": list(exp.bracket) if exp.bracket else None,
            },
            "seed": exp.seed,
            "n_train": exp.n_train,
            "n_test": self.n,
            "test_pairs": self.test_pairs,
            "iia": round(self.iia, 6),
            "iia_successes": ev.successes,
            "iia_ci": [round(v, 6) for v in self.iia_ci],
            "iia_by_variable": {
                INTERVENED_VARIABLES[exp.hypothesis][k]: {"correct": c, "n": n}
                for k, (c, n) in by_variable.items()
            },
            "task_accuracy": round(ev.task_accuracy, 6),
            "baselines": {k: round(v, 6) for k, v in baselines.items()},
            "baseline_leads": {name: ev.gap(name).to_dict() for name in self.controls},
            "normalized_iia": _round(
                normalized_iia(self.iia, baselines["majority"], ev.task_accuracy)
            ),
            "unchanged_label_rate": round(self.unchanged_rate, 6),
            "iia_on_changed_labels": self.changed_labels(),
            "boundary_dims": self.fitted.boundary_dims,
            "hidden_size": self.fitted.interchange.d,
            "collapsed": self.collapsed,
            "threshold": exp.threshold,
            "verdict": decided.outcome if decided else None,
            "verdict_reason": decided.reason if decided else None,
            "fit": self.config.as_dict(),
            "train_seconds": round(self.fitted.train_seconds, 3),
            "from_cache": self.fitted.from_cache,
            "eval_seconds": round(ev.eval_seconds, 3),
        }
        if include_pairs:
            record["pairs"] = ev.pair_records(self.model.tokenizer)
        return record


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def check_site(model: LoadedModel, experiment: Experiment) -> None:
    """Raise what ``run_experiment`` would raise about the site, in milliseconds, not after a
    fit: a layer the model lacks, a component it does not have, a position whose slot the
    prompt does not have (resolved on two of the experiment's own prompt pairs)."""
    experiment.site.resolve(model.model)
    encode(model, experiment.pairs(2, experiment.seed), parse_position(experiment.site.position))


def run_experiment(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig | None = None,
    *,
    cache: AlignmentCache | None = None,
    fitted: FittedAlignment | None = None,
) -> AlignmentResult:
    """Fit and evaluate one alignment (without a ``config``, the default fit at the
    experiment's seed).

    With a ``cache``, a previously trained alignment for the same model, data recipe, site and
    settings is loaded instead of trained; with ``fitted`` (a saved alignment), nothing is
    trained at all. Evaluation always runs. The task precondition is checked before training
    (a model that fails it is not worth a fit) and otherwise on the evaluation's own base run.

    Raises:
        PreconditionFailed: if the model's task accuracy on the test bases is below the gate.
    """
    config = config or FitConfig(seed=experiment.seed)  # one seed: data, initialisation, order
    resolved = experiment.site.resolve(model.model)
    test = _encoded(model, experiment, "test")
    key = cache_key(model, experiment, config) if cache else ""
    if fitted is None and cache is not None:
        fitted = _load(model, experiment, config, resolved, cache, key)
    answers = None  # the base run, where the precondition below needs it first
    if fitted is None:
        answers = base_answers(model.model, test)
        _check_precondition(model, experiment, _accuracy(answers, test), len(test))
        n_variables = len(INTERVENED_VARIABLES[experiment.hypothesis])
        train = _encoded(model, experiment, "train")
        fitted = fit_alignment(model.model, resolved, train, config, n_variables=n_variables)
        if cache is not None:
            _store(model, experiment, config, fitted, cache, key)
    try:  # a model update that broke the task fails in its first batch, not after every pass
        evaluation = evaluate(
            model.model,
            fitted,
            test,
            seed=experiment.seed,
            min_task_accuracy=experiment.min_task_accuracy,
            known_base_answers=answers,
        )
    except PreconditionFailed as exc:
        raise PreconditionFailed(f"{model.name}: {exc}; {_PRECONDITION_ADVICE}") from None
    _release_device_cache(model)  # the fit's prefix store and activations are gone by now
    return AlignmentResult(model, experiment, config, fitted, evaluation)


def _encoded(model: LoadedModel, experiment: Experiment, which: str) -> EncodedPairs:
    """The training or test pairs of ``experiment``, encoded; shared inside ``sharing()``: the
    pairs and their tokens once per data recipe, the positions once per site position."""
    exp = experiment
    recipe = (
        which,
        id(model),
        exp.hypothesis,
        exp.variables,
        exp.n_train if which == "train" else exp.n_test,
        exp.seed,
        exp.fmt,
        exp.bracket,
    )
    pairs = exp.train_pairs if which == "train" else exp.test_pairs

    # Kept by the outermost block: a search's positions then share one tokenization, so one
    # source pass serves them all (runner.shared_source_vectors).
    def tokenized() -> TokenizedPairs:
        return shared(
            ("tokenized", *recipe),
            lambda: tokenize(model, pairs()),
            owners=(model,),
            outermost=True,
        )

    position = exp.site.parsed_position
    return shared(
        ("encoded", *recipe, exp.site.position),
        lambda: tokenized().at(position),
        owners=(model,),
        outermost=True,
    )


def _release_device_cache(model: LoadedModel) -> None:
    """Give the GPU memory cached by torch back between alignments (no-op on CPU)."""
    if model.input_device.type == "cuda":
        torch.cuda.empty_cache()


_PRECONDITION_ADVICE = (
    "an alignment of a model that does not do the task says nothing. Check the prompt format and "
    "answer words, or lower the gate (--das-min-task-accuracy under pytest, "
    "--min-task-accuracy on the command line, min_task_accuracy in Python)"
)


def _check_precondition(
    model: LoadedModel, experiment: Experiment, accuracy: float, n: int
) -> None:
    if accuracy < experiment.min_task_accuracy:
        raise PreconditionFailed(
            f"{model.name} answers only {accuracy:.3f} of the {n} test prompts correctly "
            f"(gate: {experiment.min_task_accuracy}); {_PRECONDITION_ADVICE}"
        )


def _load(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig,
    resolved: Any,
    cache: AlignmentCache,
    key: str,
) -> FittedAlignment | None:
    boxes = len(INTERVENED_VARIABLES[experiment.hypothesis])
    hit = cache.get(key, model.config.hidden_size, n_boxes=boxes)
    if hit is None:
        return None
    interchange, manifest = hit
    interchange.to(model.input_device)
    fitted = FittedAlignment(interchange, resolved, config, experiment.n_train, 0.0)
    fitted.history = manifest.get("history", [])
    fitted.from_cache = True
    return fitted


def _store(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig,
    fitted: FittedAlignment,
    cache: AlignmentCache,
    key: str,
) -> None:
    cache.put(
        key,
        fitted.interchange,
        {
            "hypothesis": experiment.hypothesis,
            "variables": list(experiment.variables or ()),
            "site": str(experiment.site),
            "model": model.fingerprint,
            "fit": config.as_dict(),
            "n_train": experiment.n_train,
            "seed": experiment.seed,
            "train_seconds": round(fitted.train_seconds, 3),
            "history": fitted.history,
        },
    )
