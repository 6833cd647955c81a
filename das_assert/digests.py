"""sha256 of weight files, remembered by each file's identity so a warm session skips re-reading.

A model's fingerprint hashes its weight files: 13.5 GB for Alpaca-7B, about 8 s of sha256 on
every ``pytest`` session. ``DigestMemo`` keeps each digest beside the alignment cache, keyed by
the file's device, inode, size, and modification and change times in nanoseconds. Writing a new
model over the old one, copying one in (``rsync -a``: a new inode; ``cp`` onto the file: the same
inode, rewritten) or touching it changes the key and the file is read again. The change time
moves with any write and no user program sets it, so even ``cp -p``, which keeps the inode and
takes the source's modification time, is seen. A memo that cannot be read is ignored.

A file modified in the last ``RACY_SECONDS`` is not remembered (git's "racy clean" rule): where
the file system keeps whole seconds (ext3, FAT, HFS+, ext4 with small inodes), a rewrite of the
same size in the same second would keep its key, and the memo would serve the old weights'
digest. Weight files are seldom that new; the next session reads such a file once more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from das_assert.store import atomic_write_json, open_lock_file

__all__ = ["DigestMemo", "file_sha256"]

_CHUNK = 1 << 22  # 4 MiB

#: A file modified this recently (or dated in the future) is not remembered.
RACY_SECONDS = 2


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _may_exist(name: str) -> bool:
    """False only for a file known to be gone: another user's entry under a folder this user
    may not search is kept (``Path.exists`` raised PermissionError there)."""
    try:
        os.stat(name)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


class DigestMemo:
    """File digests remembered in one JSON file (``writes=False``: only read it)."""

    def __init__(self, path: Path, *, writes: bool = True) -> None:
        self.path = Path(path)
        self.writes = writes

    def sha256(self, file: Path) -> str:
        """``file_sha256(file)``, read from the memo while the file's identity is unchanged."""
        file = Path(file).resolve()
        identity = _identity(file)
        entries = self._load()
        known = entries.get(str(file))
        if isinstance(known, dict) and known.get("identity") == identity:
            digest = known.get("sha256")
            if isinstance(digest, str) and len(digest) == 64:
                return digest
        digest = file_sha256(file)
        # not rewritten while it was read, nor so lately that a rewrite could keep its time
        racy = time.time_ns() - identity[3] < RACY_SECONDS * 10**9
        if self.writes and not racy and _identity(file) == identity:
            try:
                with self._locked():  # read and written by one writer at a time: none is lost
                    entries = self._load()  # another worker may have added its own meanwhile
                    entries = {name: e for name, e in entries.items() if _may_exist(name)}
                    entries[str(file)] = {"identity": identity, "sha256": digest}
                    atomic_write_json(self.path, {"version": 1, "files": entries})
            except OSError:  # a full disk: the digest is known, only next run's time is lost
                pass
        return digest

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``<memo>.lock`` (where the platform has POSIX locks; else nothing): concurrent
        writers each read the memo and wrote it back with their own entry alone, so 8 xdist
        workers kept 25 of 200 digests."""
        try:
            import fcntl
        except ImportError:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open_lock_file(self.path.with_name(self.path.name + ".lock"))  # group-shared
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # which releases the lock

    def _load(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):  # RecursionError: nested past json's limit
            return {}
        files = payload.get("files") if isinstance(payload, dict) else None
        if not isinstance(files, dict) or payload.get("version") != 1:
            return {}
        return files
