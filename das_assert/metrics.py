"""Interval statistics and verdicts.

IIA is a proportion of n pairs, so every IIA comes with a Wilson score interval. A verdict is read
off the interval, never off the point estimate:

- ``aligned``: the lower bound is at least the threshold, and IIA beats the no-op and the
  random-rotation baselines by at least ``margin``;
- ``not_aligned``: the upper bound is below the threshold, or IIA does not beat a baseline by
  ``margin`` (wherever the interval lies: more pairs would not make the site do more);
- ``inconclusive``: otherwise, the interval straddles the threshold; more pairs would decide.

>>> round(wilson_interval(90, 100)[0], 3)
0.826
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from das_assert.errors import InvalidArgument

__all__ = ["Verdict", "normalized_iia", "required_n", "verdict", "wilson_interval"]

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (95 % by default)."""
    if n <= 0:
        raise InvalidArgument(f"cannot compute an interval from n={n} pairs; evaluate on n >= 1")
    if not 0 <= successes <= n:
        raise InvalidArgument(f"successes={successes} must lie in [0, n={n}]")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def required_n(half_width: float, p: float = 0.5, z: float = Z95) -> int:
    """Pairs for a 95 % interval no wider than ``± half_width`` around ``p`` (normal approx.)."""
    if not 0 < half_width < 0.5:
        raise InvalidArgument(f"half_width={half_width} must be in (0, 0.5)")
    return math.ceil(z * z * p * (1 - p) / (half_width * half_width))


def normalized_iia(iia: float, majority: float, task_accuracy: float) -> float | None:
    """(IIA - majority) / (task accuracy - majority), as the paper normalizes; None if undefined."""
    span = task_accuracy - majority
    return None if span <= 1e-9 else (iia - majority) / span


@dataclass(frozen=True)
class Verdict:
    """The outcome of a claim and the reason for it, in one line."""

    outcome: str  # aligned | not_aligned | inconclusive
    reason: str


def verdict(
    *,
    iia_ci: tuple[float, float],
    iia: float,
    threshold: float,
    baselines: dict[str, float],
    margin: float = 0.05,
    collapsed: bool = False,
) -> Verdict:
    """Decide aligned / not_aligned / inconclusive from the interval and the baselines."""
    if not 0 <= threshold <= 1:
        raise InvalidArgument(f"threshold={threshold} must lie in [0, 1]")
    low, high = iia_ci
    if collapsed:
        return Verdict("not_aligned", "the learned boundary collapsed to 0 coordinates (a no-op)")
    if high < threshold:
        return Verdict("not_aligned", f"95% CI upper bound {high:.3f} < threshold {threshold:.3f}")
    lost = [name for name, value in baselines.items() if iia - value < margin - 1e-9]
    if lost:  # more pairs would not help: the site does no more than a baseline
        named = ", ".join(f"{name} ({baselines[name]:.3f})" for name in lost)
        return Verdict("not_aligned", f"IIA {iia:.3f} does not beat {named} by {margin}")
    if low >= threshold:
        return Verdict("aligned", f"95% CI lower bound {low:.3f} >= threshold {threshold:.3f}")
    return Verdict(
        "inconclusive",
        f"95% CI [{low:.3f}, {high:.3f}] contains the threshold {threshold:.3f}; increase n",
    )
