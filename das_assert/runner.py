"""Forward passes over encoded pairs: source activations, and answer logits with or without an
intervention. The model is frozen, so source activations are computed once, without gradients,
stopping each forward pass right after the site, and reused for every step and evaluation. For the
same reason the base prompts' prefix before the site can be run once into a KV cache
(``PrefixStore``) and reused by every epoch of a fit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

from das_assert import hooks, sharing
from das_assert.data import EncodedPairs
from das_assert.errors import OutOfDeviceMemory
from das_assert.sites import ResolvedSite, existing_sites, last_attention

__all__ = [
    "BaseRun",
    "PrefixStore",
    "answer_logits",
    "shared_source_vectors",
    "source_vectors",
    "source_vectors_at",
    "weights_version",
]


def _oom_message(exc: BaseException, batch: int) -> OutOfDeviceMemory:
    return OutOfDeviceMemory(
        f"out of GPU memory with a batch of {batch} pairs ({exc}); lower the batch size "
        "(the model's `batch_size:` in das.yaml, or --batch-size of the CLI) or spread the model "
        "over several GPUs with device_map='auto' (--das-device-map auto / --device-map auto)",
        batch,
    )


def _forward(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    use_cache: bool = False,
    cache: Any = None,
) -> Any:
    device = model.get_input_embeddings().weight.device
    try:
        return model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            use_cache=use_cache,
            **{_cache_keyword(type(model)): cache},
        )
    except torch.cuda.OutOfMemoryError as exc:
        raise _oom_message(exc, ids.shape[0]) from None


@functools.cache
def _cache_keyword(model_class: type) -> str:
    """The name ``model_class.forward`` takes a KV cache by: ``cache`` from transformers 5.24 on
    (where ``past_key_values`` is deprecated), ``past_key_values`` before."""
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    """The KV cache a forward pass returned, under either of transformers' names for it."""
    found = getattr(output, "cache", None)
    return found if found is not None else output.past_key_values


_MIN_HEAD = 8  # a shorter shared head is not worth its own pass


def _shared_head(ids: torch.Tensor, mask: torch.Tensor, limit: int) -> int:
    """How many leading tokens (at most ``limit``) all rows share, unpadded; 0 if too few."""
    width = min(limit, ids.shape[1])
    if ids.shape[0] < 2 or width < _MIN_HEAD:
        return 0
    same = (ids[:, :width] == ids[:1, :width]).all(dim=0) & mask[:, :width].bool().all(dim=0)
    head = int(torch.cumprod(same.int(), dim=0).sum())
    return head if head >= _MIN_HEAD else 0


_HEADS: list[tuple[tuple[Any, ...], Any, list[tuple[torch.Tensor, torch.Tensor]]]] = []


def weights_version(model: Any) -> tuple[Any, ...]:
    """Changes whenever a parameter is replaced or modified in place."""
    return (id(model), *((id(p), p._version) for p in model.parameters()))


@torch.no_grad()
def _head_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor, *, keep: bool = True) -> Any:
    """The KV cache of a head every row shares, run once for one row (``_head_cache_class``).

    The last few heads are remembered (keyed by the token ids and the weights' version), so the
    template's preamble runs once for a whole evaluation, not once per batch.
    """
    key = (bytes(ids[0].cpu().numpy()), weights_version(model))
    # The weak reference must still point at this very model: ids are reused after a model dies.
    tensors = next((kv for k, ref, kv in _HEADS if k == key and ref() is model), None)
    if tensors is None:
        cache = _filled_cache(model, ids[:1], mask[:1], None)
        tensors = _layer_tensors(cache)
        if tensors is None:
            return None
        _HEADS.insert(0, (key, weakref.ref(model), tensors))
        del _HEADS[4:]
    return _head_cache_class()(tensors, keep=keep)


@functools.cache
def _head_cache_class() -> type:
    """A plain ``DynamicCache`` over one row's head, shared by every row of a pass.

    Each layer's head is expanded to the pass's rows as the layer is updated, never copied per
    row ahead of the pass. With ``keep=False`` a pass only reads it: each update returns the head
    followed by the pass's own keys and values and stores nothing, so a pass that needs no cache
    afterwards (source activations, whole-prompt logits) holds one layer's keys and values at a
    time, not every layer's (at 7B shape and 64 rows, 2.6 GiB for a 79-token prompt)."""
    from transformers import DynamicCache

    class HeadCache(DynamicCache):
        def __init__(self, tensors: list[tuple[torch.Tensor, torch.Tensor]], *, keep: bool):
            super().__init__()
            for index, (keys, values) in enumerate(tensors):
                DynamicCache.update(self, keys, values, index)
            self.keep = keep

        def update(
            self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kw: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            layer = self.layers[layer_idx]
            head = _expanded(layer.keys, keys.shape[0]), _expanded(layer.values, keys.shape[0])
            if not self.keep:
                return torch.cat([head[0], keys], dim=-2), torch.cat([head[1], values], dim=-2)
            layer.keys, layer.values = head  # views: the update's concatenation copies them
            return super().update(keys, values, layer_idx, *args, **kw)

        def widen(self, rows: int) -> None:
            """Hold the head once per row, as a cache that is read outside a pass must."""
            for layer in self.layers:
                layer.keys = _expanded(layer.keys, rows).contiguous()
                layer.values = _expanded(layer.values, rows).contiguous()

    return HeadCache


def _expanded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    return tensor if tensor.shape[0] == rows else tensor.expand(rows, *tensor.shape[1:])


def _split_head(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, limit: int, *, keep: bool = True
) -> tuple[int, Any]:
    """``(head, cache)``: the KV cache of the leading tokens all rows share (the template's
    preamble, at most ``limit`` of them), run once for one row; ``(0, None)`` where there is none.
    A forward pass over ``ids[:, head:]`` on top of ``cache`` gives the whole prompt's output;
    with ``keep=False`` that pass leaves the cache as it was (``_head_cache_class``)."""
    head = _shared_head(ids, mask, limit)
    cache = _head_cache(model, ids[:, :head], mask[:, :head], keep=keep) if head else None
    return (head, cache) if cache is not None else (0, None)


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
    chunks: dict[tuple[str, str], list[torch.Tensor]] = {hooks.site_key(s): [] for s in sites}
    for index in encoded.batches(batch_size):
        captured = _capture_sources(model, sites, encoded, index)
        for key, chunk in chunks.items():
            chunk.append(captured[key])
    return {key: torch.cat(chunk) for key, chunk in chunks.items()}


def _capture_sources(
    model: Any, sites: Sequence[ResolvedSite], encoded: EncodedPairs, index: torch.Tensor
) -> dict[tuple[str, str], torch.Tensor]:
    """One batch of ``source_vectors_at``. A function of its own so that the batch's KV cache
    is freed on return: held in the caller's loop, it would still be alive while the next batch
    builds its own, and the pass would peak at two batches' caches."""
    ids, mask = encoded.source_batch(index)
    positions = encoded.source_position[index]
    head, cache = _split_head(model, ids, mask, int(positions.min()), keep=False)
    with hooks.capture_many(sites, positions - head, stop=True) as captured:
        _forward(model, ids[:, head:], mask, use_cache=cache is not None, cache=cache)
    return captured


def shared_source_vectors(
    model: Any, site: ResolvedSite, encoded: EncodedPairs, *, batch_size: int = 64
) -> torch.Tensor:
    """``source_vectors``, computed once per pair set and site inside a ``sharing()`` block.

    Where the block plans sites (a search's layers at one position), the first call records all
    of them in one pass: a deeper layer's run passes every shallower one on its way. Like prefix
    stores, they are kept only by a block that keeps large things (a search's, not a session's).
    """
    if not sharing.prefix_stores_active():
        return source_vectors(model, site, encoded, batch_size=batch_size)

    version = weights_version(model)

    def key(target: ResolvedSite) -> tuple[Any, ...]:
        return ("sources", id(encoded), *hooks.site_key(target), version)

    found = sharing.lookup(key(site), owners=(model, encoded))
    if found is not None:
        return found
    planned = [s for s in sharing.planned_sites() if s.position == encoded.position]
    sites = [site, *existing_sites(model, planned)]
    vectors = source_vectors_at(model, sites, encoded, batch_size=batch_size)
    for target in sites:
        sharing.remember(key(target), vectors[hooks.site_key(target)], owners=(model, encoded))
    return vectors[hooks.site_key(site)]


def _prefix_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """The KV cache of a prefix, without gradients; the decoder alone, no logits are needed."""
    with torch.no_grad():
        head, cache = _split_head(model, ids, mask, ids.shape[1])
        if head == ids.shape[1]:
            cache.widen(ids.shape[0])
            return cache
        return _filled_cache(model, ids[:, head:], mask, cache)


def _filled_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> Any:
    """``cache`` (None: a new one) extended by a pass over ``ids``, ``mask`` covering both.

    The pass stops once the last block's attention has written its keys and values: the last
    block's MLP and the final norm have nothing to give a cache (for a 4-layer model that is a
    fifth of the work)."""
    from transformers import DynamicCache

    attention = last_attention(model)
    if attention is None:
        return _returned_cache(_forward(model.base_model, ids, mask, use_cache=True, cache=cache))
    cache = DynamicCache(config=model.config) if cache is None else cache
    with hooks.stop_after(attention):
        _forward(model.base_model, ids, mask, use_cache=True, cache=cache)
    return cache


def _layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(keys, values) of every layer of a plain ``DynamicCache``; None for any other layout."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def _estimated_kv_bytes(model: Any, rows: int, tokens: int) -> int:
    """The bytes of a plain KV cache of ``rows`` x ``tokens`` by the model's config (0 where the
    config does not tell): keys and values of every layer and key-value head."""
    config = model.config
    try:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    except AttributeError:
        return 0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    element = next(model.parameters()).element_size()
    return 2 * layers * rows * tokens * kv_heads * head_dim * element


def _kv_bytes(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(k.nbytes + v.nbytes for k, v in layers)


class PrefixStore:
    """The KV cache of every base prompt's prefix [0, p), computed once and kept for a whole fit.

    Without it each training step reruns the prefix of its batch; with it, every epoch after the
    first costs only the suffix [p, end), p the earliest site position of all prompts. Built only
    when the model uses a plain ``DynamicCache`` and the cache fits ``max_bytes``.
    """

    def __init__(self, prefix: int, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.prefix = prefix
        self.layers = layers

    @property
    def nbytes(self) -> int:
        return _kv_bytes(self.layers)

    @classmethod
    def build(
        cls, model: Any, encoded: EncodedPairs, *, batch_size: int, max_bytes: int
    ) -> PrefixStore | None:
        """The store for ``encoded``, or None where it does not apply or would not fit."""
        n = len(encoded)
        p = _shared_prefix(encoded, torch.arange(n)) if n else None
        if p is None or max_bytes <= 0:
            return None
        # Far past the budget by the config's count: refused without running a batch (at 7B a
        # 640-pair store needs 26 GiB; its first batch alone cost a prefix pass and 0.26 GiB).
        if _estimated_kv_bytes(model, n, p) > 2 * max_bytes:
            return None
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            ids, mask = encoded.base_batch(index)
            tensors = _layer_tensors(_prefix_cache(model, ids[:, :p], mask[:, :p]))
            if tensors is None:
                return None
            if not layers:  # the first batch tells the size of the whole store
                if _kv_bytes(tensors) * n > max_bytes * len(index):
                    return None
                # Filled in place, batch by batch: the build holds the store and one batch,
                # never the store twice (as gathering the batches and concatenating would).
                layers = [
                    (k.new_empty((n, *k.shape[1:])), v.new_empty((n, *v.shape[1:])))
                    for k, v in tensors
                ]
            for (keys, values), (k, v) in zip(layers, tensors, strict=True):
                keys[start : start + len(index)] = k
                values[start : start + len(index)] = v
        return cls(p, layers)

    @classmethod
    def shared(
        cls, model: Any, encoded: EncodedPairs, *, batch_size: int, max_bytes: int
    ) -> PrefixStore | None:
        """``build``, computed once per pair set inside a ``sharing()`` block that shares prefix
        stores: the prefix does not depend on the layer, so a search's cells at one position
        share it. Elsewhere every call builds its own."""

        def make() -> PrefixStore | None:
            return cls.build(model, encoded, batch_size=batch_size, max_bytes=max_bytes)

        if not sharing.prefix_stores_active():
            return make()
        key = ("prefix_store", id(model), id(encoded), max_bytes)
        return sharing.shared(key, make, owners=(model, encoded))

    def cache_for(self, index: torch.Tensor) -> Any:
        """A fresh ``DynamicCache`` holding the prefixes of rows ``index``."""
        from transformers import DynamicCache

        rows = index.to(self.layers[0][0].device)
        return DynamicCache(ddp_cache_data=[(k[rows], v[rows]) for k, v in self.layers])


class BaseRun:
    """Forward passes over one batch of base prompts, with or without an intervention.

    An intervention at token p cannot change anything at tokens before p. The prefix before the
    batch's earliest site position p runs once, without gradients, into a KV cache, and each pass
    runs only the suffix [p, end) on top of it; the backward pass then covers only the suffix. A
    ``PrefixStore`` supplies that cache precomputed. With ``prefix_cache=False`` (or no site) each
    pass runs the whole prompt. All paths give the same logits up to float rounding.
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
        self.prefix = _shared_prefix(encoded, index) if prefix_cache and site is not None else None
        self._store = prefix_store if self.prefix is not None else None
        self._cache: Any = None
        self._cached = 0  # how many leading tokens self._cache holds

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
        p = self._prefix_ready()
        index = self.index
        positions = self.encoded.base_position[index] - p
        last = self.encoded.base_last[index] - p
        context = (
            hooks.intervene(site, positions, mix)
            if mix is not None and site is not None
            else contextlib.nullcontext()
        )
        with context:
            output = _forward(
                self.model, self.ids[:, p:], self.mask, use_cache=True, cache=self._cache
            )
        self._cache.crop(-(self.ids.shape[1] - p))  # back to the prefix for the next pass
        return _logits_at(output, last)

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
        p = self._prefix_ready()
        layers = _layer_tensors(self._cache)
        if layers is None:
            return torch.cat([self.logits(mix, site=site) for site, mix in interventions])
        from transformers import DynamicCache

        copies, n = len(interventions), len(self.index)
        cache = DynamicCache(
            ddp_cache_data=[
                (k.repeat(copies, 1, 1, 1), v.repeat(copies, 1, 1, 1)) for k, v in layers
            ]
        )
        positions = self.encoded.base_position[self.index] - p
        with contextlib.ExitStack() as stack:
            for copy, (site, mix) in enumerate(interventions):
                rows = slice(copy * n, (copy + 1) * n)
                stack.enter_context(hooks.intervene(site, positions, mix, rows=rows))
            output = _forward(
                self.model,
                self.ids[:, p:].repeat(copies, 1),
                self.mask.repeat(copies, 1),
                use_cache=True,
                cache=cache,
            )
        return _logits_at(output, (self.encoded.base_last[self.index] - p).repeat(copies))

    def _prefix_ready(self) -> int:
        """Fill ``self._cache`` with the batch's prefix (from the store where it has it) once;
        return how many leading tokens it holds."""
        if self._cache is None:
            store = self._store
            if store is not None and store.prefix <= self.prefix:
                self._cache, self._cached = store.cache_for(self.index), store.prefix
            else:
                p = self.prefix
                self._cache = _prefix_cache(self.model, self.ids[:, :p], self.mask[:, :p])
                self._cached = p
        return self._cached

    def _full(
        self, mix: Callable[[torch.Tensor], torch.Tensor] | None, site: ResolvedSite | None
    ) -> torch.Tensor:
        encoded, index = self.encoded, self.index
        last = encoded.base_last[index]
        positions = encoded.base_position[index]
        intervening = mix is not None and site is not None
        limit = min(int(last.min()), int(positions.min()) if intervening else self.ids.shape[1])
        head, cache = _split_head(self.model, self.ids, self.mask, limit, keep=False)
        context = (
            hooks.intervene(site, positions - head, mix)
            if intervening
            else contextlib.nullcontext()
        )
        with context:
            output = _forward(
                self.model,
                self.ids[:, head:],
                self.mask,
                use_cache=cache is not None,
                cache=cache,
            )
        return _logits_at(output, last - head)


def _logits_at(output: Any, last: torch.Tensor) -> torch.Tensor:
    """Each row's logits at its token ``last[row]`` of the pass, (batch, vocab), in float32."""
    logits = output.logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, last.to(logits.device)].float()


def _shared_prefix(encoded: EncodedPairs, index: torch.Tensor) -> int | None:
    """The tokens before the earliest site position of the rows: no intervention reaches them.

    Right padding keeps every row unpadded there, so they can run once into a KV cache."""
    p = int(encoded.base_position[index].min())
    return p if p > 0 else None


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
