"""Regression checks: ``iia:0.05`` (absolute drop) and ``iia:5%`` (relative drop).

A regression in IIA is a *drop*; improvements never fail and are reported so the bar can be
raised by saving a new baseline. For a negative claim (``expected_verdict`` not_aligned) the
alignment's numbers regress by *rising*: the variable it says is absent is showing up.

>>> check = parse_compare_fail("iia:0.05")
>>> check.fails(current=0.80, baseline=0.90)
'iia dropped by 0.100 (0.900 -> 0.800), more than the allowed 0.050'
>>> check.fails(current=0.88, baseline=0.90) is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from das_assert.baseline import matching_key
from das_assert.errors import ConfigError

__all__ = [
    "DropCheck",
    "compare_entries",
    "not_comparable",
    "parse_compare_fail",
]

#: ``transfer`` compares the baseline's frozen alignment, applied to the new model, with the
#: baseline's own IIA; the others compare the re-derived numbers.
FIELDS = ("iia", "transfer", "task_accuracy", "normalized_iia")
_EXPR = re.compile(r"^(\w+):(\d+(?:\.\d+)?)(%?)$")


@dataclass(frozen=True)
class DropCheck:
    """Fail when ``field`` drops by more than ``amount`` (absolute, or % when ``relative``)."""

    field: str
    amount: float
    relative: bool

    def allowed_drop(self, baseline: float) -> float:
        return baseline * self.amount / 100 if self.relative else self.amount

    def values(
        self, current: dict[str, Any], baseline: dict[str, Any]
    ) -> tuple[float | None, float | None]:
        """``(current, baseline)`` of this check's field from two records; None where a record
        lacks it. ``transfer`` compares the baseline's frozen alignment on the current model
        (``current["transfer"]["iia"]``) with the IIA it had when saved."""
        if self.field == "transfer":
            return (current.get("transfer") or {}).get("iia"), baseline.get("iia")
        return current.get(self.field), baseline.get(self.field)

    def fails(self, *, current: float, baseline: float, rise: bool = False) -> str | None:
        """A message when the drop (with ``rise``, the rise) is too large, else None."""
        change = current - baseline if rise else baseline - current
        allowed = self.allowed_drop(baseline)
        if change > allowed + 1e-12:
            unit = f"{self.amount:g}% = {allowed:.3f}" if self.relative else f"{allowed:.3f}"
            moved = "rose" if rise else "dropped"
            return (
                f"{self.field} {moved} by {change:.3f} ({baseline:.3f} -> {current:.3f}), "
                f"more than the allowed {unit}"
            )
        return None

    def check(self, current: dict[str, Any], baseline: dict[str, Any]) -> str | None:
        """This check on two records of one claim: a message if it fails, else None. A field
        either record lacks fails too (a gate that cannot check does not pass); a negative
        claim's alignment numbers fail by rising (task accuracy always by dropping)."""
        now, before = self.values(current, baseline)
        if not all(isinstance(v, int | float) for v in (now, before)):
            sides = [n for n, v in (("baseline", before), ("current", now)) if v is None]
            where = " and ".join(sides) or "both (not numbers)"
            return f"{self.field} is missing in the {where} result, so {self} cannot be checked"
        negative = current.get("expected_verdict") == "not_aligned"
        rise = negative and self.field != "task_accuracy"
        return self.fails(current=float(now), baseline=float(before), rise=rise)

    def __str__(self) -> str:
        return f"{self.field}:{self.amount:g}{'%' if self.relative else ''}"


def parse_compare_fail(text: str) -> DropCheck:
    """Parse ``FIELD:NUMBER`` (absolute drop) or ``FIELD:NUMBER%`` (relative drop)."""
    match = _EXPR.match(text.strip())
    if not match or match.group(1) not in FIELDS:
        raise ConfigError(
            f"could not parse the compare-fail expression {text!r}: expected FIELD:NUMBER "
            f"(absolute drop) or FIELD:NUMBER% (relative drop), FIELD one of "
            f"{', '.join(FIELDS)}, e.g. iia:0.05 or iia:5%"
        )
    field, number, percent = match.groups()
    amount = float(number)
    if not percent and amount > 1:
        raise ConfigError(
            f"{text!r}: an absolute drop of {amount} is more than IIA can drop; write a drop in "
            "[0, 1] such as iia:0.05, or a relative drop such as iia:5%"
        )
    return DropCheck(field, amount, bool(percent))


def not_comparable(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why two results of one claim cannot be compared: other prompts, or other pairs (a
    search's best cell judged on fresh pairs against one judged on the pairs that chose it)."""
    reasons = []
    if old.get("data") and new.get("data") and old["data"] != new["data"]:
        changed = sorted(k for k in old["data"] if old["data"][k] != new["data"].get(k))
        reasons.append(f"ran on other prompts ({', '.join(changed)} differ): not comparable")
    pairs = old.get("test_pairs", "test"), new.get("test_pairs", "test")  # older: "test"
    if pairs[0] != pairs[1]:
        reasons.append(
            f"judged on other pairs ({pairs[0]} -> {pairs[1]}): not comparable; save the "
            "baseline again"
        )
    return reasons


def compare_entries(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], checks: list[DropCheck]
) -> tuple[str, int]:
    """A Markdown table of two files' entries (by key) and how many regressed: an entry missing
    from ``new``, a failed check, results on other prompts, or a claim that held and now fails."""
    lines = [
        "| claim | site (old -> new) | IIA old (95% CI, n) | IIA new (95% CI, n) | Δ | result |",
        "|---|---|---|---|---|---|",
    ]
    regressed = 0
    new = {matching_key(key, old) or key: entry for key, entry in new.items()}  # moved rootdirs
    for key in sorted(set(old) | set(new)):
        if key not in new or key not in old:
            where = "missing in NEW" if key not in new else "new in NEW"
            lines.append(f"| {key} | | | | | {where} |")
            regressed += key not in new
            continue
        a, b = old[key], new[key]
        failures = [message for check in checks if (message := check.check(b, a))]
        failures += not_comparable(a, b)
        if a.get("passed") is True and b.get("passed") is False:
            failures.append(
                f"the claim held in OLD and fails in NEW (verdict {b.get('verdict')}, expected "
                f"{b.get('expected_verdict')})"
            )
        regressed += bool(failures)
        site_a, site_b = a["site"]["canonical"], b["site"]["canonical"]
        site = site_a if site_a == site_b else f"{site_a} -> {site_b} (drift)"
        lines.append(
            f"| {key} | `{site}` | {_iia_with_interval(a)} | {_iia_with_interval(b)} | "
            f"{b['iia'] - a['iia']:+.3f} | {'; '.join(failures) or 'ok'} |"
        )
    return "\n".join(lines) + "\n", regressed


def _iia_with_interval(record: dict[str, Any]) -> str:
    """``0.830 [0.802, 0.854] n=800``, or the IIA alone where a record lacks the rest."""
    ci, n = record.get("iia_ci"), record.get("n_test")
    if ci is None or n is None:
        return f"{record['iia']:.3f}"
    return f"{record['iia']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] n={n}"
