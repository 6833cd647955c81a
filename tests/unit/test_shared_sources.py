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
from das_assert.data import EncodedPairs, TokenizedPairs, tokenize
from das_assert.model_state import model_version
from das_assert.positions import parse_position
from das_assert.runner import shared_source_vectors, source_vectors, source_vectors_at
from das_assert.sharing import lookup, sharing
from das_assert.sites import Site
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")


def mixed_tokens(loaded: Any) -> TokenizedPairs:
    """Pairs in the default format and under an irrelevant prefix: sources of several lengths."""
    pairs = prompt_pairs("left_boundary", 6, seed=3)
    pairs += prompt_pairs("left_boundary", 6, seed=4, fmt=PriceFormat(prefix=TRAIN_PREFIXES[0]))
    return tokenize(loaded, pairs)


def mixed_lengths(loaded: Any, position: str = "last") -> EncodedPairs:
    return mixed_tokens(loaded).at(parse_position(position))


def source_key(loaded: Any, site: Site, encoded: EncodedPairs) -> tuple[Any, ...]:
    """The key under which ``shared_source_vectors`` keeps a site's vectors."""
    return (
        "sources",
        id(encoded.source_ids),
        *hooks.site_key(site.resolve(loaded.model)),
        encoded.position,
        model_version(loaded.model),
    )


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


@pytest.mark.parametrize("arch", ARCHS)
def test_a_search_reads_every_positions_sources_in_the_first_cells_pass(
    tiny_models: dict[str, Any], arch: str
) -> None:
    """As ``das_assert.search`` runs: an outer block plans every cell, an inner one each
    position's. The first cell's pass records every position; the later position's vectors wait
    on the CPU in the outer block and are exactly those of their own pass."""
    loaded = tiny_models[arch]
    tokenized = mixed_tokens(loaded)
    positions = ["last", "amount.last", "before:amount"]
    grid = {p: [Site(layer, p) for layer in (0, 2)] for p in positions}
    batches = len(list(tokenized.at(parse_position("last")).batches(64)))
    found: dict[Site, torch.Tensor] = {}
    with sharing(sites=[site for sites in grid.values() for site in sites]):
        with block_calls(loaded, 2) as deepest:
            for position, sites in grid.items():
                encoded = tokenized.at(parse_position(position))
                with sharing(sites=sites):
                    for site in sites:
                        found[site] = shared_source_vectors(
                            loaded.model, site.resolve(loaded.model), encoded
                        )
            assert deepest[0] == batches  # one source run for the whole grid
            # (looked up under the counting hook: a memo is keyed by the hooks on the model)
            later = tokenized.at(parse_position("before:amount"))
            parked = lookup(
                source_key(loaded, Site(2, "before:amount"), later),
                owners=(loaded.model, later.source_ids, later.source_mask),
            )
            assert parked.vectors.device.type == "cpu"
    assert lookup(source_key(loaded, Site(2, "before:amount"), later)) is None  # dropped
    for site, vectors in found.items():
        encoded = tokenized.at(site.parsed_position)
        alone = source_vectors(loaded.model, site.resolve(loaded.model), encoded)
        assert torch.equal(vectors, alone), site


def test_pairs_without_their_tokenization_record_only_their_own_position(
    tiny_models: dict[str, Any],
) -> None:
    """A selection of rows cannot resolve another position: a planned site there neither
    lengthens the pass nor is recorded. Nor is a planned position these prompts lack."""
    loaded = tiny_models["llama"]
    encoded = mixed_lengths(loaded, "last")
    rows = encoded.select(torch.arange(len(encoded)))
    assert rows.tokenized is None
    with sharing(sites=[Site(0, "last"), Site(2, "amount.last")]):
        with block_calls(loaded, 1) as later:
            shared_source_vectors(loaded.model, Site(0, "last").resolve(loaded.model), rows)
        assert later[0] == 0
    with sharing(sites=[Site(0, "last"), Site(0, "nothing.last")]):
        vectors = shared_source_vectors(
            loaded.model, Site(0, "last").resolve(loaded.model), encoded
        )
    assert torch.equal(
        vectors, source_vectors(loaded.model, Site(0).resolve(loaded.model), encoded)
    )


def test_a_session_block_keeps_no_source_vectors(tiny_models: dict[str, Any]) -> None:
    loaded = tiny_models["llama"]
    encoded = mixed_lengths(loaded)
    site = Site(0, "last").resolve(loaded.model)
    with sharing(prefix_stores=False), block_calls(loaded, 0) as calls:
        shared_source_vectors(loaded.model, site, encoded)
        shared_source_vectors(loaded.model, site, encoded)
    assert calls[0] == 2 * len(list(encoded.batches(64)))


def test_a_fit_inside_sharing_draws_its_training_pairs_once(
    tiny_llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The held-out draws (kept apart from the training pairs) and the fit each drew them, and
    # a registered causal model's cache key a third time: 0.4 s a draw at 1,500 pairs.
    from das_assert import experiment as experiment_module
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig

    draws: list[int] = []
    monkeypatch.setattr(
        experiment_module,
        "prompt_pairs",
        lambda name, n, **kwargs: draws.append(n) or prompt_pairs(name, n, **kwargs),
    )
    experiment = Experiment(
        hypothesis="left_boundary", site=Site(1), n_train=24, n_test=16, min_task_accuracy=0
    )

    with sharing():
        run_experiment(tiny_llama, experiment, FitConfig(epochs=1, batch_size=8))

    assert sorted(draws) == [16, 24]
