"""One tokenization of a pair set serves every site position resolved on it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
import torch

from das_assert import experiment
from das_assert.data import encode, tokenize
from das_assert.experiment import Experiment
from das_assert.positions import parse_position
from das_assert.sharing import sharing
from das_assert.sites import parse_site
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

POSITIONS = ("last", "before:amount", "amount.last", "after:amount+1", "last-2")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_resolving_positions_on_one_tokenization_equals_encoding_for_each(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    pairs = prompt_pairs("left_boundary", 6, seed=1)
    pairs += prompt_pairs("left_boundary", 6, seed=2, fmt=PriceFormat(prefix=TRAIN_PREFIXES[1]))
    tokenized = tokenize(loaded, pairs)
    for name in POSITIONS:
        position = parse_position(name)
        once, alone = tokenized.at(position), encode(loaded, pairs, position)
        assert once.position == alone.position == name
        assert once.tokenized is tokenized
        for field in fields(alone):
            if field.name in ("pairs", "position", "tokenized"):
                continue
            assert torch.equal(getattr(once, field.name), getattr(alone, field.name)), field.name
        assert torch.equal(tokenized.source_positions(position), alone.source_position)


def test_a_claims_site_and_its_control_share_one_tokenization_in_a_block(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models["llama"]
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return tokenize(*args, **kwargs)

    monkeypatch.setattr(experiment, "tokenize", counting)
    claim = Experiment(
        hypothesis="left_boundary", site=parse_site("block_output[layer=1, pos=last]"), n_test=8
    )
    control = Experiment(
        hypothesis="left_boundary",
        site=parse_site("block_output[layer=1, pos=before:amount]"),
        n_test=8,
    )
    with sharing(prefix_stores=False):
        at_site = experiment._encoded(loaded, claim, "test")
        at_control = experiment._encoded(loaded, control, "test")
        assert experiment._encoded(loaded, claim, "test") is at_site
    assert len(calls) == 1
    assert at_site.base_ids is at_control.base_ids
    assert bool((at_control.base_position < at_site.base_position).all())
    experiment._encoded(loaded, claim, "test")  # outside a block: tokenized anew
    assert len(calls) == 2


def test_a_left_padding_tokenizer_encodes_as_a_right_padding_one(
    tiny_models: dict[str, Any],
) -> None:
    # A LoadedModel built by hand (a pytest_das_load_model hook) keeps its tokenizer's padding
    # side; positions counted from each row's start once landed inside left-padded prompts.
    loaded = tiny_models["llama"]
    pairs = prompt_pairs("left_boundary", 6, seed=1)
    pairs += prompt_pairs("left_boundary", 6, seed=2, fmt=PriceFormat(prefix=TRAIN_PREFIXES[1]))
    right = encode(loaded, pairs, parse_position("last"))
    assert right.base_mask.sum(dim=1).unique().numel() > 1  # the batch mixes lengths
    side = loaded.tokenizer.padding_side
    try:
        loaded.tokenizer.padding_side = "left"
        left = encode(loaded, pairs, parse_position("last"))
    finally:
        loaded.tokenizer.padding_side = side
    for field in fields(right):
        if field.name not in ("pairs", "position", "tokenized"):
            assert torch.equal(getattr(left, field.name), getattr(right, field.name)), field.name


def test_a_tokenizer_without_a_pad_token_encodes_as_one_with_it(
    tiny_models: dict[str, Any],
) -> None:
    # A LoadedModel built by hand with a Llama-3-style tokenizer (no pad token; load_model sets
    # one) failed with transformers' "Asking to pad but the tokenizer does not have a padding
    # token", not a das_assert error.
    import copy
    from dataclasses import replace

    loaded = tiny_models["llama"]
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.pad_token = None
    unpadded = replace(loaded, tokenizer=tokenizer, _answer_ids={})
    pairs = prompt_pairs("left_boundary", 6, seed=1)
    pairs += prompt_pairs("left_boundary", 6, seed=2, fmt=PriceFormat(prefix=TRAIN_PREFIXES[1]))
    with_pad = encode(loaded, pairs, parse_position("last"))
    without = encode(unpadded, pairs, parse_position("last"))
    for field in fields(with_pad):
        if field.name not in ("pairs", "position", "tokenized"):
            assert torch.equal(getattr(without, field.name), getattr(with_pad, field.name))


def test_a_pad_token_past_the_embedding_is_read_as_the_masked_padding_it_is(
    tiny_models: dict[str, Any],
) -> None:
    # a <pad> added to the tokenizer without resizing the embedding (a common fine-tune setup)
    # was refused as "the tokenizer is not this model's", though no real token is past it
    import copy
    from dataclasses import replace

    from das_assert.runner import answer_logits

    loaded = tiny_models["llama"]
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.add_special_tokens({"pad_token": "<added_pad>"})
    vocabulary = loaded.model.get_input_embeddings().num_embeddings
    assert tokenizer.pad_token_id >= vocabulary
    padded = replace(loaded, tokenizer=tokenizer, _answer_ids={})
    pairs = prompt_pairs("left_boundary", 6, seed=1)
    pairs += prompt_pairs("left_boundary", 6, seed=2, fmt=PriceFormat(prefix=TRAIN_PREFIXES[1]))
    got = encode(padded, pairs, parse_position("last"))
    want = encode(loaded, pairs, parse_position("last"))
    assert bool((got.base_mask == 0).any())  # the batch holds padding
    index = torch.arange(len(pairs))
    torch.testing.assert_close(
        answer_logits(padded.model, None, got, index),
        answer_logits(loaded.model, None, want, index),
    )


def test_a_prompt_too_long_for_the_model_gets_das_asserts_error_alone(
    tiny_llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers' "Token indices sequence length is longer than the specified maximum" came
    # first, counting the tokens without the BOS token (258 against the error's 259)
    import logging

    from das_assert.errors import InvalidArgument

    positions = tiny_llama.model.config.max_position_embeddings
    # as the embedded model's tokenizer says; and transformers warns once per tokenizer
    monkeypatch.setattr(tiny_llama.tokenizer, "model_max_length", positions)
    monkeypatch.setattr(tiny_llama.tokenizer, "deprecation_warnings", {})
    long = PriceFormat(prefix=" ".join(["Good morning!"] * positions))
    pairs = prompt_pairs("left_boundary", 2, seed=1, fmt=long)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")  # its own handler, not the root's: no caplog
    logger.addHandler(handler)
    try:
        with pytest.raises(InvalidArgument, match=rf"longer than the {positions} positions"):
            tokenize(tiny_llama, pairs)
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "sequence length" in r.getMessage()]
