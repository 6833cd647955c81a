"""``das-assert cache``: what it lists of the alignment cache and what a prune deletes."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest
import torch

from das_assert import __version__
from das_assert.cache import FIT_REVISION, KEY_SCHEME, AlignmentCache, cache_key
from das_assert.cache_admin import cache_listing, prune_cache
from das_assert.cli import main
from das_assert.featurizers import Interchange

DAY = 86_400.0
CURRENT = {
    "das_assert_version": __version__,
    "fit_revision": FIT_REVISION,
    "key_scheme": KEY_SCHEME,
}


def _entry(cache: AlignmentCache, key: str, age_days: float = 0.0, **manifest: object) -> Path:
    fingerprint = {"weights": "f" * 16, "tokenizer": "0" * 16, "config": "1" * 16}
    cache.put(key, Interchange.boundless(16), {"model": fingerprint, "model_name": "m", **manifest})
    when = time.time() - age_days * DAY
    os.utime(cache.path(key), (when, when))
    return cache.path(key)


def _key(n: int) -> str:
    return f"{n:032x}"


def test_a_fit_records_what_the_listing_needs_and_a_hit_marks_its_last_use(
    tmp_path: Path, tiny_llama: object
) -> None:
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig
    from das_assert.sites import Site

    cache = AlignmentCache(tmp_path)
    config = FitConfig(epochs=1, batch_size=8, seed=0)
    experiment = Experiment(
        hypothesis="left_boundary", site=Site(0), n_train=16, n_test=16, min_task_accuracy=0
    )
    run_experiment(tiny_llama, experiment, config, cache=cache)
    listing = cache_listing(tmp_path)
    assert (listing["entries"], listing["stale"]) == (1, 0)
    (row,) = listing["models"]
    assert (row["model"], row["fingerprint"]) == (tiny_llama.name, tiny_llama.fingerprint)  # type: ignore[attr-defined]
    entry = cache.path(cache_key(tiny_llama, experiment, config))
    os.utime(entry, (1e9, 1e9))
    run_experiment(tiny_llama, experiment, config, cache=cache)  # a hit
    assert time.time() - entry.stat().st_mtime < 3600


def test_prune_stale_deletes_only_what_no_run_of_this_version_reads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    cache = AlignmentCache(tmp_path)
    fresh = _entry(cache, _key(1), **CURRENT)
    old_version = _entry(cache, _key(2), das_assert_version="0.0.1", fit_revision=FIT_REVISION)
    old_revision = _entry(cache, _key(3), das_assert_version=__version__, fit_revision=0)
    # written before entries recorded their version, or keyed without torch's version and the
    # CPU's instruction set (no key scheme recorded): no run of this das_assert reads either;
    # both were counted current (a pruned cache kept every entry of an earlier key)
    unrecorded = _entry(cache, _key(4), age_days=9, model_name=None)  # the oldest
    old_key = _entry(cache, _key(8), das_assert_version=__version__, fit_revision=FIT_REVISION)
    garbage = tmp_path / f"{_key(5)}.safetensors"
    garbage.write_bytes(b"\x00" * 40)
    # its tensors cut off: listed as healthy, never pruned, and warned of in every read-only run
    cut = _entry(cache, _key(7), **CURRENT)
    cut.write_bytes(cut.read_bytes()[:-100])
    foreign = [tmp_path / "notes.safetensors", tmp_path / "digests.json", tmp_path / "x.lock"]
    for path in foreign:
        path.write_text("{}")
    others = tmp_path / f"{_key(6)}.safetensors"  # another program's, by its name a key's
    save_file({"w": torch.zeros(2)}, others)
    listing = cache_listing(tmp_path)
    assert (listing["entries"], listing["stale"]) == (7, 6)
    assert {row["model"] for row in listing["models"]} == {"m", None}  # named by its latest
    why = {row["file"]: row["stale"] for row in listing["files"]}
    assert why[old_version.name] == f"written by das_assert 0.0.1, not {__version__}"
    assert why[old_revision.name] == f"fit revision 0, not {FIT_REVISION}"
    assert why[garbage.name].startswith("unreadable")
    assert why[cut.name].startswith("unreadable (truncated: ")
    assert why[unrecorded.name] == (
        "written before entries recorded their das_assert version (an earlier key)"
    )
    assert why[old_key.name] == f"cache key scheme 1, not {KEY_SCHEME} (an earlier key)"
    assert why[fresh.name] is None

    named = prune_cache(tmp_path, stale=True, unused_days=None, dry_run=True)
    assert len(named) == 6
    assert all(p.exists() for p in (old_version, old_revision, unrecorded, old_key, garbage, cut))
    removed = prune_cache(tmp_path, stale=True, unused_days=None, dry_run=False)
    assert sorted(row["file"] for row in removed) == sorted(row["file"] for row in named)
    assert all(path.exists() for path in (fresh, others, *foreign))
    gone = (old_version, old_revision, unrecorded, old_key, garbage, cut)
    assert not any(p.exists() for p in gone)


def test_prune_unused_keeps_what_a_run_wrote_or_read_within_the_days(tmp_path: Path) -> None:
    cache = AlignmentCache(tmp_path)
    recent = _entry(cache, _key(1), age_days=2, **CURRENT)
    old = _entry(cache, _key(2), age_days=40, **CURRENT)
    removed = prune_cache(tmp_path, stale=False, unused_days=30, dry_run=False)
    assert [row["file"] for row in removed] == [old.name]
    assert removed[0]["why"].startswith("unused since ")
    assert recent.exists()
    assert not old.exists()


def test_only_locks_of_gone_entries_that_no_run_holds_and_a_day_old_are_deleted(
    tmp_path: Path,
) -> None:
    cache = AlignmentCache(tmp_path)
    _entry(cache, _key(1), **CURRENT)
    kept_entry, held, young, orphan = (tmp_path / f"{_key(n)}.lock" for n in (1, 2, 3, 4))
    for lock in (kept_entry, held, young, orphan):
        lock.touch()
    for lock in (kept_entry, held, orphan):
        os.utime(lock, (time.time() - 2 * DAY,) * 2)
    handle = os.open(held, os.O_RDWR)
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        assert cache_listing(tmp_path)["orphan_locks"] == 1
        removed = prune_cache(tmp_path, stale=True, unused_days=None, dry_run=False)
    finally:
        os.close(handle)
    assert [row["file"] for row in removed] == [orphan.name]
    assert kept_entry.exists()
    assert held.exists()
    assert young.exists()
    assert not orphan.exists()


def test_the_command_lists_prunes_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = AlignmentCache(tmp_path / "cache")
    fresh = _entry(cache, _key(1), **CURRENT)
    stale = _entry(cache, _key(2), das_assert_version="0.0.1", fit_revision=FIT_REVISION)
    out = tmp_path / "cache.json"
    argv = ["cache", "--dir", str(cache.directory), "--prune-stale", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"deleted 1 file\n  {stale.name}: stale: written by das_assert 0.0.1" in printed
    assert "1 entry, 0.0 MiB; 0 stale" in printed
    assert "  m (weights ffffffffffff): 1 entry" in printed
    report = json.loads(out.read_text())
    assert (report["schema_version"], report["kind"]) == (1, "das_assert cache")
    # its count of entries read as a baseline whose checksum was cut out: "edited by hand"
    assert main(["compare", str(out), str(out)]) == 2
    assert "is a `das_assert cache` listing, with no result to compare" in (capsys.readouterr().err)
    assert report["entries"] == 1
    assert report["pruned"][0]["file"] == stale.name
    assert fresh.exists()
    assert not stale.exists()
    # a listing inside the cache was refused as "inside the baseline directory"
    inside = cache.directory / "listing.json"
    assert main(["cache", "--dir", str(cache.directory), "--json", str(inside)]) == 0
    assert json.loads(inside.read_text())["entries"] == 1


def test_one_models_weights_under_other_tokenizer_digests_are_two_rows_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Entries of one model keyed under an older way of digesting its tokenizer and config
    # were listed as two rows of the same label, "m (weights ffffffffffff)".
    from das_assert.cache_admin import listing_text

    cache = AlignmentCache(tmp_path / "cache")
    _entry(cache, _key(1), **CURRENT)
    other = {"weights": "f" * 16, "tokenizer": "2" * 16, "config": "3" * 16}
    cache.put(_key(2), Interchange.boundless(16), {"model": other, "model_name": "m", **CURRENT})
    lines = listing_text(cache_listing(cache.directory)).splitlines()
    rows = sorted(line.split(":")[0].strip() for line in lines if line.startswith("  m ("))
    assert rows == [
        "m (weights ffffffffffff, config 111111111111, tokenizer 000000000000)",
        "m (weights ffffffffffff, config 333333333333, tokenizer 222222222222)",
    ]


def test_a_cache_directory_that_is_not_there_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "--dir", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert f"the cache directory {tmp_path / 'nowhere'} does not exist; give the one" in error
    assert error.count("\n") == 1


def test_a_run_whose_lock_file_was_pruned_while_it_waited_holds_the_new_one(
    tmp_path: Path,
) -> None:
    # a prune deleting a lock just taken left the waiting run holding a deleted file, and a
    # third run could create a new lock and train the same alignment beside it
    import threading

    from das_assert.cache import training_lock

    cache = AlignmentCache(tmp_path)
    lock = tmp_path / f"{_key(7)}.lock"
    lock.touch()
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    inside, leave = threading.Event(), threading.Event()

    def waiting_run() -> None:
        with training_lock(cache, _key(7)):
            inside.set()
            leave.wait(10)

    run = threading.Thread(target=waiting_run)
    run.start()
    time.sleep(0.3)  # it waits on the held lock
    lock.unlink()  # as the prune does, while holding it
    os.close(holder)
    assert inside.wait(10)
    third = os.open(lock, os.O_RDWR)  # the lock file a third run opens now
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(third)
        leave.set()
        run.join(10)


def test_what_killed_writers_left_is_listed_and_pruned(tmp_path: Path) -> None:
    cache = AlignmentCache(tmp_path)
    fresh = _entry(cache, _key(1), **CURRENT)
    left = tmp_path / f".{fresh.name}.k3j2x_1.tmp"
    live = tmp_path / f".{_key(2)}.safetensors.q8w_2.tmp"
    for path in (left, live):
        path.write_bytes(b"half")
    os.utime(left, (time.time() - 2 * 3600,) * 2)
    assert cache_listing(tmp_path)["left_temporaries"] == 1
    named = prune_cache(tmp_path, stale=True, unused_days=None, dry_run=True)
    assert named == [{"file": left.name, "why": "left by a killed writer"}]
    assert left.exists()
    prune_cache(tmp_path, stale=True, unused_days=None, dry_run=False)
    assert not left.exists()
    assert live.exists()
    assert fresh.exists()


def test_another_users_entry_this_user_may_not_read_is_kept_by_prune_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # under umask 077 in a shared cache: "unreadable (Permission denied)" counted it stale,
    # and --prune-stale deleted an entry its owner's runs read
    from das_assert import cache_admin
    from das_assert.cache_admin import listing_text

    cache = AlignmentCache(tmp_path)
    theirs = _entry(cache, _key(1), **CURRENT)
    damaged = tmp_path / f"{_key(2)}.safetensors"
    damaged.write_bytes(b"\x00" * 40)

    def refusing(path: Path, *args: object, **kwargs: object) -> object:
        if Path(path) == theirs:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(cache_admin, "open", refusing, raising=False)
    listing = cache_listing(tmp_path)
    assert (listing["stale"], listing["not_readable"]) == (1, 1)
    text = listing_text(listing)
    assert "  1 not readable by this user (another user's, or a read that failed: kept by" in text
    # the row of entries without a manifest: it read "model name not recorded (fingerprint )"
    assert "  entries without a manifest this user can read: 2 entries" in text
    removed = prune_cache(tmp_path, stale=True, unused_days=None, dry_run=False)
    assert [row["file"] for row in removed] == [damaged.name]
    assert theirs.exists()


def test_an_entry_whose_read_failed_is_kept_by_prune_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an I/O error (or too many open files) counted a good entry stale, and --prune-stale
    # deleted it, where a run keeps an entry it could not read
    import errno

    from das_assert import cache_admin

    cache = AlignmentCache(tmp_path)
    entry = _entry(cache, _key(1), **CURRENT)

    def failing(path: Path, *args: object, **kwargs: object) -> object:
        if Path(path) == entry:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(cache_admin, "open", failing, raising=False)
    assert prune_cache(tmp_path, stale=True, unused_days=None, dry_run=False) == []
    assert entry.exists()


def test_a_prune_names_the_temporaries_and_locks_it_could_not_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # in a sticky shared folder another user's files stay: the prune said nothing of them, and
    # the listing after it still said "a prune deletes them"
    left = tmp_path / f".{_key(1)}.safetensors.k3j2x_1.tmp"
    lock = tmp_path / f"{_key(2)}.lock"
    for path in (left, lock):
        path.write_bytes(b"")
        os.utime(path, (time.time() - 2 * DAY,) * 2)
    real_unlink = Path.unlink

    def refusing(path: Path, missing_ok: bool = False) -> None:
        if path in (left, lock):
            raise PermissionError(1, "Operation not permitted", str(path))
        real_unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    removed = prune_cache(tmp_path, stale=True, unused_days=None, dry_run=False)
    assert removed == [
        {
            "file": left.name,
            "why": "not deleted (Operation not permitted): left by a killed writer",
        },
        {
            "file": lock.name,
            "why": "not deleted (Operation not permitted): the lock of an entry that is gone",
        },
    ]
    assert left.exists()
    assert lock.exists()
