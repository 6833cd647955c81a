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

import json
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from das_assert.baseline import KeyIndex, matching_key
from das_assert.errors import ConfigError
from das_assert.md_text import code, plain
from das_assert.metrics import beside, threshold_text
from das_assert.row_order import natural_key
from das_assert.summary import NOT_COMPARABLE, fit_method
from das_assert.values import is_finite_number

__all__ = [
    "DropCheck",
    "compare_entries",
    "count_line",
    "marker_expressions",
    "not_comparable",
    "parse_compare_fail",
    "prompt_differences",
    "same_site",
]

#: ``transfer`` compares the baseline's frozen alignment, applied to the new model, with the
#: baseline's own IIA; the others compare the re-derived numbers. ``lead`` is IIA minus the
#: no-op's (the plain base run's) on the same pairs: a model update that moves the no-op (its
#: task accuracy) moves IIA with it, which only the lead tells apart.
FIELDS = ("iia", "transfer", "task_accuracy", "normalized_iia", "lead")
_EXPR = re.compile(r"^(\w+):(\d+(?:\.\d+)?)(%?)$")


@dataclass(frozen=True)
class DropCheck:
    """Fail when ``field`` drops by more than ``amount`` (absolute, or % when ``relative``)."""

    field: str
    amount: float
    relative: bool

    def allowed_drop(self, baseline: float) -> float:
        return abs(baseline) * self.amount / 100 if self.relative else self.amount

    def values(
        self, current: dict[str, Any], baseline: dict[str, Any]
    ) -> tuple[float | None, float | None]:
        """``(current, baseline)`` of this check's field from two records; None where a record
        lacks it. ``transfer`` compares the baseline's frozen alignment on the current model
        (``current["transfer"]["iia"]``) with the IIA it had when saved."""
        if self.field == "transfer":
            return _mapping(current.get("transfer")).get("iia"), baseline.get("iia")
        if self.field == "lead":
            return _lead_over_noop(current), _lead_over_noop(baseline)
        return current.get(self.field), baseline.get(self.field)

    def fails(self, *, current: float, baseline: float, rise: bool = False) -> str | None:
        """A message when the drop (with ``rise``, the rise) is too large, else None."""
        change = current - baseline if rise else baseline - current
        allowed = self.allowed_drop(baseline)
        if change > allowed + 1e-12:
            shown = beside(allowed, change)  # a relative allowance has digits past the third
            unit = f"{self._amount_text()}% = {shown}" if self.relative else shown
            moved = "rose" if rise else "dropped"
            return (
                f"{self.field} {moved} by {beside(change, allowed + 1e-12)} "  # not 0.050 > 0.050
                f"({baseline:.3f} -> {current:.3f}), more than the allowed {unit}"
            )
        return None

    def checkable(self, current: dict[str, Any], baseline: dict[str, Any]) -> bool:
        """Whether both records hold this check's field as a finite number: a NaN compares
        false with every tolerance, so it would pass any gate."""
        return all(is_finite_number(v) for v in self.values(current, baseline))

    def check(self, current: dict[str, Any], baseline: dict[str, Any]) -> str | None:
        """This check on two records of one claim: a message if it fails, else None. A field
        either record lacks fails too (a gate that cannot check does not pass); a negative
        claim's alignment numbers fail by rising (task accuracy always by dropping)."""
        now, before = self.values(current, baseline)
        skipped = _mapping(current.get("transfer")).get("skipped")
        if self.field == "transfer" and skipped:
            return f"transfer was not measured ({skipped}), so {self} cannot be checked"
        if not self.checkable(current, baseline) or now is None or before is None:
            bad = {
                n: v for n, v in (("baseline", before), ("current", now)) if not is_finite_number(v)
            }
            what = "missing" if all(v is None for v in bad.values()) else "not a finite number"
            where = " and ".join(bad)
            return f"{self.field} is {what} in the {where} result, so {self} cannot be checked"
        # a command-line result expects nothing: the claim it is matched with says what it is
        expected = current.get("expected_verdict") or baseline.get("expected_verdict")
        negative = expected == "not_aligned"
        rise = negative and self.field != "task_accuracy"
        return self.fails(current=float(now), baseline=float(before), rise=rise)

    def __str__(self) -> str:
        return f"{self.field}:{self._amount_text()}{'%' if self.relative else ''}"

    def _amount_text(self) -> str:
        """The amount as written, never in exponent form (iia:1e-05 would not parse back)."""
        return format(Decimal(repr(self.amount)).normalize(), "f")


def _lead_over_noop(record: dict[str, Any]) -> float | None:
    """IIA minus the no-op's IIA on the same pairs; None where the record lacks either."""
    iia, noop = _number(record.get("iia")), _number(_mapping(record.get("baselines")).get("noop"))
    return None if iia is None or noop is None else iia - noop


def _number(value: Any) -> float | None:
    """``value`` as a float where it is a finite int or float (not a bool), else None."""
    return float(value) if is_finite_number(value) else None


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` where it is a dict, else empty: a field of a hand-edited report ("x", a list)
    is then missing to the checks, which fail as unable to check it."""
    return value if isinstance(value, dict) else {}


def marker_expressions(value: Any) -> list[Any]:
    """A das marker's ``compare_fail``: one expression, or a list or tuple of them."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def parse_compare_fail(text: str) -> DropCheck:
    """Parse ``FIELD:NUMBER`` (absolute drop) or ``FIELD:NUMBER%`` (relative drop)."""
    if not isinstance(text, str):
        raise ConfigError(
            f"{text!r} is not an expression: write it as text, e.g. 'iia:0.05' (absolute drop) "
            "or 'iia:5%' (relative drop)"
        )
    match = _EXPR.match(text.strip())
    if not match or match.group(1) not in FIELDS:
        raise ConfigError(
            f"could not parse the compare-fail expression {text!r}: expected FIELD:NUMBER "
            f"(absolute drop) or FIELD:NUMBER% (relative drop), FIELD one of "
            f"{', '.join(FIELDS)}, e.g. iia:0.05 or iia:5%"
        )
    field, number, percent = match.groups()
    amount = float(number)
    if not percent and amount >= 1:
        raise ConfigError(
            f"{text!r}: an absolute drop of {amount} is more than IIA can drop, so the gate "
            "could never fail; write a drop in [0, 1) such as iia:0.05, or a relative drop such "
            "as iia:5%"
        )
    if percent and amount >= 100:
        raise ConfigError(
            f"{text!r}: a relative drop of {number}% is more than IIA can drop, so the gate "
            "could never fail; write a percentage below 100 such as iia:5%"
        )
    return DropCheck(field, amount, bool(percent))


def prompt_differences(old: Any, new: Any) -> list[str]:
    """The prompt settings (a record's ``data``) in which two records differ, a setting one side
    does not record included; none where either records no prompts."""
    if not old or not new or old == new:
        return []
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def not_comparable(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why two results of one claim cannot be compared: another fit method (``boundless``,
    ``das:K``, ``full``: a record without one was fitted by Boundless DAS), other prompts, or
    other pairs (a search's best cell judged on fresh pairs against one judged on the pairs that
    chose it)."""
    reasons = []
    methods = fit_method(old), fit_method(new)
    if methods[0] != methods[1]:
        reasons.append(
            f"fitted by another method ({methods[0]} -> {methods[1]}){NOT_COMPARABLE}; fit both "
            "the same way, or save the baseline again"
        )
    if changed := prompt_differences(old.get("data"), new.get("data")):
        reasons.append(f"ran on other prompts ({', '.join(changed)} differ){NOT_COMPARABLE}")
    pairs = old.get("test_pairs", "test"), new.get("test_pairs", "test")  # older: "test"
    if pairs[0] != pairs[1]:
        reasons.append(
            f"judged on other pairs ({pairs[0]} -> {pairs[1]}){NOT_COMPARABLE}; compare "
            "results judged on the same kind of pairs (for a baseline: save it again)"
        )
    return reasons


#: How ``compare_entries`` counts its failing rows, in the order the final line names them.
COUNTS = ("regression(s)", "not comparable", "cannot be checked", "missing in NEW")


def compare_entries(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], checks: list[DropCheck]
) -> tuple[str, dict[str, int]]:
    """A Markdown table of two files' entries and how many rows fail, by kind (``COUNTS``).

    Entries are matched by key (a pytest claim seen from another rootdir too); a pytest claim
    and a command-line result, which has no claim, by hypothesis, variable and site. A row
    fails as a regression (a check's drop past its tolerance, or a claim that held and now
    fails), as not comparable (other prompts or other pairs), as cannot be checked (a check's
    field one side lacks), or as missing in NEW; each failing row is counted once, under the
    first of these that applies.
    """
    lines = [
        "| claim | site (old -> new) | IIA old (95% CI, n, seed; controls) | IIA new (95% CI, n, "
        "seed; controls) | Δ | result |",
        "|---|---|---|---|---|---|",
    ]
    counts = dict.fromkeys(COUNTS, 0)
    old_keys, new_keys = KeyIndex(old), KeyIndex(new)
    new = {  # seen from another rootdir: one to one, else each stays apart
        matching_key(key, old_keys, among=new_keys) or key: entry for key, entry in new.items()
    }
    across, unmatched = _match_across_kinds(old, new)
    matched_new = set(across.values())
    for key in sorted(set(old) | (set(new) - matched_new), key=natural_key):
        new_key = across.get(key, key)
        if new_key not in new or key not in old:
            if key in old:
                where = "missing in NEW" + (f" ({unmatched[key]})" if key in unmatched else "")
                counts["missing in NEW"] += 1
            else:
                where = "new in NEW"
            lines.append(f"| {plain(key)} | | | | | {plain(where)} |")
            continue
        a, b = old[key], new[new_key]
        label = key if new_key == key else f"{key} (NEW: {new_key})"
        unchecked = [str(check) for check in checks if not check.checkable(b, a)]
        failures = [message for check in checks if (message := check.check(b, a))]
        incomparable = not_comparable(a, b)
        failures += incomparable
        # a claim whose verdict is as expected can fail its run against that run's own
        # baseline: that is not a flip, and the checks here say whether it dropped
        flipped = (
            a.get("passed") is True
            and b.get("passed") is False
            and b.get("verdict") != b.get("expected_verdict")
        )
        if flipped:
            # the rule's doing only where nothing else failed (no drop past a check)
            rule = None if failures else _verdict_rule_moved(a, b)
            failures.append(
                f"the claim held in OLD and fails in NEW (verdict {b.get('verdict')}, expected "
                f"{b.get('expected_verdict')})"
            )
            if rule:
                failures.append(rule)
                incomparable = [rule]
        if incomparable:
            counts["not comparable"] += 1
        elif flipped or len(failures) > len(unchecked):
            counts["regression(s)"] += 1
        elif unchecked:
            counts["cannot be checked"] += 1
        site_a, site_b = a["site"]["canonical"], b["site"]["canonical"]
        moved = "same block" if same_site(a["site"], b["site"]) else "drift"
        site = site_a if site_a == site_b else f"{site_a} -> {site_b} ({moved})"
        seeds = a.get("seed"), b.get("seed")
        other_seed = (  # other pairs from one distribution: compared, but IIA moves with them
            f" (seed {seeds[0]} -> {seeds[1]}: IIA moves with the seed)"
            if None not in seeds and seeds[0] != seeds[1]
            else ""
        )
        then, now = a.get("threshold"), b.get("threshold")
        other_threshold = (  # a verdict that flipped with it need not have moved at all
            f" (threshold {threshold_text(then)} -> {threshold_text(now)}: the claim's bar moved)"
            if then is not None and now is not None and then != now
            else ""
        )
        lines.append(
            f"| {plain(label)} | {code(site)}{_methods(a, b)} | {_iia_with_interval(a)} | "
            f"{_iia_with_interval(b)} | {b['iia'] - a['iia']:+.3f} | "
            f"{plain('; '.join(failures) or 'ok')}{other_seed}{other_threshold} |"
        )
    return "\n".join(lines) + "\n", counts


def _verdict_rule_moved(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why a flip may be the verdict rule's, not the model's: OLD was judged before verdicts
    read a lead over a baseline off its interval (2026-12-03; its record has no
    ``baseline_leads``), and NEW's verdict was decided by such a lead alone (not also by the
    threshold, which the old rule read as now)."""
    if "baseline_leads" in old or not isinstance(old.get("verdict"), str):
        return None
    decided = [str(axis) for axis in new.get("verdict_decided_by") or []]
    if not decided or not all(axis.startswith("lead over") for axis in decided):
        return None
    return (
        "OLD was judged before verdicts read each lead over a baseline off its interval "
        "(2026-12-03), and a lead decided NEW's verdict: the rule moved, so not comparable; "
        "save the baseline again"
    )


def count_line(counts: dict[str, int]) -> str:
    """``no regression``, or what failed: ``1 regression(s), 2 missing in NEW``."""
    if not any(counts.values()):
        return "no regression"
    first, *rest = COUNTS
    return ", ".join([f"{counts[first]} {first}"] + [f"{counts[k]} {k}" for k in rest if counts[k]])


def _methods(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`` (das:1)`` or `` (boundless -> das:1)`` after a site whose fits are not both boundless,
    so that two fits at one site are told apart; nothing for the default."""
    methods = fit_method(old), fit_method(new)
    if methods == ("boundless", "boundless"):
        return ""
    return f" ({methods[0] if methods[0] == methods[1] else ' -> '.join(methods)})"


def _signature(entry: dict[str, Any]) -> tuple[Any, Any, str]:
    return entry.get("hypothesis"), entry.get("variable"), entry["site"]["canonical"]


def same_site(site_a: dict[str, Any], site_b: dict[str, Any]) -> bool:
    """Whether two records' sites are one: the same text, or the same module, component and
    position where both recorded the module (``layer=-4``, as records before 2026-12-06 kept
    it as written, and ``layer=0``, the block it was)."""
    if site_a["canonical"] == site_b["canonical"]:
        return True
    fields = ("module", "component", "position")
    return bool(site_a.get("module")) and all(site_a.get(f) == site_b.get(f) for f in fields)


def _kind(entry: dict[str, Any]) -> tuple[bool, str, str]:
    """Whether ``entry`` is a pytest claim, and its hypothesis and variable, as text: a foreign
    report's list there is compared whole, as before, not refused as unhashable."""

    def text(name: str) -> str:
        return json.dumps(entry.get(name), sort_keys=True, default=str)

    return bool(entry.get("claim")), text("hypothesis"), text("variable")


def _match_across_kinds(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], dict[str, str]]:
    """Pytest claims matched with command-line results (keyed by what they measured, as they
    have no claim) by hypothesis, variable and site, where the keys found no match.

    Returns ``{old key: new key}``, and why an old entry found none. Among several candidates
    the one alike (same fit method, prompts and pairs) is taken, on either side: two claims at
    one site fitted by two methods each find the result fitted their way. Where still more than
    one entry of either side shares a hypothesis, variable and site (two claims at one site),
    none is guessed."""
    lonely_old = [k for k in old if k not in new]
    by_kind: dict[tuple[Any, ...], list[str]] = {}  # a claim or not, hypothesis, variable
    for k in new:
        if k not in old:
            by_kind.setdefault(_kind(new[k]), []).append(k)
    candidates: dict[str, list[str]] = {}
    alike_to: dict[str, set[str]] = {}  # old key -> the candidates alike to it
    for key in lonely_old:
        other_kind = (not _kind(old[key])[0], *_kind(old[key])[1:])
        found = [
            k for k in by_kind.get(other_kind, []) if same_site(new[k]["site"], old[key]["site"])
        ]
        alike = [k for k in found if not not_comparable(old[key], new[k])]
        candidates[key] = alike or found
        alike_to[key] = set(alike)
    chosen = Counter(c[0] for c in candidates.values() if len(c) == 1)
    new_kinds = {bool(entry.get("claim")) for entry in new.values()}
    matches, why = {}, {}
    for key, found in candidates.items():
        if len(found) == 1 and chosen[found[0]] == 1:
            matches[key] = found[0]
            continue
        # several claims at one site share this one result: the one fitted alike takes it
        winners = (
            [k for k, c in candidates.items() if c == found and found[0] in alike_to[k]]
            if len(found) == 1
            else []
        )
        if winners == [key]:
            matches[key] = found[0]
            continue
        hypothesis, variable, site = _signature(old[key])
        if len(winners) == 1:
            why[key] = (
                f"NEW's {found[0]} is matched with {winners[0]}, alike to it (fit method, "
                "prompts, pairs)"
            )
        elif len(found) > 1:
            why[key] = (
                f"{len(found)} results in NEW share its hypothesis, variable and site: none is "
                "guessed"
            )
        elif found:
            why[key] = (
                f"{chosen[found[0]]} results in OLD share the hypothesis, variable and site "
                f"of NEW's {found[0]}: none is guessed"
            )
        elif (not old[key].get("claim")) in new_kinds:
            why[key] = (
                f"no result in NEW has hypothesis {hypothesis}, variable {variable} at site {site}"
            )
    return matches, why


def _iia_with_interval(record: dict[str, Any]) -> str:
    """``0.830 [0.802, 0.854] n=800, seed 0; no-op 0.682, majority 0.500, random 0.654, task
    0.976``: what of it a record holds (the IIA alone in the oldest)."""
    ci, n = record.get("iia_ci"), record.get("n_test")
    text = f"{record['iia']:.3f}"
    if ci is not None and n is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}] n={n}"
    if record.get("seed") is not None:
        text += f", seed {record['seed']}"
    controls = {**(record.get("baselines") or {}), "task": record.get("task_accuracy")}
    shown = [
        f"{label} {controls[key]:.3f}"
        for key, label in CONTROL_LABELS
        if isinstance(controls.get(key), int | float)
    ]
    return text + (f"; {', '.join(shown)}" if shown else "")


#: The controls a compared IIA is shown with, as the report's ``baselines`` name them.
CONTROL_LABELS = (
    ("noop", "no-op"),
    ("majority", "majority"),
    ("random_rotation", "random"),
    ("task", "task"),
)
