"""Forward passes over encoded pairs: source activations, and answer logits with or without an
intervention. The model is frozen, so source activations are computed once, without gradients,
stopping each forward pass right after the site, and reused for every step and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from das_assert import hooks
from das_assert.data import EncodedPairs
from das_assert.errors import DasError
from das_assert.sites import ResolvedSite

__all__ = ["answer_logits", "source_vectors"]


def _oom_message(exc: BaseException, batch: int) -> DasError:
    return DasError(
        f"out of GPU memory with a batch of {batch} pairs ({exc}); lower the batch size "
        "(--batch-size / @pytest.mark.das(batch_size=...)) or spread the model over several GPUs "
        "with device_map='auto' (--device-map auto)"
    )


def _forward(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    device = model.get_input_embeddings().weight.device
    try:
        return model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
    except torch.cuda.OutOfMemoryError as exc:
        raise _oom_message(exc, ids.shape[0]) from None


@torch.no_grad()
def source_vectors(
    model: Any, site: ResolvedSite, encoded: EncodedPairs, *, batch_size: int = 64
) -> torch.Tensor:
    """The hidden vector at the site's position in every source prompt, (n, d) on the model's device."""
    chunks = []
    for index in encoded.batches(batch_size):
        ids, mask = encoded.source_batch(index)
        with hooks.capture(site, encoded.source_position[index], stop=True) as captured:
            _forward(model, ids, mask)
        chunks.append(captured["hidden"])
    return torch.cat(chunks)


def answer_logits(
    model: Any,
    site: ResolvedSite | None,
    encoded: EncodedPairs,
    index: torch.Tensor,
    mix: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits (batch, vocab) at the last token of the base prompts ``index``, intervened by ``mix``."""
    ids, mask = encoded.base_batch(index)
    if mix is None or site is None:
        output = _forward(model, ids, mask)
    else:
        with hooks.intervene(site, encoded.base_position[index], mix):
            output = _forward(model, ids, mask)
    logits = output.logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, encoded.base_last[index].to(logits.device)].float()
