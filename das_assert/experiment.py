"""One claim, end to end: generate pairs, check the task precondition, fit, evaluate.

``run_experiment(model, Experiment(...))`` is what the CLI's ``fit`` and the pytest fixtures call.
Its ``AlignmentResult`` (das_assert.alignment_result) carries everything the JSON report needs (n,
interval, site, seed, baselines, the pairs themselves) and judges the frozen alignment on new pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn

import torch

from das_assert.alignment_result import PRECONDITION_ADVICE, AlignmentResult
from das_assert.arg_types import MAX_PAIRS, MAX_SEED
from das_assert.cache import AlignmentCache, cache_key, training_lock
from das_assert.cache_entries import load_entry, store_entry
from das_assert.data import EncodedPairs, PromptPair, TokenizedPairs, encode, tokenize
from das_assert.engine_check import check_engine
from das_assert.errors import (
    InvalidArgument,
    KeywordsChecked,
    PreconditionFailed,
)
from das_assert.evaluate import base_answers, evaluate
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment
from das_assert.held_out import also_apart, apart_from, held_out_pairs
from das_assert.metrics import beside, check_threshold
from das_assert.model_state import check_cacheable, gradients_on, measured_as_frozen
from das_assert.models import LoadedModel
from das_assert.positions import parse_position
from das_assert.prompt_templates import refuse_doubled_bos
from das_assert.saved import fitted_for
from das_assert.sharing import shared
from das_assert.sites import Site, parse_site
from das_assert.tasks.price_tagging import (
    CAUSAL_MODELS,
    INTERVENED_VARIABLES,
    PriceFormat,
    causal_model,
    check_bracket,
    check_bracket_shown,
    check_variables,
    prompt_pairs,
    task_answer,
)
from das_assert.values import is_integer, is_number

__all__ = ["AlignmentResult", "Experiment", "check_site", "run_experiment", "task_accuracy"]


#: Offsets of the seed that draw the test and confirmation pairs (less any training pair).
TEST_STREAM = 100_003
CONFIRMATION_STREAM = 200_003
_SAME: Any = object()  # Experiment.pairs: the experiment's own bracket
# (hypothesis, boxes, causal model) of an experiment copied by Experiment.keeping_definition.
_KEPT_DEFINITION: ContextVar[tuple[str, tuple[str, ...], Any] | None] = ContextVar(
    "das_assert_kept_definition", default=None
)


@dataclass(frozen=True, kw_only=True)
class Experiment(KeywordsChecked):
    """A price-tagging claim: which causal model, which variables, which site, how much data."""

    hypothesis: str
    site: Site  # or its text, e.g. "block_output[layer=1, pos=last]", parsed with parse_site
    variables: tuple[str, ...] | None = None  # default: every variable the model intervenes on
    n_train: int = 2000
    n_test: int = 500
    seed: int = 0
    fmt: PriceFormat = field(default_factory=PriceFormat)
    bracket: tuple[int, int] | None = None
    threshold: float | None = None
    margin: float = 0.05
    min_task_accuracy: float = 0.8
    #: The causal model's intervened variables (box order) and the model itself, as registered
    #: when this experiment was made: ``register_causal_model(..., replace=True)`` later
    #: changes neither this experiment nor its results.
    boxes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    causal: Any = field(init=False, repr=False, compare=False)

    if TYPE_CHECKING:  # what a type checker reads: a site as text too, as __post_init__ takes

        def __init__(
            self,
            *,
            hypothesis: str,
            site: Site | str,
            variables: tuple[str, ...] | list[str] | None = None,
            n_train: int = 2000,
            n_test: int = 500,
            seed: int = 0,
            fmt: PriceFormat = ...,
            bracket: tuple[int, int] | None = None,
            threshold: float | None = None,
            margin: float = 0.05,
            min_task_accuracy: float = 0.8,
        ) -> None: ...

    def __post_init__(self) -> None:
        if isinstance(self.site, str):  # as the README writes sites
            object.__setattr__(self, "site", parse_site(self.site))
        elif not isinstance(self.site, Site):
            raise InvalidArgument(
                f"site={self.site!r}: a Site or its text, e.g. Site(1) or "
                "'block_output[layer=1, pos=last]'"
            )
        kept = _KEPT_DEFINITION.get()  # a copy made by keeping_definition
        if kept is not None and kept[0] == self.hypothesis:
            boxes, causal = kept[1], kept[2]
        else:  # causal_model refuses an unknown name
            causal, boxes = causal_model(self.hypothesis), INTERVENED_VARIABLES[self.hypothesis]
        variables = check_variables(self.hypothesis, self.variables, (boxes, causal))
        object.__setattr__(self, "boxes", tuple(boxes))
        object.__setattr__(self, "causal", causal)
        # In the alignment's box order, so that the same subset is the same claim.
        object.__setattr__(self, "variables", tuple(v for v in boxes if v in variables))
        for name, value in (("n_train", self.n_train), ("n_test", self.n_test)):
            if not is_integer(value):
                raise InvalidArgument(f"{name}={value!r}: a number of pairs, an integer")
            if value < 2:
                raise InvalidArgument(f"{name}={value}: need at least 2 pairs")
            if value > MAX_PAIRS:  # as the command line's --n-train and das.yaml
                raise InvalidArgument(
                    f"{name}={value} is past {MAX_PAIRS:,} pairs (every pair is held in memory "
                    "at once)"
                )
            object.__setattr__(self, name, int(value))  # a NumPy integer is written as JSON
        if not is_integer(self.seed):
            raise InvalidArgument(f"seed={self.seed!r}: the seed of the pairs and fit, an integer")
        object.__setattr__(self, "seed", int(self.seed))
        if not 0 <= self.seed <= MAX_SEED:
            raise InvalidArgument(f"seed={self.seed}: use an integer 0 to {MAX_SEED}")
        if not isinstance(self.fmt, PriceFormat):
            raise InvalidArgument(
                f"fmt={self.fmt!r}: a PriceFormat (das_assert.tasks.price_tagging), e.g. "
                "PriceFormat(answers=('yes', 'no'))"
            )
        check_bracket(self.bracket)
        if self.bracket is not None:  # a list hashes not: the session's memo keys by it
            object.__setattr__(self, "bracket", tuple(int(cents) for cents in self.bracket))
        check_bracket_shown(self.bracket, self.fmt)
        if self.threshold is not None and (problem := check_threshold(self.threshold)):
            raise InvalidArgument(f"threshold={self.threshold!r}: {problem}")
        if not is_number(self.margin) or not 0 <= self.margin < 1:
            raise InvalidArgument(
                f"margin={self.margin!r} must lie in [0, 1): how much IIA must beat each baseline "
                "by (default 0.05)"
            )
        if not is_number(self.min_task_accuracy) or not 0 <= self.min_task_accuracy <= 1:
            raise InvalidArgument(
                f"min_task_accuracy={self.min_task_accuracy!r} must lie in [0, 1]"
            )
        for name in ("margin", "min_task_accuracy"):  # a NumPy float32 is not JSON
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def variable(self) -> str:
        return "+".join(self.variables or ())

    def keeping_definition(self, **changes: Any) -> Experiment:
        """``dataclasses.replace(self, **changes)`` under the causal model this experiment was
        made with (``replace`` reads the registry again: after ``register_causal_model(...,
        replace=True)`` it would take the new definition's boxes for this one's results)."""
        token = _KEPT_DEFINITION.set((self.hypothesis, self.boxes, self.causal))
        try:
            return replace(self, **changes)
        finally:
            _KEPT_DEFINITION.reset(token)

    def check_current(self) -> None:
        """Refuse to draw or fit for a causal model registered again since this experiment was
        made: its pairs would follow the new mechanisms, its boxes the old ones."""
        if CAUSAL_MODELS.get(self.hypothesis) is not self.causal:
            raise InvalidArgument(
                f"{self.hypothesis!r} was registered again (replace=True) since this Experiment "
                "was made; make the Experiment again to run the new definition (results made "
                "before keep the old one)"
            )

    def data_record(self) -> dict[str, Any]:
        """The prompts it runs on, as reports and baselines record them (``data``): results on
        other prompts are not comparable."""
        return {  # every PriceFormat field, as cache_key reads them: one added is in both
            **asdict(self.fmt),
            "answers": list(self.fmt.answers),
            "bracket": list(self.bracket) if self.bracket else None,
        }

    def pairs(
        self,
        n: int,
        seed: int,
        fmt: PriceFormat | None = None,
        *,
        bracket: Any = _SAME,
        edit: Any = None,
    ) -> list[PromptPair]:
        """``n`` pairs of this claim (its causal model, variables and prompt format, so the
        model's wrapper), from the sampler's stream ``seed``; ``bracket`` (cents, or None for
        drawn brackets) and ``edit`` (``prompt_pairs``'s) change them, e.g. for a measured
        limit: ``result.experiment.pairs(400, seed, bracket=(745, 995))``."""
        self.check_current()
        bracket = self.bracket if bracket is _SAME else bracket
        check_bracket(bracket)
        check_bracket_shown(bracket, fmt or self.fmt)
        return prompt_pairs(
            self.hypothesis,
            n,
            seed=seed,
            fmt=fmt or self.fmt,
            bracket=bracket,
            variables=self.variables,
            edit=edit,
        )

    def train_pairs(self) -> list[PromptPair]:
        """Drawn once per recipe inside ``sharing()``: the cache key, the held-out draws and the
        fit each read them (0.4 s a draw at 1,500 pairs)."""
        self.check_current()  # as a draw does: a shared one is not drawn again
        recipe = (id(self.causal), self.variables, self.n_train, self.seed, self.fmt, self.bracket)
        return shared(
            ("train_pairs", self.hypothesis, *recipe),
            lambda: self.pairs(self.n_train, self.seed),
            owners=(self.causal,),
        )

    def test_pairs(self) -> list[PromptPair]:
        return self.held_out_pairs(self.n_test, self.seed + TEST_STREAM)

    def confirmation_pairs(self, *, after_restarts: bool = False) -> list[PromptPair]:
        """Fresh test pairs for a result chosen on its test pairs (a search's best cell): none
        a training or test pair, nor, ``after_restarts``, a development pair (which chose the
        cell's fit among its restarts)."""
        apart = self.test_pairs()
        if after_restarts:
            from das_assert.restarts import development_pairs

            apart = [*apart, *development_pairs(self)]
        return self.held_out_pairs(
            self.n_test, self.seed + CONFIRMATION_STREAM, also_apart_from=apart
        )

    def held_out_pairs(
        self, n: int, seed: int, *, also_apart_from: Iterable[PromptPair] = ()
    ) -> list[PromptPair]:
        """``n`` pairs of stream ``seed``, none a training pair nor one of ``also_apart_from``
        (``das_assert.held_out``)."""
        return held_out_pairs(self, n, seed, also_apart_from=also_apart_from)

    def disagreement_note(self) -> str:
        """Where the causal model's output differs from the task's own answer (Yes iff
        ``lo <= x <= hi``) on test prompts, a note saying on how many, else "": the task
        precondition counts the model's answers against the causal model's, so such a causal
        model (a user's) fails it however well the model does the task."""
        pairs = self.test_pairs()
        yes, no = self.fmt.answers
        differ = sum(
            pair.base_expected != (yes if task_answer(pair.inputs["base"]) else no)
            for pair in pairs
        )
        if not differ:
            return ""
        return (
            f" (and causal model {self.hypothesis!r} answers otherwise than the task itself, "
            f"{yes} iff lo <= x <= hi, on {differ} of these {len(pairs)} prompts: its output "
            "mechanism may be what is wrong, not the model)"
        )


def task_accuracy(model: LoadedModel, test: EncodedPairs, batch_size: int = 64) -> float:
    """The model's accuracy on the base prompts' own (factual) answers."""
    return _accuracy(base_answers(model.model, test, batch_size=batch_size), test)


def _accuracy(answers: torch.Tensor, test: EncodedPairs) -> float:
    return int((answers == test.base_label_ids).sum()) / len(test)


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
    **unknown: NoReturn,  # refused with where it belongs; a type checker refuses it too
) -> AlignmentResult:
    """Fit and evaluate one alignment (without a ``config``, the default fit at the
    experiment's seed).

    With a ``cache``, a previously trained alignment for the same model, data recipe, site and
    settings is loaded instead of trained; with ``fitted`` (a saved alignment), nothing is
    trained at all. Evaluation always runs. The task precondition is checked before training
    (a model that fails it is not worth a fit) and otherwise on the evaluation's own base run.

    Raises:
        PreconditionFailed: if the model's task accuracy on the test bases is below the gate.
        InvalidArgument: an argument of another type (a model's name, a dict, a path), or a
            keyword it does not take (a training setting or a data size: where it belongs).
    """
    from das_assert.run_arguments import check_run_arguments, unknown_run_keyword

    if unknown:
        raise InvalidArgument(unknown_run_keyword(unknown))
    check_run_arguments(model, experiment, config, cache, fitted)
    experiment.check_current()
    if experiment.site.layer < 0:  # the block's own number, as records and cache keys hold it
        experiment = experiment.keeping_definition(site=experiment.site.in_blocks_of(model.model))
    refuse_doubled_bos(experiment.fmt.template, model.tokenizer)
    if fitted is None and cache is None:  # a fit it is: refused before the passes that precede it
        gradients_on()
    if cache is not None:
        check_cacheable(model.model, model.at_load)
    # A given alignment's test pairs repeat none of its own training pairs, where it was fitted
    # at another seed or on another number of pairs than the experiment's
    trained_on = [] if fitted is None else _pairs_fitted_on(experiment, fitted)
    with measured_as_frozen(model.model), apart_from(trained_on):
        return _fit_and_evaluate(model, experiment, config, cache, fitted)


def _pairs_fitted_on(experiment: Experiment, fitted: FittedAlignment) -> list[PromptPair]:
    """The training pairs of ``fitted`` under ``experiment``'s definition, where they are not
    the experiment's own (which its held-out draws already keep apart from)."""
    seed = experiment.seed if fitted.trained_seed is None else fitted.trained_seed
    if (seed, fitted.n_train) == (experiment.seed, experiment.n_train):
        return []
    if not 2 <= fitted.n_train <= MAX_PAIRS:  # built by hand (n_train 0): none known
        return []
    return experiment.keeping_definition(seed=seed, n_train=fitted.n_train).train_pairs()


def _fit_and_evaluate(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig | None,
    cache: AlignmentCache | None,
    fitted: FittedAlignment | None,
) -> AlignmentResult:
    if config is None:  # a saved alignment's own settings (its method decides the controls)
        config = fitted.config if fitted is not None else FitConfig()
    config = config.with_seed(experiment.seed)  # else one seed for the data and the fit
    resolved = experiment.site.resolve(model.model)
    test = _encoded(model, experiment, "test")
    checked = check_engine(model.model, resolved, test)  # once per model and site
    key = cache_key(model, experiment, config) if cache else ""
    given = fitted is not None
    if fitted is not None:
        fitted = fitted_for(experiment, resolved, fitted, model)
    answers = None  # the base run, where the precondition below needs it first
    if fitted is None and cache is not None:  # a stored one is read without waiting for a lock
        fitted = load_entry(model, experiment, config, resolved, cache, key)
    if fitted is None:
        # Held from the cache's read to its write: two processes (xdist workers, two runs, two
        # notebooks) sharing a cache train each alignment once; the second reads the first's.
        with training_lock(cache, key):
            if cache is not None:  # stored while this one waited for the lock
                fitted = load_entry(model, experiment, config, resolved, cache, key)
            if fitted is None:
                _check_labels_change(model, experiment, test)
                answers = base_answers(model.model, test)
                _check_precondition(model, experiment, _accuracy(answers, test), len(test))
                n_variables = len(experiment.boxes)
                train = _encoded(model, experiment, "train")
                fitted = fit_alignment(
                    model.model, resolved, train, config, n_variables=n_variables
                )
                if cache is not None:
                    store_entry(model, experiment, config, fitted, cache, key)
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
        note = experiment.disagreement_note()
        raise PreconditionFailed(f"{model.name}: {exc}{note}; {PRECONDITION_ADVICE}") from None
    _release_device_cache(model)  # the fit's prefix store and activations are gone by now
    if not given and fitted.trained_seed is None:  # fitted (or cached) here: on its pairs
        fitted = replace(fitted, trained_seed=experiment.seed)
    return AlignmentResult(
        model, experiment, config, fitted, evaluation, engine_check=checked.as_dict()
    )


def _check_labels_change(model: LoadedModel, experiment: Experiment, test: EncodedPairs) -> None:
    """Refuse to train where no test pair's label differs from its base's own answer: every
    alignment, and doing nothing, would score alike there, so no verdict could come of it (a
    variable that changes the answer on rare inputs alone, as ``x == 0``)."""
    if any(pair.expected != pair.base_expected for pair in test.pairs):
        return
    variables = ", ".join(experiment.variables or experiment.boxes)
    raise PreconditionFailed(
        f"{model.name}: none of the {len(test)} test pairs of {experiment.hypothesis} "
        f"(variables {variables}) has a label the intervention must change: "
        "every alignment, and doing nothing, would score the same there, so no alignment is "
        "trained. Draw pairs on which swapping the variable changes the answer (another bracket "
        "or amounts), or claim a variable that does"
    )


def _encoded(model: LoadedModel, experiment: Experiment, which: str) -> EncodedPairs:
    """The training or test pairs of ``experiment``, encoded; shared inside ``sharing()``: the
    pairs and their tokens once per data recipe, the positions once per site position."""
    exp = experiment
    recipe = (
        which,
        id(model),
        exp.hypothesis,
        id(exp.causal),  # registered again under its name (replace=True): other pairs
        exp.variables,
        exp.n_train if which == "train" else (exp.n_train, exp.n_test),  # held_out: less train
        None if which == "train" else also_apart(),  # and less what an apart_from block names
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
            owners=(model, exp.causal),
            outermost=True,
        )

    position = exp.site.parsed_position
    return shared(
        ("encoded", *recipe, exp.site.position),
        lambda: tokenized().at(position),
        owners=(model, exp.causal),
        outermost=True,
    )


def _release_device_cache(model: LoadedModel) -> None:
    """Give the GPU memory cached by torch back between alignments (no-op on CPU)."""
    if model.input_device.type == "cuda":
        torch.cuda.empty_cache()


def _check_precondition(
    model: LoadedModel, experiment: Experiment, accuracy: float, n: int
) -> None:
    if accuracy < experiment.min_task_accuracy:
        raise PreconditionFailed(
            f"{model.name} answers only {beside(accuracy, experiment.min_task_accuracy)} of the "
            f"{n} test prompts correctly (gate: {experiment.min_task_accuracy})"
            f"{experiment.disagreement_note()}; {PRECONDITION_ADVICE}"
        )
