"""A frozen alignment on a prompt variant: the variant's seeded pairs, the task gates it must
pass first, and how a failing example comes back. The fuzz assertions (``das.assert_robust``)
call this once per distinct variant."""

from __future__ import annotations

import hashlib
from collections.abc import Set
from typing import Any

from das_assert.alignment_result import AlignmentResult
from das_assert.data import PromptPair, encode
from das_assert.errors import InvalidArgument, PreconditionFailed
from das_assert.evaluate import Evaluation, evaluate
from das_assert.experiment import CONFIRMATION_STREAM, Experiment
from das_assert.held_out import PairKey, hold_out, pair_keys, training_keys
from das_assert.metrics import beside
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

__all__ = ["evaluate_variant", "replay_advice", "replay_example", "variant_pairs", "variant_seed"]


def variant_seed(seed: int, variant: Any) -> int:
    """The pairs' seed for ``variant``: the claim's seed and a digest of what the variant
    writes, so each variant draws its own numbers (a robustness table pools variants as
    independent pairs) and a replayed variant draws the same ones."""
    described = repr((variant.format(), variant.bracket, getattr(variant, "amount_edge", None)))
    return seed + 31 + int(hashlib.sha256(described.encode()).hexdigest()[:8], 16)


def variant_pairs(
    experiment: Experiment, variant: Any, n: int, *, edited: bool = True, fresh: bool = False
) -> list[PromptPair]:
    """``n`` pairs of ``experiment``'s claim written as ``variant``, none a training pair of
    the claim (a variant that writes the claim's own prompts would else be scored partly on
    them); ``edited=False`` leaves the amounts as drawn (no bound edge); ``fresh=True`` draws
    them from another stream of the sampler, repeating none of the variant's own pairs either
    (to confirm a break on)."""

    written = variant.format().with_(template=experiment.fmt.template)  # the model's wrapper
    default, claims = PriceFormat().answers, experiment.fmt.answers
    if written.answers == default:  # no change of answer words: the claim's (das.yaml's, say)
        written = written.with_(answers=claims)
    elif written.answers == claims:  # a change to the claim's own words is none: to Yes/No
        written = written.with_(answers=default)

    def draw(seed: int) -> list[PromptPair]:
        return prompt_pairs(
            experiment.hypothesis,
            n,
            seed=seed,
            fmt=written,
            bracket=variant.bracket,
            variables=experiment.variables,
            # no hook where the variant moves no amount: an error then names the bracket
            edit=variant.edit if edited and variant.amount_edge is not None else None,
        )

    seed = variant_seed(experiment.seed, variant)
    apart: Set[PairKey] = training_keys(experiment)
    what = "the claim's training pairs"
    if fresh:
        apart |= pair_keys(hold_out(draw, n, seed, apart, what=what, name=experiment.hypothesis))
        seed, what = seed + CONFIRMATION_STREAM, what + " and the variant's own pairs"
    return hold_out(draw, n, seed, apart, what=what, name=experiment.hypothesis)


def evaluate_variant(
    result: AlignmentResult,
    variant: Any,
    n: int,
    *,
    min_task_accuracy: float,
    fresh: bool = False,
) -> Evaluation | InvalidArgument | PreconditionFailed:
    """The frozen alignment on ``n`` pairs written as ``variant`` (``fresh``: on other pairs,
    see ``variant_pairs``): an ``Evaluation``, the ``InvalidArgument`` that stopped the pairs
    from being built, or the ``PreconditionFailed`` of a variant the model cannot do."""
    exp, model = result.experiment, result.model
    try:
        pairs = variant_pairs(exp, variant, n, fresh=fresh)
        test = encode(model, pairs, exp.site.parsed_position)
    except InvalidArgument as exc:
        return exc.with_traceback(None)
    try:
        _check_one_answer_variant(
            result, variant, test.base_label_ids, n, min_task_accuracy, fresh=fresh
        )
        return evaluate(
            model.model, result.fitted, test, seed=exp.seed, min_task_accuracy=min_task_accuracy
        )
    except PreconditionFailed as exc:
        return exc.with_traceback(None)


def _check_one_answer_variant(
    result: AlignmentResult,
    variant: Any,
    base_labels: Any,
    n: int,
    gate: float,
    *,
    fresh: bool = False,
) -> None:
    """A variant whose base prompts all have one answer (every amount on a bound, or one cent
    outside) passes the task gate for a model that always gives that answer. Such a variant must
    also pass the gate on its own prompts with the amounts drawn freely.

    Raises:
        PreconditionFailed: if the model fails the task on those prompts.
    """
    from das_assert.evaluate import base_answers

    if len({int(label) for label in base_labels}) > 1:
        return
    exp, model = result.experiment, result.model
    free = variant_pairs(exp, variant, n, edited=False, fresh=fresh)
    drawn = encode(model, free, exp.site.parsed_position)
    right = int((base_answers(model.model, drawn) == drawn.base_label_ids).sum())
    if right / n < gate:
        raise PreconditionFailed(
            f"task accuracy {beside(right / n, gate)} ({right} of {n}; gate {gate}) on this "
            "variant's prompts with the amounts drawn freely: its own base prompts all have one "
            "answer, so they alone cannot show that the model does the task"
        )


def replay_advice() -> str:
    """How a failing example comes back, under the settings it ran with. A derandomized run
    draws the same examples for the same command over the same files only: hypothesis also
    draws constants from every project module loaded, so one file run alone draws others."""
    from hypothesis import core, settings
    from hypothesis.control import currently_in_test_context

    if not currently_in_test_context():  # assert_robust called outside @given
        return "not drawn by hypothesis: this variant, as written, reruns it"
    current = settings()
    if core.global_force_seed is not None:  # hypothesis keeps no example under a forced seed
        return "--hypothesis-seed: the same seed draws it again"
    if current.derandomize:
        return (
            "derandomized: the same command over the same files draws it again; run alone, a "
            "file may draw other variants, so pin this one"
        )
    if current.database is None:
        return "no example database: pin this variant to rerun it"
    return "the example database replays this variant first"


def replay_example(variant: Any, test_function: Any) -> str:
    """How to pin ``variant`` on the test that drew it: ``@example(<name>=...)`` under the name
    of the test's one ``@given`` argument; where it has others, or draws through ``st.data()``
    (which ``@example`` cannot pin), what to do instead. ``variant=`` outside ``@given``, and
    for a ``@given`` written inside the test's body, which this cannot see."""
    handle = getattr(test_function, "hypothesis", None)
    inner = getattr(handle, "inner_test", None)
    if inner is None:
        return f"@example(variant={variant!r})"
    import inspect

    outer = set(inspect.signature(test_function).parameters)
    names = list(inspect.signature(inner).parameters)[inspect.ismethod(test_function) :]
    given = [name for name in names if name not in outer]  # those past self, for a method
    strategies = getattr(handle, "_given_kwargs", None) or {}  # hypothesis's own, where it has it
    drawn = [name for name in given if repr(strategies.get(name, "")).startswith("data(")]
    if given and drawn == given:  # st.data() is all it draws from: the variant is a draw
        return (
            f"{variant!r}, drawn through st.data() ({drawn[0]}=), which @example cannot pin: "
            "pass it to assert_robust as written to rerun it"
        )
    if len(given) == 1:
        return f"@example({given[0]}={variant!r})"
    return (
        f"@example(...) naming every @given argument ({', '.join(given)}) as hypothesis's "
        f"falsifying example gives them, the variant being {variant!r}"
    )
