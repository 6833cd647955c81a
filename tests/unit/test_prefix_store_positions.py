"""One prefix store for every position a search plans on the same prompts.

The keys and values of the tokens before a position do not depend on what comes after it, and a
store that keeps block outputs runs the whole prompt whatever its prefix: so the store of the
latest position, with tails kept from the earliest, holds every position's store. Each position
reads a ``view`` of it, which must hold exactly what that position's own store would.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from das_assert import prefix_store
from das_assert.data import TokenizedPairs, tokenize
from das_assert.kv_cache import shared_head
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore, _estimated_bytes, first_layer_needed, tail_blocks
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")
POSITIONS = ("last", "amount.last", "after:amount")
LAYERS = (0, 2)


def mixed_tokens(loaded: Any) -> TokenizedPairs:
    pairs = prompt_pairs("left_boundary", 7, seed=3)
    pairs += prompt_pairs("left_boundary", 5, seed=4, fmt=PriceFormat(prefix=TRAIN_PREFIXES[0]))
    return tokenize(loaded, pairs)


def grid_sites() -> list[Site]:
    return [Site(layer, p) for p in POSITIONS for layer in LAYERS]


def count_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    rows_pass = prefix_store._rows_pass

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return rows_pass(*args, **kwargs)

    monkeypatch.setattr(prefix_store, "_rows_pass", counting)
    return calls


def assert_same_store(view: PrefixStore, alone: PrefixStore, length: int) -> None:
    """Every row's prefix cache and every tail, bit for bit."""
    assert view.prefix == alone.prefix
    assert view.head_tokens == alone.head_tokens
    assert view.first_layer == alone.first_layer == LAYERS[0] + 1
    assert set(view.tails) >= set(alone.tails)
    index = torch.tensor([4, 0, 11, 7])
    for (got_k, got_v), (want_k, want_v) in zip(view.head, alone.head, strict=True):
        assert torch.equal(got_k, want_k)
        assert torch.equal(got_v, want_v)
    for (got_k, got_v), (want_k, want_v) in zip(view.layers, alone.layers, strict=True):
        assert torch.equal(got_k[index], want_k[index])
        assert torch.equal(got_v[index], want_v[index])
    for block in alone.tails:
        got_tail = view.tail_for(index, block, length)
        want_tail = alone.tail_for(index, block, length)
        assert got_tail is not None
        assert want_tail is not None
        assert got_tail.tuple_length == want_tail.tuple_length
        assert torch.equal(got_tail.hidden, want_tail.hidden)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_position_reads_one_store_that_holds_its_own_exactly(
    tiny_models: dict[str, Any], arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models[arch]
    model = loaded.model
    tokenized = mixed_tokens(loaded)
    length = tokenized.base.ids.shape[1]
    views = {}
    passes = count_passes(monkeypatch)
    with sharing(sites=grid_sites()):
        for position in POSITIONS:
            encoded = tokenized.at(parse_position(position))
            sites = [Site(layer, position).resolve(model) for layer in LAYERS]
            with sharing(sites=[Site(layer, position) for layer in LAYERS]):
                blocks = tail_blocks(model, sites, encoded)
                views[position] = PrefixStore.shared(
                    model, encoded, batch_size=5, max_bytes=2**26, blocks=blocks
                )
    assert len(passes) == 3  # one store: 12 rows in passes of 5
    for position, view in views.items():
        encoded = tokenized.at(parse_position(position))
        sites = [Site(layer, position).resolve(model) for layer in LAYERS]
        alone = PrefixStore.build(
            model,
            encoded,
            batch_size=5,
            max_bytes=2**26,
            blocks=tail_blocks(model, sites),
            first_layer=first_layer_needed(model, sites),
        )
        assert view is not None
        assert alone is not None
        assert_same_store(view, alone, length)


def test_a_store_of_every_position_past_the_budget_leaves_each_position_its_own(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the largest single position's store and the store of every position: each
    position builds its own, and the store of every position is refused once, not per cell."""
    loaded = tiny_models["llama"]
    model = loaded.model
    tokenized = mixed_tokens(loaded)
    length = tokenized.base.ids.shape[1]
    encoded = {p: tokenized.at(parse_position(p)) for p in POSITIONS}
    prefixes = {p: int(e.base_position.min()) for p, e in encoded.items()}
    resolved = [site.resolve(model) for site in grid_sites()]
    blocks, first = tail_blocks(model, resolved), first_layer_needed(model, resolved)
    head = mixed_store_head(tokenized, min(prefixes.values()))
    single = max(
        _estimated_bytes(model, 12, prefixes[p], head, length, blocks, first) for p in POSITIONS
    )
    every = _estimated_bytes(
        model, 12, max(prefixes.values()), head, length, blocks, first, min(prefixes.values())
    )
    assert single < every
    budget = (single + every) // 2
    builds: list[tuple[int, int]] = []
    build = PrefixStore.build.__func__  # type: ignore[attr-defined]

    def counting(cls: type, model: Any, encoded: Any, **kwargs: Any) -> Any:
        store = build(cls, model, encoded, **kwargs)
        builds.append((kwargs.get("prefix") is not None, store is not None))
        return store

    monkeypatch.setattr(PrefixStore, "build", classmethod(counting))
    with sharing(sites=grid_sites()):
        for position in POSITIONS:
            with sharing(sites=[Site(layer, position) for layer in LAYERS]):
                for _cell in LAYERS:
                    store = PrefixStore.shared(
                        model,
                        encoded[position],
                        batch_size=5,
                        max_bytes=budget,
                        blocks=blocks,
                        first_layer=first,
                    )
                    assert store is not None
                    assert store.prefix == prefixes[position]
    # The store of every position refused by the config's count, then one store per position.
    assert builds == [(True, False), (False, True), (False, True), (False, True)]


def mixed_store_head(tokenized: TokenizedPairs, limit: int) -> int:
    return shared_head(tokenized.base.ids[:, :limit], tokenized.base.mask[:, :limit], limit)


def test_a_shared_store_is_never_reused_after_the_weights_change(
    tiny_models: dict[str, Any],
) -> None:
    """A store, one position's or every position's, holds the prefixes the weights made: edited
    in place inside the block that shares it, the next ask builds another."""
    import copy

    model = copy.deepcopy(tiny_models["llama"].model)  # edited below: the session's stays as is
    tokenized = mixed_tokens(tiny_models["llama"])
    for planned in ([Site(layer, "last") for layer in LAYERS], grid_sites()):
        encoded = tokenized.at(parse_position("last"))
        with sharing(sites=planned), sharing(sites=[Site(layer, "last") for layer in LAYERS]):
            first = PrefixStore.shared(model, encoded, batch_size=5, max_bytes=2**26)
            assert PrefixStore.shared(model, encoded, batch_size=5, max_bytes=2**26) is first
            with torch.no_grad():
                model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
            again = PrefixStore.shared(model, encoded, batch_size=5, max_bytes=2**26)
        assert first is not None
        assert again is not None
        assert again is not first
        assert not torch.equal(again.layers[1][0], first.layers[1][0])
