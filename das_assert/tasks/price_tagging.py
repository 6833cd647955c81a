"""The price-tagging task of Wu et al. (2023): "say yes only if it costs between X and Y dollars".

Amounts are integer cents throughout, so every comparison is exact and matches the comparison of
the two-decimal strings the model reads. The number sampler is the one of the original code
(bracket width U(2.50, 7.50), lower bound U(0.05, 9.95 - width), amount U(0.01, 9.99)).

The four causal models compute the same input -> output function and differ only in the
intermediate variable intervened on:

- ``left_boundary``: ``left = x >= lo``; ``answer = left and x <= hi``.
- ``left_and_right_boundary``: ``left = x >= lo``, ``right = x <= hi``; ``answer = left and right``.
- ``midpoint_distance``: ``mid = (lo + hi) / 2``; ``answer = |x - mid| <= (hi - lo) / 2``.
- ``bracket_identity``: ``bracket = (lo, hi)``; ``answer = lo <= x <= hi``.

A hypothesis file can add its own (``das_assert.tasks.registry.register_causal_model``).
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from das_assert.causal import CausalModel, MechanismFailed
from das_assert.data import PromptPair
from das_assert.errors import InvalidArgument, did_you_mean
from das_assert.tasks.price_format import (  # re-exported: the task's prompts
    ALPACA_TEMPLATE,
    NUMBER_STYLES,
    PriceFormat,
    RenderedPrompt,
)
from das_assert.values import is_integer

__all__ = [
    "ALPACA_TEMPLATE",
    "CAUSAL_MODELS",
    "INTERVENED_VARIABLES",
    "NUMBER_STYLES",
    "CounterfactualPair",
    "PriceFormat",
    "RenderedPrompt",
    "causal_model",
    "check_bracket",
    "check_variables",
    "make_pairs",
    "prompt_pairs",
    "sample_inputs",
    "task_answer",
]


def sample_inputs(rng: random.Random, *, bracket: tuple[int, int] | None = None) -> dict[str, int]:
    """One example from the original sampler, in cents: ``{"lo", "hi", "x"}``.

    With ``bracket=(lo, hi)`` the bracket is fixed (the paper's fixed-bracket experiments).
    """
    if bracket is None:
        width = rng.uniform(2.50, 7.50)
        lower = rng.uniform(0.05, 9.95 - width)
        lo = round(lower * 100)
        hi = round((lower + width) * 100)
    else:
        lo, hi = bracket
    x = round(rng.uniform(0.01, 9.99) * 100)
    return {"lo": lo, "hi": hi, "x": x}


def _left(x: int, lo: int) -> bool:
    return x >= lo


def _right(x: int, hi: int) -> bool:
    return x <= hi


CAUSAL_MODELS: dict[str, CausalModel] = {
    "left_boundary": CausalModel(
        name="left_boundary",
        inputs=("lo", "hi", "x"),
        mechanisms={"left": _left, "answer": lambda left, x, hi: left and x <= hi},
        output="answer",
    ),
    "left_and_right_boundary": CausalModel(
        name="left_and_right_boundary",
        inputs=("lo", "hi", "x"),
        mechanisms={"left": _left, "right": _right, "answer": lambda left, right: left and right},
        output="answer",
    ),
    "midpoint_distance": CausalModel(
        name="midpoint_distance",
        inputs=("lo", "hi", "x"),
        mechanisms={
            "mid": lambda lo, hi: (lo + hi) / 2,  # half-cents are exact in binary floats
            "answer": lambda x, mid, lo, hi: abs(x - mid) <= (hi - lo) / 2,
        },
        output="answer",
    ),
    "bracket_identity": CausalModel(
        name="bracket_identity",
        inputs=("lo", "hi", "x"),
        mechanisms={
            "bracket": lambda lo, hi: (lo, hi),
            "answer": lambda x, bracket: bracket[0] <= x <= bracket[1],
        },
        output="answer",
    ),
}

#: The variables each causal model intervenes on; one is drawn per pair.
INTERVENED_VARIABLES: dict[str, tuple[str, ...]] = {
    "left_boundary": ("left",),
    "left_and_right_boundary": ("left", "right"),
    "midpoint_distance": ("mid",),
    "bracket_identity": ("bracket",),
}


def causal_model(name: str) -> CausalModel:
    """The price-tagging causal model called ``name``."""
    if isinstance(name, CausalModel):
        registered = CAUSAL_MODELS.get(name.name) is name
        raise InvalidArgument(
            f"pass the causal model's registered name, not the CausalModel {name.name!r} itself: "
            + (
                f"{name.name!r}, what register_causal_model returned"
                if registered
                else "register it first, name = register_causal_model(model, intervened), "
                "and pass that name"
            )
        )
    if not isinstance(name, str):
        raise InvalidArgument(
            f"causal model {name!r}: name one by its string, one of {', '.join(CAUSAL_MODELS)}"
        )
    if name not in CAUSAL_MODELS:
        raise InvalidArgument(
            f"unknown causal model {name!r}; choose one of {', '.join(CAUSAL_MODELS)}, or "
            "define your own and register it first (das_assert.register_causal_model)."
            + did_you_mean(name, CAUSAL_MODELS)
        )
    return CAUSAL_MODELS[name]


def check_variables(
    model_name: str, variables: Any, definition: tuple[Sequence[str], Any] | None = None
) -> tuple[str, ...]:
    """``variables`` (None: all) checked against the boxes of ``model_name``'s alignment, in the
    order given; ``definition`` ``(boxes, causal model)``: those, not the registered ones.

    Raises:
        InvalidArgument: a string, a name twice, none, or a name with no box.
    """
    if definition is None:
        cm = causal_model(model_name)  # refuses an unknown name
        definition = INTERVENED_VARIABLES[model_name], cm
    boxes, cm = tuple(definition[0]), definition[1]
    if variables is None:
        return boxes
    if (
        isinstance(variables, str)
        or not isinstance(variables, Sequence)
        or not all(isinstance(name, str) for name in variables)
        or len(set(variables)) != len(variables)
    ):
        raise InvalidArgument(
            f"variables={variables!r} must name each variable once, e.g. {list(boxes)}"
        )
    if not variables:  # it meant every variable, unseen
        raise InvalidArgument(
            f"variables={variables!r} names no variable; name at least one of {list(boxes)}, "
            "or leave variables out for all"
        )
    others = [name for name in variables if name not in boxes]
    if others:  # named among the boxes, not the causal model's every variable
        raise InvalidArgument(
            f"variables {others} have no box in {model_name}'s alignment, which has one "
            f"for each of {list(boxes)}; choose among those." + did_you_mean(others[0], boxes)
        )
    cm.check_intervenable(list(variables))
    return tuple(variables)


Edit = Callable[[dict[str, int], random.Random, str], dict[str, int]]


def _checked_edit(edit: Edit | None) -> Edit | None:
    """``edit`` refused unless callable, and each of its results unless an inputs dict."""
    if edit is None:
        return None
    if not callable(edit):
        raise InvalidArgument(
            f"edit={edit!r}: a function edit(inputs, rng, role) that returns the inputs, "
            "{'lo', 'hi', 'x'} in cents"
        )

    def checked(inputs: dict[str, int], rng: random.Random, role: str) -> dict[str, int]:
        edited = edit(inputs, rng, role)
        if not isinstance(edited, Mapping) or not all(
            isinstance(edited.get(key), int) and not isinstance(edited.get(key), bool)
            for key in ("lo", "hi", "x")
        ):
            raise InvalidArgument(
                f"edit returned {edited!r} for the {role} {inputs}; it must return the inputs, "
                "a dict of lo, hi and x in whole cents (did it change them in place and "
                "return nothing?)"
            )
        if outside := [f"{k}={edited[k]}" for k in ("lo", "hi", "x") if not 0 <= edited[k] <= 999]:
            raise InvalidArgument(
                f"edit returned {', '.join(outside)} for the {role} {inputs}: amounts are 0 to "
                "999 cents (0.00-9.99 dollars), as a prompt writes them"
            )
        return edited

    return checked


@dataclass(frozen=True)
class CounterfactualPair:
    """A base and a source example, the variable intervened on, and the labels.

    ``label`` is the causal model's counterfactual output; ``base_label`` is the base's own output.
    ``variable_index`` says which of the causal model's intervened variables this pair uses.
    """

    base: dict[str, int]
    source: dict[str, int]
    variable: str
    variable_index: int
    label: bool
    base_label: bool
    source_label: bool = field(default=False)


def make_pairs(
    model_name: str,
    n: int,
    *,
    seed: int,
    bracket: tuple[int, int] | None = None,
    variables: Sequence[str] | None = None,
    edit: Callable[[dict[str, int], random.Random, str], dict[str, int]] | None = None,
) -> list[CounterfactualPair]:
    """``n`` counterfactual pairs, balanced by counterfactual label (n/2 true, n/2 false).

    Base and source are drawn independently from the original sampler, each with its own
    bracket; the variable intervened on is drawn uniformly from ``variables`` (default: all of the
    model's intervened variables); labels come from the causal model; rejection sampling fills
    the two label halves. ``edit(inputs, rng, role)`` adjusts each sampled example (role ``base`` or
    ``source``) before it is labelled: amounts on a bound, 10-cent steps, ...
    """
    if not is_integer(n):
        raise InvalidArgument(f"n={n!r}: a number of pairs, an integer")
    if n < 2:
        raise InvalidArgument(f"n={n} pairs is too few; ask for at least 2")
    if not is_integer(seed):
        raise InvalidArgument(f"seed={seed!r}: the seed of the sampler, an integer")
    n, seed = int(n), int(seed)
    cm = causal_model(model_name)
    choices = check_variables(model_name, variables)
    edit = _checked_edit(edit)
    all_vars = INTERVENED_VARIABLES[model_name]
    rng = random.Random(seed)
    wanted = {True: n // 2 + n % 2, False: n // 2}
    pairs: list[CounterfactualPair] = []
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > 200 * n:
            missing = [str(label) for label, left in wanted.items() if left]
            causes = [_bracket_text(bracket)] if bracket is not None or edit is None else []
            cause = " and ".join(causes + (["the edit= hook's amounts"] if edit else []))
            raise InvalidArgument(
                f"could not draw {n} label-balanced pairs for {model_name}: {len(pairs)} drawn "
                f"in {attempts - 1} tries, too few labelled {' or '.join(missing)}; under "
                f"{cause} that label is (nearly) impossible"
                + ("; fix a bracket with amounts on both sides of it" if bracket else "")
            )
        base = sample_inputs(rng, bracket=bracket)
        source = sample_inputs(rng, bracket=bracket)
        if edit is not None:
            base, source = edit(base, rng, "base"), edit(source, rng, "source")
        variable = rng.choice(choices)
        label = bool(causal_answer(cm, base, source, variable))
        if wanted[label] == 0:
            continue
        wanted[label] -= 1
        pairs.append(
            CounterfactualPair(
                base=base,
                source=source,
                variable=variable,
                variable_index=all_vars.index(variable),
                label=label,
                base_label=bool(causal_answer(cm, base)),
                source_label=bool(causal_answer(cm, source)),
            )
        )
    rng.shuffle(pairs)
    return pairs


def task_answer(inputs: dict[str, int]) -> bool:
    """The task's own answer, whatever the causal model: Yes iff ``lo <= x <= hi``."""
    return inputs["lo"] <= inputs["x"] <= inputs["hi"]


def causal_answer(
    cm: CausalModel,
    base: dict[str, int],
    source: dict[str, int] | None = None,
    variable: str | None = None,
) -> Any:
    """The causal model's output on ``base`` (with ``variable`` taken from ``source``); a
    mechanism that raises (a registered model's) is named with the inputs it raised on."""
    try:
        if source is None or variable is None:
            return cm.output_of(base)
        return cm.counterfactual(base, source, intervene=[variable])
    except MechanismFailed as failed:
        exc = failed.error
        raise InvalidArgument(
            f"{cm.name}: computing {failed.variable!r} {describe_inputs(base, source, variable)} "
            f"raised {type(exc).__name__}: {exc}"
        ) from exc


def _bracket_text(bracket: tuple[int, int] | None) -> str:
    """``bracket=(0, 999)`` with its dollars, as the command line takes them."""
    if bracket is None:
        return "bracket=None"
    return f"bracket={tuple(bracket)} cents ({bracket[0] / 100:.2f}-{bracket[1] / 100:.2f} dollars)"


def describe_inputs(
    base: dict[str, int], source: dict[str, int] | None, variable: str | None
) -> str:
    """``on base {...} with 'var' from source {...}``: where an error's inputs were."""
    return f"on base {base}" + (f" with {variable!r} from source {source}" if variable else "")


def snap_to_dimes(inputs: dict[str, int]) -> dict[str, int]:
    """Round every amount to 10-cent steps within [0.10, 9.90]: what a one-decimal prompt shows."""
    return {k: max(10, min(990, round(v / 10) * 10)) for k, v in inputs.items()}


def check_bracket_shown(bracket: Any, fmt: PriceFormat) -> None:
    """Refuse a fixed bracket that ``fmt``'s numbers cannot write: one-decimal prompts show
    1.25-4.95 as 1.2-5.0, so the claim ran on another bracket than the one it recorded."""
    if bracket is None or not isinstance(fmt, PriceFormat) or fmt.numbers != "one_decimal":
        return  # a fmt of another kind gets prompt_pairs' own error
    low, high = (int(cents) for cents in bracket)
    shown = snap_to_dimes({"low": low, "high": high})
    if (shown["low"], shown["high"]) != (low, high):
        raise InvalidArgument(
            f"the bracket {low / 100:.2f}-{high / 100:.2f} dollars cannot be written with "
            "one-decimal numbers (steps of 0.10 from 0.10 to 9.90): its prompts would say "
            f"{shown['low'] / 100:.1f}-{shown['high'] / 100:.1f}; fix the bracket at "
            f"({shown['low']}, {shown['high']}) cents (--bracket {shown['low'] / 100:.2f} "
            f"{shown['high'] / 100:.2f}), or write the numbers plainly"
        )


def _then_snap_to_dimes(
    edit: Callable[[dict[str, int], random.Random, str], dict[str, int]] | None,
) -> Callable[[dict[str, int], random.Random, str], dict[str, int]]:
    def snapped(inputs: dict[str, int], rng: random.Random, role: str) -> dict[str, int]:
        return snap_to_dimes(edit(inputs, rng, role) if edit is not None else inputs)

    return snapped


def unchanged_rate(pairs: Sequence[CounterfactualPair]) -> float:
    """The fraction of pairs whose counterfactual label equals the base's own label."""
    return sum(p.label == p.base_label for p in pairs) / max(len(pairs), 1)


def check_bracket(bracket: Any, where: str = "bracket") -> None:
    """Refuse a fixed bracket that is not ``(low, high)`` in whole cents, 0 <= low <= high <= 999.

    Raises:
        InvalidArgument: naming ``where`` it was given; dollars get the cents to write.
    """
    if bracket is None:
        return
    example = "e.g. (130, 855) for 1.30-8.55 dollars"
    strategies = sys.modules.get("hypothesis.strategies")  # a strategy needs it imported
    if callable(bracket) or (strategies and isinstance(bracket, strategies.SearchStrategy)):
        raise InvalidArgument(
            f"{where}= takes one fixed bracket, (low, high) in cents, not a strategy or function "
            f"({bracket!r}): draw brackets with @given(variant=prompt_variants(bracket="
            "brackets())) and pass the variant, or fix one, " + example
        )
    if not (isinstance(bracket, tuple | list) and len(bracket) == 2):
        raise InvalidArgument(f"{where}={bracket!r} must be (low, high) in cents, {example}")
    low, high = bracket
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in bracket) and any(
        isinstance(v, float) for v in bracket
    ):
        if not all(math.isfinite(v) for v in bracket):
            raise InvalidArgument(
                f"{where}={tuple(bracket)!r} must be (low, high) in cents, {example}"
            )
        if max(bracket) > 9.99 and all(float(v).is_integer() for v in bracket):  # not dollars
            raise InvalidArgument(
                f"{where}={tuple(bracket)!r} is in cents, whole numbers: write "
                f"({int(low)}, {int(high)}), integers"
            )
        raise InvalidArgument(
            f"{where}={tuple(bracket)!r} is in cents, whole numbers: write "
            f"({round(low * 100)}, {round(high * 100)}) for {low:.2f}-{high:.2f} dollars"
        )
    if not all(is_integer(v) for v in bracket):  # a NumPy integer too
        raise InvalidArgument(f"{where}={bracket!r} must be (low, high) in cents, {example}")
    if not 0 <= low <= high <= 999:
        raise InvalidArgument(
            f"{where}={tuple(bracket)!r} must have 0 <= low <= high <= 999 (cents), {example}"
        )


def prompt_pairs(
    model_name: str,
    n: int,
    *,
    seed: int,
    fmt: PriceFormat | None = None,
    bracket: tuple[int, int] | None = None,
    variables: Sequence[str] | None = None,
    edit: Callable[[dict[str, int], random.Random, str], dict[str, int]] | None = None,
) -> list[PromptPair]:
    """``make_pairs`` rendered as prompts in format ``fmt`` (default: the paper's prompt)."""
    check_bracket(bracket)
    if fmt is not None and not isinstance(fmt, PriceFormat):
        raise InvalidArgument(
            f"fmt={fmt!r}: a PriceFormat, e.g. PriceFormat(answers=('True', 'False')), or None "
            "for the paper's prompt"
        )
    fmt = fmt or PriceFormat()
    if fmt.numbers == "one_decimal":  # label what the prompt shows, not the hidden cents
        edit = _then_snap_to_dimes(_checked_edit(edit))
    out = []
    pairs = make_pairs(model_name, n, seed=seed, bracket=bracket, variables=variables, edit=edit)
    for pair in pairs:
        out.append(
            PromptPair(
                base=fmt.render(pair.base),
                source=fmt.render(pair.source),
                expected=fmt.answer(pair.label),
                base_expected=fmt.answer(pair.base_label),
                source_expected=fmt.answer(pair.source_label),
                variable_index=pair.variable_index,
                inputs={"base": pair.base, "source": pair.source, "variable": pair.variable},
                answers=fmt.answers,
            )
        )
    return out
