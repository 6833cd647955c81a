"""Which differences in where a fit ran change its rounding: a baseline or report made on
another CPU or GPU, thread count, torch, transformers or fit revision, dtype or device, said
beside a comparison with it (``compare``, ``--das-compare``)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ROUNDING_EFFECT", "rounding_differences"]


#: What rounds a fit otherwise: the CPU or GPU, the thread count, torch's version, whose
#: kernels round as it wrote them, and transformers', whose modeling code computes the model
#: (``environment``), the model's dtype and device (``model``).
_ROUNDING_KEYS = (
    ("environment", "device_name"),
    ("environment", "torch_threads"),
    ("environment", "torch"),
    ("environment", "transformers"),  # CI's gate under 4.57 against a baseline saved under 5.x
    ("environment", "fit_revision"),  # das_assert's fit itself changed: it learns otherwise
    ("model", "dtype"),
    ("model", "device"),
)

#: Said after ``rounding_differences``: how much such a difference was measured to move an IIA.
ROUNDING_EFFECT = (
    "a fit rounds (or, under another fit_revision, learns) otherwise there, which moves an IIA "
    "with no change to the model (measured: up to 0.026 from the thread count alone; README, "
    "What a run looks like)"
)

#: What ``platform.processor()`` gives on Linux, which baselines before 2026-12-04 recorded as
#: their ``device_name``: the architecture, not the CPU, so not a difference from any CPU's name.
_ARCHITECTURE_NAMES = frozenset({"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "arm"})


def rounding_differences(
    then: dict[str, Any], now: dict[str, Any], *, here: str = "here"
) -> str | None:
    """What ``then`` (a baseline or report) was made under otherwise than ``now`` (its
    ``environment`` and ``model`` blocks), as ``device_name 'X' (here 'Y')``; None when the
    same or unknown on either side."""
    differs = []
    for block, key in _ROUNDING_KEYS:
        old, new = then.get(block), now.get(block)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        values = old.get(key), new.get(key)
        if key == "device_name" and any(str(v).lower() in _ARCHITECTURE_NAMES for v in values):
            continue  # one side recorded its architecture alone: unknown
        if key == "fit_revision" and (values[0] is None) != (values[1] is None):
            # not recorded before 2026-12-06, when revisions 1 (das:K fits trained until
            # 2026-12-04) and 2 were still in use: unknown is not the same
            unrecorded = "then" if values[0] is None else here
            differs.append(
                f"fit_revision {values[0]!r} ({here} {values[1]!r}; {unrecorded}: a das_assert "
                "from before 2026-12-06, which did not record it)"
            )
            continue
        # cuda:0 and cuda:1 are one kind of GPU by their device (device_name says which)
        compared = [
            re.sub(r"cuda:\d+", "cuda", str(v)) if key == "device" else str(v) for v in values
        ]
        if None not in values and compared[0] != compared[1]:
            differs.append(f"{key} {values[0]!r} ({here} {values[1]!r})")
    return ", ".join(differs) or None
