"""The layers of transformers' ``DynamicCache`` that das_assert's prefix caches are made of.

A plain ``DynamicCache`` holds a list of ``DynamicLayer``s. Besides those, a prefix cache can
hold ``StoredRowsLayer``s (some rows of a ``PrefixStore``, gathered only when a pass first
updates the layer) and ``SkippedLayer``s (a layer of a block that every pass on the cache skips,
``hooks.skip_blocks``: its keys and values are never read, so none are kept, only how many tokens
the prefix has). Helpers here build, cut back and repeat such caches.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = [
    "cut_to",
    "expanded_rows",
    "layer_tensors",
    "repeated_cache",
    "skip_layers",
    "skipped_layer_class",
    "stored_rows_cache",
    "stored_rows_layer_class",
]


def expanded_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    return tensor if tensor.shape[0] == rows else tensor.expand(rows, *tensor.shape[1:])


@functools.cache
def skipped_layer_class() -> type[Any]:
    """A ``DynamicLayer`` that holds no keys or values, only the prefix's length: the layer of a
    block that every pass on its cache skips. At Llama-7B's shape and a site at layer 15, half of
    a prefix cache. A pass that would update it is a bug in the caller, never a silent wrong
    answer: it raises."""
    from transformers.cache_utils import DynamicLayer

    class SkippedLayer(DynamicLayer):
        def __init__(
            self, tokens: int, dtype: torch.dtype | None, device: torch.device | None
        ) -> None:
            super().__init__()
            self.tokens = tokens
            self.dtype: torch.dtype | None = dtype
            self.device: torch.device | None = device  # type: ignore[assignment]  # none held
            self.is_initialized = True

        def update(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                "das_assert: a pass ran a block whose keys and values its prefix cache left out "
                "(the cache was made for passes that skip that block); please report this"
            )

        def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
            return self.tokens

    return SkippedLayer


@functools.cache
def stored_rows_layer_class() -> type[Any]:
    """A ``DynamicLayer`` over some rows of a stored prefix, gathered when a pass first updates
    the layer: the update returns the head (one row, expanded), the rows' stored keys and values
    and the pass's own, in one concatenation. Once updated it is a plain ``DynamicLayer``."""
    from transformers.cache_utils import DynamicLayer

    class StoredRowsLayer(DynamicLayer):
        def __init__(
            self,
            head: tuple[torch.Tensor, torch.Tensor] | None,
            rest: tuple[torch.Tensor, torch.Tensor],
            rows: torch.Tensor,
            tokens: int,
        ) -> None:
            super().__init__()
            self.stored: Any = (head, rest, rows)  # None once gathered
            self.tokens = tokens
            self.dtype, self.device = rest[0].dtype, rest[0].device
            self.is_initialized = True

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kw: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if self.stored is None:
                return super().update(key_states, value_states, *args, **kw)
            head, (keys, values), rows = self.stored
            if rows.device != keys.device:  # a model spread over devices (device_map)
                rows = rows.to(keys.device)
            key_parts, value_parts = [keys[rows], key_states], [values[rows], value_states]
            if head is not None:
                key_parts.insert(0, expanded_rows(head[0], len(rows)))
                value_parts.insert(0, expanded_rows(head[1], len(rows)))
            self.keys = torch.cat(key_parts, dim=-2)
            self.values = torch.cat(value_parts, dim=-2)
            self.stored = None
            return self.keys, self.values

        def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
            if self.stored is not None:
                return self.tokens
            return super().get_seq_length(*args, **kwargs)

    return StoredRowsLayer


def stored_rows_cache(
    head: list[tuple[torch.Tensor, torch.Tensor]],
    rest: list[tuple[torch.Tensor, torch.Tensor]],
    rows: torch.Tensor,
    *,
    tokens: int,
    first_layer: int = 0,
) -> Any:
    """A ``DynamicCache`` over rows ``rows`` of a stored prefix of ``tokens`` tokens: layers
    before ``first_layer`` skipped (``skipped_layer_class``), then each layer's shared ``head``
    (one row; may be empty) and per-row ``rest`` (from ``first_layer`` on), gathered only when a
    pass updates it (``stored_rows_layer_class``)."""
    from transformers import DynamicCache

    stored, skipped = stored_rows_layer_class(), skipped_layer_class()
    some = (rest or head)[0][0] if rest or head else None
    like = (some.dtype, some.device) if some is not None else (None, None)
    cache = DynamicCache()
    cache.layers = [skipped(tokens, *like) for _ in range(first_layer)]
    cache.layers += [
        stored(head[first_layer + i] if head else None, kv, rows, tokens)
        for i, kv in enumerate(rest)
    ]
    return cache


def skip_layers(cache: Any, first_layer: int) -> None:
    """Let ``cache`` (plain, as a prefix pass left it) drop the keys and values of its layers
    before ``first_layer``: passes that skip those blocks never read them."""
    skipped = skipped_layer_class()
    for i in range(min(first_layer, len(cache.layers))):
        layer = cache.layers[i]
        keys = layer.keys
        like = (keys.dtype, keys.device) if keys is not None else (None, None)
        cache.layers[i] = skipped(layer.get_seq_length(), *like)


def cut_to(cache: Any, tokens: int) -> None:
    """Cut ``cache`` back to its first ``tokens`` tokens. Each layer of a plain cache is cut on
    its own: a pass that skipped blocks (``hooks.skip_blocks``) left theirs shorter, and a layer
    of a ``stored_rows_cache`` that no pass updated still holds just its prefix."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    untouched = (stored_rows_layer_class(), skipped_layer_class())
    if not layers or any(type(layer) not in (DynamicLayer, *untouched) for layer in layers):
        cache.crop(tokens - cache.get_seq_length())  # a negative count: the tokens to remove
        return
    for layer in layers:
        if type(layer) is skipped_layer_class():
            layer.tokens = min(layer.tokens, tokens)
            continue
        if getattr(layer, "stored", None) is not None:
            continue
        layer.keys = layer.keys[..., :tokens, :]
        layer.values = layer.values[..., :tokens, :]


def layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(keys, values) of every layer of a plain ``DynamicCache``; None for any other layout."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def repeated_cache(cache: Any, copies: int) -> Any:
    """A fresh plain cache holding ``cache``'s rows ``copies`` times over (skipped layers stay
    skipped); None where ``cache`` has layers of any other kind."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    skipped = skipped_layer_class()
    if not layers or any(type(layer) not in (DynamicLayer, skipped) for layer in layers):
        return None
    repeated = DynamicCache()
    repeated.layers = [
        skipped(layer.tokens, layer.dtype, layer.device)
        if type(layer) is skipped
        else _holding_layer(
            layer.keys.repeat(copies, 1, 1, 1), layer.values.repeat(copies, 1, 1, 1)
        )
        for layer in layers
    ]
    return repeated


def holding_layers(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> list[Any]:
    """``DynamicLayer``s already holding ``layers``' (keys, values), without a copy.

    ``DynamicCache(ddp_cache_data=...)`` concatenates each tensor onto a new empty one: a copy
    and five dispatched ops a layer, on every pass that needs a cache built from tensors."""
    return [_holding_layer(keys, values) for keys, values in layers]


def _holding_layer(keys: torch.Tensor, values: torch.Tensor) -> Any:
    from transformers.cache_utils import DynamicLayer

    layer: Any = DynamicLayer()  # its dtype and device are set by its first update otherwise
    layer.keys, layer.values = keys, values
    layer.dtype, layer.device = keys.dtype, keys.device
    layer.is_initialized = True
    return layer
