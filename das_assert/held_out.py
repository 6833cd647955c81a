"""Held-out pairs (test, confirmation, development) that are not training pairs.

Another stream of the sampler seldom repeats a training pair, but it does where the prompts can
say few things: with one-decimal amounts in a fixed bracket, 126 of 800 test pairs were training
pairs, and the IIA measured them partly on what the alignment was fitted to.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from das_assert.data import PromptPair
from das_assert.errors import InvalidArgument

if TYPE_CHECKING:
    from das_assert.experiment import Experiment

__all__ = ["TOP_UP_STREAM", "held_out_pairs"]

#: Where held-out pairs that repeat a training pair are replaced from: ``seed + k * TOP_UP_STREAM``.
TOP_UP_STREAM = 400_009
_TOP_UPS = 16


def _pair_key(pair: PromptPair) -> tuple[str, str, int]:
    return pair.base.text, pair.source.text, pair.variable_index


def _pair_keys(pairs: list[PromptPair]) -> set[tuple[str, str, int]]:
    return {_pair_key(pair) for pair in pairs}


def held_out_pairs(experiment: Experiment, n: int, seed: int) -> list[PromptPair]:
    """``n`` pairs of ``experiment``'s sampler stream ``seed`` that are not its training pairs.

    Pairs that repeat a training pair are left out, and pairs of the stream ``seed + k *
    TOP_UP_STREAM`` with the same counterfactual answer and variable fill their places (the
    pairs left out are mostly of one label: plain top-ups broke the stream's balance), none
    twice. Where no training pair repeats, these are the stream's own ``n`` pairs.

    Raises:
        InvalidArgument: the prompts cannot say ``n`` pairs besides the training ones.
    """
    training = _pair_keys(experiment.train_pairs())
    own = experiment.pairs(n, seed)
    kept = [pair for pair in own if _pair_key(pair) not in training]
    places = Counter(_kind(pair) for pair in own if _pair_key(pair) in training)
    taken = _pair_keys(kept)
    for k in range(1, _TOP_UPS + 1):
        if not +places:
            break
        for pair in experiment.pairs(n, seed + k * TOP_UP_STREAM):
            key = _pair_key(pair)
            if places[_kind(pair)] > 0 and key not in training and key not in taken:
                places[_kind(pair)] -= 1
                taken.add(key)
                kept.append(pair)
    if +places:
        raise InvalidArgument(
            f"{experiment.hypothesis}: only {len(kept)} of {n} held-out pairs differ from the "
            f"{experiment.n_train} training pairs in {_TOP_UPS + 1} draws: these prompts can "
            "say too few things (a fixed bracket, one-decimal amounts); lower n_train or "
            "n_test, or let the brackets be drawn"
        )
    return kept


def _kind(pair: PromptPair) -> tuple[str, int]:
    """What a pair that fills another's place must share with it: its answer and variable."""
    return pair.expected, pair.variable_index
