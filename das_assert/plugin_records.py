"""The records a das test carries in its user properties (a claim's, a measured limit's, a
search's, a fuzz example's), as the reporter reads them, and what a rerun of the test forgets."""

from __future__ import annotations

import json
from typing import Any

import pytest

__all__ = [
    "JUNIT_PROPERTIES",
    "MESSAGE_CHARS",
    "REPORTED_KINDS",
    "cut",
    "forget_earlier_attempt",
    "judged",
    "not_ours",
    "outcome_of",
    "record_of",
]

#: The user properties that carry das records from a test's call phase to the reports.
REPORTED_KINDS = ("das_result", "das_fuzz", "das_limit", "das_search")
#: The user properties a claim or measured limit adds for ``--junitxml`` beside its record.
JUNIT_PROPERTIES = tuple(
    f"das_{name}"
    for name in ("claim", "iia", "iia_ci", "n_test", "verdict", "threshold", "where", "status")
)


def forget_earlier_attempt(item: pytest.Item) -> None:
    """Drop the records an earlier attempt of ``item`` left on it: pytest-rerunfailures runs
    a test again on the same item, and each attempt's report carried every earlier one's.
    The first attempt keeps what a hook put there before it (a user's own properties)."""
    if not item.stash.get(_ATTEMPTED, False):
        item.stash[_ATTEMPTED] = True
        return
    item.user_properties[:] = [
        (k, v) for k, v in not_ours(item.user_properties) if k not in JUNIT_PROPERTIES
    ]


_ATTEMPTED = pytest.StashKey[bool]()


def not_ours(properties: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``properties`` without the das records (a test's own ``das_result`` of 1 is kept)."""
    return [(k, v) for k, v in properties if k not in REPORTED_KINDS or record_of(v) is None]


def record_of(value: Any) -> dict[str, Any] | None:
    """A das record carried in a user property (a JSON object), else None."""
    try:
        record = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def judged(properties: list[tuple[str, Any]]) -> bool:
    """Whether a test's records hold a verdict: a claim's, a measured limit's, a search's, or
    a fuzz variant's that was not rejected (a broken variant is a verdict, not a failure before
    one)."""
    for name, value in properties:
        if name in ("das_result", "das_limit", "das_search"):
            return True
        if name == "das_fuzz" and (record := record_of(value)) is not None:
            if not str(record.get("status", "rejected")).startswith("rejected"):
                return True
    return False


def outcome_of(report: pytest.TestReport) -> str:
    """The test's outcome as pytest's summary names it: ``passed``, ``failed``, ``skipped``, or
    ``xfailed`` (pytest's report says ``skipped``, as ``--das-inconclusive=xfail`` gives it) and
    ``xpassed``."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


#: How much of a message the reports keep of a test that failed before a verdict: das_assert's
#: messages put their fix last, and a long model path pushed it past 500 characters.
MESSAGE_CHARS = 2000


def cut(message: str) -> str:
    """``message`` whole, or its head and tail around "[...]" (where a fix usually stands)."""
    if len(message) <= MESSAGE_CHARS:
        return message
    half = (MESSAGE_CHARS - 7) // 2
    return f"{message[:half]} [...] {message[-half:]}"
