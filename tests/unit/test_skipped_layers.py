"""Prefix caches and stores keep no keys or values of the layers whose blocks every pass skips.

A suffix pass intervening after block b takes b's recorded output instead of running blocks
0..b (``hooks.skip_blocks``), so it never reads their layers of the KV cache. A prefix store, a
window and a batch's own prefix cache leave those layers out (at Llama-7B's shape and a site at
layer 15, half of each); a pass that needs more layers than a cache holds gets a cache that has
them, with the same logits.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from intervention_support import mixer

from das_assert import cache_layers
from das_assert.data import encode
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore, first_layer_needed
from das_assert.runner import BaseRun, tail_blocks
from das_assert.sharing import sharing
from das_assert.sites import Site, decoder_blocks
from das_assert.tasks.price_tagging import prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")


def skipped_flags(cache: Any) -> list[bool]:
    skipped = cache_layers.skipped_layer_class()
    return [type(layer) is skipped for layer in cache.layers]


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_store_keeps_no_layers_of_the_blocks_its_passes_skip(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    n_blocks = len(decoder_blocks(loaded.model))
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=3), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    blocks = tail_blocks(loaded.model, [site])
    first = first_layer_needed(loaded.model, [site])
    assert first == 2
    lean = PrefixStore.build(
        loaded.model, encoded, batch_size=3, max_bytes=2**26, blocks=blocks, first_layer=first
    )
    whole = PrefixStore.build(loaded.model, encoded, batch_size=3, max_bytes=2**26, blocks=blocks)
    assert lean is not None
    assert whole is not None
    assert (lean.first_layer, len(lean.layers)) == (2, n_blocks - 2)
    assert (whole.first_layer, len(whole.layers)) == (0, n_blocks)
    for (k, v), (k_all, v_all) in zip(lean.layers, whole.layers[2:], strict=True):
        torch.testing.assert_close(k, k_all, atol=1e-6, rtol=0)
        torch.testing.assert_close(v, v_all, atol=1e-6, rtol=0)
    # The budget counts what the store holds: it fits exactly, and not one byte less.
    assert PrefixStore.build(
        loaded.model, encoded, batch_size=3, max_bytes=lean.nbytes, blocks=blocks, first_layer=first
    )
    assert (
        PrefixStore.build(
            loaded.model,
            encoded,
            batch_size=3,
            max_bytes=lean.nbytes - 1,
            blocks=blocks,
            first_layer=first,
        )
        is None
    )


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_run_at_an_earlier_site_runs_its_own_prefix_not_a_store_missing_its_layers(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=3), parse_position("last"))
    later, earlier = (Site(layer, "last").resolve(loaded.model) for layer in (1, 0))
    store = PrefixStore.build(
        loaded.model,
        encoded,
        batch_size=3,
        max_bytes=2**26,
        blocks=tail_blocks(loaded.model, [later]),
        first_layer=first_layer_needed(loaded.model, [later]),
    )
    assert store is not None
    assert not store.serves(0)
    assert store.serves(1)
    index = torch.arange(1, 6)
    _, mix = mixer(loaded, earlier, encoded, index)
    run = BaseRun(loaded.model, earlier, encoded, index, prefix_store=store)
    got = run.logits(mix)
    assert not run._from_store
    want = BaseRun(loaded.model, earlier, encoded, index).logits(mix)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_batchs_own_prefix_leaves_out_skipped_layers_and_refills_for_an_earlier_site(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", 6, seed=5), parse_position("last"))
    later, earlier = (Site(layer, "last").resolve(loaded.model) for layer in (1, 0))
    index = torch.arange(6)
    mix_later, mix_earlier = (mixer(loaded, s, encoded, index)[1] for s in (later, earlier))
    run = BaseRun(loaded.model, later, encoded, index)
    first = run.logits(mix_later)
    assert skipped_flags(run._cache)[:3] == [True, True, False]
    # back to the prefix where the next pass starts (a fit's run makes one pass)
    run._prefix_ready([later])
    assert {layer.get_seq_length() for layer in run._cache.layers} == {run.prefix}
    # A pass at block 0's output runs block 1: the cache is made again with its layer.
    second = run.logits(mix_earlier, site=earlier)
    assert skipped_flags(run._cache)[:2] == [True, False]
    fresh_later = BaseRun(loaded.model, later, encoded, index, prefix_cache=False)
    fresh_earlier = BaseRun(loaded.model, earlier, encoded, index, prefix_cache=False)
    torch.testing.assert_close(first, fresh_later.logits(mix_later), atol=1e-5, rtol=0)
    torch.testing.assert_close(second, fresh_earlier.logits(mix_earlier), atol=1e-5, rtol=0)


@torch.no_grad()
def test_a_one_row_batch_too_leaves_out_the_skipped_layers(tiny_models: dict[str, Any]) -> None:
    # One row splits off no shared head: there the cut kept layer 1's keys and values, which
    # no pass past block 1 reads (twice the bytes at this depth).
    loaded = tiny_models["llama"]
    encoded = encode(loaded, prompt_pairs("left_boundary", 6, seed=5), parse_position("last"))
    site, index = Site(1, "last").resolve(loaded.model), torch.tensor([3])
    _, mix = mixer(loaded, site, encoded, index)
    run = BaseRun(loaded.model, site, encoded, index)
    got = run.logits(mix)
    assert skipped_flags(run._cache)[:3] == [True, True, False]
    plain = BaseRun(loaded.model, site, encoded, index, prefix_cache=False).logits(mix)
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_joint_pass_without_a_store_repeats_only_the_layers_it_kept(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", 6, seed=4), parse_position("last"))
    sites = [Site(layer, "last").resolve(loaded.model) for layer in (1, 2)]
    index = torch.arange(6)
    interventions = [(site, mixer(loaded, site, encoded, index)[1]) for site in sites]
    run = BaseRun(loaded.model, sites[0], encoded, index)
    got = run.joint_logits(interventions)
    assert skipped_flags(run._cache)[:3] == [True, True, False]
    alone = torch.cat(
        [
            BaseRun(loaded.model, site, encoded, index, prefix_cache=False).logits(mix)
            for site, mix in interventions
        ]
    )
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=0)


def test_a_skipped_layer_refuses_an_update_and_is_cut_like_the_rest() -> None:
    from transformers import DynamicCache

    skipped = cache_layers.skipped_layer_class()(7, torch.float32, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="left out"):
        skipped.update(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), {})
    cache = DynamicCache()
    cache.layers = [skipped, *cache_layers.holding_layers([(torch.zeros(1, 1, 7, 2),) * 2])]
    cache_layers.cut_to(cache, 5)
    assert [layer.get_seq_length() for layer in cache.layers] == [5, 5]
    assert cache.get_seq_length() == 5


def test_a_store_for_sites_one_of_which_skips_no_block_keeps_every_layer(
    tiny_models: dict[str, Any],
) -> None:
    model = tiny_models["llama"].model
    encoded = encode(
        tiny_models["llama"], prompt_pairs("left_boundary", 4, seed=0), parse_position("last")
    )
    at = {
        name: site.resolve(model)
        for name, site in {
            "input 0": Site(0, "last", "block_input"),
            "output 1": Site(1, "last"),
            "output 2": Site(2, "last"),
        }.items()
    }
    assert first_layer_needed(model, [at["output 1"], at["output 2"]]) == 2
    assert first_layer_needed(model, [at["output 2"]]) == 3
    assert first_layer_needed(model, [at["input 0"], at["output 2"]]) == 0
    # A search's cell shares its position's store with the other planned cells.
    with sharing(sites=[Site(0, "last", "block_input"), Site(2, "last")]):
        assert first_layer_needed(model, [at["output 2"]], encoded) == 0
    with sharing(sites=[Site(1, "last"), Site(2, "last")]):
        assert first_layer_needed(model, [at["output 2"]], encoded) == 2
