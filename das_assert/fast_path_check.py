"""Before a model's first alignment at a site: do das_assert's fast passes give what a plain
forward pass gives, on this model?

The engine's passes reuse KV caches: a prefix run once under the suffix, a preamble run for one
row and shared, blocks before the site skipped. Its oracle tests show them equal to whole-prompt
passes on Llama, GPT-2 and GPT-NeoX; another architecture (a local model of any type, remote
code) could differ, and every IIA would then be wrong without a word. So on a few of the
claim's own prompts, once per model and site, the logits of the fast passes (no intervention,
and the site's whole vector swapped for the source's) are set against plain passes of the whole
prompt, with hooks alone. Where they disagree, the model's passes run over the whole prompt
from then on (``kv_cache.run_whole_prompts``), with a warning: slower, and right. Where even
those disagree, the hooks cannot be trusted on this model, and the claim stops with an error.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch

from das_assert import hooks
from das_assert.data import EncodedPairs
from das_assert.errors import DasError
from das_assert.kv_cache import run_model, run_whole_prompts, weights_version, whole_prompts_only
from das_assert.runner import answer_logits, source_vectors
from das_assert.sites import ResolvedSite

__all__ = ["FastPathCheck", "FastPathMismatch", "FastPathWarning", "check_fast_paths"]

#: How many of the claim's test pairs the check runs (both passes, each way).
CHECK_ROWS = 8


class FastPathWarning(UserWarning):
    """das_assert's cached passes disagree with plain ones on a model: it runs whole prompts."""


class FastPathMismatch(DasError):
    """Even whole-prompt passes with das_assert's hooks disagree with plain passes."""


@dataclass(frozen=True)
class FastPathCheck:
    """What the check measured: on ``rows`` prompts, the largest difference of any logit
    between the fast and the plain passes, against ``tolerance``; ``whole_prompts`` where the
    model's passes run over the whole prompt (``why``)."""

    rows: int
    largest_difference: float
    tolerance: float
    whole_prompts: bool = False
    why: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHECKED: weakref.WeakKeyDictionary[Any, dict[Any, FastPathCheck]] = weakref.WeakKeyDictionary()


def check_fast_paths(model: Any, site: ResolvedSite, encoded: EncodedPairs) -> FastPathCheck:
    """The check of ``model`` at ``site`` on the first ``CHECK_ROWS`` of ``encoded`` (once per
    model, weights, site and position; later calls return the first result).

    Raises:
        FastPathMismatch: whole-prompt passes with das_assert's hooks disagree with plain
            passes too.
    """
    memo = _CHECKED.setdefault(model, {})
    key = (weights_version(model), hooks.site_key(site), encoded.position)
    if key in memo:
        return memo[key]
    rows = encoded.select(torch.arange(min(CHECK_ROWS, len(encoded))))
    already = whole_prompts_only(model)
    difference, tolerance = _largest_difference(model, site, rows)
    result = FastPathCheck(len(rows), difference, tolerance, already is not None, already)
    if difference > tolerance and already is None:
        why = (
            f"its cached passes disagreed with plain ones at {site.module_path} (a logit off by "
            f"{difference:.3g}, tolerance {tolerance:.3g}, on {len(rows)} prompts)"
        )
        run_whole_prompts(model, why)
        warnings.warn(
            FastPathWarning(
                f"das_assert: {why}; every pass on this model now runs over the whole prompt: "
                "slower, same results. Please report the model's type to das_assert."
            ),
            stacklevel=2,
        )
        difference, tolerance = _largest_difference(model, site, rows)
        result = FastPathCheck(len(rows), difference, tolerance, True, why)
    if difference > tolerance:
        raise FastPathMismatch(
            f"das_assert's passes with an intervention at {site.module_path} disagree with plain "
            f"passes of this model even over whole prompts (a logit off by {difference:.3g}, "
            f"tolerance {tolerance:.3g}, on {len(rows)} prompts): its hooks do not see the "
            "block's output as the model uses it, so no IIA here would mean anything. Check the "
            "site's component, or register the model's decoder blocks (README, The CLI)"
        )
    memo[key] = result
    return result


@torch.no_grad()
def _largest_difference(model: Any, site: ResolvedSite, rows: EncodedPairs) -> tuple[float, float]:
    """The largest logit difference between das_assert's passes and plain ones over ``rows``,
    no intervention and the site's vector swapped for the source's, and its tolerance."""
    index = torch.arange(len(rows))
    ids, mask = rows.base_batch(index)
    source_ids, source_mask = rows.source_batch(index)
    with hooks.capture(site, rows.source_position) as captured:
        run_model(model, source_ids, source_mask)
    plain_source = captured["hidden"]
    plain = _last_logits(run_model(model, ids, mask).logits, rows.base_last)
    with hooks.intervene(site, rows.base_position, lambda _base: plain_source):
        plain_swapped = _last_logits(run_model(model, ids, mask).logits, rows.base_last)
    fast_source = source_vectors(model, site, rows)
    fast = answer_logits(model, site, rows, index)
    fast_swapped = answer_logits(model, site, rows, index, lambda _base: fast_source)
    difference = max(
        float((plain - fast).abs().max()), float((plain_swapped - fast_swapped).abs().max())
    )
    return difference, _tolerance(plain, next(model.parameters()).dtype)


def _last_logits(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, last.to(logits.device)].float()


def _tolerance(logits: torch.Tensor, dtype: torch.dtype) -> float:
    """Rounding, not a bug: 16 steps of the weights' float type at the logits' scale, and no
    less than 2**-12 of it (float32's own steps are far finer than what a cached pass's other
    order of sums moves a logit by at Llama-7B's depth)."""
    scale = max(1.0, float(logits.abs().max()))
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 2**-12
    return scale * max(16 * eps, 2**-12)
