"""Hypothesis strategies for price-tagging prompt variants: does an alignment survive them?

Each part's strategy shrinks toward the plain default prompt's part (the paper's instruction,
no context, varying brackets, two-decimal numbers, yes/no). ``prompt_variants`` changes one to
``max_changes`` parts, each to a value other than its default, and shrinks toward one part
changed by the least. hypothesis's shrinker may stop before the smallest change that breaks
the alignment: a part the failure does not need can remain in the variant it reports. A
``PromptVariant`` has a readable repr: a failing example prints itself.

>>> from hypothesis import find
>>> find(prompt_variants(), lambda v: True)
PromptVariant(amount_edge='on_bound')
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from das_assert.errors import InvalidArgument, KeywordsChecked, did_you_mean
from das_assert.tasks.phrasings import (
    DEFAULT_INSTRUCTION,
    HELD_OUT_INSTRUCTIONS,
    HELD_OUT_PREFIXES,
    TRAIN_INSTRUCTIONS,
)
from das_assert.tasks.price_tagging import PriceFormat, check_bracket, snap_to_dimes

__all__ = [
    "PromptVariant",
    "amount_edges",
    "answer_words",
    "brackets",
    "contexts",
    "instructions",
    "number_styles",
    "prompt_variants",
]


#: What ``PromptVariant.amount_edge`` may be (``amount_edges()`` draws them).
AMOUNT_EDGES = (None, "on_bound", "one_cent_outside")


@dataclass(frozen=True)
class PromptVariant(KeywordsChecked):
    """One way of changing the price-tagging prompt; the default is the paper's prompt."""

    instruction: str = DEFAULT_INSTRUCTION
    prefix: str = ""
    suffix: str = ""
    answers: tuple[str, str] = ("Yes", "No")
    numbers: str = "plain"
    bracket: tuple[int, int] | None = None  # fixed (low, high) in cents; None: sampled per prompt
    amount_edge: str | None = None  # None, "on_bound" or "one_cent_outside"

    def __post_init__(self) -> None:
        check_bracket(self.bracket, "PromptVariant: bracket")
        for name in ("answers", "bracket"):  # a list hashes not, nor equals the same tuple
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.amount_edge not in AMOUNT_EDGES:
            raise InvalidArgument(
                f"PromptVariant: amount_edge={self.amount_edge!r} is not one of {AMOUNT_EDGES}."
                + did_you_mean(str(self.amount_edge), [e for e in AMOUNT_EDGES if e])
            )
        for name in ("instruction", "prefix", "suffix"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgument(f"PromptVariant: {name}={getattr(self, name)!r}: a string")
        try:  # a misspelt part is the caller's error, not a variant the tokenizer cannot write
            self.format()
        except InvalidArgument as exc:
            raise InvalidArgument(f"PromptVariant: {exc}") from None
        if self.amount_edge == "one_cent_outside" and self.bracket is not None:
            if not _just_outside(*self.bracket, self.numbers):
                raise InvalidArgument(
                    f"PromptVariant: amount_edge='one_cent_outside' with bracket={self.bracket}: "
                    "no amount just outside it can be written (a cent, or a dime with "
                    "one-decimal numbers, below the low bound or above the high one, within "
                    "0.00-9.99 dollars, 0.10-9.90 with one-decimal numbers); narrow the bracket"
                )

    def __repr__(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"PromptVariant({', '.join(changed)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints dataclasses field by field otherwise

    @property
    def families(self) -> tuple[str, ...]:
        """The kinds of change this variant makes (for per-family results in reports)."""
        out = []
        if self.instruction != DEFAULT_INSTRUCTION:
            out.append("phrasing")
        if self.prefix or self.suffix:
            out.append("context")
        if self.bracket is not None:
            out.append("bracket")
        if self.amount_edge is not None:
            out.append("bound_edge")
        if self.numbers != "plain" or self.answers != ("Yes", "No"):
            out.append("format")
        return tuple(out) or ("default",)

    def format(self) -> PriceFormat:
        return PriceFormat(
            instruction=self.instruction,
            prefix=self.prefix,
            suffix=self.suffix,
            answers=self.answers,
            numbers=self.numbers,
        )

    def edit(self, inputs: dict[str, int], rng: random.Random, role: str) -> dict[str, int]:
        """Adjust sampled inputs (cents): put the base amount on a bound (or just outside)."""
        out = dict(inputs)
        if role == "base" and self.amount_edge == "on_bound":
            out["x"] = rng.choice((out["lo"], out["hi"]))
        elif role == "base" and self.amount_edge == "one_cent_outside":
            sides = _just_outside(out["lo"], out["hi"], self.numbers)
            if not sides:  # a bracket sampled per prompt spans at most 7.50: never both
                raise InvalidArgument(f"no amount just outside the bracket of {inputs}")
            out["x"] = rng.choice(sides)
        return out  # prompt_pairs snaps one-decimal prompts' amounts to what the text shows


def _just_outside(low: int, high: int, numbers: str) -> tuple[int, ...]:
    """The amounts just below ``low`` and just above ``high`` (cents), as a prompt in the
    ``numbers`` style shows them, each where it stays an amount the prompt can write. With
    one-decimal numbers the bounds are rounded to what the text shows and the step is ten
    cents: one cent outside was rounded back onto the bound (344 of 400 base amounts), and
    ``lo - 1`` at a low bound of 0 was written "-1.99"."""
    if numbers == "one_decimal":
        shown = snap_to_dimes({"lo": low, "hi": high})
        low, high, step, least, most = shown["lo"], shown["hi"], 10, 10, 990
    else:
        step, least, most = 1, 0, 999
    return tuple(x for x in (low - step, high + step) if least <= x <= most)


_VERBS = ("Please say", "Say", "Answer", "Reply", "Please answer", "Respond")
_CONDITIONS = ("only if it costs", "if the price is", "only when the cost is", "if it costs")
_TAILS = (", otherwise {no}.", "; otherwise {no}.", ", else {no}.", ", otherwise say {no}.")


@st.composite
def _grammar_instructions(draw: Any) -> str:
    verb = draw(st.sampled_from(_VERBS))
    condition = draw(st.sampled_from(_CONDITIONS))
    tail = draw(st.sampled_from(_TAILS))
    text = f"{verb} {{yes}} {condition} between {{low}} and {{high}} dollars{tail}"
    if draw(st.booleans()):  # word order: the condition first
        text = f"If it costs between {{low}} and {{high}} dollars, {verb.lower()} {{yes}}{tail}"
    casing = draw(st.sampled_from(("as is", "lower", "no final stop")))
    if casing == "lower":
        text = text[0].lower() + text[1:]
    elif casing == "no final stop":
        text = text.rstrip(".")
    assume(text not in TRAIN_INSTRUCTIONS)  # one it can write was the embedded model's training
    return text


def instructions(*, pool: tuple[str, ...] = HELD_OUT_INSTRUCTIONS, grammar: bool = True) -> Any:
    """Instruction phrasings: the default, the held-out pool, and a small grammar.

    Shrinks toward the default instruction, then the pool in order.
    """
    options = [st.just(DEFAULT_INSTRUCTION), st.sampled_from(_checked_pool("instructions", pool))]
    if grammar:
        options.append(_grammar_instructions())
    return st.one_of(*options)


def contexts(*, pool: tuple[str, ...] = HELD_OUT_PREFIXES, max_sentences: int = 3) -> Any:
    """Irrelevant context: nothing, or 1..max_sentences sentences from ``pool``. Shrinks to ""."""
    if isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1:
        raise InvalidArgument(
            f"contexts(max_sentences={max_sentences!r}): an integer of at least 1 (for no "
            'context at all, use st.just("") instead of contexts())'
        )
    pool = _checked_pool("contexts", pool)
    return st.one_of(
        st.just(""),
        st.lists(st.sampled_from(pool), min_size=1, max_size=max_sentences).map(" ".join),
    )


def _checked_pool(strategy: str, pool: Any) -> tuple[str, ...]:
    """``pool`` as a tuple of strings, or one error that names the strategy (a bare string would
    be sampled a character at a time, and an empty pool fails deep inside hypothesis)."""
    if isinstance(pool, str):
        raise InvalidArgument(f"{strategy}(pool={pool!r}): a tuple of strings, such as ({pool!r},)")
    if not isinstance(pool, (tuple, list)) or not pool:
        raise InvalidArgument(f"{strategy}(pool={pool!r}): a non-empty tuple of strings")
    if not all(isinstance(text, str) for text in pool):
        raise InvalidArgument(f"{strategy}(pool=...): every entry must be a string")
    return tuple(pool)


@st.composite
def _fixed_brackets(
    draw: Any, min_width: int, max_width: int, min_low: int, max_low: int, min_high: int
) -> tuple[int, int]:
    # brackets() checked that every width drawn here leaves room for at least one low bound.
    width = draw(st.integers(max(min_width, min_high - max_low), max_width))
    lowest, highest = max(min_low, min_high - width), min(max_low, 995 - width)
    low = draw(
        st.one_of(st.integers(lowest, min(lowest + 95, highest)), st.integers(lowest, highest))
    )
    return low, low + width


def brackets(
    *,
    min_width: int = 50,
    max_width: int | None = None,
    min_low: int = 5,
    max_low: int | None = None,
    min_high: int | None = None,
) -> Any:
    """None (sampled per prompt, as in training) or a fixed (low, high) in cents, narrow or wide,
    near the lowest allowed low bound or anywhere. Shrinks to None, then to narrow brackets at
    ``min_low``. The training sampler's brackets are 250..750 cents wide, low >= 5.

    ``max_low`` and ``min_high`` keep the bounds away from the ends of the amount range, where
    training put few brackets (a low bound of 6.50 or more in about 1% of its prompts).
    ``max_width`` defaults to 900 cents, or what fits above ``min_low``.
    """
    given = {"min_width": min_width, "max_width": max_width, "min_low": min_low}
    given |= {"max_low": max_low, "min_high": min_high}
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgument(
                f"brackets({name}={value!r}): bounds and widths are whole cents (250 for 2.50)"
            )
    if min_low < 0:
        raise InvalidArgument(f"brackets(min_low={min_low}): a bound is at least 0 cents")
    max_width = min(900, 995 - min_low) if max_width is None else max_width
    if max_low is not None and max_low > 995 - min_width:
        raise InvalidArgument(
            f"brackets(max_low={max_low}): no bracket at least min_width={min_width} cents wide "
            f"starts above {995 - min_width} (its high end is at most 995)"
        )
    max_low = 995 - min_width if max_low is None else max_low
    min_high = min_low + min_width if min_high is None else min_high
    if not 0 < min_width <= max_width <= 995 - min_low:
        raise InvalidArgument(
            f"brackets(min_width={min_width}, max_width={max_width}): need 0 < min_width <= "
            f"max_width <= {995 - min_low} (995 - min_low)"
        )
    if max_low < min_low:
        raise InvalidArgument(f"brackets(max_low={max_low}) is below min_low={min_low}")
    if min_high > 995 or min_high - max_low > max_width:
        raise InvalidArgument(
            f"brackets(): no bracket at most {max_width} cents wide has low <= {max_low} and "
            f"high >= {min_high} (<= 995): raise max_width or max_low, or lower min_high"
        )
    return st.one_of(st.none(), _fixed_brackets(min_width, max_width, min_low, max_low, min_high))


def amount_edges() -> Any:
    """None, an amount exactly on a bound, or one cent outside it (ten with one-decimal
    numbers). Shrinks to None."""
    return st.sampled_from(AMOUNT_EDGES)


def number_styles() -> Any:
    """``plain`` (1.30), ``dollar`` ($1.30), ``one_decimal`` (1.3). Shrinks to plain."""
    return st.sampled_from(("plain", "dollar", "one_decimal"))


def answer_words() -> Any:
    """yes/no or the True/False sibling. Shrinks to yes/no."""
    return st.sampled_from((("Yes", "No"), ("True", "False")))


def prompt_variants(
    *,
    max_changes: int = 2,
    **parts: Any,
) -> Any:
    """Prompt variants that change one to ``max_changes`` parts of the default prompt at once
    (phrasing, context before, context after, answer words, number style, bracket, amount edge),
    each changed part to a value other than its default.

    A part given as a strategy replaces how that part is drawn where it changes (its default
    value is skipped: a strategy that draws nothing else cannot be used). A part given as a
    value is fixed: every variant has it, and it does not count toward ``max_changes``; give a
    part its default value (``answers=("Yes", "No")``, ``bracket=None``) to keep it
    unchanged. Changing a few parts at a time keeps most variants inside what the model can do,
    so few are rejected, and a failure says which kind of change broke the alignment. Shrinks
    toward one part changed by the least. Bad arguments are refused here, not when the first
    example is drawn.
    """
    known = [f.name for f in fields(PromptVariant)]
    for name, value in parts.items():
        if name not in known:
            raise InvalidArgument(
                f"prompt_variants() has no part {name!r}; parts: {', '.join(known)}."
                + did_you_mean(name, known)
            )
        if callable(value) and not isinstance(value, st.SearchStrategy):
            called = getattr(value, "__name__", "it")
            raise InvalidArgument(
                f"prompt_variants({name}=...) takes a strategy or a value, not the function "
                f"{called}: call it, {name}={called}()"
            )
    if isinstance(max_changes, bool) or not isinstance(max_changes, int) or max_changes < 1:
        raise InvalidArgument(f"prompt_variants(max_changes={max_changes!r}): at least 1")
    fixed = {
        name: value for name, value in parts.items() if not isinstance(value, st.SearchStrategy)
    }
    try:
        PromptVariant(**fixed)  # a fixed part the prompt cannot have, refused now
    except InvalidArgument as exc:
        raise InvalidArgument(f"prompt_variants(): {exc}") from None
    given = {name: value for name, value in parts.items() if isinstance(value, st.SearchStrategy)}
    free = {name: s for name, s in _part_strategies(given).items() if name not in fixed}
    # a part fixed at its default is no change: a variant then still changes one other part
    least = 0 if any(value != _DEFAULTS[name] for name, value in fixed.items()) else 1
    return _prompt_variants(max_changes=max_changes, fixed=fixed, free=free, least=least)


_DEFAULTS = {f.name: f.default for f in fields(PromptVariant)}


def _part_strategies(given: dict[str, Any]) -> dict[str, Any]:
    """How each part is drawn where it changes: ``given``, else its own strategy."""
    own = {
        "instruction": instructions(),
        "prefix": contexts(),
        "suffix": contexts(max_sentences=1),
        "answers": answer_words(),
        "numbers": number_styles(),
        "bracket": brackets(),
        "amount_edge": amount_edges(),
    }
    return own | given


@st.composite
def _prompt_variants(
    draw: Any, *, max_changes: int, fixed: dict[str, Any], free: dict[str, Any], least: int
) -> PromptVariant:
    chosen = (
        draw(
            st.lists(
                st.sampled_from(sorted(free)), min_size=least, max_size=max_changes, unique=True
            )
        )
        if free
        else []
    )
    drawn = dict(fixed)
    for name in chosen:  # a part that changes takes another value than its default
        drawn[name] = draw(free[name].filter(lambda value, name=name: value != _DEFAULTS[name]))
    if drawn.get("amount_edge") == "one_cent_outside" and drawn.get("bracket") is not None:
        low, high = drawn["bracket"]  # one that spans every amount written leaves none outside
        assume(bool(_just_outside(low, high, drawn.get("numbers", "plain"))))
    return PromptVariant(**drawn)
