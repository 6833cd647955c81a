"""What a baseline's entry, or a report's result, must hold for a comparison to read it: one
check for both, and the one message a file that fails it gets (``baseline.load_baseline``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from das_assert.values import is_finite_number

__all__ = ["malformed_text", "names_own_file", "well_formed"]


def well_formed(record: Any) -> bool:
    """A result or entry with what a comparison reads: a finite IIA (a NaN compares false with
    every tolerance, so it would pass any gate), its interval as two numbers, and a named site."""
    ci = record.get("iia_ci") if isinstance(record, dict) else None
    return (
        isinstance(record, dict)
        and is_finite_number(record.get("iia"))
        and isinstance(ci, list)
        and len(ci) == 2
        and all(is_finite_number(bound) for bound in ci)
        and 0 <= record["iia"] <= 1
        and isinstance(record.get("site"), dict)
        and isinstance(record["site"].get("canonical"), str)
        and (bool(record.get("claim")) or isinstance(record.get("hypothesis"), str))
        and all(  # what compare reads as mappings
            isinstance(record.get(k), dict | None) for k in ("data", "fit", "baselines", "transfer")
        )
        and (record.get("threshold") is None or _fraction(record["threshold"]))
        and names_own_file(record)
    )


def _fraction(value: Any) -> bool:
    return is_finite_number(value) and 0 <= value <= 1


_SHA256 = re.compile(r"[0-9a-f]{64}")


def names_own_file(record: dict[str, Any]) -> bool:
    """Whether ``record``'s alignment file, if any, is a file name in its baseline's folder
    (not a path that leads out of it) and its pin, if any, a sha256."""
    name, pin = record.get("alignment_file"), record.get("alignment_sha256")
    return (
        name is None
        or (isinstance(name, str) and name.endswith(".safetensors") and _plain_name(name))
    ) and (pin is None or (isinstance(pin, str) and _SHA256.fullmatch(pin) is not None))


def _plain_name(name: str) -> bool:
    return "\0" not in name and "\\" not in name and Path(name).name == name


def malformed_text(path: Path) -> str:
    return (
        f"{path}: a result lacks a finite iia (or a two-number iia_ci), a site or a "
        "claim/hypothesis, or has an iia or threshold outside [0, 1], a data or fit that is not "
        "an object, or an alignment file that is not a .safetensors file name in the baseline's "
        "folder: the file was edited by hand or not written by das_assert. Re-create it"
    )
