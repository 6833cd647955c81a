"""Saved baselines of a model's claims, for the regression gate on model updates.

A baseline is a readable JSON file per model (counts as well as ratios, intervals, sites, boundary
widths, seeds, the model fingerprint, the environment) and, beside it, one safetensors file per
claim with the learned alignment. Files are meant to be committed and reviewed; writes are atomic,
the JSON carries a checksum and a schema version::

    <baseline dir>/<model>/0001_<name>.json
    <baseline dir>/<model>/0001_<name>/<claim slug>.safetensors
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from das_assert.baseline_records import malformed_text, names_own_file, well_formed
from das_assert.errors import AlignmentFileError, did_you_mean
from das_assert.row_order import natural_key
from das_assert.store import (
    BASELINE_KIND,
    NEW_DIRECTORY_MODE,
    SCHEMA_VERSION,
    atomic_write_json,
    read_json_checked,
)

__all__ = [
    "ABANDONED_AFTER_S",
    "SAVED_AT_FORMAT",
    "abandoned_reservations",
    "alignment_path",
    "baseline_entries_not_judged",
    "baseline_order",
    "entry_key",
    "find_baseline",
    "is_baseline_file",
    "load_baseline",
    "matching_key",
    "next_baseline_name",
    "release_reservation",
    "reservations",
    "reserve_baseline_name",
    "reserved_since",
    "save_baseline",
    "slug",
    "unique_name",
]

# Four or five digits: the number after 9999 is 10000, which a four-digit pattern did not see
# (it went missing from `latest`, and every later reservation failed on its folder); no more,
# so that a file named by a date (20251207_notes.json) is no baseline numbered past them all.
_NUMBERED = re.compile(r"^(\d{4,5})_(.+)\.json$")
_TAKEN = re.compile(r"^(\d{4,5})_")  # a saved baseline, or an alignment folder a run reserved
LAST_NUMBER = 99_999
RESERVED_BY = ".reserved-by"  # in a reserved folder: the token of the run saving into it
ABANDONED_AFTER_S = 24 * 60 * 60  # a reservation this old belongs to a run that was killed
SAVED_AT_FORMAT = "%Y-%m-%d %H:%M"  # a baseline's saved_at, in UTC


def entry_key(record: dict[str, Any]) -> str:
    """The key of a claim in a baseline: the test id and the claim name."""
    return f"{record['test_id']}::{record['claim']}"


def matching_key(
    key: str, keys: Iterable[str] | KeyIndex, *, among: KeyIndex | None = None
) -> str | None:
    """``key`` among ``keys``; else the one key of the same test seen from another rootdir.

    A pytest node id is relative to the rootdir, which moves with the arguments (an existing
    directory given as ``--das-cache-dir DIR`` counts as one where no ini file pins it): the
    same claim is ``test_x.py::test::claim`` in one run and ``suite/test_x.py::test::claim`` in
    another. None if there is no such key, or more than one; and, with ``among`` (the keys of
    ``key``'s own side), where that key is another of those keys, or one of them matches it as
    well (``a/test_x.py`` and ``b/test_x.py`` against a baseline's ``test_x.py``: which one
    took its number depended on the order they ran in).
    """
    index = keys if isinstance(keys, KeyIndex) else KeyIndex(keys)
    if key in index.keys:
        return key
    found = [k for k in index.by_tail.get(_tail(key), ()) if _one_path_ends_the_other(k, key)]
    if len(found) != 1:
        return None
    if among is not None and (
        found[0] in among.keys
        or any(
            other != key and _one_path_ends_the_other(found[0], other)
            for other in among.by_tail.get(_tail(found[0]), ())
        )
    ):
        return None
    return found[0]


class KeyIndex:
    """Keys for ``matching_key`` to look up many times: a set, and the keys by their test file's
    name onwards (``_tail``), where another rootdir's key of the same claim is (a scan of every
    key for each took 5.9 s for 4,000 claims)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)
        self.by_tail: dict[str, list[str]] = {}
        for key in self.keys:
            self.by_tail.setdefault(_tail(key), []).append(key)


def _tail(key: str) -> str:
    """``dir/test_x.py::test::claim`` -> ``test_x.py::test::claim``."""
    path, sep, rest = key.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


def baseline_entries_not_judged(
    records: Iterable[dict[str, Any]], also: Iterable[str] = ()
) -> dict[str, list[str]]:
    """For each baseline file that ``records`` were compared with, and each in ``also`` (path ->
    keys, sorted), the claims it holds that no record judged: their test was removed, renamed,
    skipped, failed before a verdict or not selected."""
    records = list(records)
    paths = sorted({r["baseline"]["path"] for r in records if r.get("baseline")} | set(also))
    judged = KeyIndex(entry_key(r) for r in records)
    found = {}
    for path in paths:
        entries = load_baseline(Path(path))["entries"]
        missing = sorted((k for k in entries if matching_key(k, judged) is None), key=natural_key)
        if missing:
            found[path] = missing
    return found


def _one_path_ends_the_other(a: str, b: str) -> bool:
    shorter, longer = sorted((a, b), key=len)
    return longer.endswith("/" + shorter)


def _report_key(record: dict[str, Any]) -> str:
    """A report record's key: a pytest claim's ``entry_key``; a command-line result (no test, no
    claim) by what it measured, so that each cell of a ``search`` report is its own entry."""
    if record.get("claim"):
        return entry_key(record)
    return f"{record['hypothesis']}:{record.get('variable')} at {record['site']['canonical']}"


def _search_confirmation(payload: dict[str, Any]) -> dict[str, Any] | None:
    """A ``search`` report's best cell on fresh pairs (``search.best.confirmation``), or None.

    Its verdict and exit code follow this record, and a pytest search test asserts it
    (``test_pairs``: confirmation); the cell's own record was judged on the pairs that chose it,
    whose IIA is favoured. So the best cell is compared by this record, which replaces it."""
    search = payload.get("search")
    best = search.get("best") if isinstance(search, dict) else None
    confirmed = best.get("confirmation") if isinstance(best, dict) else None
    return confirmed or None


_SLUG_MAX = 150  # characters of a file or folder name made from a key


def slug(key: str) -> str:
    """``key`` as a file name: runs of other characters become ``_``. One longer than
    ``_SLUG_MAX`` keeps its head and ends in a hash of the whole key, since cut short, two keys
    that differ only at the end (a search's cells of a long test id) shared one file."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")
    if len(name) <= _SLUG_MAX:
        return name
    digest = hashlib.sha256(_key_bytes(key)).hexdigest()[:16]
    return f"{name[: _SLUG_MAX - len(digest) - 1]}-{digest}"


def next_baseline_name(directory: Path, name: str) -> str:
    """``NNNN_name`` with NNNN one above the highest number in ``directory``, taken by a saved
    baseline or by the alignment folder of a run still saving one."""
    return _next_name(_listing(Path(directory)), name)


def _next_name(entries: list[Path], name: str) -> str:
    taken = [int(m.group(1)) for p in entries if (m := _TAKEN.match(p.name))]
    number = max(taken, default=0) + 1
    if number > LAST_NUMBER:
        folder = entries[0].parent
        raise AlignmentFileError(
            f"{folder} holds baseline number {LAST_NUMBER}, the last: move the older baselines "
            "and their folders out of it, or save into another --das-baseline-dir"
        )
    return f"{number:04d}_{slug(name)}"


def baseline_order(path: Path) -> tuple[int, str]:
    """Sorts numbered baselines and folders by their number's value, oldest first: as text,
    ``10000_main`` came before ``9999_main`` and ``latest`` took the older."""
    match = _TAKEN.match(Path(path).name)
    return (int(match.group(1)) if match else -1, Path(path).name)


def _listing(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def reserve_baseline_name(directory: Path, name: str, run_token: str) -> str:
    """The stem ``NNNN_name`` that the run ``run_token`` saves its baseline under, reserved by
    its alignment folder, which holds the token from the moment it appears.

    Every process of one run (pytest-xdist's workers) gets the same stem; two runs saving at
    once get two numbers. A number chosen per process from the saved files alone gave two runs,
    or two workers of one run that started before any save, one folder to write into. No lock:
    the folder is made under a hidden name with the token inside and renamed into place, which
    fails where a folder of that name holds anything (NFS included, where a lock on a directory
    opened to read is refused).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(100):  # each failed rename means another process took a number
        entries = _listing(directory)  # one listing for both: a folder renamed in between was
        for folder in entries:  # taken as another run's number and the run reserved two
            if _reserved_by(folder, run_token):
                return folder.name
        stem = _next_name(entries, name)
        draft = Path(tempfile.mkdtemp(prefix=f"{RESERVED_BY}.", dir=directory))
        try:
            os.chmod(draft, NEW_DIRECTORY_MODE)  # mkdtemp's 0700 would hide it from the team
            (draft / RESERVED_BY).write_text(run_token, encoding="utf-8")
            try:
                os.rename(draft, directory / stem)
            except OSError as exc:  # taken since the listing: by this run or another
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue
            return stem
        finally:
            shutil.rmtree(draft, ignore_errors=True)  # gone already once renamed
    raise OSError(errno.EAGAIN, f"no free baseline number in {directory} after 100 attempts")


def reservations(directory: Path, run_token: str) -> list[Path]:
    """The folders in ``directory`` reserved by the run ``run_token``."""
    return sorted(f for f in _listing(Path(directory)) if _reserved_by(f, run_token))


def _marker(folder: Path) -> Path | None:
    """The token file of a reserved folder, or None: not a numbered folder, or not reserved."""
    marker = folder / RESERVED_BY
    return marker if _TAKEN.match(folder.name) and marker.is_file() else None


def _reserved_by(folder: Path, run_token: str) -> bool:
    if (marker := _marker(folder)) is None:
        return False
    if not run_token:  # an empty token file (a crash before its data reached the disk, a
        return False  # touch) is no run's: it read as the listing's own, "saving now", for good
    try:
        return marker.read_text(encoding="utf-8") == run_token
    except (OSError, UnicodeDecodeError):  # another user's, or not a token: not ours
        return False


def abandoned_reservations(directory: Path, run_token: str, now: float) -> list[Path]:
    """The folders in ``directory`` reserved by other runs more than ``ABANDONED_AFTER_S`` ago:
    their runs were killed before they could drop the token, and the folders keep their
    numbers until someone deletes them. A token dated more than that into the future (a
    skewed clock, a copy from another machine) is no run's now either."""
    return sorted(
        folder
        for folder in _listing(Path(directory))
        if (marker := _marker(folder)) is not None
        and not _reserved_by(folder, run_token)
        and abs(now - marker.stat().st_mtime) > ABANDONED_AFTER_S
    )


def reserved_since(folder: Path) -> float | None:
    """When a run reserved ``folder`` (its token file's time), or None: not a reservation."""
    marker = _marker(Path(folder))
    try:
        return marker.stat().st_mtime if marker is not None else None
    except OSError:  # released meanwhile
        return None


def is_baseline_file(path: Path) -> bool:
    """Whether ``path`` is named as a saved baseline is (``NNNN_name.json``)."""
    return bool(_NUMBERED.match(Path(path).name)) and Path(path).is_file()


def release_reservation(folder: Path) -> None:
    """Drop the run's token from its folder; the folder itself goes if nothing else is in it."""
    folder = Path(folder)
    (folder / RESERVED_BY).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        with contextlib.suppress(OSError):  # a file appeared meanwhile: the folder stays
            folder.rmdir()


def alignment_path(directory: Path, stem: str, key: str) -> Path:
    """Where a baseline ``stem`` keeps the alignment of entry ``key`` (``unique_name``). A
    baseline records each file's name, so older names still read."""
    return Path(directory) / stem / f"{unique_name(key)}.safetensors"


def _key_bytes(key: str) -> bytes:
    """A test id's bytes to hash: one of a file named in another encoding holds surrogates."""
    return key.encode("utf-8", "surrogatepass")


def unique_name(key: str) -> str:
    """``key`` as a file name: its slug, then a hash of the whole key, since two keys can slug
    alike (parametrized ids ``[Hello!]`` and ``[Hello?]``): the second file written overwrote
    the first (a baseline's alignments: a frozen run judged one claim with the other's
    rotation)."""
    digest = hashlib.sha256(_key_bytes(key)).hexdigest()[:12]
    return f"{slug(key)[: _SLUG_MAX - 13]}-{digest}"


def find_baseline(directory: Path, name: str, option: str = "--das-compare") -> Path:
    """The baseline called ``name``: ``latest``, a number like ``0002``, a full stem like
    ``0002_main``, or a NAME as ``--das-save-baseline`` took it (``release/v2`` is saved as
    ``NNNN_release_v2``), the newest of that name where it was saved more than once.
    ``option``: what the user gave it to, as the advice names it."""
    directory = Path(directory)
    candidates = sorted(
        (p for p in directory.glob("*.json") if _NUMBERED.match(p.name)), key=baseline_order
    )
    if not candidates:
        raise AlignmentFileError(
            f"no baselines in {directory}; save one first with --das-save-baseline, or name "
            f"another model's: {option}=KEY/latest or a baseline .json file"
        )
    if name == "latest":
        return candidates[-1]
    numbered = {p: _NUMBERED.match(p.name).groups() for p in candidates}  # type: ignore[union-attr]
    for wanted in (
        [p for p in candidates if name in (numbered[p][0], p.stem)],  # number, full stem
        [p for p in candidates if numbered[p][1] == slug(name)],  # NAME: its newest save
    ):
        if wanted:
            return wanted[-1]
    raise AlignmentFileError(_no_such_baseline(directory, name, [p.stem for p in candidates]))


_NEWEST_NAMED = 5  # baselines that the error of a name none has lists, where there are more


def _no_such_baseline(directory: Path, name: str, stems: list[str]) -> str:
    """Why ``name`` is none of the baselines ``stems`` (oldest first): the newest few of them (one
    line listed all 1,000 of a CI's directory), and the closest stem or NAME to a mistyped one."""
    present = ", ".join(stems[-_NEWEST_NAMED:])
    if len(stems) > _NEWEST_NAMED:
        present += (
            f" (the newest {_NEWEST_NAMED} of {len(stems)}; python3 -m das_assert baselines "
            f"--dir {shlex.quote(str(directory.parent))} --model {shlex.quote(directory.name)} "
            "lists them all)"
        )
    hint = did_you_mean(slug(name), sorted({*stems, *(stem.partition("_")[2] for stem in stems)}))
    return f"no baseline {name!r} in {directory}; present: {present}" + (f".{hint}" if hint else "")


#: What a baseline keeps of a recorded search's cell.
_SAVED_CELL_FIELDS = (
    "site",
    "iia",
    "n",
    "alignment_file",
    "alignment_sha256",
    "request",
    "restarts",
)


def save_baseline(
    path: Path,
    *,
    model: dict[str, Any],
    environment: dict[str, Any],
    records: list[dict[str, Any]],
    searches: Iterable[dict[str, Any]] = (),
) -> None:
    """Write the baseline JSON (records without their pairs, and the saved cells of recorded
    ``searches``: each one's alignment file and the request a frozen run matches it by),
    atomically, with a checksum."""
    entries = {}
    for record in records:
        entry = {k: v for k, v in record.items() if k not in ("pairs", "model", "outcome")}
        entries[entry_key(record)] = entry
    cells = {
        cell["baseline_key"]: {k: cell[k] for k in _SAVED_CELL_FIELDS if k in cell}
        for search in searches
        for cell in search["cells"]
        if cell.get("alignment_file")
    }
    payload = {
        "schema_version": SCHEMA_VERSION,
        "kind": BASELINE_KIND,
        "saved_at": datetime.now(timezone.utc).strftime(SAVED_AT_FORMAT),
        "model": model,
        "environment": environment,
        "entries": dict(sorted(entries.items())),
    }
    if cells:
        payload["search_cells"] = dict(sorted(cells.items()))
    atomic_write_json(Path(path), payload, checksum=True)


def load_baseline(path: Path, *, what: str = "baseline") -> dict[str, Any]:
    """Read a baseline or a JSON report; refuse corrupted, tampered or newer-schema files
    (``what`` names the file in the error: ``compare``'s NEW is no baseline)."""
    payload = read_json_checked(Path(path), what=what)
    if payload.get("kind") in _LISTING_KINDS:  # before "entries": a cache listing counts them
        raise AlignmentFileError(
            f"{what} {path} is a `{payload['kind']}` listing, with no result to compare; give a "
            "baseline, a pytest --das-json report or a fit, evaluate or search --json report"
        )
    if "entries" in payload:
        if "sha256" not in payload:  # every baseline is saved with one: the check was cut out
            raise AlignmentFileError(
                f"{what} {str(path)!r} has no checksum (sha256), which every saved baseline "
                "carries: it was edited by hand. Re-create it rather than editing it by hand"
            )
        entries = payload["entries"]
    elif "results" in payload:  # a --das-json or the command line's --json report serves too
        results = payload["results"]
        if not isinstance(results, list) or not all(well_formed(r) for r in results):
            raise AlignmentFileError(malformed_text(path))
        entries = {_report_key(r): r for r in results}
        confirmed = _search_confirmation(payload)
        if confirmed is not None:
            if not well_formed(confirmed):
                raise AlignmentFileError(malformed_text(path))
            entries[_report_key(confirmed)] = confirmed
    elif payload.get("kind") == "das_assert check":  # preflight.CHECK_KIND
        raise AlignmentFileError(
            f"{what} {path} is a `das_assert check` report: the model looked over before any "
            "fit, with no result to compare; give a baseline, a pytest --das-json report or a "
            "fit, evaluate or search --json report"
        )
    else:
        raise AlignmentFileError(f"{path} is neither a das_assert baseline nor a report")
    if not isinstance(entries, dict) or not all(well_formed(e) for e in entries.values()):
        raise AlignmentFileError(malformed_text(path))
    cells = payload.get("search_cells")  # read where a mapping (frozen._saved_requests)
    if isinstance(cells, dict) and not all(
        isinstance(cell, dict) and names_own_file(cell) for cell in cells.values()
    ):
        raise AlignmentFileError(malformed_text(path))
    return {**payload, "entries": entries}


#: The ``kind`` of ``baselines --json`` and ``cache --json`` files (cli.py).
_LISTING_KINDS = ("das_assert baselines", "das_assert cache")
