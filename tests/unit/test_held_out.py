"""Held-out pairs (test, confirmation, development) are never training pairs."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from das_assert import held_out
from das_assert.errors import InvalidArgument
from das_assert.experiment import CONFIRMATION_STREAM, TEST_STREAM, Experiment
from das_assert.restarts import DEV_STREAM, development_pairs
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


def test_pairs_that_judge_a_choice_repeat_none_of_the_test_pairs_that_made_it() -> None:
    # The confirmation pairs confirm a cell its test pairs picked, and the test pairs judge the
    # restart the development pairs picked: 97 and 113 of 800 were test pairs.
    exp = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(130, 850))
    test = {_key(pair) for pair in exp.test_pairs()}
    for stream, pairs in (
        (CONFIRMATION_STREAM, exp.confirmation_pairs()),
        (DEV_STREAM, development_pairs(exp)),
    ):
        own_stream = exp.pairs(exp.n_test, exp.seed + stream)
        assert sum(_key(pair) in test for pair in own_stream) > 50  # the case is real
        assert len(pairs) == exp.n_test
        assert not test & {_key(pair) for pair in pairs}
        answers = Counter((pair.expected, pair.variable_index) for pair in pairs)
        assert answers == Counter((pair.expected, pair.variable_index) for pair in own_stream)


def test_a_fit_chosen_among_restarts_is_confirmed_on_pairs_that_did_not_choose_it() -> None:
    # A search cell's fit is chosen among restarts on development pairs, the cell on test
    # pairs, then confirmed: 72 of 762 confirmation pairs were development pairs.
    exp = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(300, 500), n_train=400)
    development = {_key(pair) for pair in development_pairs(exp)}
    assert development & {_key(pair) for pair in exp.confirmation_pairs()}  # the case is real
    confirming = exp.confirmation_pairs(after_restarts=True)
    assert len(confirming) == exp.n_test
    assert not development & {_key(pair) for pair in confirming}
    assert not {_key(pair) for pair in exp.test_pairs()} & {_key(pair) for pair in confirming}
    assert exp.confirmation_pairs(after_restarts=True) == confirming  # seeded: a replay


def test_a_variants_pairs_repeat_no_training_pair_and_its_fresh_pairs_none_of_its_own() -> None:
    from das_assert.strategies import PromptVariant
    from das_assert.variants import variant_pairs, variant_seed

    exp = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(130, 850))
    training = {_key(pair) for pair in exp.train_pairs()}
    # a variant that writes the claim's own prompts: 51 of 400 of its pairs were training pairs
    same = PromptVariant(numbers="one_decimal", bracket=(130, 850))
    drawn = exp.pairs(400, variant_seed(exp.seed, same))  # the variant's stream, as drawn
    assert sum(_key(pair) in training for pair in drawn) > 20  # the case is real
    own = variant_pairs(exp, same, 400)
    assert len(own) == 400
    assert not training & {_key(pair) for pair in own}
    # a break is confirmed on fresh pairs: 24 of 400 were the variant's own
    other = PromptVariant(numbers="one_decimal", bracket=(70, 913))
    own = variant_pairs(exp, other, 400)
    fresh = variant_pairs(exp, other, 400, fresh=True)
    assert len(fresh) == 400
    assert not {_key(p) for p in own} & {_key(p) for p in fresh}
    assert variant_pairs(exp, other, 400, fresh=True) == fresh  # seeded: a replay


def test_held_out_pairs_drawn_apart_from_given_pairs_repeat_none_of_them() -> None:
    # evaluate --seed S of an alignment fitted at seed 0: its test pairs stayed apart from
    # seed S's training stream only, and 142 of 800 were the pairs it was fitted on.
    fitted_at = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(130, 850))
    scored_at = replace(fitted_at, seed=1)
    fitted_on = {_key(pair) for pair in fitted_at.train_pairs()}
    assert sum(_key(pair) in fitted_on for pair in scored_at.test_pairs()) > 50
    with held_out.apart_from(fitted_at.train_pairs()):
        test = scored_at.test_pairs()
    assert len(test) == 800
    assert not fitted_on & {_key(pair) for pair in test}
    assert scored_at.test_pairs() != test  # the block's own: gone after it


def test_test_pairs_drawn_apart_from_given_pairs_are_not_served_from_the_shared_encoding(
    tiny_llama: Any,
) -> None:
    from das_assert.experiment import _encoded
    from das_assert.sharing import sharing

    fitted_at = _experiment(fmt=PriceFormat(numbers="one_decimal"), bracket=(130, 850), n_train=200)
    scored_at = replace(fitted_at, seed=1)
    with sharing():
        plain = _encoded(tiny_llama, scored_at, "test")
        with held_out.apart_from(fitted_at.train_pairs()):
            apart = _encoded(tiny_llama, scored_at, "test")
            expected = scored_at.test_pairs()
    assert [_key(pair) for pair in plain.pairs] == [_key(p) for p in scored_at.test_pairs()]
    assert [_key(pair) for pair in apart.pairs] == [_key(pair) for pair in expected]
    assert apart.pairs != plain.pairs


def test_a_variants_answer_words_change_the_claims_own_and_keeping_them_keeps_the_claims() -> None:
    # For a claim asked in True and False, a variant drawn with True/False wrote exactly the
    # claim's prompts yet counted as a "format" change; one keeping Yes/No wrote the claim's.
    from das_assert.strategies import PromptVariant
    from das_assert.variants import variant_pairs

    exp = _experiment(fmt=PriceFormat(answers=("True", "False")))
    kept = variant_pairs(exp, PromptVariant(), 40)
    assert {pair.expected for pair in kept} == {"True", "False"}
    changed = PromptVariant(answers=("True", "False"))
    assert changed.families == ("format",)
    assert {pair.expected for pair in variant_pairs(exp, changed, 40)} == {"Yes", "No"}
    plain = _experiment()  # a claim in Yes and No: the drawn words are written as drawn
    assert {pair.expected for pair in variant_pairs(plain, changed, 40)} == {"True", "False"}
