"""Weight digests remembered by file identity: reused while a file is unchanged, never stale
after a rewrite, a copy or a touch, and a memo that cannot be read is only a miss."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from das_assert import digests
from das_assert.digests import DigestMemo, file_sha256
from das_assert.models import load_model


def weights(path: Path, content: bytes) -> Path:
    """A weight file written a minute ago: one modified in the last seconds is not remembered."""
    path.write_bytes(content)
    settled(path)
    return path


def settled(path: Path, seconds: int = 60) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 10**9))


def no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> str:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(digests, "file_sha256", refuse)


def test_a_digest_is_the_files_sha256_and_is_reused_without_reading_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = weights(tmp_path / "model.safetensors", b"weights" * 1000)
    memo = DigestMemo(tmp_path / "cache" / "digests.json")
    assert memo.sha256(file) == hashlib.sha256(file.read_bytes()).hexdigest() == file_sha256(file)
    no_reading(monkeypatch)  # a later session, with the memo on disk
    again = DigestMemo(tmp_path / "cache" / "digests.json").sha256(file)
    assert again == hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.mark.parametrize("change", ["rewrite", "copy_over", "touch", "grow"])
def test_a_changed_file_is_read_again(tmp_path: Path, change: str) -> None:
    file = weights(tmp_path / "model.safetensors", b"a" * 4096)
    memo = DigestMemo(tmp_path / "digests.json")
    old = memo.sha256(file)
    stat = file.stat()
    if change == "rewrite":  # new content, same size
        file.write_bytes(b"b" * 4096)
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    elif change == "copy_over":  # a new file renamed into place, old times kept (rsync -a)
        staged = weights(tmp_path / "staged", b"c" * 4096)
        os.utime(staged, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(staged, file)
    elif change == "touch":
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    else:
        with file.open("ab") as handle:
            handle.write(b"more")
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert memo.sha256(file) == hashlib.sha256(file.read_bytes()).hexdigest()
    if change != "touch":
        assert memo.sha256(file) != old


def test_an_in_place_rewrite_that_restores_the_time_is_read_again(tmp_path: Path) -> None:
    """``cp -p`` onto the file: same inode, size and nanosecond mtime (git's and make's blind
    spot, and this memo's before it keyed by the change time, which the rewrite moves)."""
    file = weights(tmp_path / "model.safetensors", b"a" * 4096)
    memo = DigestMemo(tmp_path / "digests.json")
    memo.sha256(file)
    stat = file.stat()
    time.sleep(0.01)  # a change time in another tick of the clock
    with file.open("r+b") as handle:
        handle.write(b"b" * 4096)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert memo.sha256(file) == hashlib.sha256(b"b" * 4096).hexdigest()


def test_a_file_written_in_the_last_seconds_is_not_remembered(tmp_path: Path) -> None:
    # Where mtimes are whole seconds (ext3, FAT, HFS+), a rewrite of the same size in the same
    # second kept the file's key, and the memo served the old weights' digest (200 of 200).
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"a" * 4096)
    second = file.stat().st_mtime_ns // 10**9 * 10**9
    os.utime(file, ns=(second, second))
    memo = DigestMemo(tmp_path / "digests.json")
    assert memo.sha256(file) == hashlib.sha256(b"a" * 4096).hexdigest()
    assert not (tmp_path / "digests.json").exists()
    with file.open("r+b") as handle:
        handle.write(b"b" * 4096)
    os.utime(file, ns=(second, second))  # the same whole second
    assert memo.sha256(file) == hashlib.sha256(b"b" * 4096).hexdigest()
    settled(file)  # and once it has settled, it is remembered
    memo.sha256(file)
    assert str(file.resolve()) in json.loads((tmp_path / "digests.json").read_text())["files"]


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", json.dumps({"version": 2, "files": {}}), json.dumps({"version": 1})],
)
def test_a_memo_that_cannot_be_read_is_a_miss_and_is_rewritten(
    tmp_path: Path, content: str
) -> None:
    file = weights(tmp_path / "model.safetensors", b"w" * 100)
    (tmp_path / "digests.json").write_text(content)
    memo = DigestMemo(tmp_path / "digests.json")
    assert memo.sha256(file) == hashlib.sha256(b"w" * 100).hexdigest()
    payload = json.loads((tmp_path / "digests.json").read_text())
    assert payload["version"] == 1
    assert list(payload["files"]) == [str(file.resolve())]


def test_a_forged_digest_of_the_wrong_shape_is_not_trusted(tmp_path: Path) -> None:
    file = weights(tmp_path / "model.safetensors", b"w" * 100)
    memo = DigestMemo(tmp_path / "digests.json")
    memo.sha256(file)
    payload = json.loads((tmp_path / "digests.json").read_text())
    payload["files"][str(file.resolve())]["sha256"] = 42
    (tmp_path / "digests.json").write_text(json.dumps(payload))
    assert memo.sha256(file) == hashlib.sha256(b"w" * 100).hexdigest()


def test_a_read_only_memo_never_writes(tmp_path: Path) -> None:
    file = weights(tmp_path / "model.safetensors", b"w" * 100)
    memo = DigestMemo(tmp_path / "cache" / "digests.json", writes=False)
    assert memo.sha256(file) == hashlib.sha256(b"w" * 100).hexdigest()
    assert not (tmp_path / "cache").exists()


def test_a_models_fingerprint_is_the_same_with_and_without_the_memo(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["llama"], directory)
    for file in directory.iterdir():
        settled(file)
    plain = load_model(directory).fingerprint
    remembered: Any = load_model(directory)
    remembered.digest_memo = DigestMemo(tmp_path / "digests.json")
    assert remembered.fingerprint == plain
    no_reading(monkeypatch)
    again: Any = load_model(directory)
    again.digest_memo = DigestMemo(tmp_path / "digests.json")
    assert again.fingerprint == plain


def test_concurrent_writers_lose_no_digest_and_deleted_files_are_forgotten(
    tmp_path: Path,
) -> None:
    # An unlocked read-modify-write: 8 workers hashing 25 files each kept 25 of 200 digests.
    # And the digests of deleted files stayed in the memo for good.
    import multiprocessing

    files = []
    for worker in range(4):
        for i in range(5):
            path = tmp_path / "weights" / f"w{worker}_{i}.safetensors"
            path.parent.mkdir(exist_ok=True)
            files.append(weights(path, os.urandom(64)))
    memo = tmp_path / "cache" / "digests.json"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        pool.starmap(_hash_all, [(memo, files[w * 5 : (w + 1) * 5]) for w in range(4)])
    assert len(json.loads(memo.read_text())["files"]) == 20
    for path in files[1:]:
        path.unlink()
    DigestMemo(memo).sha256(_fresh(tmp_path))
    kept = json.loads(memo.read_text())["files"]
    assert sorted(Path(name).name for name in kept) == sorted([files[0].name, "fresh.safetensors"])


def _fresh(tmp_path: Path) -> Path:
    return weights(tmp_path / "weights" / "fresh.safetensors", b"fresh")


def _hash_all(memo: Path, files: list[Path]) -> None:
    for path in files:
        DigestMemo(memo).sha256(path)


def test_the_memo_lock_is_shared_by_a_group_and_an_unsearchable_entry_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lock was created 0755 under umask 022: another user of a group-shared cache could not
    # open it, and each of its sessions re-hashed (about 8 s at 7B). An entry under a folder
    # that user may not search raised PermissionError in the pruning, which lost the write too.
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    settled(weights)
    memo = tmp_path / "cache" / "digests.json"
    memo.parent.mkdir()
    memo.write_text(json.dumps({"version": 1, "files": {"/private/other.bin": {"sha256": "x"}}}))
    real_stat = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == "/private/other.bin":
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(digests.os, "stat", stat)
    previous = os.umask(0o002)
    try:
        DigestMemo(memo).sha256(weights)
    finally:
        os.umask(previous)
    assert (tmp_path / "cache" / "digests.json.lock").stat().st_mode & 0o777 == 0o664
    assert set(json.loads(memo.read_text())["files"]) == {"/private/other.bin", str(weights)}
