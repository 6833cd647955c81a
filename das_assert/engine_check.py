"""Before a model's first alignment at a site: does das_assert's engine work on this model?

Two checks on a few of the claim's own prompts, before anything trains:

- **The hooks reach the output** (once per model): the last block's whole output vector at the
  last token swapped for the source prompt's must give the source prompt's own logits, for
  nothing else comes between that vector and them. A hook that edits a copy the model does not
  pass on, the silent wrong-site bug of intervention libraries, fails it.
- **The cached passes are plain passes** (once per model and site): the engine reuses KV caches
  (a prefix run once under the suffix, a preamble run for one row and shared, blocks before the
  site skipped). Its tests show them equal to whole-prompt passes on Llama, GPT-2, GPT-NeoX and
  the 25 types of its architecture matrix; another architecture could differ, and every IIA
  would be wrong without a word. Their logits, with no intervention and with the site's whole
  vector swapped for the source's, are set against plain passes of the whole prompt. Where they
  disagree, or a cached pass raises, every pass on the model runs over the whole prompt from
  then on (``kv_cache.run_whole_prompts``), with a warning: slower, and right; once the model
  changes (a hook removed), the next check tries its cached passes again. Where even whole
  prompts disagree, the claim stops with an error.
"""

from __future__ import annotations

import hashlib
import math
import textwrap
import warnings
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch

from das_assert import hooks
from das_assert.data import EncodedPairs
from das_assert.errors import DasError
from das_assert.kv_cache import (
    cached_passes_again,
    cpu_allocation_failed,
    run_model,
    run_whole_prompts,
    why_prompts_run_whole,
)
from das_assert.model_state import measured_as_frozen, model_version
from das_assert.runner import answer_logits, logits_at, source_vectors
from das_assert.sites import ResolvedSite, Site

__all__ = [
    "EngineCheck",
    "EngineCheckFailed",
    "FastPathWarning",
    "cached_against_plain",
    "check_engine",
]

#: How many of the claim's test pairs the checks run.
CHECK_ROWS = 8


class FastPathWarning(UserWarning):
    """das_assert's cached passes disagree with plain ones on a model: it runs whole prompts."""


class EngineCheckFailed(DasError):
    """das_assert's hooks do not act on this model as they must: no IIA here would mean
    anything."""


@dataclass(frozen=True)
class EngineCheck:
    """What the checks measured on ``rows`` prompts (largest differences of any logit):
    ``output_swap``, the last block's swap against the source's own logits; ``cached_vs_plain``,
    the cached passes against plain ones at the site; each against ``tolerance``.
    ``whole_prompts`` where the model's passes run over the whole prompt (``why``)."""

    rows: int
    tolerance: float
    output_swap: float
    cached_vs_plain: float
    whole_prompts: bool = False
    why: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHECKED: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
MEMO_SIZE = 64  # checks kept per model, of its current weights alone
# The model version whose cached passes failed, for a model this check set to whole prompts.
_WHOLE_SINCE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _digest(rows: EncodedPairs) -> str:
    """The check's prompts, as a key: their base and source token ids."""
    digest = hashlib.sha256()
    for ids in (rows.base_ids, rows.source_ids):
        digest.update(str(tuple(ids.shape)).encode() + ids.cpu().numpy().tobytes())
    return digest.hexdigest()


def check_engine(model: Any, site: ResolvedSite, encoded: EncodedPairs) -> EngineCheck:
    """Both checks of ``model`` at ``site`` on the first ``CHECK_ROWS`` pairs of ``encoded``
    (once per model, weights, site, position and those prompts; later calls return the first
    result).

    Raises:
        EngineCheckFailed: the last block's swap does not give the source's logits, or
            whole-prompt passes with an intervention disagree with plain ones too.
    """
    with measured_as_frozen(model):  # ``check`` calls it directly: no dropout in its passes
        return _checked(model, site, encoded)


def _checked(model: Any, site: ResolvedSite, encoded: EncodedPairs) -> EngineCheck:
    memo = _CHECKED.setdefault(model, {})
    version = model_version(model)
    if _WHOLE_SINCE.get(model, version) != version:  # changed since its cached passes failed
        cached_passes_again(model)
        del _WHOLE_SINCE[model]
        memo.clear()  # what it found on a version checked before was found with them off
    for stale in [k for k in memo if version not in k]:  # weights edited since (an ablation loop)
        del memo[stale]
    while len(memo) >= MEMO_SIZE:  # a new seed's prompts each: the oldest goes
        del memo[next(iter(memo))]
    rows = encoded.select(torch.arange(min(CHECK_ROWS, len(encoded))))
    # keyed by the prompts too: what a record says it measured is the same in any test order
    prompts = _digest(rows)
    key = (version, hooks.site_key(site), encoded.position, prompts)
    if key in memo:
        return memo[key]
    if ("output", version, prompts) not in memo:
        memo["output", version, prompts] = _output_swap(model, rows)
    output_swap = memo["output", version, prompts]
    plain, tolerance = _plain_logits(model, site, rows)
    difference, failure = _cached_difference(model, site, rows, plain)
    why = why_prompts_run_whole(model, rows.base_ids.shape[1])  # where the passes cache nothing
    if (failure or not difference <= tolerance) and why is None:
        why = failure or (
            f"its cached passes disagreed with plain ones at {site.module_path} (a logit off by "
            f"{difference:.3g}, tolerance {tolerance:.3g}, on {len(rows)} prompts)"
        )
        run_whole_prompts(model, why)
        _WHOLE_SINCE[model] = version
        warnings.warn(
            FastPathWarning(
                f"das_assert: {why}; every pass on this model now runs over the whole "
                "prompt: slower, same results. Please report the model's type to das_assert."
            ),
            stacklevel=3,
        )
        difference, failure = _cached_difference(model, site, rows, plain)
    if failure or not difference <= tolerance:  # NaN too
        found = failure or f"a logit off by {difference:.3g}, tolerance {tolerance:.3g}"
        raise EngineCheckFailed(
            f"das_assert's passes with an intervention at {site.module_path} disagree with plain "
            f"passes of this model even over whole prompts ({found}, on {len(rows)} prompts): "
            "its hooks do not see the "
            "block's output as the model uses it, so no IIA here would mean anything. Check the "
            "site's component, or register the model's decoder blocks (README, The CLI)"
        )
    result = EngineCheck(len(rows), tolerance, output_swap, difference, why is not None, why)
    memo[key] = result
    return result


@torch.no_grad()
def _output_swap(model: Any, rows: EncodedPairs) -> float:
    """The last block's output at each base prompt's last token swapped for the source's: the
    largest logit difference from the source's own logits (a float: it must be about 0)."""
    last_block = Site(-1, "last").resolve(model)
    index = torch.arange(len(rows))
    ids, mask = rows.base_batch(index)
    source_ids, source_mask = rows.source_batch(index)
    source_last = source_mask.sum(dim=1) - 1
    with hooks.capture(last_block, source_last) as captured:
        source_logits = logits_at(run_model(model, source_ids, source_mask), source_last)
    with hooks.intervene(last_block, rows.base_last, lambda _base: captured["hidden"]):
        swapped = logits_at(run_model(model, ids, mask), rows.base_last)
    check_finite_logits(model, source_logits, len(rows))
    difference = _logit_difference(swapped, source_logits)
    tolerance = _tolerance(source_logits, next(model.parameters()).dtype)
    if not difference <= tolerance:  # NaN too
        raise EngineCheckFailed(
            f"the last block's output at the last token, swapped for the source prompt's, should "
            f"give the source's own logits; on {len(rows)} prompts a logit is off by "
            f"{difference:.3g} (tolerance {tolerance:.3g}): das_assert's hooks do not reach what "
            f"this model ({model.config.model_type}) outputs, so no intervention here would "
            "mean anything. Register the model's decoder blocks (README, The CLI)"
        )
    return difference


def check_finite_logits(model: Any, logits: torch.Tensor, n: int) -> None:
    """Refuse a model whose own logits are NaN or +infinity (an overflow; -infinity is how a
    model masks a vocabulary entry): every check and IIA would be."""
    bad = int((logits.isnan() | logits.isposinf()).any(dim=-1).sum())
    if bad:
        dtype = next(model.parameters()).dtype
        hint = (
            f"in {str(dtype).removeprefix('torch.')} its activations may overflow: load it in "
            "bfloat16 or float32 (--dtype)"
            if dtype == torch.float16
            else "check its weights"
        )
        raise EngineCheckFailed(
            f"this model's own logits, with no intervention, are not finite (NaN or +infinity) "
            f"on {bad} of {n} prompts: {hint}"
        )


@torch.no_grad()
def _plain_logits(
    model: Any, site: ResolvedSite, rows: EncodedPairs
) -> tuple[tuple[torch.Tensor, torch.Tensor], float]:
    """Plain whole-prompt passes over ``rows`` with hooks alone: the base's last-token logits
    with no intervention and with the site's vector swapped for the source's; and the
    tolerance at their scale."""
    index = torch.arange(len(rows))
    ids, mask = rows.base_batch(index)
    source_ids, source_mask = rows.source_batch(index)
    with hooks.capture(site, rows.source_position) as captured:
        run_model(model, source_ids, source_mask)
    plain = logits_at(run_model(model, ids, mask), rows.base_last)
    check_finite_logits(model, plain, len(rows))
    with hooks.intervene(site, rows.base_position, lambda _base: captured["hidden"]):
        swapped = logits_at(run_model(model, ids, mask), rows.base_last)
    return (plain, swapped), _tolerance(plain, next(model.parameters()).dtype)


@torch.no_grad()
def _cached_logits(
    model: Any, site: ResolvedSite, rows: EncodedPairs
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same two logits by das_assert's own passes (sources read up to the site, the base's
    prefix cached, blocks before the site skipped, wherever the model allows them)."""
    index = torch.arange(len(rows))
    sources = source_vectors(model, site, rows)
    return (
        answer_logits(model, site, rows, index),
        answer_logits(model, site, rows, index, lambda _base: sources),
    )


def _cached_difference(
    model: Any,
    site: ResolvedSite,
    rows: EncodedPairs,
    plain: tuple[torch.Tensor, torch.Tensor],
) -> tuple[float, str | None]:
    """The largest difference of the cached passes from ``plain``; where they raise instead
    (a cache or block this engine does not know), infinity and what they raised. Running out
    of memory (the GPU's, as ``run_model`` words it, or the host's) is not the model's doing,
    nor is an error das_assert raises on purpose: they propagate. A pass that raised is run
    once more: one that then passes met a passing fault, which must not set the model to whole
    prompts for the rest of the process (nor, once there, fail its claims as a hook problem)."""
    first = _cached_attempt(model, site, rows, plain)
    return first if first[1] is None else _cached_attempt(model, site, rows, plain)


def _cached_attempt(
    model: Any,
    site: ResolvedSite,
    rows: EncodedPairs,
    plain: tuple[torch.Tensor, torch.Tensor],
) -> tuple[float, str | None]:
    try:
        return _largest_difference(plain, _cached_logits(model, site, rows)), None
    except (torch.OutOfMemoryError, DasError):
        raise
    except Exception as exc:  # any failure of a cached pass: whole prompts are the plain path
        if cpu_allocation_failed(exc):
            raise
        message = textwrap.shorten(str(exc), width=200)
        return math.inf, f"its cached passes raised {type(exc).__name__} ({message})"


def cached_against_plain(model: Any, site: ResolvedSite, rows: EncodedPairs) -> tuple[float, float]:
    """The largest logit difference between das_assert's passes and plain ones over ``rows``
    (no intervention, and a whole-vector swap at ``site``) and its tolerance; no fallback."""
    plain, tolerance = _plain_logits(model, site, rows)
    return _largest_difference(plain, _cached_logits(model, site, rows)), tolerance


def _largest_difference(
    plain: tuple[torch.Tensor, torch.Tensor], cached: tuple[torch.Tensor, torch.Tensor]
) -> float:
    return max(_logit_difference(a, b) for a, b in zip(plain, cached, strict=True))


def _logit_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference of two sets of logits: NaN where either holds one; none where
    both hold the same infinity (a vocabulary entry a model masks with -inf in every pass)."""
    difference = torch.where(a == b, torch.zeros_like(a), (a - b).abs())
    return float(difference.max())


def _tolerance(logits: torch.Tensor, dtype: torch.dtype) -> float:
    """Rounding, not a bug: 16 steps of the weights' float type at the logits' scale, and no
    less than 2**-12 of it (float32's own steps are far finer than what a cached pass's other
    order of sums moves a logit by at Llama-7B's depth). A float32 model's matmuls round as
    torch is set to: TF32's or bfloat16's steps (``torch.set_float32_matmul_precision``)."""
    finite = logits[torch.isfinite(logits)]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 2**-12
    if dtype == torch.float32:
        eps = max(eps, _float32_matmul_eps())
    return scale * max(16 * eps, 2**-12)


def _float32_matmul_eps() -> float:
    """The steps of float32 matmuls as torch is set: bfloat16's (``medium``, or a backend's
    ``fp32_precision = "bf16"``), TF32's (``high``, CUDA's ``allow_tf32``, or ``"tf32"``),
    float32's own (the default). The loosest where a backend's is set."""
    settings = {
        str(getattr(backend, "fp32_precision", "none"))
        for backend in (
            getattr(torch.backends, "cuda", None) and torch.backends.cuda.matmul,
            getattr(torch.backends, "mkldnn", None)
            and getattr(torch.backends.mkldnn, "matmul", None),
            torch.backends,
        )
        if backend is not None
    }
    try:  # where a backend's new setting is made, torch refuses the legacy question
        precision = torch.get_float32_matmul_precision()
    except RuntimeError:
        precision = "highest"
    if precision == "medium" or "bf16" in settings:
        return torch.finfo(torch.bfloat16).eps
    if precision == "high" or "tf32" in settings or torch.backends.cuda.matmul.allow_tf32:
        return 2.0**-10
    return torch.finfo(torch.float32).eps
