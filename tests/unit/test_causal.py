"""CausalModel: construction errors, interventions, and the counterfactual labels of price tagging.

The price-tagging cases are written out by hand with concrete numbers (integer cents) and the
arithmetic in a comment, so that a label never comes from the code under test. "Region" follows
the original paper's tables: region 1 is below the bracket (x < lo), region 2 inside it
(lo <= x <= hi), region 3 above it (x > hi).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from das_assert.causal import CausalModel
from das_assert.errors import InvalidArgument
from das_assert.tasks.price_tagging import CAUSAL_MODELS


def sum_model() -> CausalModel:
    return CausalModel(
        inputs=("x", "y"),
        mechanisms={"s": lambda x, y: x + y, "big": lambda s: s >= 10, "unused": lambda x: -x},
        output="big",
        name="sum",
    )


def cents(lo: int, hi: int, x: int) -> dict[str, int]:
    return {"lo": lo, "hi": hi, "x": x}


# -- construction -------------------------------------------------------------------------------


def test_an_unknown_parent_is_rejected_with_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match="parameter 'low'") as info:
        CausalModel(
            inputs=("lo", "hi", "x"),
            mechanisms={"left": lambda x, low: x >= low},
            output="left",
        )
    assert "Did you mean 'lo'?" in str(info.value)
    assert "declared: hi, left, lo, x" in str(info.value)


def test_a_cycle_is_rejected_with_the_cycle_spelt_out() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("mechanisms form a cycle: a -> b -> a")):
        CausalModel(inputs=("x",), mechanisms={"a": lambda b: b, "b": lambda a: a}, output="a")


def test_a_longer_cycle_names_every_variable_on_it() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("a -> b -> c -> a")):
        CausalModel(
            inputs=("x",),
            mechanisms={"a": lambda b, x: b + x, "b": lambda c: c, "c": lambda a: a},
            output="a",
        )


def test_a_self_loop_is_a_cycle() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("cycle: a -> a")):
        CausalModel(inputs=("x",), mechanisms={"a": lambda a: a}, output="a")


def test_an_unknown_output_is_rejected_with_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match="output 'anwser' is not a declared variable") as info:
        CausalModel(inputs=("x",), mechanisms={"answer": lambda x: x}, output="anwser")
    assert "Did you mean 'answer'?" in str(info.value)


def test_a_name_that_is_both_an_input_and_a_mechanism_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"\['x'\] are declared both as inputs and as mech"):
        CausalModel(inputs=("x", "y"), mechanisms={"x": lambda y: y}, output="x")


def test_a_mechanism_with_star_args_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"mechanism 'total' takes \*args/\*\*kwargs"):
        CausalModel(inputs=("x",), mechanisms={"total": lambda *args: sum(args)}, output="total")


def test_a_mechanism_with_star_star_kwargs_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"takes \*args/\*\*kwargs"):
        CausalModel(inputs=("x",), mechanisms={"t": lambda x, **kw: x}, output="t")


def test_a_builtin_mechanism_without_a_signature_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="has no inspectable signature"):
        CausalModel(inputs=("x",), mechanisms={"m": max}, output="m")


def test_the_variables_are_the_inputs_then_the_mechanisms_in_evaluation_order() -> None:
    cm = CausalModel(
        inputs=("x",),
        mechanisms={"c": lambda b: b + 1, "b": lambda a: a * 2, "a": lambda x: x - 1},
        output="c",
    )
    assert cm.variables == ("x", "a", "b", "c")
    assert cm.ancestors("c") == {"x", "a", "b"}
    assert cm.ancestors("x") == set()


# -- check_intervenable -------------------------------------------------------------------------


def test_intervening_on_an_unknown_variable_is_rejected_with_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match="cannot intervene on 'sum'") as info:
        sum_model().check_intervenable(["sum"])
    assert "declares x, y, s, big, unused" in str(info.value)


def test_a_misspelt_price_tagging_variable_gets_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("Did you mean 'left'?")):
        CAUSAL_MODELS["left_boundary"].check_intervenable(["lef"])


def test_intervening_on_a_variable_that_cannot_reach_the_output_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="'unused' cannot change the output 'big'"):
        sum_model().check_intervenable(["unused"])


def test_intervene_given_as_a_string_instead_of_a_list_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="must be a list of names, not the string 's'"):
        sum_model().check_intervenable("s")


def test_intervening_on_nothing_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="names no variable"):
        sum_model().check_intervenable([])


def test_inputs_intermediates_and_the_output_itself_are_intervenable() -> None:
    sum_model().check_intervenable(["x", "s", "big"])


def test_counterfactual_checks_the_intervened_names() -> None:
    with pytest.raises(InvalidArgument, match="not the string"):
        sum_model().counterfactual({"x": 1, "y": 2}, {"x": 3, "y": 4}, intervene="s")


# -- run and counterfactual ---------------------------------------------------------------------


def test_run_computes_every_variable() -> None:
    assert sum_model().run({"x": 4, "y": 7}) == {"x": 4, "y": 7, "s": 11, "big": True, "unused": -4}


def test_run_holds_fixed_variables_fixed_and_recomputes_their_descendants() -> None:
    values = sum_model().run({"x": 1, "y": 2}, fixed={"s": 12})
    assert values["s"] == 12
    assert values["big"] is True  # 12 >= 10
    values = sum_model().run({"x": 1, "y": 2}, fixed={"x": 9})
    assert values["s"] == 11  # 9 + 2: a fixed input feeds its children
    assert values["unused"] == -9


def test_run_names_missing_inputs() -> None:
    with pytest.raises(InvalidArgument, match=r"sum: inputs \['y'\] are missing"):
        sum_model().run({"x": 1})


def test_output_of_is_the_output_variable() -> None:
    assert sum_model().output_of({"x": 5, "y": 5}) is True
    assert sum_model().output_of({"x": 5, "y": 4}) is False


def test_counterfactual_takes_the_intervened_variable_from_the_source() -> None:
    cm = sum_model()
    # base s = 1 + 2 = 3 (small); source s = 9 + 9 = 18; intervening on s: 18 >= 10.
    assert cm.counterfactual({"x": 1, "y": 2}, {"x": 9, "y": 9}, intervene=["s"]) is True
    # intervening on x only: s = 9 + 2 = 11 >= 10.
    assert cm.counterfactual({"x": 1, "y": 2}, {"x": 9, "y": 0}, intervene=["x"]) is True
    # intervening on y only: s = 1 + 0 = 1.
    assert cm.counterfactual({"x": 1, "y": 2}, {"x": 9, "y": 0}, intervene=["y"]) is False
    # intervening on the output copies the source's output.
    assert cm.counterfactual({"x": 1, "y": 2}, {"x": 9, "y": 9}, intervene=["big"]) is True


def test_the_repr_lists_the_mechanisms_with_their_parents() -> None:
    assert "s(x, y); big(s)" in repr(sum_model())


# -- price tagging: the four hypotheses compute the same function -------------------------------

brackets = st.integers(min_value=1, max_value=999).flatmap(
    lambda lo: st.tuples(st.just(lo), st.integers(min_value=lo, max_value=999))
)


@given(bracket=brackets, x=st.integers(min_value=1, max_value=999))
@settings(max_examples=200, deadline=None)
def test_all_four_price_tagging_models_compute_lo_le_x_le_hi(
    bracket: tuple[int, int], x: int
) -> None:
    lo, hi = bracket
    for cm in CAUSAL_MODELS.values():
        assert bool(cm.output_of(cents(lo, hi, x))) == (lo <= x <= hi), cm.name


@given(bracket=brackets, x=st.integers(min_value=1, max_value=999))
@settings(max_examples=100, deadline=None)
def test_intervening_with_the_base_itself_as_source_changes_nothing(
    bracket: tuple[int, int], x: int
) -> None:
    example = cents(*bracket, x)
    for name, variables in (
        ("left_boundary", ["left"]),
        ("left_and_right_boundary", ["left"]),
        ("left_and_right_boundary", ["right"]),
        ("midpoint_distance", ["mid"]),
        ("bracket_identity", ["bracket"]),
    ):
        cm = CAUSAL_MODELS[name]
        assert cm.counterfactual(example, example, intervene=variables) == cm.output_of(example)


# -- price tagging: hand-computed counterfactual labels ------------------------------------------
#
# Base bracket [200, 600]: region 1 x = 100, region 2 x = 400, region 3 x = 800.
# Source bracket [300, 700]: region 1 x = 150, region 2 x = 500, region 3 x = 900.

BASE = {1: cents(200, 600, 100), 2: cents(200, 600, 400), 3: cents(200, 600, 800)}
SOURCE = {1: cents(300, 700, 150), 2: cents(300, 700, 500), 3: cents(300, 700, 900)}

# left_boundary, intervening on left: label = (x_s >= lo_s) and (x_b <= hi_b).
#   left_s:      region 1: 150 >= 300 F;  region 2: 500 >= 300 T;  region 3: 900 >= 300 T.
#   x_b <= 600:  region 1: 100 T;         region 2: 400 T;         region 3: 800 F.
LEFT_BOUNDARY_CASES = [
    (1, 1, False),  # F and (100 <= 600)
    (1, 2, True),  # T and (100 <= 600): the source says "x >= lo", the base is below its hi
    (1, 3, True),  # T and (100 <= 600)
    (2, 1, False),  # F and (400 <= 600)
    (2, 2, True),  # T and (400 <= 600)
    # The original paper's table says No here; the causal model says yes:
    # left_s = 900 >= 300 = T, and x_b = 400 <= hi_b = 600, so the answer is T.
    (2, 3, True),
    (3, 1, False),  # F and (800 <= 600 = F)
    (3, 2, False),  # T and (800 <= 600 = F)
    (3, 3, False),  # T and (800 <= 600 = F)
]


@pytest.mark.parametrize(("base_region", "source_region", "label"), LEFT_BOUNDARY_CASES)
def test_left_boundary_counterfactual_matches_the_hand_computed_label(
    base_region: int, source_region: int, label: bool
) -> None:
    cm = CAUSAL_MODELS["left_boundary"]
    result = cm.counterfactual(BASE[base_region], SOURCE[source_region], intervene=["left"])
    assert result is label


def test_left_boundary_base_inside_with_source_above_its_bracket_is_yes() -> None:
    # The pair the original region table got wrong (it says No).
    # base: lo=200, hi=600, x=400 (inside); source: lo=100, hi=500, x=800 (above).
    # left_source = 800 >= 100 = True; answer = True and (400 <= 600) = True.
    base, source = cents(200, 600, 400), cents(100, 500, 800)
    assert CAUSAL_MODELS["left_boundary"].counterfactual(base, source, intervene=["left"]) is True


# left_and_right_boundary, intervening on left: label = (x_s >= lo_s) and (x_b <= hi_b), the
# same as left_boundary. Intervening on right: label = (x_b >= lo_b) and (x_s <= hi_s).
#   x_b >= 200:  region 1: 100 F;  region 2: 400 T;  region 3: 800 T.
#   right_s:     region 1: 150 <= 700 T;  region 2: 500 <= 700 T;  region 3: 900 <= 700 F.
RIGHT_CASES = [
    (1, 1, False),  # (100 >= 200 = F) and T
    (1, 2, False),  # F and T
    (1, 3, False),  # F and F
    # The original paper's table says No here; the causal model says yes:
    # left_b = 400 >= 200 = T, right_s = 150 <= 700 = T (below a bracket is "<= hi").
    (2, 1, True),
    (2, 2, True),  # T and (500 <= 700 = T)
    (2, 3, False),  # T and (900 <= 700 = F)
    (3, 1, True),  # (800 >= 200 = T) and (150 <= 700 = T): the source overrides "x > hi"
    (3, 2, True),  # T and (500 <= 700 = T)
    (3, 3, False),  # T and (900 <= 700 = F)
]


@pytest.mark.parametrize(("base_region", "source_region", "label"), LEFT_BOUNDARY_CASES)
def test_left_and_right_boundary_left_counterfactual_matches_the_hand_computed_label(
    base_region: int, source_region: int, label: bool
) -> None:
    cm = CAUSAL_MODELS["left_and_right_boundary"]
    result = cm.counterfactual(BASE[base_region], SOURCE[source_region], intervene=["left"])
    assert result is label


@pytest.mark.parametrize(("base_region", "source_region", "label"), RIGHT_CASES)
def test_left_and_right_boundary_right_counterfactual_matches_the_hand_computed_label(
    base_region: int, source_region: int, label: bool
) -> None:
    cm = CAUSAL_MODELS["left_and_right_boundary"]
    result = cm.counterfactual(BASE[base_region], SOURCE[source_region], intervene=["right"])
    assert result is label


def test_right_variable_base_inside_with_source_below_its_bracket_is_yes() -> None:
    # The pair the original region table got wrong (it says No).
    # base: lo=200, hi=600, x=400 (inside); source: lo=300, hi=700, x=150 (below).
    # left_base = 400 >= 200 = True; right_source = 150 <= 700 = True; answer = True.
    base, source = cents(200, 600, 400), cents(300, 700, 150)
    cm = CAUSAL_MODELS["left_and_right_boundary"]
    assert cm.counterfactual(base, source, intervene=["right"]) is True


def test_intervening_on_left_and_right_together_takes_both_from_the_source() -> None:
    # left_s = 500 >= 300 = T, right_s = 500 <= 700 = T; the base's x = 800 no longer matters.
    cm = CAUSAL_MODELS["left_and_right_boundary"]
    assert cm.counterfactual(BASE[3], SOURCE[2], intervene=["left", "right"]) is True
    # left_s = 150 >= 300 = F.
    assert cm.counterfactual(BASE[2], SOURCE[1], intervene=["left", "right"]) is False


# midpoint_distance, intervening on mid: label = |x_b - mid_s| <= (hi_b - lo_b) / 2.
MIDPOINT_CASES: list[tuple[dict[str, int], dict[str, int], bool]] = [
    # mid_s = (300 + 700) / 2 = 500; |400 - 500| = 100 <= (600 - 200) / 2 = 200.
    (cents(200, 600, 400), cents(300, 700, 150), True),
    # mid_s = (700 + 990) / 2 = 845; |400 - 845| = 445 > 200.
    (cents(200, 600, 400), cents(700, 990, 800), False),
    # x_b = 100 is below its own bracket, but mid_s = (100 + 400) / 2 = 250; |100 - 250| = 150
    # <= 200.
    (cents(200, 600, 100), cents(100, 400, 999), True),
    # mid_s = 500; |800 - 500| = 300 > 200 (the base's own width decides the tolerance).
    (cents(200, 600, 800), cents(300, 700, 500), False),
    # A wide base: (900 - 100) / 2 = 400; mid_s = 500; |800 - 500| = 300 <= 400.
    (cents(100, 900, 800), cents(300, 700, 1), True),
    # Exact boundary on half-cents: mid_s = (101 + 400) / 2 = 250.5 and the half width is
    # (501 - 200) / 2 = 150.5; |401 - 250.5| = 150.5 <= 150.5.
    (cents(200, 501, 401), cents(101, 400, 5), True),
    # One cent further: |402 - 250.5| = 151.5 > 150.5.
    (cents(200, 501, 402), cents(101, 400, 5), False),
    # The lower edge: |100 - 250.5| = 150.5 <= 150.5, and |99 - 250.5| = 151.5 > 150.5.
    (cents(200, 501, 100), cents(101, 400, 5), True),
    (cents(200, 501, 99), cents(101, 400, 5), False),
]


@pytest.mark.parametrize(("base", "source", "label"), MIDPOINT_CASES)
def test_midpoint_counterfactual_matches_the_hand_computed_label(
    base: dict[str, int], source: dict[str, int], label: bool
) -> None:
    cm = CAUSAL_MODELS["midpoint_distance"]
    assert cm.counterfactual(base, source, intervene=["mid"]) is label


def test_midpoint_is_kept_in_exact_half_cents() -> None:
    values = CAUSAL_MODELS["midpoint_distance"].run(cents(101, 400, 5))
    assert values["mid"] == 250.5


# bracket_identity, intervening on bracket: label = lo_s <= x_b <= hi_s.
BRACKET_CASES: list[tuple[dict[str, int], dict[str, int], bool]] = [
    (cents(500, 900, 300), cents(250, 700, 999), True),  # 250 <= 300 <= 700
    (cents(100, 900, 300), cents(350, 800, 400), False),  # 300 < 350
    (cents(100, 200, 800), cents(350, 800, 1), True),  # 800 <= 800: the upper edge is inside
    (cents(100, 200, 801), cents(350, 800, 1), False),  # 801 > 800
    (cents(100, 200, 350), cents(350, 800, 1), True),  # 350 >= 350: the lower edge is inside
    (cents(100, 900, 349), cents(350, 800, 1), False),  # 349 < 350, although inside the base
]


@pytest.mark.parametrize(("base", "source", "label"), BRACKET_CASES)
def test_bracket_identity_counterfactual_matches_the_hand_computed_label(
    base: dict[str, int], source: dict[str, int], label: bool
) -> None:
    cm = CAUSAL_MODELS["bracket_identity"]
    assert cm.counterfactual(base, source, intervene=["bracket"]) is label


@given(
    base=st.tuples(brackets, st.integers(1, 999)),
    source=st.tuples(brackets, st.integers(1, 999)),
)
@settings(max_examples=200, deadline=None)
def test_every_price_tagging_counterfactual_matches_its_closed_form(
    base: tuple[tuple[int, int], int], source: tuple[tuple[int, int], int]
) -> None:
    (lo_b, hi_b), x_b = base
    (lo_s, hi_s), x_s = source
    b, s = cents(lo_b, hi_b, x_b), cents(lo_s, hi_s, x_s)
    expected: dict[tuple[str, str], Any] = {
        ("left_boundary", "left"): x_s >= lo_s and x_b <= hi_b,
        ("left_and_right_boundary", "left"): x_s >= lo_s and x_b <= hi_b,
        ("left_and_right_boundary", "right"): x_b >= lo_b and x_s <= hi_s,
        # compare doubled values so the closed form stays in integers
        ("midpoint_distance", "mid"): abs(2 * x_b - (lo_s + hi_s)) <= hi_b - lo_b,
        ("bracket_identity", "bracket"): lo_s <= x_b <= hi_s,
    }
    for (name, variable), label in expected.items():
        got = CAUSAL_MODELS[name].counterfactual(b, s, intervene=[variable])
        assert bool(got) == label, (name, variable, b, s)


def test_inputs_written_as_one_string_are_refused() -> None:
    # "declared: ,, answer, h, i, l, left, o, x ... Did you mean 'o'?"
    with pytest.raises(InvalidArgument, match=r"inputs='lo,hi,x' must be a list of names, such"):
        CausalModel(
            name="one_string",
            inputs="lo,hi,x",  # type: ignore[arg-type]
            mechanisms={"answer": lambda lo, x: x >= lo},
            output="answer",
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("inputs", None, r"inputs=None must be a list of names"),
        ("mechanisms", None, r"mechanisms=None must map each variable's name to its function"),
        ("mechanisms", [("answer", min)], r"must map each variable's name to its function"),
    ],
)
def test_inputs_or_mechanisms_of_the_wrong_kind_are_one_clear_error(
    field: str, value: object, message: str
) -> None:
    # Both were a TypeError from iterating None ("'NoneType' object is not iterable").
    arguments: dict = {
        "name": "wrong_kind",
        "inputs": ("lo", "x"),
        "mechanisms": {"answer": lambda lo, x: x >= lo},
        "output": "answer",
    }
    arguments[field] = value
    with pytest.raises(InvalidArgument, match=message):
        CausalModel(**arguments)
