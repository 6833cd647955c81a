"""KV caches for passes that skip what no intervention can change.

An intervention at token p cannot change tokens before p, and every prompt of the price-tagging
template opens with the same preamble. So the preamble runs once for one row (``HeadCache``,
held once and expanded as each layer is updated), a batch's prefix before its earliest site runs
once without gradients (``prefix_cache``), and a fit can keep prefixes for many steps
(``prefix_store.PrefixStore``). Nor can it change the blocks up to its site: the prefix pass, or
the store, also records what the site's block outputs at the later tokens
(``prefix_with_tails``), for passes that skip those blocks. ``run_model`` is the one call into
the model, under either of transformers' names for the cache.
"""

from __future__ import annotations

import functools
import textwrap
import weakref
from typing import Any

import torch

from das_assert import hooks
from das_assert.cache_layers import (
    cut_to,
    expanded_rows,
    holding_layers,
    layer_tensors,
    skip_layers,
    skipped_layer_class,
)
from das_assert.data import EncodedPairs
from das_assert.errors import OutOfDeviceMemory
from das_assert.forward_signature import cache_keyword, takes_a_kv_cache
from das_assert.model_state import model_version
from das_assert.sites import decoder_blocks, last_attention
from das_assert.transfer import to_device

__all__ = [
    "allocation_failed",
    "cached_passes_again",
    "cpu_allocation_failed",
    "estimated_kv_bytes",
    "filled_cache",
    "filled_with_tails",
    "head_cache_class",
    "head_tensors",
    "out_of_memory",
    "plain_cache",
    "prefix_cache",
    "prefix_caching_works",
    "prefix_with_tails",
    "returned_cache",
    "run_model",
    "run_whole_prompts",
    "shared_head",
    "shared_prefix",
    "source_pass_rows",
    "split_head",
    "whole_prompts_only",
    "why_prompts_run_whole",
]


def cpu_allocation_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CPU allocator running out of memory (a plain RuntimeError)."""
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def allocation_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator running out of memory: a GPU's, or the CPU's."""
    return isinstance(exc, torch.OutOfMemoryError) or cpu_allocation_failed(exc)


def out_of_memory(exc: BaseException, batch: int) -> OutOfDeviceMemory | None:
    """``exc`` as one error that says what to lower, where it is a GPU's or the CPU allocator's
    running out of memory (the CPU's is a plain RuntimeError); else None."""
    if isinstance(exc, torch.OutOfMemoryError):
        where, spread = (
            "GPU memory",
            (
                " or spread the model over several GPUs with device_map='auto' "
                "(--das-device-map auto / --device-map auto)"
            ),
        )
    elif cpu_allocation_failed(exc):
        where, spread = "memory (the CPU's allocator failed)", ""
    else:
        return None
    return OutOfDeviceMemory(
        f"out of {where} with a batch of {batch} pairs ({textwrap.shorten(str(exc), 300)}); "
        "lower the batch size (the model's `batch_size:` in das.yaml, or --batch-size of the "
        f"CLI){spread}",
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
            input_ids=to_device(ids, device),
            attention_mask=to_device(mask, device),
            use_cache=use_cache,
            **{cache_keyword(type(model)): cache},
        )
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if (error := out_of_memory(exc, ids.shape[0])) is None:
            raise
        raise error from None


def returned_cache(output: Any) -> Any:
    """The KV cache a forward pass returned, under either of transformers' names for it."""
    found = getattr(output, "cache", None)
    return found if found is not None else output.past_key_values


_MIN_HEAD = 8  # a shorter shared head is not worth its own pass


def shared_head(ids: torch.Tensor, mask: torch.Tensor, limit: int) -> int:
    """How many leading tokens (at most ``limit``) all rows share, unpadded; 0 if too few."""
    width = min(limit, ids.shape[1])
    if ids.shape[0] < 2 or width < _MIN_HEAD:
        return 0
    same = (ids[:, :width] == ids[:1, :width]).all(dim=0) & mask[:, :width].bool().all(dim=0)
    head = int(torch.cumprod(same.int(), dim=0).sum())
    return head if head >= _MIN_HEAD else 0


_HEADS: list[tuple[tuple[Any, ...], Any, list[tuple[torch.Tensor, torch.Tensor]]]] = []


@torch.no_grad()
def head_tensors(
    model: Any, ids: torch.Tensor, mask: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Keys and values of every layer over a head every row shares, run once for one row; None
    where the cache is not a plain one.

    The last few heads are remembered (keyed by the token ids and ``model_version``), so the
    template's preamble runs once for a whole evaluation, not once per batch.
    """
    key = (bytes(ids[0].cpu().numpy()), model_version(model))
    # A model that is gone leaves its entries, which would hold its keys and values until four
    # others pushed them out. The weak reference must also still point at this very model: ids
    # are reused after a model dies.
    _HEADS[:] = [entry for entry in _HEADS if entry[1]() is not None]
    tensors = next((kv for k, ref, kv in _HEADS if k == key and ref() is model), None)
    if tensors is None:
        cache = filled_cache(model, ids[:1], mask[:1], None)
        tensors = layer_tensors(cache)
        if tensors is None:
            return None
        _HEADS.insert(0, (key, weakref.ref(model, _forget_heads), tensors))
        del _HEADS[4:]
    return tensors


def _forget_heads(gone: weakref.ref) -> None:
    """A model's heads go with it, not at the next pass of another (``del model`` freed none
    of a GPU's memory that its keys and values held)."""
    _HEADS[:] = [entry for entry in _HEADS if entry[1] is not gone]


def _head_cache(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, *, keep: bool = True, skip_below: int = 0
) -> Any:
    """The KV cache of a head every row shares, run once for one row (``head_cache_class``)."""
    tensors = head_tensors(model, ids, mask)
    if tensors is None:
        return None
    return head_cache_class()(tensors, keep=keep, skip_below=skip_below)


@functools.cache
def head_cache_class() -> type:
    """A plain ``DynamicCache`` over one row's head, shared by every row of a pass.

    Each layer's head is expanded to the pass's rows as the layer is updated, never copied per
    row ahead of the pass. With ``keep=False`` a pass only reads it: each update returns the head
    followed by the pass's own keys and values and stores nothing, so a pass that needs no cache
    afterwards (source activations, whole-prompt logits) holds one layer's keys and values at a
    time, not every layer's (at 7B shape and 64 rows, 2.5 GiB for a 79-token prompt). With
    ``own=t`` as well, it keeps the first ``t`` of the pass's own tokens of every layer in
    ``own`` (layer -> (keys, values)), the head left out: what a ``PrefixStore`` holds per row.
    Layers before ``skip_below`` keep nothing (their blocks are skipped by every later pass,
    ``hooks.skip_blocks``): with ``keep=True`` each becomes a ``SkippedLayer`` that holds the
    prefix's length alone."""
    from transformers import DynamicCache

    class HeadCache(DynamicCache):
        def __init__(
            self,
            tensors: list[tuple[torch.Tensor, torch.Tensor]],
            *,
            keep: bool,
            own: int | None = None,
            skip_below: int = 0,
        ):
            super().__init__()
            self.layers = holding_layers(tensors)
            self.keep = keep
            self.own_tokens = own
            self.skip_below = skip_below
            self.own: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def update(  # type: ignore[override]  # the signature differs between transformers 4 and 5
            self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kw: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            layer: Any = self.layers[layer_idx]  # transformers' layer classes vary by version
            rows = keys.shape[0]
            head = expanded_rows(layer.keys, rows), expanded_rows(layer.values, rows)
            skipped = layer_idx < self.skip_below
            if self.keep and not skipped:
                layer.keys, layer.values = head  # views: the update's concatenation copies them
                return super().update(keys, values, layer_idx, *args, **kw)
            if self.keep:
                tokens = layer.keys.shape[-2] + keys.shape[-2]
                self.layers[layer_idx] = skipped_layer_class()(tokens, keys.dtype, keys.device)
            elif self.own_tokens is not None and not skipped:  # copies: the pass's own can go
                cut = slice(None, self.own_tokens)
                self.own[layer_idx] = (
                    keys[..., cut, :].contiguous(),
                    values[..., cut, :].contiguous(),
                )
            return torch.cat([head[0], keys], dim=-2), torch.cat([head[1], values], dim=-2)

        def widen(self, rows: int) -> None:
            """Hold the head once per row, as a cache that is read outside a pass must."""
            layer: Any  # transformers' layer classes vary by version
            for layer in self.layers:
                layer.keys = expanded_rows(layer.keys, rows).contiguous()
                layer.values = expanded_rows(layer.values, rows).contiguous()

    return HeadCache


def split_head(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    limit: int,
    *,
    keep: bool = True,
    skip_below: int = 0,
) -> tuple[int, Any]:
    """``(head, cache)``: the KV cache of the leading tokens all rows share (the template's
    preamble, at most ``limit`` of them), run once for one row; ``(0, None)`` where there is none.
    A forward pass over ``ids[:, head:]`` on top of ``cache`` gives the whole prompt's output;
    with ``keep=False`` that pass leaves the cache as it was (``head_cache_class``, as is
    ``skip_below``). ``(0, None)`` too where the prompts cannot be cached
    (``prefix_caching_works``)."""
    head = shared_head(ids, mask, limit) if prefix_caching_works(model, ids.shape[1]) else 0
    cache = None
    if head:
        cache = _head_cache(model, ids[:, :head], mask[:, :head], keep=keep, skip_below=skip_below)
    return (head, cache) if cache is not None else (0, None)


def prefix_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """The KV cache of a prefix, without gradients; the decoder alone, no logits are needed."""
    with torch.no_grad():
        head, cache = split_head(model, ids, mask, ids.shape[1])
        if head == ids.shape[1]:
            cache.widen(ids.shape[0])
            return cache
        return filled_cache(model, ids[:, head:], mask, cache)


def prefix_with_tails(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    prefix: int,
    blocks: dict[int, Any],
    *,
    first_layer: int = 0,
) -> tuple[Any, dict[int, hooks.Tail]]:
    """``prefix_cache`` of ``ids[:, :prefix]`` and what ``blocks`` (index -> block) output at
    tokens [prefix, end), from one pass over the whole prompt without gradients.

    An intervention at a token from ``prefix`` on, after those blocks, cannot change them: a
    suffix pass can take their outputs (``hooks.skip_blocks``) instead of running them. Where
    every later pass does, the cache keeps no keys or values of the layers before
    ``first_layer`` (one past the earliest skipped block: ``prefix_store.first_layer_needed``)."""
    with torch.no_grad():
        head, cache = split_head(model, ids, mask, prefix, skip_below=first_layer)
        cache, tails = filled_with_tails(model, ids[:, head:], mask, cache, blocks, prefix - head)
        skip_layers(cache, first_layer)  # where no head was split off, the pass kept them all
        cut_to(cache, prefix)
    return cache, tails


def filled_with_tails(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    cache: Any,
    blocks: dict[int, Any] | None,
    start: int,
) -> tuple[Any, dict[int, hooks.Tail]]:
    """``filled_cache`` of a pass over ``ids``, and what ``blocks`` output at its tokens from
    ``start`` on (none asked for: an empty dict). The pass runs through the last block where
    that block's output is asked for."""
    blocks = blocks or {}
    last = len(decoder_blocks(model) or ()) - 1
    with hooks.record_tails(blocks, start) as tails:
        cache = filled_cache(model, ids, mask, cache, through=blocks.get(last))
    return cache, tails


def prefix_caching_works(model: Any, tokens: int) -> bool:
    """False for a model whose cache forgets tokens, a sliding window shorter than ``tokens``
    (Mistral, Gemma 2 and 3 with long prompts), or one that keeps a recurrent state
    (``keeps_only_attention``): such a cache cannot be cut back to a prefix, so every pass runs
    the whole prompt. False too for a model set to whole prompts (``run_whole_prompts``)."""
    return why_prompts_run_whole(model, tokens) is None


def why_prompts_run_whole(model: Any, tokens: int) -> str | None:
    """Why no pass of ``model`` over a ``tokens``-token prompt caches anything
    (``prefix_caching_works``), in words; None where its passes do."""
    if model in _WHOLE_PROMPTS:
        return _WHOLE_PROMPTS[model]
    if not takes_a_kv_cache(model):
        return "its forward takes no KV cache: it keeps a state of its own (RWKV, xLSTM)"
    if not keeps_only_attention(model):
        return (
            "its cache keeps a recurrent state (linear-attention or state-space layers), "
            "which no pass can rewind"
        )
    window = cache_window(model)
    if window is not None and window < tokens:
        return (
            f"its cache's sliding window of {window} tokens is shorter than the prompts "
            f"({tokens} tokens)"
        )
    return None


def keeps_only_attention(model: Any) -> bool:
    """Whether ``model``'s cache holds attention keys and values alone, which a prefix cache cuts
    back after each pass; not a recurrent state (the linear-attention and state-space layers of
    Qwen3-Next, Falcon-H1, Mamba), which no pass can rewind: such a model runs whole prompts.
    A cache that cannot be built from the config alone counts as attention (``engine_check``
    sets its passes against plain ones)."""
    from transformers import cache_utils

    recurrent = getattr(cache_utils, "LinearAttentionCacheLayerMixin", None)  # not in 4.57
    layout = _cache_layout(model) or ()
    return recurrent is None or not any(isinstance(layer, recurrent) for layer in layout)


def cache_window(model: Any) -> int | None:
    """The shortest sliding window of ``model``'s cache layers, None where none slides. Read
    from the cache, not the config alone: Qwen2's config names a window it does not use
    (``use_sliding_window=False``). Where no cache can be built, the config's window."""
    layout = _cache_layout(model)
    if layout is None:
        window = getattr(model.config, "sliding_window", None)
        return window if isinstance(window, int) else None
    windows = [w for w in (getattr(layer, "sliding_window", None) for layer in layout) if w]
    return min(windows) if windows else None


_LAYOUTS: weakref.WeakKeyDictionary[Any, list[Any] | None] = weakref.WeakKeyDictionary()


def _cache_layout(model: Any) -> list[Any] | None:
    """The layers of an empty cache built from ``model``'s config (None where none can be),
    built once per model: 0.7 ms at 32 layers, which every training step would pay."""
    if model not in _LAYOUTS:
        from transformers import DynamicCache

        try:
            layers: list[Any] | None = list(DynamicCache(config=model.config).layers) or None
        except (TypeError, ValueError, AttributeError, KeyError):
            layers = None
        _LAYOUTS[model] = layers
    return _LAYOUTS[model]


_WHOLE_PROMPTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def run_whole_prompts(model: Any, why: str) -> None:
    """From now on every pass on ``model`` runs over the whole prompt, no KV cache anywhere (no
    prefix, no shared preamble, no store): ``engine_check`` found its cached passes wrong."""
    _WHOLE_PROMPTS[model] = why


def cached_passes_again(model: Any) -> None:
    """Undo ``run_whole_prompts``: ``engine_check`` checks the cached passes of a model changed
    since they failed (a hook removed) afresh."""
    _WHOLE_PROMPTS.pop(model, None)


def whole_prompts_only(model: Any) -> str | None:
    """Why every pass on ``model`` runs over the whole prompt, or None: its caches are used."""
    return _WHOLE_PROMPTS.get(model)


def filled_cache(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, *, through: Any = None
) -> Any:
    """``cache`` (None: a new one) extended by a pass over ``ids``, ``mask`` covering both.

    The pass stops once the last block's attention has written its keys and values: the last
    block's MLP and the final norm have nothing to give a cache (for a 4-layer model that is a
    fifth of the work). ``through``: the last block, where its output is wanted too."""
    stop = through if through is not None else last_attention(model)
    cache = new_cache(model) if cache is None else cache
    if stop is None:
        return returned_cache(run_model(model.base_model, ids, mask, use_cache=True, cache=cache))
    with hooks.stop_after(stop):
        run_model(model.base_model, ids, mask, use_cache=True, cache=cache)
    return cache


def plain_cache(model: Any) -> bool:
    """Whether ``model``'s cache layers are whole or sliding-window attention layers: where its
    prefix is cached at all (``prefix_caching_works``: every window at least the prompt), a
    plain ``DynamicCache`` of whole layers (``new_cache``) holds exactly what they would, and
    each of its layers can be cut back to a prefix (``cut_to``) after any pass."""
    if model in _WHOLE_PROMPTS or not takes_a_kv_cache(model):
        return False
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    layout = _cache_layout(model)
    kinds = (DynamicLayer, DynamicSlidingWindowLayer)
    return layout is not None and all(type(layer) in kinds for layer in layout)


def new_cache(model: Any) -> Any:
    """An empty cache for a pass of ``model``: a plain ``DynamicCache`` of whole layers where
    ``plain_cache`` (a window at least the prompt cuts nothing, and a mask for the sliding
    layers is still built from the config's window), else the one its config makes."""
    from transformers import DynamicCache

    return DynamicCache() if plain_cache(model) else DynamicCache(config=model.config)


def estimated_kv_bytes(model: Any, rows: int, tokens: int, *, first_layer: int = 0) -> int:
    """The bytes of a plain KV cache of ``rows`` x ``tokens`` by the model's config (0 where the
    config does not tell): keys and values of every layer from ``first_layer`` on and of every
    key-value head."""
    config = model.config
    try:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    except AttributeError:
        return 0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    element = next(model.parameters()).element_size()
    return 2 * max(0, layers - first_layer) * rows * tokens * kv_heads * head_dim * element


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


def shared_prefix(encoded: EncodedPairs, index: torch.Tensor) -> int | None:
    """The tokens before the earliest site position of the rows: no intervention reaches them.

    Right padding keeps every row unpadded there, so they can run once into a KV cache."""
    p = int(encoded.base_position[index].min())
    return p if p > 0 else None
