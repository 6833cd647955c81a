"""``das_assert baselines --prune``: delete the numbered folders that hold no baseline.

Two kinds, as the listing names them (``baseline_list``): a reservation abandoned by a run that
was killed (its token over a day old, and nothing in the folder written since a day), and an
alignment folder whose baseline JSON is gone. A folder is deleted only where everything in it is
what das_assert writes there (alignment files and the run's token): anything else is a person's,
and the folder is kept and named. Never a saved baseline, its alignments, or a reservation a run
may still be saving into. A folder is renamed out of the numbered names before it is removed, so
a removal cut short leaves no half-emptied baseline folder behind.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from das_assert.baseline import ABANDONED_AFTER_S, reserved_since
from das_assert.baseline_list import OURS, foreign_files, newest_write, ours

__all__ = ["prune_listing", "pruned_text"]


def prune_listing(listing: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    """Delete the abandoned and orphaned folders of ``listing`` (``baseline_listing``), each
    checked again first; one row per folder: what was removed, or why it was kept."""
    now = time.time() if now is None else now
    rows = []
    for block in listing["models"]:
        directory = Path(block["directory"])
        for other in block["other_folders"]:
            if other["state"] == "reserved":
                continue
            folder = directory / other["folder"]
            row = {"folder": str(folder), "state": other["state"]}
            why = _why_kept(folder, other["state"], now)
            if why is None:
                files, size = _contents(folder)
                try:
                    _remove(folder)
                except OSError as exc:
                    why = f"it could not be removed ({exc})"
                else:
                    row.update(removed=True, files=files, bytes=size)
            if why is not None:
                row.update(removed=False, kept_because=why)
            rows.append(row)
    return rows


def _why_kept(folder: Path, state: str, now: float) -> str | None:
    """Why ``folder`` must stay (checked now, not when listed), or None: it may go."""
    if folder.is_symlink() or not folder.is_dir():
        return "a link, not a folder das_assert made" if folder.is_symlink() else "gone already"
    if (folder.parent / f"{folder.name}.json").exists():
        return "a baseline JSON is beside it now"
    since = reserved_since(folder)
    if state == "orphaned" and since is not None:
        return "a run reserved it since it was listed"
    if state == "abandoned" and (since is None or abs(now - since) <= ABANDONED_AFTER_S):
        return "its reservation changed since it was listed"
    if foreign := foreign_files(folder):
        return f"it holds what das_assert does not write there ({foreign}): a person's call"
    if state == "abandoned" and abs(now - newest_write(folder)) <= ABANDONED_AFTER_S:  # a day
        return "something in it was written within the day: a run may still be saving"
    return None


def _contents(folder: Path) -> tuple[int, int]:
    """The alignment files in ``folder``, and the bytes of everything das_assert wrote there."""
    files = [p for p in folder.iterdir() if ours(p)]
    finished = [p for p in files if p.name.endswith(OURS)]
    return len(finished), sum(p.stat().st_size for p in files)


def _remove(folder: Path) -> None:
    """Rename ``folder`` to a hidden name beside it, then delete that: a numbered folder is
    never seen half removed."""
    hidden = Path(tempfile.mkdtemp(prefix=".pruning.", dir=folder.parent))
    try:
        folder.rename(hidden / folder.name)
    except OSError:
        hidden.rmdir()
        raise
    shutil.rmtree(hidden)


def pruned_text(rows: list[dict[str, Any]]) -> str:
    """What ``prune_listing`` did, a line per folder."""
    if not rows:
        return "prune: no abandoned or orphaned folder\n"
    lines = []
    for row in rows:
        what = "abandoned reservation" if row["state"] == "abandoned" else "orphaned folder"
        if row["removed"]:
            count = f"{row['files']} alignment file{'' if row['files'] == 1 else 's'}"
            size = f"{row['bytes'] / 2**20:.1f} MiB"
            lines.append(f"prune: removed {row['folder']}/ ({what}; {count}, {size})")
        else:
            lines.append(f"prune: kept {row['folder']}/ ({what}): {row['kept_because']}")
    return "\n".join(lines) + "\n"
