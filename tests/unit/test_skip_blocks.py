"""A suffix pass takes the recorded output of the blocks its intervention cannot change.

An intervention after block L cannot change blocks 0..L, so the prefix pass (or the prefix
store) records block L's output at the suffix's tokens and each suffix pass returns it from
those blocks instead of running them (``hooks.skip_blocks``). Same logits and gradients as
running them, on every architecture and both components; the blocks' ``forward`` is put back
exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from intervention_support import mixer
from transformers import DynamicCache

from das_assert import cache_layers, hooks, kv_cache
from das_assert.data import encode
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore, first_layer_needed
from das_assert.runner import BaseRun, tail_blocks
from das_assert.sites import ATTENTION_NAMES, Site, decoder_blocks
from das_assert.tasks.price_tagging import prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")


@contextmanager
def attention_calls(model: Any) -> Iterator[list[int]]:
    """Count how many blocks really ran: calls of each block's attention module."""
    calls = [0]
    name = ATTENTION_NAMES[model.config.model_type]

    def count(*_: Any) -> None:
        calls[0] += 1

    handles = [
        getattr(block, name).register_forward_pre_hook(count) for block in decoder_blocks(model)
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def no_skipping() -> Iterator[None]:
    """Run every block of every suffix pass, as before blocks were skipped."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseRun, "_skippable", staticmethod(lambda sites: None))
        patch.setattr(BaseRun, "_tail", lambda self, block: None)
        yield


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("component", ["block_output", "block_input"])
@pytest.mark.parametrize("stored", [False, True], ids=["per_batch", "store"])
def test_a_suffix_pass_skips_the_unchangeable_blocks_with_the_same_logits_and_gradients(
    tiny_models: dict[str, Any], arch: str, component: str, stored: bool
) -> None:
    loaded = tiny_models[arch]
    site = Site(1, "amount.last", component).resolve(loaded.model)
    pairs = prompt_pairs("left_boundary", 8, seed=3)
    encoded = encode(loaded, pairs, parse_position("amount.last"))
    store = None
    if stored:
        blocks = tail_blocks(loaded.model, [site])
        store = PrefixStore.build(
            loaded.model, encoded, batch_size=3, max_bytes=2**26, blocks=blocks
        )
        assert store is not None
        assert set(store.tails) == set(blocks)
    index = torch.arange(2, 7)
    interchange, mix = mixer(loaded, site, encoded, index)
    skipped = 2 if component == "block_output" else 1  # blocks 0..1, or block 0 only
    n_blocks = len(decoder_blocks(loaded.model))

    run = BaseRun(loaded.model, site, encoded, index, prefix_store=store)
    got = run.logits(mix)  # the prefix pass, then a suffix pass that skips
    with attention_calls(loaded.model) as calls:
        got = run.logits(mix)  # a second suffix pass on the same prefix
    assert calls[0] == n_blocks - skipped
    (got_grad,) = torch.autograd.grad(got.logsumexp(-1).sum(), [interchange.widths])

    with no_skipping():
        plain = BaseRun(loaded.model, site, encoded, index, prefix_store=store)
        plain.logits(mix)
        with attention_calls(loaded.model) as calls:
            want = plain.logits(mix)
        assert calls[0] == n_blocks
    (want_grad,) = torch.autograd.grad(want.logsumexp(-1).sum(), [interchange.widths])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-5, rtol=1e-4)
    assert (got - run.logits(None)).abs().max() > 1e-4  # the intervention moved them
    with no_skipping():
        torch.testing.assert_close(run.logits(None), plain.logits(None), atol=1e-5, rtol=0)


def gathered_whole(store: PrefixStore, index: torch.Tensor) -> Any:
    """The store's rows ``index`` copied into a plain cache ahead of the pass, every layer it
    holds (those before ``store.first_layer`` stay skipped)."""
    rows = index  # a store of every row: its rows are the pairs' rows
    layers = []
    kept = store.head[store.first_layer :]
    for (hk, hv), (k, v) in zip(kept, store.layers, strict=True):
        n = len(rows)
        layers.append(
            (
                torch.cat([hk.expand(n, *hk.shape[1:]), k[rows]], dim=-2),
                torch.cat([hv.expand(n, *hv.shape[1:]), v[rows]], dim=-2),
            )
        )
    from transformers import DynamicCache

    skipped = cache_layers.skipped_layer_class()
    cache = DynamicCache()
    cache.layers = [skipped(store.prefix, None, None) for _ in range(store.first_layer)]
    cache.layers += cache_layers.holding_layers(layers)
    return cache


@pytest.mark.parametrize("arch", ARCHS)
def test_a_suffix_pass_from_a_store_never_gathers_the_layers_it_skips(
    tiny_models: dict[str, Any], arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models[arch]
    site = Site(1, "amount.last").resolve(loaded.model)
    encoded = encode(
        loaded, prompt_pairs("left_boundary", 8, seed=3), parse_position("amount.last")
    )
    blocks = tail_blocks(loaded.model, [site])
    store = PrefixStore.build(
        loaded.model,
        encoded,
        batch_size=3,
        max_bytes=2**26,
        blocks=blocks,
        first_layer=first_layer_needed(loaded.model, [site]),
    )
    assert store is not None
    assert store.head  # the template's preamble, held once
    index = torch.arange(2, 7)
    _, mix = mixer(loaded, site, encoded, index)
    run = BaseRun(loaded.model, site, encoded, index, prefix_store=store)
    got = [run.logits(mix), run.logits(mix), run.logits(None)]
    # Blocks 0 and 1 are skipped: the store never kept their layers, the pass gathered the last.
    assert store.first_layer == 2
    assert len(store.layers) == 1
    skipped = cache_layers.skipped_layer_class()
    assert [type(layer) is skipped for layer in run._cache.layers] == [True, True, False]
    assert run._cache.layers[2].stored is None
    # back to the prefix where the next pass starts (a fit's run makes one pass)
    run._prefix_ready([site])
    assert [layer.get_seq_length() for layer in run._cache.layers] == [store.prefix] * 3
    monkeypatch.setattr(store, "cache_for", lambda rows: gathered_whole(store, rows))
    whole = BaseRun(loaded.model, site, encoded, index, prefix_store=store)
    want = [whole.logits(mix), whole.logits(mix), whole.logits(None)]
    for got_logits, want_logits in zip(got, want, strict=True):
        assert torch.equal(got_logits, want_logits)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_joint_pass_skips_up_to_its_shallowest_site(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", 6, seed=4), parse_position("last"))
    sites = [Site(layer, "last").resolve(loaded.model) for layer in (1, 2)]
    blocks = tail_blocks(loaded.model, sites)
    assert sorted(blocks) == [1, 2]
    store = PrefixStore.build(loaded.model, encoded, batch_size=4, max_bytes=2**26, blocks=blocks)
    index = torch.arange(6)
    interventions = [(site, mixer(loaded, site, encoded, index)[1]) for site in sites]
    run = BaseRun(loaded.model, sites[0], encoded, index, prefix_store=store)
    with attention_calls(loaded.model) as calls:
        got = run.joint_logits(interventions)
    assert calls[0] == len(decoder_blocks(loaded.model)) - 2  # blocks 0 and 1 were skipped
    want = torch.cat([run.logits(mix, site=site) for site, mix in interventions])
    with no_skipping():
        plain = BaseRun(loaded.model, sites[0], encoded, index)
        alone = torch.cat([plain.logits(mix, site=site) for site, mix in interventions])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_stores_tails_are_what_each_batchs_own_prefix_pass_records(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    # Prompts of several lengths: each batch is trimmed to its longest, the store to the longest.
    encoded = encode(loaded, prompt_pairs("left_boundary", 9, seed=6), parse_position("last-2"))
    blocks = {0: decoder_blocks(loaded.model)[0], 2: decoder_blocks(loaded.model)[2]}
    store = PrefixStore.build(loaded.model, encoded, batch_size=4, max_bytes=2**26, blocks=blocks)
    assert store is not None
    for index in (torch.tensor([0, 5, 8]), torch.tensor([3])):
        ids, mask = encoded.base_batch(index)
        _, tails = kv_cache.prefix_with_tails(loaded.model, ids, mask, store.prefix, blocks)
        for block, tail in tails.items():
            stored = store.tail_for(index, block, ids.shape[1])
            assert stored.tuple_length == tail.tuple_length
            rows = mask[:, store.prefix :].bool()  # padding may differ; real tokens may not
            torch.testing.assert_close(stored.hidden[rows], tail.hidden[rows], atol=1e-5, rtol=0)


def test_a_sliding_window_caches_a_prompt_it_covers_and_nothing_of_one_it_does_not(
    tiny_models: dict[str, Any],
) -> None:
    """A window at least the prompt forgets nothing: its layers hold what whole ones do, so the
    prefix is cached in a plain cache and blocks are skipped. A shorter one forgets tokens, and
    every pass runs the whole prompt (no prefix, no shared preamble)."""
    from transformers import MistralConfig, MistralForCausalLM

    model = MistralForCausalLM(
        MistralConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            sliding_window=16,
        )
    )
    assert kv_cache.cache_window(model) == 16
    assert kv_cache.plain_cache(model)
    assert type(kv_cache.new_cache(model)) is DynamicCache  # whole layers, made as used
    assert kv_cache.new_cache(model).layers == []
    assert kv_cache.prefix_caching_works(model, 16)
    assert not kv_cache.prefix_caching_works(model, 17)
    assert kv_cache.why_prompts_run_whole(model, 17) == (
        "its cache's sliding window of 16 tokens is shorter than the prompts (17 tokens)"
    )
    ids = torch.arange(20).repeat(2, 1)  # two rows sharing all 20 tokens
    assert kv_cache.split_head(model, ids, torch.ones_like(ids), 20) == (0, None)
    assert kv_cache.split_head(model, ids[:, :16], torch.ones_like(ids[:, :16]), 16)[0] == 16
    assert tail_blocks(model, [Site(0, "last").resolve(model)]) == {0: model.model.layers[0]}
    assert kv_cache.plain_cache(tiny_models["llama"].model)


class Block(torch.nn.Module):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * 2


def test_skip_blocks_puts_back_exactly_the_forward_each_block_had() -> None:
    plain, wrapped = Block(), Block()
    device_hook = wrapped.forward  # accelerate keeps its wrapper as an instance attribute
    wrapped.forward = device_hook
    tail = hooks.Tail(torch.ones(1, 2, 3), tuple_length=0)
    x = torch.zeros(1, 2, 3)
    with hooks.skip_blocks([plain, wrapped], tail):
        assert torch.equal(plain(x), tail.hidden)
        assert torch.equal(wrapped(x), tail.hidden)
    assert "forward" not in plain.__dict__
    assert wrapped.__dict__["forward"] is device_hook
    with pytest.raises(RuntimeError), hooks.skip_blocks([plain], tail):
        raise RuntimeError("a failing pass")
    assert "forward" not in plain.__dict__
    assert torch.equal(plain(torch.ones(1)), torch.full((1,), 2.0))


def test_a_tuple_returning_block_gets_its_tail_back_in_a_tuple() -> None:
    block = Block()
    tail = hooks.Tail(torch.ones(2, 1, 4), tuple_length=1)
    with hooks.skip_blocks([block], tail):
        out = block(torch.zeros(2, 1, 4))
    assert isinstance(out, tuple)
    assert len(out) == 1
    assert out[0] is tail.hidden  # no hook sees it: no copy

    def edit_in_place(_module: Any, _args: Any, output: Any) -> None:
        output[0].add_(1)

    handle = block.register_forward_hook(edit_in_place)
    try:
        with hooks.skip_blocks([block], tail):
            edited = block(torch.zeros(2, 1, 4))
    finally:
        handle.remove()
    # a copy for a hook, which edits it in place: the tail replays unchanged next time
    assert torch.equal(edited[0], torch.full((2, 1, 4), 2.0))
    assert torch.equal(tail.hidden, torch.ones(2, 1, 4))


def test_a_block_that_returns_its_attention_weights_gets_its_tail_back_with_none_beside_it() -> (
    None
):
    """Bloom, Falcon and GPT-Neo blocks return (hidden, attention weights); the model reads the
    weights only under ``output_attentions=True``, which das_assert never asks for."""

    class WithWeights(torch.nn.Module):
        def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return hidden * 2, torch.ones(hidden.shape[0], 1, hidden.shape[1], hidden.shape[1])

    block = WithWeights()
    with hooks.record_tails({0: block}, start=1) as tails:
        block(torch.ones(2, 3, 4))
    assert tails[0].tuple_length == 2
    assert torch.equal(tails[0].hidden, torch.full((2, 2, 4), 2.0))
    with hooks.skip_blocks([block], tails[0]):
        out = block(torch.zeros(2, 2, 4))
    assert torch.equal(out[0], tails[0].hidden)
    assert out[1:] == (None,)


def test_a_block_whose_output_cannot_be_replayed_is_named() -> None:
    class ReturnsADict(torch.nn.Module):
        def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"hidden": hidden}

    block = ReturnsADict()
    with (
        pytest.raises(
            hooks.UnreplayableBlockOutput, match=r"block 3 \(ReturnsADict\) returns a dict"
        ),
        hooks.record_tails({3: block}, start=0),
    ):
        block(torch.ones(1, 2, 4))


def test_skip_blocks_stopped_part_way_puts_back_only_what_it_replaced() -> None:
    class Frozen(Block):  # a block whose forward cannot be replaced
        def __setattr__(self, name: str, value: object) -> None:
            if name == "forward":
                raise AttributeError("forward is read-only here")
            super().__setattr__(name, value)

    first, frozen = Block(), Frozen()
    tail = hooks.Tail(torch.ones(1, 2, 3), tuple_length=0)
    with pytest.raises(AttributeError, match="read-only"), hooks.skip_blocks([first, frozen], tail):
        pass  # pragma: no cover - never entered
    assert "forward" not in first.__dict__
    assert torch.equal(first(torch.ones(1)), torch.full((1,), 2.0))


def test_record_tails_removes_the_hooks_it_added_when_a_later_one_fails() -> None:
    class Refusing(Block):
        def register_forward_hook(self, *args: object, **kwargs: object) -> object:
            raise RuntimeError("no hooks on this block")

    first = Block()
    with (
        pytest.raises(RuntimeError, match="no hooks"),
        hooks.record_tails({0: first, 1: Refusing()}, 1),
    ):
        pass  # pragma: no cover - never entered
    assert not first._forward_hooks
