"""Interval statistics and verdicts.

IIA is a proportion of n pairs, so every IIA comes with a Wilson score interval; its lead over a
baseline scored on the same pairs (the no-op, the random rotation) comes with Newcombe's interval
for a difference of paired proportions. A verdict is read off the intervals, never off a point
estimate:

- ``aligned``: the lower bound of IIA is at least the threshold, and the lower bound of each lead
  over a baseline is at least ``margin``;
- ``not_aligned``: the upper bound of IIA is below the threshold, or the upper bound of a lead is
  below ``margin`` (the site clearly does no more than that baseline);
- ``inconclusive``: otherwise: an interval straddles its bar, or too few pairs have a label to
  change to show a lead of ``margin`` even by changing every one, and more pairs would decide; or
  so few labels change that such an alignment would lead the no-op by no more than ``margin``
  (then more pairs of that kind would not decide, pairs whose labels change would). While the pairs
  cannot show a lead, a lead below the margin says nothing, so only IIA's upper bound or an
  empty box makes it not aligned.

>>> round(wilson_interval(90, 100)[0], 3)
0.826
>>> gap = paired_gap(only_iia=120, only_baseline=20, both=500, n=800)
>>> round(gap.estimate, 3), round(gap.low, 3), round(gap.high, 3)
(0.125, 0.097, 0.153)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from das_assert.errors import InvalidArgument
from das_assert.values import is_integer

__all__ = [
    "ANSWERS_KEPT",
    "LABELS_THAT_CHANGE",
    "Gap",
    "Verdict",
    "beside",
    "bracketed",
    "check_threshold",
    "clustered_interval",
    "controls_text",
    "lead_over",
    "normalized_iia",
    "paired_gap",
    "perfect_gap",
    "required_n",
    "rounded_interval",
    "unpaired_difference",
    "verdict",
    "wilson_interval",
]

Z95 = 1.959963984540054
_TOLERANCE = 1e-9  # a lead this close to the margin counts as reaching it


def rounded_interval(low: float, high: float) -> list[float]:
    """An interval at 6 decimals, each bound rounded down (exactly, on its decimal expansion):
    against any threshold of 6 decimals each bound then sits on the side its verdict read
    (``low >= t``, ``high < t``). To the nearest, 0.89499997 showed as 0.895 of an inconclusive
    claim at 0.895; up, 0.119999 as 0.12 of a claim not aligned at 0.12."""
    return [_floor6(low), _floor6(high)]


def _floor6(value: float) -> float:
    from decimal import ROUND_FLOOR, Decimal

    return float(Decimal(value).quantize(Decimal("0.000001"), rounding=ROUND_FLOOR))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (95 % by default)."""
    if type(successes) is not int or type(n) is not int:  # plain ints skip the slower check
        for name, value in (("successes", successes), ("n", n)):
            if not is_integer(value):
                raise InvalidArgument(f"{name}={value!r} must be a whole number of pairs")
        successes, n = int(successes), int(n)
    if z is not Z95:
        try:
            usable = not isinstance(z, bool) and 0 < z < math.inf
        except TypeError:
            usable = False
        if not usable:
            raise InvalidArgument(f"z={z!r} must be a positive finite number (1.96 for 95 %)")
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


def clustered_interval(clusters: list[tuple[int, int]]) -> tuple[float, float]:
    """A 95% interval of a proportion pooled over clusters of pairs, ``(successes, n)`` each,
    whose pairs are not independent across clusters (a fuzzed prompt variant's pairs share its
    wording): the pooled ratio with its variance from the spread of the clusters (linearised,
    with the K/(K-1) small-sample factor) and Student's t at K-1 degrees of freedom, never
    narrower than the Wilson interval of the pooled pairs. One cluster: the Wilson interval.

    >>> [round(v, 3) for v in clustered_interval([(45, 50), (35, 50), (40, 50), (30, 50)])]
    [0.545, 0.955]
    >>> [round(v, 3) for v in wilson_interval(150, 200)]  # as if all 200 were independent
    [0.686, 0.805]
    >>> [round(v, 3) for v in clustered_interval([(30, 50), (31, 50), (29, 50)])]  # alike: Wilson
    [0.52, 0.675]
    """
    successes, n = sum(c for c, _ in clusters), sum(m for _, m in clusters)
    low, high = wilson_interval(successes, n)
    k = len(clusters)
    if k < 2:
        return low, high
    p = successes / n
    spread = sum((c - p * m) ** 2 for c, m in clusters) * k / (k - 1)
    half = student_t_975(k - 1) * math.sqrt(spread) / n
    return max(0.0, min(low, p - half)), min(1.0, max(high, p + half))


@functools.lru_cache(maxsize=256)
def student_t_975(df: int) -> float:
    """Student's t quantile at 0.975 for ``df`` >= 1 degrees of freedom: the exact distribution
    function of an integer ``df`` (a finite sum) inverted by bisection, up to 200; beyond, Hill's
    (1970) expansion in the normal quantile, whose error there is below 1e-9.

    >>> [round(student_t_975(df), 4) for df in (1, 2, 3, 4, 10, 30)]
    [12.7062, 4.3027, 3.1824, 2.7764, 2.2281, 2.0423]
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise InvalidArgument(
            f"df={df!r}: Student's t needs a whole number >= 1 of degrees of freedom"
        )
    if df > _EXACT_T_UP_TO:
        z = Z95
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
        return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    low, high = Z95, 13.0  # the quantile falls from 12.71 at df = 1 towards 1.96
    for _ in range(60):
        middle = (low + high) / 2
        if _student_t_cdf(middle, df) < 0.975:
            low = middle
        else:
            high = middle
    return (low + high) / 2


_EXACT_T_UP_TO = 200


def _student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with an integer ``df`` (the closed forms of Abramowitz and Stegun
    26.7.3-4: a finite sum in cos^2 of the angle, for odd ``df`` added to the angle itself)."""
    if df % 2 == 0:
        x = t / math.sqrt(df + t * t)
        term = total = 1.0
        for j in range(1, df // 2):
            term *= (2 * j - 1) / (2 * j) * (1 - x * x)
            total += term
        return 0.5 + 0.5 * x * total
    theta = math.atan(t / math.sqrt(df))
    term, total, squared = 1.0, 0.0, math.cos(theta) ** 2
    if df > 1:
        total = 1.0
        for j in range(2, (df - 1) // 2 + 1):
            term *= (2 * j - 2) / (2 * j - 1) * squared
            total += term
    return 0.5 + (theta + math.sin(theta) * math.cos(theta) * total) / math.pi


def threshold_text(value: float, at_least: int = 2) -> str:
    """A threshold with every digit the verdict used, and ``at_least`` decimals: 0.7 as 0.70,
    0.725 as 0.725, 0.7255 as 0.7255 (three decimals showed 0.726, which a bound of 0.7258
    would seem to meet while it did not)."""
    for digits in range(at_least, 18):  # 17 decimals give back any float in [0, 1)
        text = f"{value:.{digits}f}"
        if float(text) == value:
            return text
    return repr(value)


def beside(value: float, bar: float, *, signed: bool = False) -> str:
    """``value`` to three decimals, or to as many more as it takes for the number shown to lie
    on the same side of ``bar`` as ``value`` itself: a lower bound of 0.72996 under a threshold of
    0.73 is shown as 0.72996, not as 0.730, which would read as meeting it."""
    for digits in range(3, 18):  # 17 decimals tell apart any two floats of this range
        text = f"{value:{'+' if signed else ''}.{digits}f}"
        if (float(text) < bar) == (value < bar):
            break
    return text


def bracketed(low: float, high: float, bar: float) -> str:
    """An interval as ``[low, high]``, each bound shown on the side of ``bar`` it lies
    (``beside``)."""
    return f"[{beside(low, bar)}, {beside(high, bar)}]"


@dataclass(frozen=True)
class Gap:
    """IIA minus a baseline scored on the same pairs, with the 95 % interval of that difference."""

    baseline: float  # the baseline's own score
    estimate: float  # IIA - baseline
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": round(self.baseline, 6),
            "lead": round(self.estimate, 6),
            "ci": rounded_interval(self.low, self.high),
        }

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def against(self, margin: float) -> str:
        """As ``str``, with each bound given to as many decimals as it takes to show on which
        side of ``margin`` it lies (``beside``), as the verdict compares them."""
        low, high = (beside(v, margin - _TOLERANCE, signed=True) for v in (self.low, self.high))
        return f"{self.estimate:+.3f} [{low}, {high}]"


def paired_gap(*, only_iia: int, only_baseline: int, both: int, n: int) -> Gap:
    """IIA minus a baseline on the same ``n`` pairs (Newcombe 1998, method 10: Wilson intervals of
    each proportion, combined with the correlation of the pairs): ``only_iia`` pairs right under
    the intervention alone, ``only_baseline`` under the baseline alone, ``both`` under both."""
    neither = n - only_iia - only_baseline - both
    if n <= 0 or min(only_iia, only_baseline, both, neither) < 0:
        raise InvalidArgument(
            f"paired counts only_iia={only_iia}, only_baseline={only_baseline}, both={both} "
            f"do not fit n={n} pairs"
        )
    first, second = both + only_iia, both + only_baseline
    p1, p2 = first / n, second / n
    l1, u1 = wilson_interval(first, n)
    l2, u2 = wilson_interval(second, n)
    margins = first * (n - first) * second * (n - second)
    cross: float = both * neither - only_iia * only_baseline
    if cross > n / 2:  # Newcombe's continuity correction of the correlation
        cross -= n / 2
    elif cross > 0:
        cross = 0
    phi = cross / math.sqrt(margins) if margins > 0 else 0.0
    d = p1 - p2
    below, above = (p1 - l1, u2 - p2), (u1 - p1, p2 - l2)
    low = d - math.sqrt(max(0.0, below[0] ** 2 - 2 * phi * below[0] * below[1] + below[1] ** 2))
    high = d + math.sqrt(max(0.0, above[0] ** 2 - 2 * phi * above[0] * above[1] + above[1] ** 2))
    return Gap(baseline=p2, estimate=d, low=max(-1.0, low), high=min(1.0, high))


def unpaired_difference(
    successes: int, n: int, before_successes: int, before_n: int
) -> tuple[float, float]:
    """A 95% interval of ``successes / n`` minus ``before_successes / before_n`` on independent
    pairs (Newcombe 1998, method 10 with no correlation): two evaluations on other pairs, or on
    the same pairs when their pairing is unknown, where it is conservative."""
    l1, u1 = wilson_interval(successes, n)  # first: it refuses an n of 0
    l2, u2 = wilson_interval(before_successes, before_n)
    p1, p2 = successes / n, before_successes / before_n
    d = p1 - p2
    return max(-1.0, d - math.hypot(p1 - l1, u2 - p2)), min(1.0, d + math.hypot(u1 - p1, p2 - l2))


def perfect_gap(changed: int, n: int) -> Gap:
    """The lead over the no-op of an alignment that makes the answers of the ``changed`` of ``n``
    pairs whose label differs from the base's own and leaves the others as they are (the no-op
    right on those): the most a site playing the variable could show on these pairs. An
    intervention can lead by more only on pairs the plain run gets wrong though no label
    changes, which says nothing about the variable. The estimate is what more pairs of this
    kind approach; the interval, what these can show."""
    return paired_gap(only_iia=changed, only_baseline=0, both=n - changed, n=n)


THRESHOLD_RULE = "a threshold is a number in [0, 1)"


def check_threshold(value: object) -> str | None:
    """Why ``value`` cannot be a threshold, or None: the rule and what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if value is None:
            return f"{THRESHOLD_RULE}; it is empty: write the number after the colon"
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return f"{THRESHOLD_RULE}, not text"
            return f"{THRESHOLD_RULE}, not text: unquote it"
        return f"{THRESHOLD_RULE}, not {type(value).__name__}"
    if math.isnan(value):
        return f"{THRESHOLD_RULE}, not NaN"
    if value < 0:
        return f"{THRESHOLD_RULE}; it is below 0"
    if value == 1:
        return f"{THRESHOLD_RULE}: a 95% lower bound never reaches 1, so 1 could never be met"
    if 10 <= value < 100:
        return f"{THRESHOLD_RULE}; a percentage? write {value / 100:g}"
    if value > 1:
        return f"{THRESHOLD_RULE}; it is above 1"
    return None


def required_n(half_width: float, p: float = 0.5, z: float = Z95) -> int:
    """Pairs for a 95 % interval no wider than ``± half_width`` around ``p`` (normal approx.)."""
    if not 0 < half_width < 0.5:
        raise InvalidArgument(f"half_width={half_width} must be in (0, 0.5)")
    if not 0 < p < 1:  # p = 0 asked for 0 pairs, p = 1.5 for -3201
        raise InvalidArgument(f"p={p} must be in (0, 1): the proportion the interval is around")
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
    untestable: bool = False  # inconclusive because too few labels change, whatever n
    # What decided it: "threshold" (IIA's interval against the threshold), "lead over NAME"
    # (IIA's lead over a baseline against the margin), "labels that change" (too few of them)
    # or "collapse"; an aligned verdict names all it passed.
    decided_by: tuple[str, ...] = ()


def verdict(
    *,
    iia_ci: tuple[float, float],
    iia: float,
    threshold: float,
    gaps: Mapping[str, Gap],
    margin: float = 0.05,
    collapsed: bool = False,
    changed: tuple[int, int] | None = None,
    off_answers: tuple[int, int, int] | None = None,
) -> Verdict:
    """Decide aligned / not_aligned / inconclusive from the intervals (see the module docstring).

    ``gaps``: IIA's lead over each baseline the claim must beat; ``changed``: ``(pairs whose label
    differs from the base's own, n)``, to tell a claim its pairs cannot decide; ``off_answers``:
    ``(intervened predictions that are no answer word, the plain run's, n)``: a low IIA from an
    intervention that breaks the model's answers (a broken hook or engine) is no evidence that
    the variable is absent, so it is not called ``not_aligned``.
    """
    if (problem := check_threshold(threshold)) is not None:
        raise InvalidArgument(f"threshold={threshold!r}: {problem}")
    if not 0 <= margin < 1:
        raise InvalidArgument(f"margin={margin!r} must lie in [0, 1): IIA's lead over a baseline")
    low, high = iia_ci
    bar = margin - _TOLERANCE
    if collapsed:
        return Verdict(
            "not_aligned",
            "the learned boundary collapsed to 0 coordinates (a no-op)",
            decided_by=("collapse",),
        )
    lost = [name for name, gap in gaps.items() if gap.high < bar]  # no more than a baseline
    broken = _broken_answers(off_answers)
    if broken and (high < threshold or lost):  # a verdict of not_aligned, from broken answers
        return Verdict("inconclusive", broken, decided_by=(ANSWERS_KEPT,))
    if high < threshold:
        return Verdict(
            "not_aligned",
            f"95% CI upper bound {beside(high, threshold)} < threshold "
            f"{threshold_text(threshold, 3)}",
            decided_by=("threshold",),
        )
    if changed is not None and (perfect := perfect_gap(*changed)).low < bar:
        k, n = changed
        # A lead equal to the margin is shown by no n: the lower bound stays below the estimate.
        if perfect.estimate < margin + _TOLERANCE:
            return Verdict(
                "inconclusive",
                f"only {k} of {n} pairs have a label the intervention must change: an alignment "
                f"that changed just those answers would lead the no-op by {k / n:.3f}, not more "
                f"than the margin {margin}; draw pairs whose labels change (another bracket or "
                "amounts), not more of these",
                untestable=True,
                decided_by=(LABELS_THAT_CHANGE,),
            )
        return Verdict(
            "inconclusive",
            f"only {k} of {n} pairs have a label the intervention must change: too few to show "
            f"a lead of {margin} over the no-op even by changing every one (its lower bound "
            f"would be {beside(perfect.low, bar, signed=True)}); increase n",
            decided_by=(LABELS_THAT_CHANGE,),
        )
    if lost:  # the site clearly does no more than a baseline
        named = ", ".join(
            f"{name} ({gaps[name].baseline:.3f}, lead {gaps[name].against(margin)})"
            for name in lost
        )
        return Verdict(
            "not_aligned",
            f"IIA {iia:.3f} does not beat {named} by {margin}",
            decided_by=tuple(lead_over(name) for name in lost),
        )
    unsure = [name for name, gap in gaps.items() if gap.low < bar]
    if low >= threshold and not unsure:
        leads = "".join(f"; lead over {name} {gap.against(margin)}" for name, gap in gaps.items())
        return Verdict(
            "aligned",
            f"95% CI lower bound {beside(low, threshold)} >= threshold "
            f"{threshold_text(threshold, 3)}{leads}",
            decided_by=("threshold", *(lead_over(name) for name in gaps)),
        )
    reasons = []
    if low < threshold:
        reasons.append(
            f"95% CI {bracketed(low, high, threshold)} contains the threshold "
            f"{threshold_text(threshold, 3)}"
        )
    reasons += [
        f"the lead over {name}, {gaps[name].against(margin)}, contains the margin {margin}"
        for name in unsure
    ]
    return Verdict(
        "inconclusive",
        "; ".join(reasons) + "; increase n",
        decided_by=(*(("threshold",) if low < threshold else ()), *map(lead_over, unsure)),
    )


LABELS_THAT_CHANGE = "labels that change"
ANSWERS_KEPT = "answers kept"  # a verdict the intervention's off-answer predictions decided


def _broken_answers(off_answers: tuple[int, int, int] | None) -> str | None:
    """Why the intervention breaks the model's answers, or None: its predictions that are no
    answer word exceed the plain run's share by more than 5 points, at 95% (Wilson)."""
    if off_answers is None:
        return None
    off, base_off, n = off_answers
    if not n or wilson_interval(off, n)[0] <= base_off / n + 0.05:
        return None
    return (
        f"the intervention breaks the model's answers: {off} of {n} intervened predictions are "
        f"no answer word (the plain run's: {base_off}); a low IIA from a broken hook or engine, "
        "or an edit that wrecks the run, is no evidence the variable is absent (das_assert check "
        "runs the engine's checks; --das-json's pairs show the predictions)"
    )


def lead_over(baseline: str) -> str:
    """The name, in ``Verdict.decided_by``, of IIA's lead over ``baseline`` against the margin."""
    return f"lead over {baseline}"


def controls_text(baselines: Mapping[str, float], task_accuracy: float) -> str:
    """``no-op 0.682, majority 0.500, random rotation 0.654, task accuracy 0.976``: the
    controls an IIA is read against, on its pairs, as every message and table names them."""
    return (
        f"no-op {baselines['noop']:.3f}, majority {baselines['majority']:.3f}, random rotation "
        f"{baselines['random_rotation']:.3f}, task accuracy {task_accuracy:.3f}"
    )
