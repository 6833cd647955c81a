"""Looking over and pruning the alignment cache (``das-assert cache``).

A cache only grows: every model update, fit setting and das_assert release keys new entries,
and the old ones stay. An entry that no run of this das_assert can read again is *stale*: it
was written by another das_assert version, ``FIT_REVISION`` or ``KEY_SCHEME`` (all in its
key), or before entries recorded them (keyed by an earlier recipe), or it is unreadable. An
entry's last use is its file's time:
written, or read since by a run that may write the cache (``AlignmentCache.get`` touches a
hit). Pruning deletes only das_assert's own files (``<key>.safetensors`` holding its manifest or
unreadable, a lock no run holds of an entry that is gone, killed writers' temporaries); another
program's safetensors file is left alone. Deleting an entry costs a refit, never a result.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from das_assert.cache import left_temporaries
from das_assert.errors import ConfigError

__all__ = ["CacheEntry", "cache_listing", "listing_text", "prune_cache"]

_ENTRY = re.compile(r"^[0-9a-f]{32}\.safetensors$")
_LOCK = re.compile(r"^([0-9a-f]{32})\.lock$")
_HEADER_LIMIT = 64 * 2**20  # a manifest with a training history is kilobytes
NOT_OURS = "not written by das_assert"
NOT_READABLE = "not readable by this user"  # another user's entry in a shared cache: kept
LOCK_KEPT_S = 86_400.0  # a lock of a gone entry younger than a day may belong to a starting fit


@dataclass(frozen=True)
class CacheEntry:
    """One cache file and what its manifest says of it."""

    path: Path
    size: int
    last_used: float
    manifest: dict[str, Any] | None
    stale: str | None  # why no run of this das_assert reads it again, or None

    @property
    def not_readable(self) -> bool:
        """This user could not read it (another user's, in a shared cache; or a read that
        failed): not stale."""
        return self.manifest is None and self.stale is None

    def as_dict(self) -> dict[str, Any]:
        manifest = self.manifest or {}
        return {
            "file": self.path.name,
            "bytes": self.size,
            "last_used": _day(self.last_used),
            "model": manifest.get("model_name"),
            "fingerprint": manifest.get("model"),
            "hypothesis": manifest.get("hypothesis"),
            "site": manifest.get("site"),
            "seed": manifest.get("seed"),
            "stale": self.stale,
            "not_readable": self.not_readable,
        }


def _day(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def _manifest(path: Path) -> dict[str, Any] | str:
    """The entry's manifest from its safetensors header alone, or what is wrong with it."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= _HEADER_LIMIT:
                return "unreadable (no safetensors header)"
            header = json.loads(handle.read(length))
            size = os.fstat(handle.fileno()).st_size
        manifest = json.loads(header["__metadata__"]["manifest"])
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        expected = 8 + length + max(ends, default=0)
        if size != expected:  # its tensors cut off: a run rejects it
            return f"unreadable (truncated: {size} of {expected} bytes)"
    except OSError:  # another user's, whose runs read it; or a read that failed (EIO, EMFILE):
        return NOT_READABLE  # nothing says what it holds is wrong, and a run keeps it too
    except (KeyError, TypeError):  # a safetensors file, but not one das_assert wrote
        return NOT_OURS
    except (ValueError, RecursionError):
        return "unreadable (not a safetensors file: truncated or damaged)"
    return manifest if isinstance(manifest, dict) else NOT_OURS


def _staleness(manifest: dict[str, Any]) -> str | None:
    from das_assert import __version__
    from das_assert.cache import FIT_REVISION, KEY_SCHEME

    version, revision = manifest.get("das_assert_version"), manifest.get("fit_revision")
    scheme = manifest.get("key_scheme", 1)  # none recorded: keyed before the scheme was
    if version is None or revision is None:
        return "written before entries recorded their das_assert version (an earlier key)"
    if version != __version__:
        return f"written by das_assert {version}, not {__version__}"
    if revision != FIT_REVISION:
        return f"fit revision {revision}, not {FIT_REVISION}"
    if scheme != KEY_SCHEME:
        return f"cache key scheme {scheme}, not {KEY_SCHEME} (an earlier key)"
    return None


def _directory(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ConfigError(
            f"the cache directory {directory} {what}; give the one pytest uses "
            "(--das-cache-dir, default .das_assert/cache under its rootdir) with --dir"
        )
    return directory


def cache_entries(directory: Path) -> list[CacheEntry]:
    """Every entry in ``directory``, oldest use first."""
    entries = []
    for path in _directory(directory).iterdir():
        if not _ENTRY.match(path.name):
            continue
        try:
            info = path.lstat()
        except OSError:
            continue  # gone since the listing
        if not path.is_file() or path.is_symlink():
            continue
        found = _manifest(path)
        if found == NOT_OURS:  # another program's file in a folder given as the cache
            continue
        manifest = found if isinstance(found, dict) else None
        if isinstance(found, dict):
            stale = _staleness(found)
        else:  # why it cannot be read; another user's entry is not stale for that
            stale = None if found == NOT_READABLE else found
        entries.append(CacheEntry(path, info.st_size, info.st_mtime, manifest, stale))
    return sorted(entries, key=lambda entry: (entry.last_used, entry.path.name))


def _orphan_locks(
    directory: Path, now: float, *, delete: bool = False
) -> list[tuple[Path, str | None]]:
    """Locks of entries that are gone, a day old, that no run holds now, each with why it
    could not be deleted (or None); ``delete`` removes each while holding it, so a run that
    opened it meanwhile finds it gone once it has the lock and opens the new one
    (``cache.training_lock``)."""
    from das_assert.cache import fcntl

    found: list[tuple[Path, str | None]] = []
    for path in sorted(directory.iterdir()):
        matched = _LOCK.match(path.name)
        if not matched or (directory / f"{matched[1]}.safetensors").exists():
            continue
        try:
            if not path.is_file() or path.is_symlink():
                continue
            if now - path.stat().st_mtime < LOCK_KEPT_S or fcntl is None:
                continue
            handle = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a run
            os.close(handle)
            continue
        try:
            if delete:
                path.unlink()
            found.append((path, None))
        except FileNotFoundError:
            continue
        except OSError as exc:  # a sticky shared folder: another user's
            found.append((path, exc.strerror or str(exc)))
        finally:
            os.close(handle)
    return found


def cache_listing(directory: Path) -> dict[str, Any]:
    """The cache's entries grouped by model, with what a prune would delete."""
    directory = _directory(directory)
    entries = cache_entries(directory)
    models: dict[str, dict[str, Any]] = {}
    for entry in entries:
        manifest = entry.manifest or {}
        fingerprint = manifest.get("model")
        row = models.setdefault(
            json.dumps(fingerprint, sort_keys=True, default=str),
            {"model": manifest.get("model_name"), "fingerprint": fingerprint, "entries": 0},
        )
        row["model"] = manifest.get("model_name") or row["model"]  # the latest entry's name
        row["entries"] += 1
        row["bytes"] = row.get("bytes", 0) + entry.size
        row["stale"] = row.get("stale", 0) + (entry.stale is not None)
        row["last_used"] = _day(entry.last_used)  # entries come oldest use first
    return {
        "directory": str(directory),
        "entries": len(entries),
        "bytes": sum(entry.size for entry in entries),
        "stale": sum(entry.stale is not None for entry in entries),
        "not_readable": sum(entry.not_readable for entry in entries),
        "orphan_locks": len(_orphan_locks(directory, time.time())),
        "left_temporaries": len(left_temporaries(directory, time.time())),
        "models": sorted(models.values(), key=lambda row: row["last_used"], reverse=True),
        "files": [entry.as_dict() for entry in entries],
    }


def prune_cache(
    directory: Path, *, stale: bool, unused_days: float | None, dry_run: bool
) -> list[dict[str, Any]]:
    """Delete (or, ``dry_run``, name) stale entries where ``stale``, entries unused for
    ``unused_days`` where given, and with either the locks of gone entries no run holds."""
    directory = _directory(directory)
    now = time.time()
    chosen = []
    for entry in cache_entries(directory):
        if stale and entry.stale is not None:
            chosen.append((entry.path, f"stale: {entry.stale}"))
        elif unused_days is not None and now - entry.last_used > unused_days * 86_400:
            chosen.append((entry.path, f"unused since {_day(entry.last_used)}"))
    removed = []
    for path, why in chosen:
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                why = f"not deleted ({exc.strerror or exc}): {why}"
        removed.append({"file": path.name, "why": why})
    for temporary in left_temporaries(directory, now):
        why = "left by a killed writer"
        if not dry_run:
            try:
                temporary.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                why = f"not deleted ({exc.strerror or exc}): {why}"
        removed.append({"file": temporary.name, "why": why})
    for lock, problem in _orphan_locks(directory, now, delete=not dry_run):
        why = "the lock of an entry that is gone"
        removed.append(
            {"file": lock.name, "why": f"not deleted ({problem}): {why}" if problem else why}
        )
    return removed


def _short(fingerprint: Any) -> str:
    """A model fingerprint (the sha256 of its weights, tokenizer and config) in a few digits."""
    if isinstance(fingerprint, dict):
        return f"weights {str(fingerprint.get('weights', '?'))[:12]}"
    return str(fingerprint)[:12] if fingerprint else "fingerprint not recorded"


def _row_name(row: dict[str, Any], *, whole: bool) -> str:
    """A listing row's model: its name and weights' digest, ``whole``: its other digests too."""
    if not (row["model"] or row["fingerprint"]):  # damaged, or another user's
        return "entries without a manifest this user can read"
    short = _short(row["fingerprint"])
    if whole and isinstance(row["fingerprint"], dict):
        others = sorted(set(row["fingerprint"]) - {"weights"})
        short += "".join(f", {k} {str(row['fingerprint'][k])[:12]}" for k in others)
    return f"{row['model'] or 'model name not recorded'} ({short})"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def listing_text(listing: dict[str, Any]) -> str:
    """The listing as a few lines for a terminal."""
    lines = [
        f"cache {listing['directory']}: {_count(listing['entries'], 'entry', 'entries')}, "
        f"{_mib(listing['bytes'])}"
        f"; {listing['stale']} stale (no run of this das_assert reads them: "
        "--prune-stale deletes them)"
    ]
    names = [_row_name(row, whole=False) for row in listing["models"]]
    for row, name in zip(listing["models"], names, strict=True):
        if names.count(name) > 1:  # one model's weights, other files (or older digests of them)
            name = _row_name(row, whole=True)
        entries = _count(row["entries"], "entry", "entries")
        lines.append(
            f"  {name}: {entries}, {_mib(row['bytes'])}, "
            f"{row['stale']} stale, last used {row['last_used']} UTC"
        )
    if listing["not_readable"]:
        lines.append(
            f"  {listing['not_readable']} not readable by this user (another user's, or a read "
            "that failed: kept by --prune-stale; --prune-unused DAYS deletes them once unused)"
        )
    if listing["orphan_locks"]:
        lines.append(
            f"  {_count(listing['orphan_locks'], 'lock file', 'lock files')} of entries that are "
            "gone (a prune deletes them)"
        )
    if listing["left_temporaries"]:
        lines.append(
            f"  {_count(listing['left_temporaries'], 'temporary file', 'temporary files')} "
            "left by killed writers (a prune deletes them)"
        )
    return "\n".join(lines) + "\n"


def pruned_text(removed: list[dict[str, Any]], dry_run: bool) -> str:
    verb = "would delete" if dry_run else "deleted"
    done = [row for row in removed if not row["why"].startswith("not deleted")]
    lines = [f"{verb} {_count(len(done), 'file', 'files')}"]
    lines += [f"  {row['file']}: {row['why']}" for row in removed]
    return "\n".join(lines) + "\n"
