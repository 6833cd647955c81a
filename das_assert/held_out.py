"""Held-out pairs (test, confirmation, development, a variant's fresh pairs) that repeat none of
the pairs they must stay apart from: the training pairs, and for pairs that judge a choice made
on other held-out pairs, those too.

Another stream of the sampler seldom repeats a pair, but it does where the prompts can say few
things: with one-decimal amounts in a fixed bracket, 126 of 800 test pairs were training pairs,
and the IIA measured them partly on what the alignment was fitted to; 97 of 800 "fresh"
confirmation pairs were the test pairs that had picked the cell they confirmed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Set
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from das_assert.data import PromptPair
from das_assert.errors import InvalidArgument
from das_assert.sharing import shared

if TYPE_CHECKING:
    from das_assert.experiment import Experiment

__all__ = [
    "TOP_UP_STREAM",
    "also_apart",
    "apart_from",
    "held_out_pairs",
    "hold_out",
    "pair_keys",
    "training_keys",
]

#: Where held-out pairs that repeat a training pair are replaced from: ``seed + k * TOP_UP_STREAM``.
TOP_UP_STREAM = 400_009
_TOP_UPS = 16

PairKey = tuple[str, str, int]

#: Pairs that every held-out draw in this context also stays apart from (``apart_from``).
_ALSO_APART: ContextVar[frozenset[PairKey]] = ContextVar("das_also_apart", default=frozenset())


def _pair_key(pair: PromptPair) -> PairKey:
    return pair.base.text, pair.source.text, pair.variable_index


def pair_keys(pairs: Iterable[PromptPair]) -> set[PairKey]:
    """What makes two pairs the same pair: their prompts' texts and the variable."""
    return {_pair_key(pair) for pair in pairs}


def training_keys(experiment: Experiment) -> frozenset[PairKey]:
    """``pair_keys`` of ``experiment``'s training pairs, drawn once per recipe inside
    ``sharing()`` (a fuzz test holds every variant's pairs out of them)."""
    e = experiment
    recipe = (e.hypothesis, id(e.causal), e.variables, e.n_train, e.seed, e.fmt, e.bracket)
    return shared(
        ("training_keys", *recipe),
        lambda: frozenset(pair_keys(e.train_pairs())),
        owners=(e.causal,),
    )


@contextmanager
def apart_from(pairs: Iterable[PromptPair]) -> Iterator[None]:
    """Held-out pairs drawn inside this block also repeat none of ``pairs``: a saved
    alignment's own training pairs, where it is scored at another seed than it was fitted at
    (whose training stream is not that seed's)."""
    token = _ALSO_APART.set(_ALSO_APART.get() | pair_keys(pairs))
    try:
        yield
    finally:
        _ALSO_APART.reset(token)


def also_apart() -> frozenset[PairKey]:
    """The pairs an enclosing ``apart_from`` keeps held-out draws from (part of what makes
    a set of test pairs the same set)."""
    return _ALSO_APART.get()


def held_out_pairs(
    experiment: Experiment, n: int, seed: int, *, also_apart_from: Iterable[PromptPair] = ()
) -> list[PromptPair]:
    """``n`` pairs of ``experiment``'s sampler stream ``seed`` that are not its training pairs,
    nor any of ``also_apart_from`` (see ``hold_out``).

    Raises:
        InvalidArgument: the prompts cannot say ``n`` pairs besides those.
    """
    others = pair_keys(also_apart_from)
    apart = training_keys(experiment) | others
    what = f"the {experiment.n_train} training pairs" + (
        f" and {len(others)} other pairs" if others else ""
    )
    return hold_out(
        lambda k: experiment.pairs(n, k), n, seed, apart, what=what, name=experiment.hypothesis
    )


def hold_out(
    draw: Callable[[int], list[PromptPair]],
    n: int,
    seed: int,
    apart: Set[PairKey],
    *,
    what: str,
    name: str,
) -> list[PromptPair]:
    """The ``n`` pairs ``draw(seed)`` but those that repeat a pair of ``apart`` (or of an
    enclosing ``apart_from``).

    The pairs left out are replaced by pairs of the stream ``draw(seed + k * TOP_UP_STREAM)``
    with the same counterfactual answer and variable (the pairs left out are mostly of one
    label: plain top-ups broke the stream's balance), none twice. Where no pair repeats, these
    are the stream's own ``n`` pairs.

    Raises:
        InvalidArgument: the prompts cannot say ``n`` pairs besides ``what`` (named so).
    """
    apart = apart | _ALSO_APART.get()
    own = draw(seed)
    kept = [pair for pair in own if _pair_key(pair) not in apart]
    places = Counter(_kind(pair) for pair in own if _pair_key(pair) in apart)
    taken = pair_keys(kept)
    for k in range(1, _TOP_UPS + 1):
        if not +places:
            break
        for pair in draw(seed + k * TOP_UP_STREAM):
            key = _pair_key(pair)
            if places[_kind(pair)] > 0 and key not in apart and key not in taken:
                places[_kind(pair)] -= 1
                taken.add(key)
                kept.append(pair)
    if +places:
        raise InvalidArgument(
            f"{name}: only {len(kept)} of {n} held-out pairs differ from {what} in "
            f"{_TOP_UPS + 1} draws: these prompts can say too few things (a fixed bracket, "
            "one-decimal amounts); lower n_train or n_test, or let the brackets be drawn"
        )
    return kept


def _kind(pair: PromptPair) -> tuple[str, int]:
    """What a pair that fills another's place must share with it: its answer and variable."""
    return pair.expected, pair.variable_index
