"""Prefix stores: the KV cache of base prompts' prefixes, computed once and kept.

A fit keeps every prefix for all its epochs where they fit its budget (``PrefixStore``), else it
runs the prefixes of a window of the next few batches in one pass (``PrefixStore.build(rows=)``,
``prefix_batches``). Either way the template's shared head is held once, not per row, and the
blocks a suffix pass skips have their outputs kept (``kv_cache.prefix_with_tails``). A search's
positions on the same prompts share one store: the latest position's prefix with the tails from
the earliest, each position reading a ``view`` of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from das_assert import hooks, kv_cache, sharing
from das_assert.cache_layers import layer_tensors, stored_rows_cache
from das_assert.data import EncodedPairs
from das_assert.errors import DasError
from das_assert.kv_cache import estimated_kv_bytes, plain_cache, shared_prefix
from das_assert.model_state import model_version
from das_assert.sites import ResolvedSite, decoder_blocks, existing_sites, last_unchanged_block
from das_assert.transfer import to_device

__all__ = ["PrefixStore", "first_layer_needed", "prefix_batches", "tail_blocks"]


def tail_blocks(
    model: Any, sites: Sequence[ResolvedSite], encoded: EncodedPairs | None = None
) -> dict[int, Any]:
    """The blocks (index -> block) whose output at a suffix a prefix pass or ``PrefixStore``
    should record so that passes intervening at ``sites`` can skip them: the last block each
    site cannot change. With ``encoded``, also those of the sites a ``sharing()`` block plans
    at its position (a search's other layers, which share the store). Empty where the model's
    blocks are unknown or its KV cache is not plain (``kv_cache.plain_cache``)."""
    blocks = decoder_blocks(model)
    if blocks is None or not sites or not plain_cache(model):
        return {}
    found = {
        block
        for site in _served(model, sites, encoded)
        if (block := last_unchanged_block(site)) is not None
    }
    return {block: blocks[block] for block in sorted(found)}


def first_layer_needed(
    model: Any, sites: Sequence[ResolvedSite], encoded: EncodedPairs | None = None
) -> int:
    """The first layer a store must hold for passes intervening at ``sites`` (with ``encoded``,
    also at the planned sites of its position, as in ``tail_blocks``), the store keeping their
    ``tail_blocks``: each pass skips the blocks up to its site's and updates the layers after,
    so one past the earliest site's block; 0 where some site skips no block (``block_input`` of
    block 0) or no tail is kept."""
    blocks = tail_blocks(model, sites, encoded)
    if not blocks or any(last_unchanged_block(s) is None for s in _served(model, sites, encoded)):
        return 0
    return min(blocks) + 1


def _served(
    model: Any, sites: Sequence[ResolvedSite], encoded: EncodedPairs | None
) -> list[ResolvedSite]:
    if encoded is None:
        return list(sites)
    planned = [s for s in sharing.planned_sites() if s.position == encoded.position]
    return [*sites, *existing_sites(model, planned)]


def _kv_bytes(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(k.nbytes + v.nbytes for k, v in layers)


_MOST_PREFIX_BATCHES = 4


def prefix_batches(
    model: Any,
    encoded: EncodedPairs,
    batch: int,
    max_bytes: int,
    blocks: dict[int, Any] | None = None,
    *,
    first_layer: int = 0,
) -> int:
    """How many training batches one prefix pass should run at once: up to four, while their
    prefixes (the shared head held once, the layers from ``first_layer``) and ``blocks``' tails
    fit ``max_bytes`` by the config's count, and while they hold no more than one step's prefix
    cache; 1 where fewer than two fit.
    Fewer, larger passes dispatch fewer ops, which is what a GPU step bound by its host pays for
    (at Llama-7B's shape and the price-tagging prompts: two batches of 16 a pass)."""
    n = len(encoded)
    everything = torch.arange(n)
    p = shared_prefix(encoded, everything) if n else None
    if p is None or max_bytes <= 0:
        return 1
    head = kv_cache.shared_head(encoded.base_ids[:, :p], encoded.base_mask[:, :p], p)
    once = estimated_kv_bytes(model, 1, head)  # a window holds the head once, every layer's
    length = encoded.base_ids.shape[1]
    per_batch = _estimated_bytes(model, batch, p, head, length, blocks, first_layer) - once
    if per_batch <= 0:
        return 1
    # Beside the step's own prefix cache (the head in every row), a window of more than that
    # would add more to the fit's peak than the cache itself does.
    step_cache = estimated_kv_bytes(model, batch, p, first_layer=first_layer)
    fits = min((max_bytes - once) // per_batch, step_cache // per_batch)
    return max(1, min(_MOST_PREFIX_BATCHES, fits))


def _estimated_bytes(
    model: Any,
    rows: int,
    prefix: int,
    head: int,
    length: int,
    blocks: dict[int, Any] | None,
    first_layer: int,
    tails_from: int | None = None,
) -> int:
    """A store's bytes by the model's config: the head once, the rest of the prefix per row (the
    layers from ``first_layer``), and each block's output at tokens [tails_from, length) per row
    (default from ``prefix``). The head holds every layer: it is the one
    ``kv_cache.head_tensors`` remembers for every pass."""
    kv = estimated_kv_bytes(model, rows, prefix - head, first_layer=first_layer)
    kv += estimated_kv_bytes(model, 1, head)
    d = getattr(model.config, "hidden_size", None) or 0
    element = next(model.parameters()).element_size()
    start = prefix if tails_from is None else tails_from
    return kv + len(blocks or ()) * rows * (length - start) * d * element


def _rows_pass(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    prefix: int,
    head: list[tuple[torch.Tensor, torch.Tensor]],
    blocks: dict[int, Any] | None,
    tails_from: int,
    first_layer: int,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, dict[int, hooks.Tail]]:
    """The keys and values of tokens [len(head), prefix) of each row, of every layer from
    ``first_layer`` on, and what ``blocks`` output at tokens [tails_from, end), from one pass
    without gradients (over the whole prompt where ``blocks`` are asked for, else over the
    prefix). The shared head is read, not copied per row. None for the keys where the cache is
    not a plain one."""
    tokens = head[0][0].shape[-2] if head else 0
    if not blocks:
        ids, mask = ids[:, :prefix], mask[:, :prefix]
    if head and not blocks and tokens >= prefix:  # the head is the whole prefix: nothing to run
        rows = ids.shape[0]
        return [
            (
                k.new_empty((rows, *k.shape[1:-2], 0, k.shape[-1])),
                v.new_empty((rows, *v.shape[1:-2], 0, v.shape[-1])),
            )
            for k, v in head[first_layer:]
        ], {}
    with torch.no_grad():
        if head:
            cache = kv_cache.head_cache_class()(
                head, keep=False, own=prefix - tokens, skip_below=first_layer
            )
            _, tails = kv_cache.filled_with_tails(
                model, ids[:, tokens:], mask, cache, blocks, tails_from - tokens
            )
            return [cache.own[layer] for layer in range(first_layer, len(head))], tails
        cache, tails = kv_cache.filled_with_tails(model, ids, mask, None, blocks, tails_from)
    layers = layer_tensors(cache)
    if layers is None:
        return None, {}
    return [(k[..., :prefix, :], v[..., :prefix, :]) for k, v in layers[first_layer:]], tails


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself where it is all of its storage, else a compact copy: a view would keep
    the rest of what it was cut from (a whole prompt's keys, a whole block output) alive."""
    if tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.nbytes:
        return tensor
    return tensor.contiguous() if not tensor.is_contiguous() else tensor.clone()


class PrefixStore:
    """The KV cache of base prompts' prefix [0, p), computed once and kept: for every pair for a
    whole fit, or (``rows``) for a few batches at a time.

    Without it each training step reruns the prefix of its batch; with it, every epoch after the
    first costs only the suffix [p, end), p the earliest site position of its prompts. The head
    every prompt shares (the template's preamble) is held once, not per row. Built only when the
    model uses a plain ``DynamicCache`` and the cache fits ``max_bytes``. Asked for ``blocks``,
    it also keeps what they output from token p on (``prefix_with_tails``), so that a suffix
    pass need not run them, and then no keys or values of the layers up to the earliest of them
    (``first_layer``): the passes it serves skip those blocks (``serves``).
    """

    def __init__(
        self,
        prefix: int,
        layers: list[tuple[torch.Tensor, torch.Tensor]],
        tails: dict[int, hooks.Tail] | None = None,
        *,
        head: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        local: torch.Tensor | None = None,
        tails_from: int | None = None,
        first_layer: int = 0,
    ) -> None:
        self.prefix = prefix
        self.head = head or []  # every layer's (keys, values) of the shared head, one row
        self.first_layer = first_layer  # the layers before it hold nothing
        self.layers = layers  # (keys, values) of tokens [head, prefix) per row, from first_layer
        self.tails = tails or {}
        self.tails_from = prefix if tails_from is None else tails_from  # the tails' first token
        self._local = local  # encoded row -> row of the store (-1: absent); None: every row

    @property
    def head_tokens(self) -> int:
        """The leading tokens every row shares, held once."""
        return self.head[0][0].shape[-2] if self.head else 0

    @property
    def nbytes(self) -> int:
        tails = sum(t.hidden.nbytes for t in self.tails.values())
        return _kv_bytes(self.head) + _kv_bytes(self.layers) + tails

    def serves(self, skipped_block: int | None) -> bool:
        """Whether a pass that skips the blocks up to ``skipped_block`` (None: none) can run on
        this store: it updates every layer after that block, and the store must hold them."""
        if skipped_block is None or skipped_block not in self.tails:
            return self.first_layer == 0
        return self.first_layer <= skipped_block + 1

    def holds(self, index: torch.Tensor) -> bool:
        """Whether every row of ``index`` (rows of the encoded pairs) is in the store."""
        return self._local is None or bool((self._local[index] >= 0).all())

    def _rows(self, index: torch.Tensor) -> torch.Tensor:
        return index if self._local is None else self._local[index]

    @classmethod
    def build(
        cls,
        model: Any,
        encoded: EncodedPairs,
        *,
        batch_size: int,
        max_bytes: int,
        blocks: dict[int, Any] | None = None,
        rows: torch.Tensor | None = None,
        prefix: int | None = None,
        tails_from: int | None = None,
        first_layer: int = 0,
    ) -> PrefixStore | None:
        """The store for ``encoded`` (only its ``rows``, where given), from passes of
        ``batch_size`` rows; None where it does not apply or would not fit. ``prefix`` (default:
        the rows' earliest site position) and ``tails_from`` (default ``prefix``, at most it)
        make a store that serves several positions (``view``). It holds the layers from
        ``first_layer`` on (``first_layer_needed`` of the sites it is for; default every
        layer)."""
        every = torch.arange(len(encoded)) if rows is None else rows
        n = len(every)
        p = prefix if prefix is not None else shared_prefix(encoded, every) if n else None
        if not n or p is None or p <= 0 or max_bytes <= 0:
            return None
        first_tail = p if tails_from is None else tails_from
        # every prompt's whole length where tails are kept, so that every batch's tails line up
        ids, mask = encoded.base_ids[every], encoded.base_mask[every]
        tokens = kv_cache.shared_head(ids[:, :first_tail], mask[:, :first_tail], first_tail)
        # Past the budget by the config's count: refused without running a batch (at 7B a
        # 640-pair store needs 11 GiB; its first batch alone would cost a prefix pass).
        length = ids.shape[1]
        if (
            _estimated_bytes(model, n, p, tokens, length, blocks, first_layer, first_tail)
            > max_bytes
        ):
            return None
        head: list[tuple[torch.Tensor, torch.Tensor]] = []
        if tokens:
            head = kv_cache.head_tensors(model, ids[:1, :tokens], mask[:1, :tokens]) or []
            if not head:
                return None
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        tails: dict[int, hooks.Tail] = {}
        for start in range(0, n, batch_size):
            part = slice(start, min(start + batch_size, n))
            own, part_tails = _rows_pass(
                model, ids[part], mask[part], p, head, blocks, first_tail, first_layer
            )
            if own is None:
                return None
            if start == 0:  # the first batch tells the size of the whole store
                part_rows = part.stop - part.start
                part_bytes = _kv_bytes(own) + sum(t.hidden.nbytes for t in part_tails.values())
                if _kv_bytes(head) * part_rows + part_bytes * n > max_bytes * part_rows:
                    return None
                if part_rows == n:  # one pass made the whole store (a window): keep its tensors
                    layers = [(_owned(k), _owned(v)) for k, v in own]
                    tails = {
                        block: replace(t, hidden=_owned(t.hidden))
                        for block, t in part_tails.items()
                    }
                    break
                # Filled in place, batch by batch: the build holds the store and one batch,
                # never the store twice (as gathering the batches and concatenating would).
                layers = [
                    (k.new_empty((n, *k.shape[1:])), v.new_empty((n, *v.shape[1:]))) for k, v in own
                ]
                tails = {
                    block: replace(t, hidden=t.hidden.new_empty((n, *t.hidden.shape[1:])))
                    for block, t in part_tails.items()
                }
            for (keys, values), (k, v) in zip(layers, own, strict=True):
                keys[part] = k
                values[part] = v
            for block, tail in tails.items():
                tail.hidden[part] = part_tails[block].hidden
        local = None
        if rows is not None:
            local = torch.full((len(encoded),), -1, dtype=torch.long)
            local[rows] = torch.arange(n)
        return cls(
            p,
            layers,
            tails,
            head=head,
            local=local,
            tails_from=first_tail,
            first_layer=first_layer,
        )

    def view(self, prefix: int) -> PrefixStore | None:
        """The store cut back to the prefix [0, ``prefix``) (views, no copy), for a site at an
        earlier position of the same prompts; None where it cannot serve that prefix."""
        if prefix == self.prefix:
            return self
        if not self.head_tokens <= prefix <= self.prefix or (
            self.tails and prefix < self.tails_from
        ):
            return None
        cut = prefix - self.head_tokens
        layers = [(k[..., :cut, :], v[..., :cut, :]) for k, v in self.layers]
        return PrefixStore(
            prefix,
            layers,
            self.tails,
            head=self.head,
            local=self._local,
            tails_from=self.tails_from,
            first_layer=self.first_layer,
        )

    @classmethod
    def shared(
        cls,
        model: Any,
        encoded: EncodedPairs,
        *,
        batch_size: int,
        max_bytes: int,
        blocks: dict[int, Any] | None = None,
        first_layer: int = 0,
    ) -> PrefixStore | None:
        """``build``, computed once per pair set inside a ``sharing()`` block that shares prefix
        stores: the prefix does not depend on the layer, so a search's cells at one position
        share it (and the first to build it asks for every planned layer's tail). Where the
        blocks plan sites at other positions of the same prompts, one store serves them all: the
        latest position's prefix, the tails from the earliest, each position a ``view`` of it
        (its pass is the one a single position's store runs, so the views hold the same
        numbers). Elsewhere every call builds its own."""

        def make() -> PrefixStore | None:
            return cls.build(
                model,
                encoded,
                batch_size=batch_size,
                max_bytes=max_bytes,
                blocks=blocks,
                first_layer=first_layer,
            )

        if not sharing.prefix_stores_active():
            return make()
        every_position = _of_every_position(model, encoded, batch_size, max_bytes)
        if every_position is not None:
            return every_position
        # keyed by the weights too: a store made before an in-place edit holds stale prefixes
        key = ("prefix_store", model_version(model), id(encoded), max_bytes)
        return sharing.shared(key, make, owners=(model, encoded))

    def cache_for(self, index: torch.Tensor) -> Any:
        """A fresh ``DynamicCache`` holding the prefixes of rows ``index``, each layer gathered
        from the store only when a pass updates it (``cache_layers.stored_rows_cache``)."""
        rows = self._rows(index)
        if self.layers:
            rows = to_device(rows, self.layers[0][0].device)
        return stored_rows_cache(
            self.head, self.layers, rows, tokens=self.prefix, first_layer=self.first_layer
        )

    def tail_for(self, index: torch.Tensor, block: int, length: int) -> hooks.Tail | None:
        """Block ``block``'s output at tokens [prefix, length) of rows ``index``; None where
        the store did not keep it."""
        tail = self.tails.get(block)
        if tail is None:
            return None
        rows = to_device(self._rows(index), tail.hidden.device)
        tokens = slice(self.prefix - self.tails_from, length - self.tails_from)
        return replace(tail, hidden=tail.hidden[rows, tokens])


_REFUSED = "refused"  # remembered where a store of every position does not apply or fit


def _of_every_position(
    model: Any, encoded: EncodedPairs, batch_size: int, max_bytes: int
) -> PrefixStore | None:
    """The view for ``encoded``'s position of the store of every planned position of its
    prompts, built by the first to ask and kept by the block that plans the other positions;
    None where there is no other position, or that store does not fit ``max_bytes``."""
    tokenized = encoded.tokenized
    planned = sharing.planned_sites(every=True)
    others = [site for site in planned if site.position != encoded.position]
    if tokenized is None or not others:
        return None
    owners = (model, tokenized)
    key = (
        "prefix store of every position",
        model_version(model),
        id(tokenized),
        max_bytes,
    )
    store = sharing.lookup(key, owners=owners)
    if store is None:
        prefixes = {encoded.position: int(encoded.base_position.min())}
        for site in others:
            if site.position not in prefixes:
                try:
                    positions = tokenized.base_positions(site.parsed_position)
                except DasError:  # a position these prompts lack fails in its own cell
                    continue
                prefixes[site.position] = int(positions.min())
        found = None
        if len(prefixes) > 1 and min(prefixes.values()) > 0:
            every_site = existing_sites(model, planned)
            found = PrefixStore.build(
                model,
                encoded,
                batch_size=batch_size,
                max_bytes=max_bytes,
                blocks=tail_blocks(model, every_site),
                prefix=max(prefixes.values()),
                tails_from=min(prefixes.values()),
                first_layer=first_layer_needed(model, every_site),
            )
        store = _REFUSED if found is None else found
        sharing.remember(key, store, owners=owners, for_site=others[0])
    if not isinstance(store, PrefixStore):
        return None
    return store.view(int(encoded.base_position.min()))
