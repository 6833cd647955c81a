"""Named token positions, resolved on real tokenizations, and sites bound to real model classes."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from das_assert.embedded.recipe import build_tokenizer
from das_assert.errors import InvalidArgument, SiteError
from das_assert.positions import FORMS, Position, check_distinct_positions, parse_position
from das_assert.sites import Site, parse_site
from das_assert.tasks.phrasings import HELD_OUT_PREFIXES, TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, RenderedPrompt

EXAMPLE = {"lo": 130, "hi": 855, "x": 789}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


def tokenize(tokenizer: Any, prompt: RenderedPrompt) -> tuple[list[str], list[tuple[int, int]]]:
    encoded = tokenizer(prompt.text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    return tokens, [tuple(pair) for pair in encoded["offset_mapping"]]


def resolve(tokenizer: Any, prompt: RenderedPrompt, name: str) -> tuple[int, str]:
    tokens, offsets = tokenize(tokenizer, prompt)
    index = parse_position(name).resolve(offsets, prompt.spans, prompt.text)
    return index, tokens[index]


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "anchor", "edge", "offset"),
    [
        ("last", "last", "last", 0),
        ("last-3", "last", "last", -3),
        ("amount.last", "amount", "last", 0),
        ("amount.first", "amount", "first", 0),
        ("low.first", "low", "first", 0),
        ("after:amount", "amount", "last", 1),
        ("before:amount", "amount", "first", -1),
        ("after:amount+2", "amount", "last", 3),
        ("before:amount-2", "amount", "first", -3),
        ("after:high-1", "high", "last", 0),
    ],
)
def test_parse_position_reads_every_form(name: str, anchor: str, edge: str, offset: int) -> None:
    assert parse_position(name) == Position(name, anchor, edge, offset)
    assert str(parse_position(name)) == name


def test_parse_position_strips_surrounding_spaces() -> None:
    assert parse_position("  amount.last ").name == "amount.last"


def test_parse_position_passes_a_position_through() -> None:
    position = parse_position("after:amount")
    assert parse_position(position) is position


@pytest.mark.parametrize("name", ["amount", "first", "last+1", "amount.middle", "after amount", ""])
def test_an_unparsable_position_lists_the_forms(name: str) -> None:
    with pytest.raises(InvalidArgument, match="cannot parse position") as info:
        parse_position(name)
    assert FORMS in str(info.value)
    assert "last-K" in str(info.value)
    assert "after:SLOT+K" in str(info.value)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("lats", "last"),
        ("amount.lst", "amount.last"),
        ("befor:amount", "before:amount"),  # the control site: was offered after:amount
    ],
)
def test_a_misspelt_position_gets_a_suggestion(typo: str, meant: str) -> None:
    with pytest.raises(InvalidArgument, match=f"Did you mean '{meant}'"):
        parse_position(typo)


@pytest.mark.parametrize(
    ("first", "second"),
    [("last", "last-0"), ("amount.last", "after:amount-1"), ("amount.first", "before:amount+1")],
)
def test_two_names_of_one_token_are_refused(first: str, second: str) -> None:
    # a search grid trained the cell of each name: the same token twice
    with pytest.raises(InvalidArgument, match=f"'{first}' and '{re.escape(second)}' name the same"):
        check_distinct_positions([first, "low.last", second], "positions")


def test_names_of_different_tokens_pass_as_distinct() -> None:
    check_distinct_positions(["last", "last-1", "amount.last", "after:amount", "amount.first"])


def test_a_position_that_is_not_a_string_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"not 3\.0"):
        parse_position(3.0)  # type: ignore[arg-type]


# -- resolving on the embedded tokenizer --------------------------------------------------------


def test_the_amount_is_tokenized_digit_by_digit_and_followed_by_dollars(tokenizer: Any) -> None:
    tokens, _ = tokenize(tokenizer, PriceFormat().render(EXAMPLE))
    start = tokens.index("7", len(tokens) - 15)
    assert tokens[start : start + 5] == ["7", ".", "8", "9", "dollars"]


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("amount.last", "9"),
        ("amount.first", "7"),
        ("after:amount", "dollars"),
        ("before:amount", "\n"),
        ("after:amount+1", "\n"),
        ("last", "\n"),
        ("last-1", ":"),
        ("last-2", "Response"),
        ("low.first", "1"),
        ("low.last", "0"),
        ("high.first", "8"),
        ("high.last", "5"),
        ("instruction.first", "Please"),
        ("instruction.last", "."),
    ],
)
def test_named_positions_land_on_the_right_token(tokenizer: Any, name: str, token: str) -> None:
    _, found = resolve(tokenizer, PriceFormat().render(EXAMPLE), name)
    assert found == token


def test_offsets_of_amount_last_and_after_amount_are_adjacent(tokenizer: Any) -> None:
    prompt = PriceFormat().render(EXAMPLE)
    last, _ = resolve(tokenizer, prompt, "amount.last")
    after, _ = resolve(tokenizer, prompt, "after:amount")
    before, _ = resolve(tokenizer, prompt, "before:amount")
    first, _ = resolve(tokenizer, prompt, "amount.first")
    assert after == last + 1
    assert before == first - 1
    assert last - first == 3  # '7', '.', '8', '9'


def test_last_is_the_final_prompt_token(tokenizer: Any) -> None:
    prompt = PriceFormat().render(EXAMPLE)
    tokens, _ = tokenize(tokenizer, prompt)
    index, _ = resolve(tokenizer, prompt, "last")
    assert index == len(tokens) - 1


@pytest.mark.parametrize("prefix", [*TRAIN_PREFIXES[:3], *HELD_OUT_PREFIXES[:2]])
@pytest.mark.parametrize("name", ["amount.last", "after:amount", "low.first", "last"])
def test_a_prefix_shifts_positions_by_exactly_its_token_count(
    tokenizer: Any, prefix: str, name: str
) -> None:
    plain = PriceFormat().render(EXAMPLE)
    prefixed = PriceFormat(prefix=prefix).render(EXAMPLE)
    shift = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    assert shift > 0
    index, token = resolve(tokenizer, plain, name)
    shifted_index, shifted_token = resolve(tokenizer, prefixed, name)
    assert shifted_index == index + shift
    assert shifted_token == token


def test_a_prefix_slot_resolves_on_the_prefix_tokens(tokenizer: Any) -> None:
    prompt = PriceFormat(prefix="Good morning!").render(EXAMPLE)
    assert resolve(tokenizer, prompt, "prefix.first")[1] == "Good"
    assert resolve(tokenizer, prompt, "prefix.last")[1] == "!"
    assert resolve(tokenizer, prompt, "after:prefix")[1] == "Please"


def test_a_slot_missing_from_the_prompt_is_an_error_naming_the_slots(tokenizer: Any) -> None:
    prompt = PriceFormat().render(EXAMPLE)
    with pytest.raises(InvalidArgument, match="slot 'prefix', which this prompt does not have"):
        resolve(tokenizer, prompt, "prefix.first")


def test_a_misspelt_slot_gets_a_did_you_mean(tokenizer: Any) -> None:
    prompt = PriceFormat().render(EXAMPLE)
    with pytest.raises(InvalidArgument, match=re.escape("Did you mean 'amount'?")):
        resolve(tokenizer, prompt, "amout.last")


def test_a_position_outside_the_prompt_is_an_error(tokenizer: Any) -> None:
    prompt = PriceFormat().render(EXAMPLE)
    with pytest.raises(InvalidArgument, match="outside this prompt of"):
        resolve(tokenizer, prompt, "last-1000")
    with pytest.raises(InvalidArgument, match="outside this prompt"):
        resolve(tokenizer, prompt, "after:amount+500")


def test_an_empty_slot_covers_no_token_and_is_an_error() -> None:
    offsets = [(0, 0), (0, 3), (4, 7)]
    with pytest.raises(InvalidArgument, match="covers no token"):
        parse_position("gap.first").resolve(offsets, {"gap": (3, 4)})


def test_special_tokens_with_empty_offsets_are_never_part_of_a_slot() -> None:
    # The BOS token has offsets (0, 0); a slot starting at character 0 begins at token 1.
    offsets = [(0, 0), (0, 3), (4, 7)]
    assert parse_position("word.first").resolve(offsets, {"word": (0, 3)}) == 1
    assert parse_position("before:word").resolve(offsets, {"word": (0, 3)}) == 0


# -- sites --------------------------------------------------------------------------------------


def test_a_site_prints_in_canonical_form() -> None:
    assert str(Site(1)) == "block_output[layer=1, pos=last]"
    assert str(Site(0, "after:amount+2", "block_input")) == (
        "block_input[layer=0, pos=after:amount+2]"
    )


@pytest.mark.parametrize(
    "text",
    [
        "block_output[layer=1, pos=last]",
        "block_input[layer=0, pos=amount.last]",
        "block_output[layer=-1, pos=after:amount+2]",
        "block_output[layer=2, pos=last-3]",
    ],
)
def test_parse_site_round_trips_the_canonical_form(text: str) -> None:
    site = parse_site(text)
    assert str(site) == text
    assert parse_site(str(site)) == site


def test_parse_site_accepts_missing_spaces() -> None:
    assert parse_site("block_output[layer=2,pos=amount.last]") == Site(2, "amount.last")


def test_an_unparsable_site_shows_the_canonical_form() -> None:
    with pytest.raises(InvalidArgument, match=r"COMPONENT\[layer=L, pos=NAME\]"):
        parse_site("block_output layer 1")


def test_a_site_with_an_unparsable_position_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="cannot parse position"):
        Site(1, "amount")


def test_an_unknown_component_gets_a_did_you_mean() -> None:
    with pytest.raises(InvalidArgument, match="unknown component 'block_ouput'") as info:
        Site(1, component="block_ouput")
    assert "Did you mean 'block_output'?" in str(info.value)


@pytest.mark.parametrize(
    "component",
    ["mlp_output", "attention_output", "head_attention_value_output", "head_query_output"],
)
def test_a_pyvene_component_inside_a_block_is_said_to_be_unsupported(component: str) -> None:
    # mlp_output was answered "Did you mean 'block_output'?", a site it is not
    with pytest.raises(InvalidArgument) as info:
        parse_site(f"{component}[layer=1, pos=last]")
    assert str(info.value).startswith(
        f"component {component!r} is not supported: das_assert intervenes on the residual stream "
        "only, a block's output or input (block_output, block_input)"
    )
    assert "Did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("index", "advice"),
    [
        (-1, "write 'last' (counted from the prompt's last token)"),
        ("-3", "write 'last-2' (counted from the prompt's last token)"),
        (80, "name the token instead: the last of a slot ('amount.last', 'high.last')"),
    ],
)
def test_a_pyvene_token_index_is_answered_with_the_name_to_write(
    index: int | str, advice: str
) -> None:
    # a position of pyvene's unit_locations (-1, 80) was "a name such as 'last'", and "-1" was
    # "cannot parse position"
    with pytest.raises(InvalidArgument) as info:
        Site(1, index)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"position {index} is a token index")
    assert advice in str(info.value)


@pytest.mark.parametrize("layer", [1.0, "1", True])
def test_a_layer_that_is_not_an_integer_is_rejected(layer: Any) -> None:
    with pytest.raises(InvalidArgument, match="layer must be an integer"):
        Site(layer)


def test_site_at_changes_one_field() -> None:
    site = Site(1, "amount.last")
    assert site.at(layer=2) == Site(2, "amount.last")
    assert site.at(component="block_input").component == "block_input"
    assert site.parsed_position == parse_position("amount.last")


BLOCK_LISTS = {
    "llama": ("model.layers", lambda m: m.model.layers),
    "gpt2": ("transformer.h", lambda m: m.transformer.h),
    "gpt_neox": ("gpt_neox.layers", lambda m: m.gpt_neox.layers),
}


@pytest.mark.parametrize("arch", sorted(BLOCK_LISTS))
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_site_resolves_to_the_decoder_block_of_each_architecture(
    tiny_models: dict[str, Any], arch: str, layer: int
) -> None:
    model = tiny_models[arch].model
    path, blocks = BLOCK_LISTS[arch]
    resolved = Site(layer).resolve(model)
    assert resolved.module_path == f"{path}.{layer}"
    assert resolved.module is blocks(model)[layer]
    assert resolved.layer == layer
    assert resolved.kind == "output"
    assert Site(layer, component="block_input").resolve(model).kind == "input"


@pytest.mark.parametrize("arch", sorted(BLOCK_LISTS))
def test_a_negative_layer_counts_from_the_end(tiny_models: dict[str, Any], arch: str) -> None:
    model = tiny_models[arch].model
    path, blocks = BLOCK_LISTS[arch]
    resolved = Site(-1).resolve(model)
    assert resolved.layer == 2
    assert resolved.module_path == f"{path}.2"
    assert resolved.module is blocks(model)[2]
    assert Site(-3).resolve(model).layer == 0


@pytest.mark.parametrize("layer", [3, 10, -4])
def test_a_layer_out_of_range_names_the_valid_range(tiny_llama: Any, layer: int) -> None:
    with pytest.raises(InvalidArgument, match=f"layer={layer} is out of range") as info:
        Site(layer).resolve(tiny_llama.model)
    assert "3 layers: 0..2" in str(info.value)
    assert "negative indices count from the end" in str(info.value)


def test_an_unknown_model_type_is_an_error_that_says_how_to_add_one() -> None:
    model = SimpleNamespace(config=SimpleNamespace(model_type="bert"))
    with pytest.raises(InvalidArgument, match="model_type 'bert'") as info:
        Site(0).resolve(model)
    assert "from das_assert.sites import BLOCK_PATHS" in str(info.value)
    assert "llama" in str(info.value)


def _offsets(prompt: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Character spans of ``pieces``, a tokenization of ``prompt`` written out."""
    spans, at = [], 0
    for piece in pieces:
        assert prompt.startswith(piece, at)
        spans.append((at, at + len(piece)))
        at += len(piece)
    return spans


SHARED = "It costs 9.23. Answer:"  # the amount is characters 9..13
SHARED_SPANS = {"amount": (9, 13)}


@pytest.mark.parametrize(
    ("pieces", "name", "token"),
    [
        (["It", " costs", " 9.", "2", "3.", " Answer", ":"], "amount.last", "'3.'"),
        (["It", " costs", " 9.", "2", "3.", " Answer", ":"], "after:amount", "'3.'"),
        (["It", " cost", "s 9.", "23", ".", " Answer", ":"], "amount.first", "'s 9.'"),
        (["It", " cost", "s 9.", "23", ".", " Answer", ":"], "before:amount", "'s 9.'"),
    ],
)
def test_a_slot_whose_edge_token_holds_its_neighbours_text_is_refused(
    pieces: list[str], name: str, token: str
) -> None:
    # A SentencePiece tokenizer without split digits wrote the amount's last digit and the '.'
    # after it as one token: amount.last was that token and after:amount skipped the '.',
    # silently, and `check` showed them.
    with pytest.raises(SiteError, match=rf"the (first|last) token of slot 'amount' is {token}"):
        parse_position(name).resolve(_offsets(SHARED, pieces), SHARED_SPANS, SHARED)


def test_whitespace_beside_a_slot_in_its_edge_token_is_its_own_token() -> None:
    # GPT-2 writes " 9" with its space, SentencePiece "▁9": the slot's token all the same.
    offsets = _offsets(SHARED, ["It", " costs", " 9", ".", "23", ".", " Answer", ":"])
    assert parse_position("amount.first").resolve(offsets, SHARED_SPANS, SHARED) == 2
    assert parse_position("amount.last").resolve(offsets, SHARED_SPANS, SHARED) == 4
    assert parse_position("after:amount").resolve(offsets, SHARED_SPANS, SHARED) == 5
