"""Held-out pairs (test, confirmation, development) are never training pairs."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from das_assert import held_out
from das_assert.errors import InvalidArgument
from das_assert.experiment import CONFIRMATION_STREAM, TEST_STREAM, Experiment
from das_assert.restarts import development_pairs
from das_assert.sites import Site
from das_assert.tasks.price_tagging import PriceFormat


def _key(pair: object) -> tuple[str, str, int]:
    return pair.base.text, pair.source.text, pair.variable_index  # type: ignore[attr-defined]


def _experiment(**changes: object) -> Experiment:
    settings: dict = {"hypothesis": "left_boundary", "site": Site(1), "n_train": 1500}
    return Experiment(**{**settings, "n_test": 800, "seed": 0, **changes})


def test_where_the_prompts_can_say_few_things_no_held_out_pair_is_a_training_pair() -> None:
    # One-decimal amounts in a fixed bracket: 126 of 800 test pairs were training pairs.
    exp = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(100, 200))
    training = {_key(pair) for pair in exp.train_pairs()}
    own_stream = exp.pairs(exp.n_test, exp.seed + TEST_STREAM)
    assert sum(_key(pair) in training for pair in own_stream) > 50  # the case is real
    for pairs in (exp.test_pairs(), exp.confirmation_pairs(), development_pairs(exp)):
        assert len(pairs) == exp.n_test
        assert not any(_key(pair) in training for pair in pairs)
        assert len({_key(pair) for pair in pairs}) >= len({_key(pair) for pair in own_stream})
    # the pairs left out were mostly of one answer: their places keep the stream's balance
    answers = Counter((pair.expected, pair.variable_index) for pair in exp.test_pairs())
    assert answers == Counter((pair.expected, pair.variable_index) for pair in own_stream)


def test_where_no_training_pair_repeats_the_held_out_pairs_are_the_streams_own() -> None:
    exp = _experiment()
    assert exp.test_pairs() == exp.pairs(exp.n_test, exp.seed + TEST_STREAM)
    assert exp.confirmation_pairs() == exp.pairs(exp.n_test, exp.seed + CONFIRMATION_STREAM)


def test_prompts_that_cannot_say_enough_pairs_besides_the_training_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(held_out, "_TOP_UPS", 0)  # no stream to fill the repeated pairs' places
    exp = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(300, 600))
    with pytest.raises(
        InvalidArgument, match=r"only \d+ of 800 held-out pairs differ from the 1500"
    ):
        exp.test_pairs()


def test_test_pairs_of_another_training_size_are_not_served_from_the_shared_encoding(
    tiny_llama: Any,
) -> None:
    # The test pairs' encoding was shared by recipe without n_train, which now decides which
    # training pairs they leave out: a second experiment got the first one's test pairs.
    from das_assert.experiment import _encoded
    from das_assert.sharing import sharing

    small = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(100, 200), n_train=200)
    large = replace(small, n_train=1500)
    assert small.test_pairs() != large.test_pairs()
    with sharing():
        encoded = [_encoded(tiny_llama, exp, "test") for exp in (small, large)]
    for exp, found in zip((small, large), encoded, strict=True):
        assert [_key(pair) for pair in found.pairs] == [_key(pair) for pair in exp.test_pairs()]
