"""KV caches for passes that skip what no intervention can change.

An intervention at token p cannot change tokens before p, and every prompt of the price-tagging
template opens with the same preamble. So the preamble runs once for one row (``HeadCache``,
held once and expanded as each layer is updated), a batch's prefix before its earliest site runs
once without gradients (``prefix_cache``), and a fit can keep every prefix for all its epochs
(``PrefixStore``). Nor can it change the blocks up to its site: the prefix pass, or the store,
also records what the site's block outputs at the later tokens (``prefix_with_tails``), for
passes that skip those blocks. ``run_model`` is the one call into the model, under either of
transformers' names for the cache.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import Any

import torch

from das_assert import hooks, sharing
from das_assert.data import EncodedPairs
from das_assert.errors import OutOfDeviceMemory
from das_assert.sites import decoder_blocks, last_attention

__all__ = [
    "PrefixStore",
    "cut_to",
    "estimated_kv_bytes",
    "layer_tensors",
    "plain_cache",
    "prefix_cache",
    "prefix_with_tails",
    "returned_cache",
    "run_model",
    "shared_prefix",
    "source_pass_rows",
    "split_head",
    "weights_version",
]


def _oom_message(exc: BaseException, batch: int) -> OutOfDeviceMemory:
    return OutOfDeviceMemory(
        f"out of GPU memory with a batch of {batch} pairs ({exc}); lower the batch size "
        "(the model's `batch_size:` in das.yaml, or --batch-size of the CLI) or spread the model "
        "over several GPUs with device_map='auto' (--das-device-map auto / --device-map auto)",
        batch,
    )


def run_model(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    use_cache: bool = False,
    cache: Any = None,
) -> Any:
    """The model's outputs on ``ids``, on top of ``cache``; out of GPU memory, one error that
    says what to lower."""
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


def returned_cache(output: Any) -> Any:
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
        tensors = layer_tensors(cache)
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


def split_head(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, limit: int, *, keep: bool = True
) -> tuple[int, Any]:
    """``(head, cache)``: the KV cache of the leading tokens all rows share (the template's
    preamble, at most ``limit`` of them), run once for one row; ``(0, None)`` where there is none.
    A forward pass over ``ids[:, head:]`` on top of ``cache`` gives the whole prompt's output;
    with ``keep=False`` that pass leaves the cache as it was (``_head_cache_class``)."""
    head = _shared_head(ids, mask, limit)
    cache = _head_cache(model, ids[:, :head], mask[:, :head], keep=keep) if head else None
    return (head, cache) if cache is not None else (0, None)


def prefix_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """The KV cache of a prefix, without gradients; the decoder alone, no logits are needed."""
    with torch.no_grad():
        head, cache = split_head(model, ids, mask, ids.shape[1])
        if head == ids.shape[1]:
            cache.widen(ids.shape[0])
            return cache
        return _filled_cache(model, ids[:, head:], mask, cache)


def prefix_with_tails(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, prefix: int, blocks: dict[int, Any]
) -> tuple[Any, dict[int, hooks.Tail]]:
    """``prefix_cache`` of ``ids[:, :prefix]`` and what ``blocks`` (index -> block) output at
    tokens [prefix, end), from one pass over the whole prompt without gradients.

    An intervention at a token from ``prefix`` on, after those blocks, cannot change them: a
    suffix pass can take their outputs (``hooks.skip_blocks``) instead of running them."""
    with torch.no_grad():
        head, cache = split_head(model, ids, mask, prefix)
        last = len(decoder_blocks(model) or ()) - 1
        with hooks.record_tails(blocks, prefix - head) as tails:
            cache = _filled_cache(model, ids[:, head:], mask, cache, through=blocks.get(last))
        cut_to(cache, prefix)
    return cache, tails


def cut_to(cache: Any, tokens: int) -> None:
    """Cut ``cache`` back to its first ``tokens`` tokens. Each layer of a plain cache is cut on
    its own: a pass that skipped blocks (``hooks.skip_blocks``) left theirs shorter."""
    layers = layer_tensors(cache)
    if layers is None:
        cache.crop(tokens - cache.get_seq_length())  # a negative count: the tokens to remove
        return
    for layer in cache.layers:
        layer.keys = layer.keys[..., :tokens, :]
        layer.values = layer.values[..., :tokens, :]


def _filled_cache(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, *, through: Any = None
) -> Any:
    """``cache`` (None: a new one) extended by a pass over ``ids``, ``mask`` covering both.

    The pass stops once the last block's attention has written its keys and values: the last
    block's MLP and the final norm have nothing to give a cache (for a 4-layer model that is a
    fifth of the work). ``through``: the last block, where its output is wanted too."""
    from transformers import DynamicCache

    stop = through if through is not None else last_attention(model)
    if stop is None:
        return returned_cache(run_model(model.base_model, ids, mask, use_cache=True, cache=cache))
    cache = DynamicCache(config=model.config) if cache is None else cache
    with hooks.stop_after(stop):
        run_model(model.base_model, ids, mask, use_cache=True, cache=cache)
    return cache


_PLAIN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def plain_cache(model: Any) -> bool:
    """Whether ``model`` keeps a plain ``DynamicCache`` (every layer whole, no sliding window):
    one whose layers can each be cut back to a prefix (``cut_to``) after any pass. Asked once per
    model: building an empty cache to look took 0.7 ms at 32 layers, on every training step."""
    found = _PLAIN.get(model)
    if found is None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        try:
            layers = DynamicCache(config=model.config).layers
        except (TypeError, ValueError, AttributeError):
            layers = []
        found = _PLAIN[model] = bool(layers) and all(type(x) is DynamicLayer for x in layers)
    return found


def layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(keys, values) of every layer of a plain ``DynamicCache``; None for any other layout."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def estimated_kv_bytes(model: Any, rows: int, tokens: int) -> int:
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


_MOST_SOURCE_BATCHES = 4


def source_pass_rows(model: Any, encoded: EncodedPairs, batch: int) -> int:
    """Rows per source pass of a fit at ``batch``: up to four batches at once, where a pass of
    that many rows holds less than one training step's prefix cache, by the config's count.

    A source pass stores no cache (``HeadCache``, ``keep=False``), so what it holds is one layer's
    work at a time, about (3 x MLP width + 4 x hidden size) values per token: the batch a user
    picks still bounds the fit's memory. Fewer, larger passes dispatch fewer ops, which is what a
    GPU step bound by its host pays for (at Llama-7B's shape: four batches a pass; at the embedded
    model's, one)."""
    n = len(encoded)
    p = shared_prefix(encoded, torch.arange(n)) if n else None
    d = getattr(model.config, "hidden_size", None)
    if p is None or not d:
        return batch
    mlp = getattr(model.config, "intermediate_size", None) or getattr(model.config, "n_inner", None)
    element = next(model.parameters()).element_size()
    work = encoded.source_ids.shape[1] * (3 * (mlp or 4 * d) + 4 * d) * element
    times = estimated_kv_bytes(model, 1, p) // max(work, 1)
    return batch * max(1, min(_MOST_SOURCE_BATCHES, times))


def _kv_bytes(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(k.nbytes + v.nbytes for k, v in layers)


class PrefixStore:
    """The KV cache of every base prompt's prefix [0, p), computed once and kept for a whole fit.

    Without it each training step reruns the prefix of its batch; with it, every epoch after the
    first costs only the suffix [p, end), p the earliest site position of all prompts. Built only
    when the model uses a plain ``DynamicCache`` and the cache fits ``max_bytes``. Asked for
    ``blocks``, it also keeps what they output from token p on (``prefix_with_tails``), so that a
    suffix pass need not run them.
    """

    def __init__(
        self,
        prefix: int,
        layers: list[tuple[torch.Tensor, torch.Tensor]],
        tails: dict[int, hooks.Tail] | None = None,
    ) -> None:
        self.prefix = prefix
        self.layers = layers
        self.tails = tails or {}

    @property
    def nbytes(self) -> int:
        return _kv_bytes(self.layers) + sum(t.hidden.nbytes for t in self.tails.values())

    @classmethod
    def build(
        cls,
        model: Any,
        encoded: EncodedPairs,
        *,
        batch_size: int,
        max_bytes: int,
        blocks: dict[int, Any] | None = None,
    ) -> PrefixStore | None:
        """The store for ``encoded``, or None where it does not apply or would not fit."""
        n = len(encoded)
        p = shared_prefix(encoded, torch.arange(n)) if n else None
        if p is None or max_bytes <= 0:
            return None
        # Far past the budget by the config's count: refused without running a batch (at 7B a
        # 640-pair store needs 26 GiB; its first batch alone cost a prefix pass and 0.26 GiB).
        if estimated_kv_bytes(model, n, p) > 2 * max_bytes:
            return None
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        tails: dict[int, hooks.Tail] = {}
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            if blocks:  # every prompt's whole length, so that every batch's tails line up
                ids, mask = encoded.base_ids[index], encoded.base_mask[index]
                cache, batch_tails = prefix_with_tails(model, ids, mask, p, blocks)
            else:
                ids, mask = encoded.base_batch(index)
                cache, batch_tails = prefix_cache(model, ids[:, :p], mask[:, :p]), {}
            tensors = layer_tensors(cache)
            if tensors is None:
                return None
            if not layers:  # the first batch tells the size of the whole store
                tail_bytes = sum(t.hidden.nbytes for t in batch_tails.values())
                if (_kv_bytes(tensors) + tail_bytes) * n > max_bytes * len(index):
                    return None
                # Filled in place, batch by batch: the build holds the store and one batch,
                # never the store twice (as gathering the batches and concatenating would).
                layers = [
                    (k.new_empty((n, *k.shape[1:])), v.new_empty((n, *v.shape[1:])))
                    for k, v in tensors
                ]
                tails = {
                    block: hooks.Tail(t.hidden.new_empty((n, *t.hidden.shape[1:])), t.in_tuple)
                    for block, t in batch_tails.items()
                }
            for (keys, values), (k, v) in zip(layers, tensors, strict=True):
                keys[start : start + len(index)] = k
                values[start : start + len(index)] = v
            for block, tail in tails.items():
                tail.hidden[start : start + len(index)] = batch_tails[block].hidden
        return cls(p, layers, tails)

    @classmethod
    def shared(
        cls,
        model: Any,
        encoded: EncodedPairs,
        *,
        batch_size: int,
        max_bytes: int,
        blocks: dict[int, Any] | None = None,
    ) -> PrefixStore | None:
        """``build``, computed once per pair set inside a ``sharing()`` block that shares prefix
        stores: the prefix does not depend on the layer, so a search's cells at one position
        share it (and the first to build it asks for every planned layer's tail). Elsewhere
        every call builds its own."""

        def make() -> PrefixStore | None:
            return cls.build(
                model, encoded, batch_size=batch_size, max_bytes=max_bytes, blocks=blocks
            )

        if not sharing.prefix_stores_active():
            return make()
        key = ("prefix_store", id(model), id(encoded), max_bytes)
        return sharing.shared(key, make, owners=(model, encoded))

    def cache_for(self, index: torch.Tensor) -> Any:
        """A fresh ``DynamicCache`` holding the prefixes of rows ``index``."""
        from transformers import DynamicCache

        rows = index.to(self.layers[0][0].device)
        return DynamicCache(ddp_cache_data=[(k[rows], v[rows]) for k, v in self.layers])

    def tail_for(self, index: torch.Tensor, block: int, length: int) -> hooks.Tail | None:
        """Block ``block``'s output at tokens [prefix, length) of rows ``index``; None where
        the store did not keep it."""
        tail = self.tails.get(block)
        if tail is None:
            return None
        rows = index.to(tail.hidden.device)
        return hooks.Tail(tail.hidden[rows, : length - self.prefix], tail.in_tuple)


def shared_prefix(encoded: EncodedPairs, index: torch.Tensor) -> int | None:
    """The tokens before the earliest site position of the rows: no intervention reaches them.

    Right padding keeps every row unpadded there, so they can run once into a KV cache."""
    p = int(encoded.base_position[index].min())
    return p if p > 0 else None
