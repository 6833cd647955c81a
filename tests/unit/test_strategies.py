"""The fuzzing strategies draw only variants the task can be written with, and print briefly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.vendor.pretty import pretty

from das_assert.errors import InvalidArgument
from das_assert.strategies import PromptVariant, brackets, contexts, instructions, prompt_variants
from das_assert.tasks.phrasings import TRAIN_INSTRUCTIONS


@settings(max_examples=200)
@given(data=st.data(), min_low=st.integers(5, 900), min_width=st.integers(1, 400))
def test_a_fixed_bracket_keeps_its_width_inside_the_allowed_range(
    data: st.DataObject, min_low: int, min_width: int
) -> None:
    room = 995 - min_low
    if min_width > room:
        with pytest.raises(InvalidArgument, match="min_width <= max_width"):
            brackets(min_width=min_width, max_width=min_width, min_low=min_low)
        return
    max_width = data.draw(st.integers(min_width, room))
    bracket = data.draw(brackets(min_width=min_width, max_width=max_width, min_low=min_low))
    if bracket is not None:
        low, high = bracket
        assert min_low <= low < high <= 995
        assert min_width <= high - low <= max_width


@settings(max_examples=30)
@given(bracket=brackets(min_width=50, max_width=50, min_low=945))
def test_the_narrowest_room_left_gives_the_one_bracket_that_fits(bracket: Any) -> None:
    assert bracket in (None, (945, 995))  # it gave (946, 995), (995, 995) and (996, 995) before


@settings(max_examples=200)
@given(
    data=st.data(),
    max_low=st.integers(5, 994),  # 995 leaves no room for a high end: refused, below
    min_high=st.integers(5, 995),
    max_width=st.integers(1, 990),
)
def test_a_fixed_bracket_keeps_its_bounds_inside_max_low_and_min_high(
    data: st.DataObject, max_low: int, min_high: int, max_width: int
) -> None:
    if min_high - max_low > max_width:
        with pytest.raises(InvalidArgument, match=f"low <= {max_low} and high >= {min_high}"):
            brackets(min_width=1, max_width=max_width, max_low=max_low, min_high=min_high)
        return
    strategy = brackets(min_width=1, max_width=max_width, max_low=max_low, min_high=min_high)
    bracket = data.draw(strategy)
    if bracket is not None:
        low, high = bracket
        assert 5 <= low <= max_low
        assert min_high <= high <= 995
        assert 1 <= high - low <= max_width


def test_max_low_below_min_low_is_refused_by_name() -> None:
    with pytest.raises(InvalidArgument, match=r"max_low=50\) is below min_low=100"):
        brackets(min_low=100, max_width=500, max_low=50)
    # without max_width it named the widths it was never given: max_width=900 did not fit
    with pytest.raises(InvalidArgument, match=r"max_low=100\) is below min_low=130"):
        brackets(min_low=130, max_low=100)


@given(bracket=brackets(min_low=100))
def test_a_min_low_alone_keeps_the_widths_that_fit_above_it(bracket: Any) -> None:
    # refused: "brackets(min_width=50, max_width=900): need ... <= 895"
    if bracket is not None:
        low, high = bracket
        assert 100 <= low < high <= 995


def test_a_max_low_with_no_room_above_it_is_refused() -> None:
    # accepted, and clipped out of sight
    with pytest.raises(InvalidArgument, match=r"brackets\(max_low=990\): no bracket at least "):
        brackets(max_low=990)


def test_a_variant_prints_only_what_it_changes_under_hypothesis_too() -> None:
    variant = PromptVariant(suffix="Thank you.", amount_edge="on_bound")
    expected = "PromptVariant(suffix='Thank you.', amount_edge='on_bound')"
    assert repr(variant) == expected
    assert pretty(variant) == expected  # how hypothesis prints a failing example


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (  # crashed later: "Unknown format code 'd' for object of type 'float'"
            lambda: PromptVariant(bracket=(1.30, 8.55)),
            "PromptVariant: bracket=(1.3, 8.55) is in cents, whole numbers: write (130, 855) for "
            "1.30-8.55 dollars",
        ),
        (  # ran on "between 6.00 and 2.00 dollars" and counted as a broken bracket variant
            lambda: PromptVariant(bracket=(600, 200)),
            "PromptVariant: bracket=(600, 200) must have 0 <= low <= high <= 999 (cents)",
        ),
        (  # drew (-1, 49), rendered as "between -1.99 and 0.49 dollars"
            lambda: brackets(min_low=-50, max_width=1000),
            "brackets(min_low=-50): a bound is at least 0 cents",
        ),
        (  # failed only when the first example was drawn
            lambda: brackets(min_width=2.5),
            "brackets(min_width=2.5): bounds and widths are whole cents (250 for 2.50)",
        ),
        (  # advised bracket=st.just(<function brackets ...>)
            lambda: prompt_variants(bracket=brackets),
            "prompt_variants(bracket=...) takes a strategy or a value, not the function "
            "brackets: call it, bracket=brackets()",
        ),
        (  # "bracket=one_of(...) must be (low, high) in cents": not that a strategy was passed
            lambda: PromptVariant(bracket=brackets()),
            "PromptVariant: bracket= takes one fixed bracket, (low, high) in cents, not a "
            "strategy or function",
        ),
        (  # a fixed part the prompt cannot have: refused when built, not when drawn
            lambda: prompt_variants(bracket=(500, 100)),
            "prompt_variants(): PromptVariant: bracket=(500, 100) must have 0 <= low <= high",
        ),
        (  # ran the plain prompt, counted in the bound_edge family
            lambda: PromptVariant(amount_edge="on_bond"),
            "PromptVariant: amount_edge='on_bond' is not one of (None, 'on_bound', "
            "'one_cent_outside'). Did you mean 'on_bound'?",
        ),
        (  # built, then rejected under @given as if the tokenizer could not write it
            lambda: PromptVariant(numbers="dolar"),
            "PromptVariant: numbers='dolar' is not one of ('plain', 'dollar', 'one_decimal').",
        ),
        (
            lambda: PromptVariant(answers=("Yes", "Yes")),
            "PromptVariant: answers must be two different words",
        ),
        (lambda: PromptVariant(prefix=3), "PromptVariant: prefix=3: a string"),
        (lambda: prompt_variants(max_changes=0), "prompt_variants(max_changes=0): at least 1"),
        (
            lambda: prompt_variants(brackt=None),
            "prompt_variants() has no part 'brackt'; parts: instruction, prefix, suffix, "
            "answers, numbers, bracket, amount_edge. Did you mean 'bracket'?",
        ),
    ],
    ids=[
        "dollars",
        "inverted",
        "negative-low",
        "fractional-width",
        "uncalled-strategy",
        "strategy-as-bracket",
        "fixed-inverted",
        "amount-edge-typo",
        "numbers-typo",
        "same-answers",
        "prefix-not-text",
        "no-changes",
        "typo",
    ],
)
def test_a_bad_variant_or_strategy_argument_is_refused_when_built(
    build: Callable[[], Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        build()
    assert str(raised.value) == message or str(raised.value).startswith(message)


@settings(max_examples=100, database=None)
@given(variant=prompt_variants())
def test_a_part_that_changes_takes_another_value_than_its_default(variant: PromptVariant) -> None:
    # It drew the default for a changed part often (3 of the CI gate's 6 examples, and 16-45%
    # of draws), so the gate mostly judged the plain prompt again.
    changed = [name for name in PromptVariant.__dataclass_fields__ if name in repr(variant)]
    assert 1 <= len(changed) <= 2


@settings(max_examples=100, database=None)
@given(variant=prompt_variants(answers=("True", "False"), numbers="dollar", max_changes=1))
def test_a_part_given_as_a_value_is_in_every_variant_and_not_a_change(
    variant: PromptVariant,
) -> None:
    # st.just(...) "fixed" a part only in the variants that happened to change it (26 of 100).
    assert (variant.answers, variant.numbers) == (("True", "False"), "dollar")
    others = [
        name
        for name in PromptVariant.__dataclass_fields__
        if name not in ("answers", "numbers") and f"{name}=" in repr(variant)
    ]
    assert len(others) <= 1


@settings(max_examples=50, database=None)
@given(variant=prompt_variants(bracket=st.sampled_from([None, (100, 500)])))
def test_a_strategy_given_for_a_part_is_drawn_where_it_changes(variant: PromptVariant) -> None:
    assert variant.bracket in (None, (100, 500))


@pytest.mark.parametrize("kept", [{"answers": ("Yes", "No")}, {"bracket": None}])
def test_a_part_kept_at_its_default_value_never_changes_nor_is_a_change(
    kept: dict[str, Any],
) -> None:
    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    ((name, default),) = kept.items()
    variants = prompt_variants(**kept, max_changes=3)
    with pytest.raises(NoSuchExample):  # bracket=None drew brackets: None meant "not given"
        find(variants, lambda v: getattr(v, name) != default, settings=settings(max_examples=200))
    with pytest.raises(NoSuchExample):  # it drew the plain prompt, as if it were a change
        find(variants, lambda v: v == PromptVariant(), settings=settings(max_examples=200))


def test_prompt_pairs_and_experiments_refuse_a_bracket_in_dollars() -> None:
    from das_assert.tasks.price_tagging import prompt_pairs

    with pytest.raises(InvalidArgument, match=r"is in cents, whole numbers: write \(130, 855\)"):
        prompt_pairs("left_boundary", 4, seed=0, bracket=(1.30, 8.55))


def test_replay_advice_outside_a_hypothesis_test_names_no_database() -> None:
    # a direct assert_robust call printed "the example database replays this variant first"
    from das_assert.variants import replay_advice

    assert replay_advice() == "not drawn by hypothesis: this variant, as written, reruns it"


@given(st.integers())
@settings(max_examples=1, derandomize=True, database=None)
def test_replay_advice_inside_a_hypothesis_test_follows_its_settings(x: int) -> None:
    from das_assert.variants import replay_advice

    assert replay_advice().startswith("derandomized: the same command over the same files")


@given(st.integers())
@settings(max_examples=1, database=None)
def test_replay_advice_under_a_forced_seed_names_the_seed_not_the_database(x: int) -> None:
    # "the example database replays this variant first": hypothesis saves nothing then
    from hypothesis import core

    from das_assert.variants import replay_advice

    saved, core.global_force_seed = core.global_force_seed, 3
    try:
        assert replay_advice() == "--hypothesis-seed: the same seed draws it again"
    finally:
        core.global_force_seed = saved


def test_the_replay_line_pins_the_variant_under_the_tests_own_argument_name() -> None:
    # it always said @example(variant=...): under @given(v=...), or beside another @given
    # argument, the line pasted as written failed hypothesis's argument check
    from das_assert.variants import replay_example

    variant = PromptVariant(bracket=(5, 306))

    @given(v=prompt_variants())
    def renamed(das: Any, v: PromptVariant) -> None: ...

    @given(variant=prompt_variants(), n=st.sampled_from([32, 48]))
    def with_another(das: Any, variant: PromptVariant, n: int) -> None: ...

    @given(data=st.data())
    def through_data(das: Any, data: Any) -> None: ...

    @given(variant=st.just(variant), data=st.data())
    def beside_data(das: Any, variant: PromptVariant, data: Any) -> None: ...

    class Tests:
        @given(variant=prompt_variants())
        def method(self, das: Any, variant: PromptVariant) -> None: ...

    def direct(das: Any) -> None: ...

    assert replay_example(variant, renamed) == "@example(v=PromptVariant(bracket=(5, 306)))"
    assert replay_example(variant, with_another).startswith(
        "@example(...) naming every @given argument (variant, n) as hypothesis's falsifying"
    )
    assert "which @example cannot pin" in replay_example(variant, through_data)
    assert "(variant, data)" in replay_example(variant, beside_data)  # not drawn through it
    pinned = "@example(variant=PromptVariant(bracket=(5, 306)))"
    assert replay_example(variant, Tests().method) == pinned
    assert replay_example(variant, direct) == pinned


def _base_amounts(variant: PromptVariant, n: int = 200) -> list[dict[str, int]]:
    from das_assert.tasks.price_tagging import prompt_pairs

    pairs = prompt_pairs(
        "left_boundary",
        n,
        seed=1,
        fmt=variant.format(),
        bracket=variant.bracket,
        edit=variant.edit,
    )
    return [pair.inputs["base"] for pair in pairs]


def test_one_cent_outside_is_outside_as_one_decimal_numbers_show_it() -> None:
    # one cent outside was rounded back onto the bound: 344 of 400 base amounts, mostly Yes
    bases = _base_amounts(PromptVariant(numbers="one_decimal", amount_edge="one_cent_outside"))
    assert all(b["x"] in (b["lo"] - 10, b["hi"] + 10) for b in bases)


@pytest.mark.parametrize(("bracket", "outside"), [((0, 500), 501), ((100, 999), 99)])
def test_one_cent_outside_stays_an_amount_the_prompt_can_write(
    bracket: tuple[int, int], outside: int
) -> None:
    # -1 cent was written "-1.99 dollars", 1000 cents "10.00"
    import random

    variant = PromptVariant(bracket=bracket, amount_edge="one_cent_outside")
    low, high = bracket
    for seed in range(20):
        edited = variant.edit({"lo": low, "hi": high, "x": 300}, random.Random(seed), "base")
        assert edited["x"] == outside


def test_a_bracket_with_no_amount_outside_it_is_refused_for_one_cent_outside() -> None:
    with pytest.raises(InvalidArgument, match=r"bracket=\(0, 999\): no amount just outside it"):
        PromptVariant(bracket=(0, 999), amount_edge="one_cent_outside")
    with pytest.raises(InvalidArgument, match=r"bracket=\(12, 995\): no amount just outside"):
        PromptVariant(numbers="one_decimal", bracket=(12, 995), amount_edge="one_cent_outside")


def test_an_edit_that_leaves_the_amount_range_is_refused() -> None:
    from das_assert.tasks.price_tagging import prompt_pairs

    def too_high(inputs: dict[str, int], rng: Any, role: str) -> dict[str, int]:
        return {**inputs, "x": 1000}

    with pytest.raises(InvalidArgument, match=r"edit returned x=1000 .*0 to 999 cents"):
        prompt_pairs("left_boundary", 4, seed=0, edit=too_high)


@settings(max_examples=300, database=None)
@given(variant=prompt_variants(bracket=brackets(max_width=990, min_low=0)), seed=st.integers(0, 9))
def test_drawn_variants_never_put_an_amount_outside_what_a_prompt_writes(
    variant: PromptVariant, seed: int
) -> None:
    import random

    # a sampled bracket (250-750 cents wide, low >= 5, high <= 995) at either end of its range
    for low, high in [variant.bracket] if variant.bracket else [(5, 755), (245, 995)]:
        edited = variant.edit({"lo": low, "hi": high, "x": 300}, random.Random(seed), "base")
        assert 0 <= edited["x"] <= 999


@settings(max_examples=500, database=None)
@given(instruction=instructions())
def test_the_instruction_grammar_writes_no_training_phrasing(instruction: str) -> None:
    # the grammar wrote one of the embedded model's training instructions, counted as held out
    assert instruction not in TRAIN_INSTRUCTIONS


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: contexts(max_sentences=0), r"contexts\(max_sentences=0\): an integer of at least"),
        (lambda: contexts(pool=()), r"contexts\(pool=\(\)\): a non-empty tuple of strings"),
        (lambda: instructions(pool=()), r"instructions\(pool=\(\)\): a non-empty tuple"),
        (lambda: contexts(pool="Prices vary."), r"a tuple of strings, such as \('Prices vary.',\)"),
        (lambda: instructions(pool=("ok {low} {high}", 3)), r"every entry must be a string"),
    ],
)
def test_a_strategy_given_an_empty_or_wrong_pool_is_refused_by_name(
    make: Callable[[], Any], message: str
) -> None:
    # hypothesis refused the first two only when a draw was made, naming its own internals
    # ("Cannot have max_size=0 < min_size=1"); a bare string was sampled a character at a time.
    with pytest.raises(InvalidArgument, match=message):
        make()
