"""Forward passes over encoded pairs: source activations, and answer logits with or without an
intervention. The model is frozen, so source activations are computed once, without gradients,
stopping each forward pass right after the site, and reused for every step and evaluation. For the
same reason the base prompts' prefix before the site can be run once into a KV cache
(``PrefixStore``) and reused by every epoch of a fit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from das_assert import hooks
from das_assert.data import EncodedPairs
from das_assert.errors import DasError
from das_assert.sites import ResolvedSite

__all__ = ["BaseRun", "PrefixStore", "answer_logits", "source_vectors"]


def _oom_message(exc: BaseException, batch: int) -> DasError:
    return DasError(
        f"out of GPU memory with a batch of {batch} pairs ({exc}); lower the batch size "
        "(--batch-size / @pytest.mark.das(batch_size=...)) or spread the model over several GPUs "
        "with device_map='auto' (--device-map auto)"
    )


def _forward(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    use_cache: bool = False,
    past_key_values: Any = None,
) -> Any:
    device = model.get_input_embeddings().weight.device
    try:
        return model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            use_cache=use_cache,
            past_key_values=past_key_values,
        )
    except torch.cuda.OutOfMemoryError as exc:
        raise _oom_message(exc, ids.shape[0]) from None


@torch.no_grad()
def source_vectors(
    model: Any, site: ResolvedSite, encoded: EncodedPairs, *, batch_size: int = 64
) -> torch.Tensor:
    """The hidden vector at the site's position in every source prompt, (n, d)."""
    chunks = []
    for index in encoded.batches(batch_size):
        ids, mask = encoded.source_batch(index)
        with hooks.capture(site, encoded.source_position[index], stop=True) as captured:
            _forward(model, ids, mask)
        chunks.append(captured["hidden"])
    return torch.cat(chunks)


def _prefix_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """The KV cache of a prefix, without gradients; the decoder alone, no logits are needed."""
    with torch.no_grad():
        return _forward(model.base_model, ids, mask, use_cache=True).past_key_values


def _layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(keys, values) of every layer of a plain ``DynamicCache``; None for any other layout."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


class PrefixStore:
    """The KV cache of every base prompt's prefix [0, p), computed once and kept for a whole fit.

    Without it each training step reruns the prefix of its batch; with it, every epoch after the
    first costs only the suffix [p, end). Built only when all base prompts share one length and
    one site position, the model uses a plain ``DynamicCache``, and the cache fits ``max_bytes``.
    """

    def __init__(self, prefix: int, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.prefix = prefix
        self.layers = layers

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers)

    @classmethod
    def build(
        cls,
        model: Any,
        site: ResolvedSite,
        encoded: EncodedPairs,
        *,
        batch_size: int,
        max_bytes: int,
    ) -> PrefixStore | None:
        """The store for ``encoded``, or None where it does not apply or would not fit."""
        n = len(encoded)
        p = _shared_prefix(encoded, torch.arange(n)) if n else None
        if p is None or max_bytes <= 0:
            return None
        chunks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for index in encoded.batches(batch_size):
            ids, mask = encoded.base_batch(index)
            tensors = _layer_tensors(_prefix_cache(model, ids[:, :p], mask[:, :p]))
            if tensors is None:
                return None
            if not chunks and sum(k.nbytes + v.nbytes for k, v in tensors) * n > max_bytes * len(
                index
            ):
                return None  # the first batch tells the size of the whole store
            chunks.append(tensors)
        layers = [
            (torch.cat([c[i][0] for c in chunks]), torch.cat([c[i][1] for c in chunks]))
            for i in range(len(chunks[0]))
        ]
        return cls(p, layers)

    def cache_for(self, index: torch.Tensor) -> Any:
        """A fresh ``DynamicCache`` holding the prefixes of rows ``index``."""
        from transformers import DynamicCache

        rows = index.to(self.layers[0][0].device)
        return DynamicCache(ddp_cache_data=[(k[rows], v[rows]) for k, v in self.layers])


class BaseRun:
    """Forward passes over one batch of base prompts, with or without an intervention.

    An intervention at token p cannot change anything at tokens before p. When every base prompt
    of the batch has the same length and the same site position p (the usual case: one template),
    the prefix [0, p) runs once, without gradients, into a KV cache, and each pass runs only the
    suffix [p, end) on top of it; the backward pass then covers only the suffix. Otherwise each
    pass runs the whole prompt. Both paths give the same logits up to float rounding.
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

    def logits(self, mix: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (batch, vocab) at each base prompt's last token, intervened by ``mix``."""
        if self.prefix is None:
            return self._full(mix)
        p = self.prefix
        if self._cache is None and self._store is not None and self._store.prefix == p:
            self._cache = self._store.cache_for(self.index)
        if self._cache is None:
            self._cache = _prefix_cache(self.model, self.ids[:, :p], self.mask[:, :p])
        suffix = self.ids[:, p:]
        positions = torch.zeros(len(self.index), dtype=torch.long)
        context = (
            hooks.intervene(self.site, positions, mix)
            if mix is not None and self.site is not None
            else contextlib.nullcontext()
        )
        with context:
            output = _forward(
                self.model, suffix, self.mask, use_cache=True, past_key_values=self._cache
            )
        self._cache.crop(-suffix.shape[1])
        return output.logits[:, -1].float()

    def _full(self, mix: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        encoded, index = self.encoded, self.index
        if mix is None or self.site is None:
            output = _forward(self.model, self.ids, self.mask)
        else:
            with hooks.intervene(self.site, encoded.base_position[index], mix):
                output = _forward(self.model, self.ids, self.mask)
        logits = output.logits
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, encoded.base_last[index].to(logits.device)].float()


def _shared_prefix(encoded: EncodedPairs, index: torch.Tensor) -> int | None:
    positions = encoded.base_position[index]
    lengths = encoded.base_last[index]
    same = bool((positions == positions[0]).all()) and bool((lengths == lengths[0]).all())
    return int(positions[0]) if same and int(positions[0]) > 0 else None


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
