"""Forward passes over encoded pairs: source activations, and answer logits with or without an
intervention. The model is frozen, so source activations are computed once, without gradients,
stopping each forward pass right after the site, and reused for every step and evaluation. For the
same reason the base prompts' prefix before the site can be run once into a KV cache
(``prefix_store.PrefixStore``) and reused by every epoch of a fit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch

from das_assert import hooks, sharing
from das_assert.cache_layers import cut_to, repeated_cache
from das_assert.data import EncodedPairs
from das_assert.errors import DasError
from das_assert.kv_cache import (
    prefix_cache,
    prefix_caching_works,
    prefix_with_tails,
    run_model,
    shared_prefix,
    split_head,
)
from das_assert.model_state import model_version
from das_assert.prefix_store import PrefixStore, tail_blocks
from das_assert.sites import ResolvedSite, decoder_blocks, existing_sites, last_unchanged_block
from das_assert.transfer import to_device

__all__ = [
    "BaseRun",
    "answer_logits",
    "logits_at",
    "shared_source_vectors",
    "source_vectors",
    "source_vectors_at",
    "tail_blocks",
]

K = TypeVar("K", bound=Hashable)  # a key of the targets a pass records


@torch.no_grad()
def source_vectors(
    model: Any, site: ResolvedSite, encoded: EncodedPairs, *, batch_size: int = 64
) -> torch.Tensor:
    """The hidden vector at the site's position in every source prompt, (n, d)."""
    return source_vectors_at(model, [site], encoded, batch_size=batch_size)[hooks.site_key(site)]


@torch.no_grad()
def source_vectors_at(
    model: Any, sites: Sequence[ResolvedSite], encoded: EncodedPairs, *, batch_size: int = 64
) -> dict[tuple[str, str], torch.Tensor]:
    """``source_vectors`` at several sites from one pass per batch, keyed by ``hooks.site_key``:
    the pass stops after the deepest site, so a search's layers cost one source run, not one
    each."""
    targets = {hooks.site_key(site): (site, encoded.source_position) for site in sites}
    return _source_pass(model, targets, encoded, batch_size)


@torch.no_grad()
def _source_pass(
    model: Any,
    targets: Mapping[K, tuple[ResolvedSite, torch.Tensor]],
    encoded: EncodedPairs,
    batch_size: int,
) -> dict[K, torch.Tensor]:
    """The source prompts' hidden vectors at every ``targets[key] = (site, positions)`` (n, d),
    from one pass per batch (``hooks.capture_at``)."""
    chunks: dict[K, list[torch.Tensor]] = {key: [] for key in targets}
    for index in encoded.batches(batch_size):
        captured = _capture_sources(model, targets, encoded, index)
        for key, chunk in chunks.items():
            chunk.append(captured[key])
    return {key: torch.cat(chunk) for key, chunk in chunks.items()}


def _capture_sources(
    model: Any,
    targets: Mapping[K, tuple[ResolvedSite, torch.Tensor]],
    encoded: EncodedPairs,
    index: torch.Tensor,
) -> dict[K, torch.Tensor]:
    """One batch of ``_source_pass``. A function of its own so that the batch's KV cache is
    freed on return: held in the caller's loop, it would still be alive while the next batch
    builds its own, and the pass would peak at two batches' caches."""
    ids, mask = encoded.source_batch(index)
    rows = {key: (site, positions[index]) for key, (site, positions) in targets.items()}
    first = min(int(positions.min()) for _, positions in rows.values())
    head, cache = split_head(model, ids, mask, first, keep=False)
    moved = {key: (site, positions - head) for key, (site, positions) in rows.items()}
    with hooks.capture_at(moved, stop=True) as captured:
        run_model(model, ids[:, head:], mask, use_cache=cache is not None, cache=cache)
    return captured


@dataclass(frozen=True)
class _Parked:
    """A later position's source vectors, kept on the CPU until its cells ask for them."""

    vectors: torch.Tensor
    device: torch.device


def shared_source_vectors(
    model: Any, site: ResolvedSite, encoded: EncodedPairs, *, batch_size: int = 64
) -> torch.Tensor:
    """``source_vectors``, computed once per set of source prompts and site inside a
    ``sharing()`` block.

    Where the blocks plan sites (a search's cells), the first call records all of them in one
    pass: a deeper layer's run passes every shallower one on its way, and every token of the
    prompt is run whatever the position. The vectors at other positions than ``encoded``'s wait
    on the CPU in the block that plans them (``_Parked``); they need pairs from
    ``TokenizedPairs.at``, which can resolve another position. Like prefix stores, source
    vectors are kept only by a block that keeps large things (a search's, not a session's).
    """
    if not sharing.prefix_stores_active():
        return source_vectors(model, site, encoded, batch_size=batch_size)
    version = model_version(model)
    owners = (model, encoded.source_ids, encoded.source_mask)

    def key(target: ResolvedSite, position: str) -> tuple[Any, ...]:
        return ("sources", id(encoded.source_ids), *hooks.site_key(target), position, version)

    found = sharing.lookup(key(site, encoded.position), owners=owners)
    if isinstance(found, _Parked):
        found = found.vectors.to(found.device)
        sharing.remember(key(site, encoded.position), found, owners=owners)
    if found is not None:
        return found
    targets = _planned_targets(model, site, encoded)
    vectors = _source_pass(model, targets, encoded, batch_size)
    for name, tensor in vectors.items():
        target, position = targets[name][0], name[1]
        if position == encoded.position:
            sharing.remember(key(target, position), tensor, owners=owners)
        else:
            parked = _Parked(tensor.cpu(), tensor.device)
            sharing.remember(key(target, position), parked, owners=owners, for_site=target.site)
    return vectors[(hooks.site_key(site), encoded.position)]


def _planned_targets(
    model: Any, site: ResolvedSite, encoded: EncodedPairs
) -> dict[tuple[Any, str], tuple[ResolvedSite, torch.Tensor]]:
    """``site`` and the sites the open blocks plan, keyed ``(site_key, position)``, each with its
    position on every source prompt. Other positions only where ``encoded`` can resolve them;
    one these prompts lack is left out (its own cell reports it)."""
    positions = {encoded.position: encoded.source_position}
    targets = {(hooks.site_key(site), encoded.position): (site, encoded.source_position)}
    tokenized = encoded.tokenized
    for target in existing_sites(model, sharing.planned_sites(every=tokenized is not None)):
        name = target.site.position
        if name not in positions:
            if tokenized is None:
                continue
            try:
                positions[name] = tokenized.source_positions(target.site.parsed_position)
            except DasError:
                continue
        targets.setdefault((hooks.site_key(target), name), (target, positions[name]))
    return targets


class BaseRun:
    """Forward passes over one batch of base prompts, with or without an intervention.

    An intervention at token p cannot change anything at tokens before p. The prefix before the
    batch's earliest site position p runs once, without gradients, into a KV cache, and each pass
    runs only the suffix [p, end) on top of it; the backward pass then covers only the suffix. A
    ``PrefixStore`` supplies that cache precomputed. Nor can an intervention change the blocks up
    to its site: the prefix pass also records what the site's block outputs at the suffix's
    tokens, and each suffix pass takes that instead of running those blocks
    (``hooks.skip_blocks``). With ``prefix_cache=False`` (or no site) each pass runs the whole
    prompt. All paths give the same logits up to float rounding.
    """

    def __init__(
        self,
        model: Any,
        site: ResolvedSite | None,
        encoded: EncodedPairs,
        index: torch.Tensor,
        *,
        prefix_cache: bool = True,
        prefix_store: PrefixStore | None = None,
    ) -> None:
        self.model = model
        self.site = site
        self.encoded = encoded
        self.index = index
        self.ids, self.mask = encoded.base_batch(index)
        usable = prefix_cache and site is not None
        usable = usable and prefix_caching_works(model, self.ids.shape[1])
        self.prefix = shared_prefix(encoded, index) if usable else None
        self._store = prefix_store if self.prefix is not None else None
        self._cache: Any = None
        self._cached = 0  # how many leading tokens self._cache holds before a pass
        self._passed = False  # whether a pass added its tokens to self._cache since
        self._from_store = False  # whether self._cache holds the store's rows
        self._first_layer = 0  # self._cache holds no keys or values of the layers before it
        self._tails: dict[int, hooks.Tail] = {}  # block -> its output at tokens [_cached, end)

    def logits(
        self,
        mix: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        site: ResolvedSite | None = None,
    ) -> torch.Tensor:
        """Logits (batch, vocab) at each base prompt's last token, intervened by ``mix`` (at
        ``site``, default the run's own: another layer at the same position shares the prefix)."""
        site = site or self.site
        if self.prefix is None:
            return self._full(mix, site)
        sites = [site] if site is not None else []
        p = self._prefix_ready(sites)
        index = self.index
        positions = self.encoded.base_position[index] - p
        last = self.encoded.base_last[index] - p
        with contextlib.ExitStack() as stack:
            if mix is not None and site is not None:
                stack.enter_context(hooks.intervene(site, positions, mix))
            stack.enter_context(self._skipping(sites))
            output = run_model(
                self.model, self.ids[:, p:], self.mask, use_cache=True, cache=self._cache
            )
        self._passed = True
        return logits_at(output, last)

    @staticmethod
    def _skippable(sites: Sequence[ResolvedSite]) -> int | None:
        """The last block no intervention at ``sites`` can change (the earliest site's); None
        where some site comes before block 0, or there is no site."""
        found = [last_unchanged_block(site) for site in sites]
        if not found or None in found:
            return None
        return min(block for block in found if block is not None)

    def _skipping(self, sites: Sequence[ResolvedSite], copies: int = 1) -> Any:
        """``hooks.skip_blocks`` for the blocks no intervention at ``sites`` can change, where
        their output at the suffix was recorded; else a context that changes nothing."""
        block = self._skippable(sites)
        tail = None if block is None else self._tail(block)
        blocks = decoder_blocks(self.model)
        if block is None or tail is None or blocks is None:
            return contextlib.nullcontext()
        if copies > 1:
            tail = replace(tail, hidden=tail.hidden.repeat(copies, 1, 1))
        return hooks.skip_blocks(blocks[: block + 1], tail)

    def _has_tail(self, block: int | None) -> bool:
        if block is None:
            return False
        store = self._store if self._from_store else None
        return block in self._tails or (store is not None and block in store.tails)

    def _tail(self, block: int) -> hooks.Tail | None:
        if block in self._tails:
            return self._tails[block]
        if self._store is not None and self._from_store:
            return self._store.tail_for(self.index, block, self.ids.shape[1])
        return None

    def joint_logits(
        self, interventions: Sequence[tuple[ResolvedSite, Callable[[torch.Tensor], torch.Tensor]]]
    ) -> torch.Tensor:
        """``logits(mix, site=site)`` for every ``(site, mix)``, concatenated (copies x batch,
        vocab), from one pass: the batch is repeated once per intervention on top of its prefix
        cache, and copy g is intervened at site g only. Rows never interact, so each copy gives
        what its own pass gives, up to float rounding; a batched pass costs far less than as many
        small ones wherever per-pass overhead or weight reads dominate (a GPU, a small model).
        The sites must share the run's position. Without a plain KV cache it runs the passes one
        by one."""
        if len(interventions) == 1 or self.prefix is None:
            return torch.cat([self.logits(mix, site=site) for site, mix in interventions])
        sites = [site for site, _ in interventions]
        p = self._prefix_ready(sites)
        copies, n = len(interventions), len(self.index)
        cache = self._repeated_prefix(copies)
        if cache is None:
            return torch.cat([self.logits(mix, site=site) for site, mix in interventions])
        positions = self.encoded.base_position[self.index] - p
        with contextlib.ExitStack() as stack:
            for copy, (site, mix) in enumerate(interventions):
                rows = slice(copy * n, (copy + 1) * n)
                stack.enter_context(hooks.intervene(site, positions, mix, rows=rows))
            stack.enter_context(self._skipping(sites, copies))
            output = run_model(
                self.model,
                self.ids[:, p:].repeat(copies, 1),
                self.mask.repeat(copies, 1),
                use_cache=True,
                cache=cache,
            )
        return logits_at(output, (self.encoded.base_last[self.index] - p).repeat(copies))

    def _repeated_prefix(self, copies: int) -> Any:
        """The prefix cache with the batch repeated ``copies`` times (a fresh cache); None where
        the cache is not a plain one."""
        if self._store is not None and self._from_store:
            return self._store.cache_for(self.index.repeat(copies))
        return repeated_cache(self._cache, copies)

    def _prefix_ready(self, sites: Sequence[ResolvedSite]) -> int:
        """Fill ``self._cache`` with the batch's prefix (from the store where it has it and holds
        the layers a pass intervening at ``sites`` updates) once, again only where a pass needs
        layers it left out; return how many leading tokens it holds."""
        block = self._skippable(sites)
        prefix = self.prefix
        assert prefix is not None  # a run without a prefix takes the plain path
        if self._cache is not None:
            needed = block + 1 if block is not None and self._has_tail(block) else 0
            if self._first_layer > needed:  # kept for passes that skip more blocks
                self._cache, self._tails, self._from_store = None, {}, False
        if self._cache is None:
            store = self._store
            if (
                store is not None
                and store.prefix <= prefix
                and store.holds(self.index)
                and store.serves(block)
            ):
                self._cache, self._cached = store.cache_for(self.index), store.prefix
                self._from_store, self._first_layer = True, store.first_layer
            else:
                p = prefix
                blocks = tail_blocks(self.model, sites)  # each site's, to skip the earliest
                # the pass skips the blocks up to ``block`` where their output is recorded
                self._first_layer = block + 1 if block is not None and block in blocks else 0
                if blocks:
                    self._cache, self._tails = prefix_with_tails(
                        self.model, self.ids, self.mask, p, blocks, first_layer=self._first_layer
                    )
                else:
                    self._cache = prefix_cache(self.model, self.ids[:, :p], self.mask[:, :p])
                self._cached = p
        elif self._passed:  # back to the prefix (not after each pass: a fit's run makes one)
            cut_to(self._cache, self._cached)
        self._passed = False
        return self._cached

    def _full(
        self, mix: Callable[[torch.Tensor], torch.Tensor] | None, site: ResolvedSite | None
    ) -> torch.Tensor:
        encoded, index = self.encoded, self.index
        last = encoded.base_last[index]
        positions = encoded.base_position[index]
        intervening = mix is not None and site is not None
        limit = min(int(last.min()), int(positions.min()) if intervening else self.ids.shape[1])
        head, cache = split_head(self.model, self.ids, self.mask, limit, keep=False)
        context = (
            hooks.intervene(site, positions - head, mix)
            if mix is not None and site is not None
            else contextlib.nullcontext()
        )
        with context:
            output = run_model(
                self.model,
                self.ids[:, head:],
                self.mask,
                use_cache=cache is not None,
                cache=cache,
            )
        return logits_at(output, last - head)


def logits_at(output: Any, last: torch.Tensor) -> torch.Tensor:
    """Each row's logits at its token ``last[row]`` of the pass, (batch, vocab), in float32."""
    logits = output.logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, to_device(last, logits.device)].float()


def answer_logits(
    model: Any,
    site: ResolvedSite | None,
    encoded: EncodedPairs,
    index: torch.Tensor,
    mix: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    prefix_cache: bool = True,
    prefix_store: PrefixStore | None = None,
) -> torch.Tensor:
    """Logits (batch, vocab) at the last token of base prompts ``index``, intervened by ``mix``."""
    run = BaseRun(model, site, encoded, index, prefix_cache=prefix_cache, prefix_store=prefix_store)
    return run.logits(mix)
