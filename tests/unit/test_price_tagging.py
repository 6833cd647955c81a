"""The price-tagging task: the number sampler, counterfactual pairs, and the prompt format."""

from __future__ import annotations

import random
import re

import pytest

from das_assert.errors import InvalidArgument
from das_assert.strategies import PromptVariant
from das_assert.tasks.price_tagging import (
    CAUSAL_MODELS,
    INTERVENED_VARIABLES,
    CounterfactualPair,
    PriceFormat,
    causal_model,
    make_pairs,
    prompt_pairs,
    sample_inputs,
    unchanged_rate,
)

EXAMPLE = {"lo": 130, "hi": 855, "x": 789}

EXPECTED_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n"
    "\n"
    "### Instruction:\n"
    "Please say yes only if it costs between 1.30 and 8.55 dollars, otherwise no.\n"
    "\n"
    "### Input:\n"
    "7.89 dollars\n"
    "\n"
    "### Response:\n"
)


def closed_form_label(pair: CounterfactualPair, model_name: str) -> bool:
    """The counterfactual label, written from the hypotheses' definitions (not the CausalModel)."""
    b, s = pair.base, pair.source
    if model_name == "left_boundary" or (
        model_name == "left_and_right_boundary" and pair.variable == "left"
    ):
        return s["x"] >= s["lo"] and b["x"] <= b["hi"]
    if model_name == "left_and_right_boundary":
        return b["x"] >= b["lo"] and s["x"] <= s["hi"]
    if model_name == "midpoint_distance":
        return abs(2 * b["x"] - (s["lo"] + s["hi"])) <= b["hi"] - b["lo"]
    return s["lo"] <= b["x"] <= s["hi"]


# -- the sampler --------------------------------------------------------------------------------


def test_the_sampler_draws_brackets_of_width_250_to_750_cents_inside_the_range() -> None:
    rng = random.Random(0)
    for _ in range(5000):
        example = sample_inputs(rng)
        lo, hi, x = example["lo"], example["hi"], example["x"]
        assert all(isinstance(v, int) for v in example.values())
        assert 250 <= hi - lo <= 750
        assert 5 <= lo
        assert hi <= 995
        assert 1 <= x <= 999


def test_the_sampler_covers_both_ends_of_the_width_range() -> None:
    rng = random.Random(1)
    widths = [(e["hi"] - e["lo"]) for e in (sample_inputs(rng) for _ in range(5000))]
    assert min(widths) < 260
    assert max(widths) > 740


def test_a_fixed_bracket_is_kept_and_only_the_amount_is_drawn() -> None:
    rng = random.Random(0)
    examples = [sample_inputs(rng, bracket=(130, 855)) for _ in range(500)]
    assert all(e["lo"] == 130 and e["hi"] == 855 for e in examples)
    assert all(1 <= e["x"] <= 999 for e in examples)
    assert len({e["x"] for e in examples}) > 300


def test_the_sampler_is_deterministic_given_the_rng_seed() -> None:
    first = [sample_inputs(random.Random(7)) for _ in range(3)]
    second = [sample_inputs(random.Random(7)) for _ in range(3)]
    assert first == second


# -- counterfactual pairs -----------------------------------------------------------------------


@pytest.mark.parametrize("model_name", sorted(CAUSAL_MODELS))
def test_make_pairs_is_balanced_to_exactly_half_true_labels(model_name: str) -> None:
    pairs = make_pairs(model_name, 200, seed=3)
    assert len(pairs) == 200
    assert sum(p.label for p in pairs) == 100


def test_an_odd_number_of_pairs_has_one_more_true_label() -> None:
    pairs = make_pairs("left_boundary", 9, seed=0)
    assert sum(p.label for p in pairs) == 5


def test_fewer_than_two_pairs_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="n=1 pairs is too few"):
        make_pairs("left_boundary", 1, seed=0)


@pytest.mark.parametrize("model_name", sorted(CAUSAL_MODELS))
def test_every_pair_label_equals_the_recomputed_counterfactual(model_name: str) -> None:
    variables = INTERVENED_VARIABLES[model_name]
    for pair in make_pairs(model_name, 300, seed=11):
        assert pair.variable in variables
        assert pair.variable_index == variables.index(pair.variable)
        assert pair.label == closed_form_label(pair, model_name), pair
        b, s = pair.base, pair.source
        assert pair.base_label == (b["lo"] <= b["x"] <= b["hi"])
        assert pair.source_label == (s["lo"] <= s["x"] <= s["hi"])


def test_left_and_right_boundary_pairs_use_both_variables() -> None:
    pairs = make_pairs("left_and_right_boundary", 200, seed=0)
    counts = {v: sum(p.variable == v for p in pairs) for v in ("left", "right")}
    assert counts["left"] > 50
    assert counts["right"] > 50


def test_restricting_the_variables_draws_only_those() -> None:
    pairs = make_pairs("left_and_right_boundary", 40, seed=0, variables=["right"])
    assert {p.variable for p in pairs} == {"right"}
    assert {p.variable_index for p in pairs} == {1}


def test_restricting_to_an_unknown_variable_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("Did you mean 'right'?")):
        make_pairs("left_and_right_boundary", 4, seed=0, variables=["rigth"])


def test_make_pairs_is_deterministic_by_seed() -> None:
    assert make_pairs("midpoint_distance", 50, seed=5) == make_pairs(
        "midpoint_distance", 50, seed=5
    )
    assert make_pairs("midpoint_distance", 50, seed=5) != make_pairs(
        "midpoint_distance", 50, seed=6
    )


def test_pairs_with_a_fixed_bracket_keep_it_in_base_and_source() -> None:
    pairs = make_pairs("left_boundary", 50, seed=0, bracket=(300, 700))
    for pair in pairs:
        assert (pair.base["lo"], pair.base["hi"]) == (300, 700)
        assert (pair.source["lo"], pair.source["hi"]) == (300, 700)
    assert sum(p.label for p in pairs) == 25


def test_a_label_that_cannot_occur_is_reported_instead_of_looping() -> None:
    # With the bracket [1, 999] every amount is inside it: left is always true and x <= hi
    # always holds, so a False counterfactual label never occurs. The bracket is given in the
    # dollars the command line takes too (it was cents alone), with the fix.
    with pytest.raises(
        InvalidArgument,
        match=r"could not draw 4 label-balanced pairs for left_boundary: 2 drawn in 800 tries, "
        r"too few labelled False; under bracket=\(1, 999\) cents \(0\.01-9\.99 dollars\) that "
        r"label is \(nearly\) impossible; fix a bracket with amounts on both sides of it",
    ):
        make_pairs("left_boundary", 4, seed=0, bracket=(1, 999))


def test_a_label_that_an_edit_hook_rules_out_is_blamed_on_the_hook() -> None:
    # it said "with bracket=None", where the user's edit= put every amount in its bracket
    def inside(inputs: dict[str, int], rng: object, role: str) -> dict[str, int]:
        return {**inputs, "x": (inputs["lo"] + inputs["hi"]) // 2}

    with pytest.raises(InvalidArgument, match=r"too few labelled False; under the edit= hook's"):
        make_pairs("left_boundary", 4, seed=0, edit=inside)


def test_an_unknown_causal_model_gets_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("Did you mean 'left_boundary'?")):
        causal_model("left_boundry")


def test_the_unchanged_label_rate_is_plausible_for_left_boundary() -> None:
    pairs = make_pairs("left_boundary", 1000, seed=0)
    rate = unchanged_rate(pairs)
    assert rate == sum(p.label == p.base_label for p in pairs) / 1000
    assert 0.5 < rate < 0.8


def test_prompt_pairs_report_the_same_unchanged_rate_through_their_answer_words() -> None:
    pairs = make_pairs("left_boundary", 100, seed=2)
    prompts = prompt_pairs("left_boundary", 100, seed=2)
    from_words = sum(p.expected == p.base_expected for p in prompts) / len(prompts)
    assert from_words == unchanged_rate(pairs)


def test_prompt_pairs_render_the_pairs_in_order_with_their_answers() -> None:
    fmt = PriceFormat(answers=("True", "False"))
    pairs = make_pairs("left_and_right_boundary", 20, seed=4)
    prompts = prompt_pairs("left_and_right_boundary", 20, seed=4, fmt=fmt)
    for pair, prompt in zip(pairs, prompts, strict=True):
        assert prompt.base.text == fmt.render(pair.base).text
        assert prompt.source.text == fmt.render(pair.source).text
        assert prompt.expected == ("True" if pair.label else "False")
        assert prompt.base_expected == ("True" if pair.base_label else "False")
        assert prompt.source_expected == ("True" if pair.source_label else "False")
        assert prompt.variable_index == pair.variable_index
        assert prompt.inputs == {
            "base": pair.base,
            "source": pair.source,
            "variable": pair.variable,
        }


# -- the prompt format --------------------------------------------------------------------------


def test_render_writes_the_exact_alpaca_prompt() -> None:
    assert PriceFormat().render(EXAMPLE).text == EXPECTED_PROMPT


def test_render_spans_point_at_the_numbers_and_the_instruction() -> None:
    rendered = PriceFormat().render(EXAMPLE)
    text, spans = rendered.text, rendered.spans

    def at(slot: str) -> str:
        start, end = spans[slot]
        return text[start:end]

    assert at("low") == "1.30"
    assert at("high") == "8.55"
    assert at("amount") == "7.89"
    assert at("instruction") == (
        "Please say yes only if it costs between 1.30 and 8.55 dollars, otherwise no."
    )
    assert set(spans) == {"low", "high", "amount", "instruction"}


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [("Good morning!", ""), ("", "Read carefully."), ("Pricing tag game!", "Thanks.")],
)
def test_render_spans_follow_a_prefix_and_a_suffix(prefix: str, suffix: str) -> None:
    fmt = PriceFormat(prefix=prefix, suffix=suffix)
    rendered = fmt.render(EXAMPLE)
    text, spans = rendered.text, rendered.spans

    def at(slot: str) -> str:
        start, end = spans[slot]
        return text[start:end]

    instruction = "Please say yes only if it costs between 1.30 and 8.55 dollars, otherwise no."
    assert at("low") == "1.30"
    assert at("high") == "8.55"
    assert at("amount") == "7.89"
    assert at("instruction") == instruction
    expected_line = " ".join(part for part in (prefix, instruction, suffix) if part)
    assert f"### Instruction:\n{expected_line}\n\n### Input:\n7.89 dollars\n" in text
    if prefix:
        assert at("prefix") == prefix
    else:
        assert "prefix" not in spans
    if suffix:
        assert at("suffix") == suffix
    else:
        assert "suffix" not in spans


def test_true_false_answers_are_written_as_given() -> None:
    fmt = PriceFormat(answers=("True", "False"))
    text = fmt.render(EXAMPLE).text
    instruction = "Please say True only if it costs between 1.30 and 8.55 dollars, otherwise False."
    assert instruction in text
    assert fmt.answer(True) == "True"
    assert fmt.answer(False) == "False"


def test_default_answers_are_capitalized_but_lower_case_inside_the_instruction() -> None:
    fmt = PriceFormat()
    assert fmt.answer(True) == "Yes"
    assert fmt.answer(False) == "No"
    assert "say yes only" in fmt.render(EXAMPLE).text


def test_the_dollar_number_style_puts_a_dollar_sign_before_every_number() -> None:
    rendered = PriceFormat(numbers="dollar").render(EXAMPLE)
    assert "between $1.30 and $8.55 dollars" in rendered.text
    assert "### Input:\n$7.89 dollars\n" in rendered.text
    start, end = rendered.spans["amount"]
    assert rendered.text[start:end] == "$7.89"


def test_the_one_decimal_number_style_rounds_to_ten_cents() -> None:
    rendered = PriceFormat(numbers="one_decimal").render({"lo": 130, "hi": 861, "x": 789})
    assert "between 1.3 and 8.6 dollars" in rendered.text
    assert "### Input:\n7.9 dollars\n" in rendered.text
    start, end = rendered.spans["high"]
    assert rendered.text[start:end] == "8.6"


@pytest.mark.parametrize("bracket", [(125, 495), (5, 400), (100, 999)])
def test_a_fixed_bracket_one_decimal_numbers_cannot_write_is_refused(bracket) -> None:
    # 1.25-4.95 ran as 1.2-5.0 (half to even) while the report recorded 1.25-4.95
    from das_assert import Experiment

    site = "block_output[layer=0, pos=last]"
    one_decimal = PriceFormat(numbers="one_decimal")
    with pytest.raises(InvalidArgument, match=r"cannot be written with one-decimal numbers"):
        Experiment(hypothesis="left_boundary", site=site, fmt=one_decimal, bracket=bracket)
    plain = Experiment(hypothesis="left_boundary", site=site, bracket=bracket)
    with pytest.raises(InvalidArgument, match=r"its prompts would say"):
        plain.pairs(10, 0, one_decimal)
    with pytest.raises(InvalidArgument, match=r"fmt='one_decimal': a PriceFormat"):
        plain.pairs(10, 0, "one_decimal")  # not an AttributeError from the bracket's check
    writable = Experiment(
        hypothesis="left_boundary", site=site, fmt=one_decimal, bracket=(120, 500)
    )
    assert "between 1.2 and 5.0 dollars" in writable.pairs(2, 0)[0].base.text


def test_amounts_below_a_dollar_keep_a_leading_zero_and_two_decimals() -> None:
    rendered = PriceFormat().render({"lo": 5, "hi": 300, "x": 7})
    assert "between 0.05 and 3.00 dollars" in rendered.text
    assert "### Input:\n0.07 dollars\n" in rendered.text


def test_with_returns_a_changed_copy() -> None:
    fmt = PriceFormat()
    changed = fmt.with_(prefix="Good morning!")
    assert changed.prefix == "Good morning!"
    assert fmt.prefix == ""


def test_an_instruction_without_a_low_slot_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="has no \\{low\\} slot"):
        PriceFormat(instruction="Say {yes} if it is below {high} dollars, otherwise {no}.")


def test_an_instruction_with_an_unknown_slot_is_rejected_when_made() -> None:
    # found only when a prompt was written: a fuzz strategy's variant with {Yes} for {yes} was
    # a rejected draw, so the test passed without scoring one of its instructions
    with pytest.raises(InvalidArgument, match="unknown slot \\{currency\\}"):
        PriceFormat(instruction="Say {yes} between {low} and {high} {currency}, else {no}.")
    with pytest.raises(InvalidArgument, match=r"PromptVariant: .* unknown slot \{Yes\}"):
        PromptVariant(instruction="Say {Yes} only if between {low} and {high}, otherwise {No}.")


def test_a_bad_number_style_is_rejected_with_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match="numbers='dollars' is not one of") as info:
        PriceFormat(numbers="dollars")
    assert "Did you mean 'dollar'?" in str(info.value)


def test_a_template_without_an_amount_slot_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"\{amount\} not at all"):
        PriceFormat(template="### Instruction:\n{instruction}\n### Response:\n")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{amount} costs. {instruction}", r"needs \{instruction\} before \{amount\}"),
        ("{instruction} {instruction} {amount}", r"\{instruction\} twice"),
    ],
)
def test_a_template_must_read_the_instruction_then_the_amount_once(
    template: str, problem: str
) -> None:
    """Rendering splits at the first of each slot: a second one, or the amount first, would
    write a prompt whose spans point at the wrong text."""
    with pytest.raises(InvalidArgument, match=problem):
        PriceFormat(template=template)


def test_two_identical_answer_words_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match="two different words"):
        PriceFormat(answers=("Yes", "Yes"))


@pytest.mark.parametrize("hypothesis", sorted(CAUSAL_MODELS))
def test_one_decimal_prompts_are_labelled_by_the_numbers_they_show(hypothesis: str) -> None:
    # The labels once compared the hidden cents: "2.8 <= 2.8" was labelled outside the bracket.
    fmt = PriceFormat(numbers="one_decimal")
    model = causal_model(hypothesis)
    for pair in prompt_pairs(hypothesis, 400, seed=5, fmt=fmt):
        shown = {role: _read_back(getattr(pair, role).text) for role in ("base", "source")}
        assert shown["base"] == pair.inputs["base"]
        assert shown["source"] == pair.inputs["source"]
        variable = pair.inputs["variable"]
        label = model.counterfactual(shown["base"], shown["source"], intervene=[variable])
        assert fmt.answer(bool(label)) == pair.expected
        assert fmt.answer(bool(model.output_of(shown["base"]))) == pair.base_expected


def _read_back(text: str) -> dict[str, int]:
    """The cents a one-decimal prompt shows: its low, high and amount, read off the text."""
    bracket = re.search(r"between (\d+\.\d) and (\d+\.\d) dollars", text)
    amount = re.search(r"### Input:\n(\d+\.\d) dollars", text)
    assert bracket is not None, text
    assert amount is not None, text
    low, high = bracket.groups()
    return {"lo": _cents(low), "hi": _cents(high), "x": _cents(amount.group(1))}


def _cents(text: str) -> int:
    return round(float(text) * 100)


def test_answer_words_spaced_for_their_token_are_said_plainly_in_the_instruction() -> None:
    # answers=(" Yes", " No") make a byte-level BPE's answer tokens 'ĠYes' and 'ĠNo'; the
    # instruction read "Please say  Yes only if ... otherwise  No."
    spaced = prompt_pairs("left_boundary", 4, seed=0, fmt=PriceFormat(answers=(" Yes", " No")))
    plain = prompt_pairs("left_boundary", 4, seed=0)
    assert [p.base.text for p in spaced] == [p.base.text for p in plain]
    assert {p.expected for p in spaced} == {" Yes", " No"}
    with pytest.raises(InvalidArgument, match="a pair of words"):
        PriceFormat(answers=(" ", "No"))


def test_a_fuzz_variant_that_moves_no_amount_blames_its_bracket_not_a_hook() -> None:
    # every variant's pairs were drawn through its edit method, a no-op without amount_edge:
    # the message blamed an edit= hook the user never wrote
    from das_assert.experiment import Experiment
    from das_assert.sites import Site
    from das_assert.variants import variant_pairs

    experiment = Experiment(hypothesis="left_boundary", site=Site(0))
    with pytest.raises(
        InvalidArgument, match=r"too few labelled False; under bracket=\(0, 999\) cents \("
    ):
        variant_pairs(experiment, PromptVariant(bracket=(0, 999)), 20)
