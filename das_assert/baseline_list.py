"""``das_assert baselines``: what a baseline directory holds, per model, oldest first.

For each saved baseline: its number and name (what ``--das-compare`` and ``--das-frozen`` take),
when it was saved, its claims and how many did not hold in the run that saved them (an
inconclusive one that ``--das-inconclusive=pass`` passed too), its search cells,
and the weights it was saved on; which one ``latest`` is. Also the folders that hold no
baseline: a run's reservation (a run saving now, or one killed before it could finish) and an
alignment folder whose JSON is gone. A baseline that cannot be read is listed with the reason,
never skipped: it is what a ``--das-compare`` naming it would stop on.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from das_assert.baseline import (
    ABANDONED_AFTER_S,
    RESERVED_BY,
    SAVED_AT_FORMAT,
    abandoned_reservations,
    baseline_order,
    is_baseline_file,
    load_baseline,
    reserved_since,
)
from das_assert.errors import DasError, InvalidArgument

__all__ = ["OURS", "baseline_listing", "foreign_files", "listing_text", "newest_write", "ours"]

OURS = (".safetensors",)  # what a saving run writes into its folder, besides its token
# and the temporary file of an alignment's atomic write (store.atomic_write_bytes), left where
# the run was killed mid-write
_TEMPORARY = re.compile(r"^\..+\.safetensors\.[a-z0-9_]+\.tmp$")


def baseline_listing(root: Path, *, model: str | None = None) -> dict[str, Any]:
    """The baselines under ``root`` (``--das-baseline-dir``), one block per model folder (only
    ``model``'s where given).

    Raises:
        InvalidArgument: ``root`` is no directory, holds no model's folder, or none ``model``.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidArgument(
            f"no baseline directory {root}: give the one pytest saves into (--dir; pytest's "
            "--das-baseline-dir, by default hypotheses/baselines under its rootdir)"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise InvalidArgument(
            f"no baselines in {root}: it holds no model's folder; save one with pytest "
            "--das-save-baseline=NAME"
        )
    if model is not None:
        if not (root / model).is_dir():
            present = ", ".join(p.name for p in folders) or "none"
            raise InvalidArgument(f"no baselines of model {model!r} in {root}; present: {present}")
        folders = [root / model]
    now = time.time()
    return {"root": str(root), "models": [_model_block(folder, now) for folder in folders]}


def _model_block(folder: Path, now: float) -> dict[str, Any]:
    files = sorted((p for p in folder.iterdir() if is_baseline_file(p)), key=baseline_order)
    saved = [_baseline_row(path) for path in files]
    stems = {path.stem for path in files}
    abandoned = set(abandoned_reservations(folder, "", now))  # no run's token: all are others'
    others: list[dict[str, Any]] = []
    numbered = (p for p in folder.iterdir() if p.is_dir() and p.name[:4].isdigit())
    for sub in sorted(numbered, key=baseline_order):
        since = reserved_since(sub)
        if since is not None:
            state = "abandoned" if sub in abandoned else "reserved"
            others.append({"folder": sub.name, "state": state, "since": _utc(since)})
            if sub.name in stems:  # a run killed between its JSON's rename and the release
                others[-1]["saved"] = True
        elif sub.name not in stems:
            others.append({"folder": sub.name, "state": "orphaned", "since": None})
        else:
            continue
        if others[-1]["state"] != "reserved" and not others[-1].get("saved"):
            others[-1]["foreign"] = foreign_files(sub)  # --prune keeps the folder
        if others[-1]["state"] == "abandoned" and (written := _written_within_a_day(sub, now)):
            others[-1]["written"] = written  # --prune keeps it too: a run may still be saving
    return {
        "model": folder.name,
        "directory": str(folder),
        "latest": files[-1].stem if files else None,
        "baselines": saved,
        "other_folders": others,
    }


def _baseline_row(path: Path) -> dict[str, Any]:
    number, _, name = path.stem.partition("_")
    row: dict[str, Any] = {"file": path.name, "number": number, "name": name}
    try:
        payload = load_baseline(path)
    except DasError as exc:
        return {**row, "error": str(exc)}
    entries = payload["entries"].values()
    # What the checksum covers but no reader checks (a hand edit, its checksum recomputed):
    # a field of another type is shown as missing, not a crash of the whole listing.
    weights = _field(_field(_field(payload, "model", dict), "fingerprint", dict), "weights", str)
    saved_at = _field(payload, "saved_at", str)
    cells = _field(payload, "search_cells", dict)
    return {
        **row,
        "saved_at": saved_at or _utc(path.stat().st_mtime),
        "saved_at_from": "baseline" if saved_at else "file time",  # before 2026-12-04
        "claims": len(entries),
        "failed": sum(1 for entry in entries if entry.get("passed") is False),
        "search_cells": len(cells or {}),
        "weights": weights,
        "error": None,
    }


def _field(payload: Any, key: str, kind: type) -> Any:
    """``payload[key]`` where ``payload`` is an object and the value a ``kind``, else None."""
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, kind) else None


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime(SAVED_AT_FORMAT)


def newest_write(folder: Path) -> float:
    """When ``folder`` or anything in it was last written (``OSError`` where it cannot be read)."""
    return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])


def _written_within_a_day(folder: Path, now: float) -> str | None:
    """When something in ``folder`` was last written, where that is within the day (as
    ``baselines --prune`` checks it), else None."""
    try:
        newest = newest_write(folder)
    except OSError:
        return None
    return _utc(newest) if abs(now - newest) <= ABANDONED_AFTER_S else None


def ours(path: Path) -> bool:
    """Whether ``path`` is a file das_assert writes into a baseline's alignment folder."""
    name = path.name
    return (
        path.is_file()
        and not path.is_symlink()
        and (name.endswith(OURS) or bool(_TEMPORARY.match(name)))
    )


def foreign_files(folder: Path) -> str:
    """The files in ``folder`` that das_assert does not write there, a few named ("" if none):
    ``baselines --prune`` keeps such a folder."""
    try:
        foreign = sorted(p.name for p in folder.iterdir() if p.name != RESERVED_BY and not ours(p))
    except OSError:
        return ""
    return ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")


def listing_text(listing: dict[str, Any]) -> str:
    """The listing as the terminal shows it: a table per model folder."""
    lines = []
    for block in listing["models"]:
        count = len(block["baselines"])
        latest = f"; latest = {block['latest']}" if block["latest"] else ""
        lines.append(f"{block['directory']}: {count} baseline{'' if count == 1 else 's'}{latest}")
        rows = [("number", "name", "saved (UTC)", "claims", "search cells", "weights")]
        notes = []
        for row in block["baselines"]:
            if row["error"]:
                notes.append(f"  {row['file']}: unreadable: {row['error']}")
                continue
            failed = f" ({row['failed']} did not hold)" if row["failed"] else ""
            when = row["saved_at"] + ("*" if row["saved_at_from"] == "file time" else "")
            rows.append(
                (
                    row["number"],
                    row["name"],
                    when,
                    f"{row['claims']}{failed}",
                    str(row["search_cells"]),
                    row["weights"] or "-",
                )
            )
        if len(rows) > 1:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines += [
                "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                for r in rows
            ]
        if any(r["saved_at_from"] == "file time" for r in block["baselines"] if not r["error"]):
            notes.append("  * the file's time: saved before baselines recorded it")
        for other in block["other_folders"]:
            notes.append(f"  {other['folder']}/: {_other_text(other)}")
        lines += notes
    return "\n".join(lines) + "\n"


def _other_text(other: dict[str, Any]) -> str:
    if other["state"] == "reserved":
        return (
            f"reserved by a run since {other['since']}: it is saving a baseline now, or was "
            "killed (a day after its last file, `baselines --prune` deletes it)"
        )
    if other["state"] == "abandoned" and other.get("saved"):
        return (
            f"reserved since {other['since']} by a run that never finished, but its baseline "
            f"JSON is saved beside it: delete only its {RESERVED_BY} file, not the folder (it "
            "holds that baseline's alignments)"
        )
    delete = "delete it (--prune)"
    if other.get("foreign"):
        delete = (
            f"it holds files das_assert does not write ({other['foreign']}), which --prune "
            "keeps: check them, then delete it by hand"
        )
    if other["state"] == "abandoned" and other.get("written") and not other.get("foreign"):
        return (
            f"reserved since {other['since']} by a run that never finished (killed?), but "
            f"written into at {other['written']}: a run may still be saving; --prune deletes "
            "it once nothing in it is a day old"
        )
    if other["state"] == "abandoned":
        return (
            f"reserved since {other['since']} by a run that never finished (killed?): "
            f"{delete} unless a run is still saving into it"
        )
    return (
        f"no baseline JSON beside it (a save that did not finish, or a JSON deleted): {delete}, "
        "or restore the JSON"
    )
