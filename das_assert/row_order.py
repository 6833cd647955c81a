"""The order reports list test ids in: pytest's parametrized ids by their numbers, so that
``test[2]`` comes before ``test[10]`` (as text ``[1]`` came after ``[19]``). Imports nothing
that loads torch."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = ["by_test_id", "in_report_order", "natural_key"]

_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
_Key = tuple[tuple[int, Decimal, str], ...]


def natural_key(text: str) -> _Key:
    """``text`` with each number in it compared as a number: ``a[2]`` < ``a[10]``, ``a[0.05]``
    < ``a[0.1]``. Equal numbers written differently (``07`` and ``7``) still differ, so no two
    texts tie."""
    parts = _NUMBER.split(text)
    return tuple(
        (1, Decimal(part), part) if i % 2 else (0, Decimal(0), part) for i, part in enumerate(parts)
    )


def by_test_id(record: dict[str, Any]) -> _Key:
    """A sort key: a record's ``test_id`` in natural order."""
    return natural_key(record["test_id"])


def in_report_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` by test id, then claim: the order of the JSON report's ``results`` and the
    Markdown table (a stable sort: xdist's workers report in the order they finish)."""
    return sorted(records, key=lambda r: (by_test_id(r), r["claim"]))
