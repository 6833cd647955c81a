"""Source activations of several sites from one pass, and their sharing inside a search's block.

A deeper layer's forward pass runs every shallower one on its way, so a search reads all of its
layers' source vectors from one pass per batch; the vectors must be exactly those of one pass per
site.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from das_assert import hooks
from das_assert.data import EncodedPairs, encode
from das_assert.positions import parse_position
from das_assert.runner import shared_source_vectors, source_vectors, source_vectors_at
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")


def mixed_lengths(loaded: Any, position: str = "last") -> EncodedPairs:
    """Pairs in the default format and under an irrelevant prefix: sources of several lengths."""
    pairs = prompt_pairs("left_boundary", 6, seed=3)
    pairs += prompt_pairs("left_boundary", 6, seed=4, fmt=PriceFormat(prefix=TRAIN_PREFIXES[0]))
    return encode(loaded, pairs, parse_position(position))


@contextmanager
def block_calls(loaded: Any, layer: int) -> Iterator[list[int]]:
    """Count the forward calls of decoder block ``layer`` over more than one prompt, with a plain
    torch pre-hook (the template's shared head runs once, for a single row)."""
    calls = [0]
    module = Site(layer).resolve(loaded.model).module

    def count(_module: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        calls[0] += hidden.shape[0] > 1

    handle = module.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ARCHS)
def test_one_pass_gives_each_sites_vectors_exactly(tiny_models: dict[str, Any], arch: str) -> None:
    loaded = tiny_models[arch]
    encoded = mixed_lengths(loaded)
    sites = [Site(layer, "last").resolve(loaded.model) for layer in (2, 0, 1)]
    sites.append(Site(1, "last", "block_input").resolve(loaded.model))
    together = source_vectors_at(loaded.model, sites, encoded, batch_size=5)
    for site in sites:
        alone = source_vectors(loaded.model, site, encoded, batch_size=5)
        assert torch.equal(together[hooks.site_key(site)], alone), site.module_path


def test_a_search_block_reads_all_its_layers_in_the_first_cells_pass(
    tiny_models: dict[str, Any],
) -> None:
    loaded = tiny_models["llama"]
    encoded = mixed_lengths(loaded)
    planned = [Site(layer, "last") for layer in (0, 1, 2)]
    batches = len(list(encoded.batches(64)))
    with sharing(sites=planned):
        with block_calls(loaded, 2) as deepest:
            first = shared_source_vectors(loaded.model, planned[0].resolve(loaded.model), encoded)
            assert deepest[0] == batches  # the first cell's pass went on to the deepest layer
            others = [
                shared_source_vectors(loaded.model, site.resolve(loaded.model), encoded)
                for site in planned[1:]
            ]
            assert deepest[0] == batches  # and the later cells ran nothing
    for site, vectors in zip(planned, [first, *others], strict=True):
        alone = source_vectors(loaded.model, site.resolve(loaded.model), encoded)
        assert torch.equal(vectors, alone)


def test_planned_sites_at_another_position_do_not_lengthen_the_pass(
    tiny_models: dict[str, Any],
) -> None:
    loaded = tiny_models["llama"]
    encoded = mixed_lengths(loaded, "last")
    with sharing(sites=[Site(0, "last"), Site(2, "amount.last")]):
        with block_calls(loaded, 1) as later:
            shared_source_vectors(loaded.model, Site(0, "last").resolve(loaded.model), encoded)
    assert later[0] == 0


def test_a_session_block_keeps_no_source_vectors(tiny_models: dict[str, Any]) -> None:
    loaded = tiny_models["llama"]
    encoded = mixed_lengths(loaded)
    site = Site(0, "last").resolve(loaded.model)
    with sharing(prefix_stores=False), block_calls(loaded, 0) as calls:
        shared_source_vectors(loaded.model, site, encoded)
        shared_source_vectors(loaded.model, site, encoded)
    assert calls[0] == 2 * len(list(encoded.batches(64)))
