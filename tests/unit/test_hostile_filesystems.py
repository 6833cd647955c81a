"""A full disk, a file size limit, an unreadable file: one clear das_assert message, nothing
half-written, and where the file only saves time (the cache, the digest memo) the run goes on."""

from __future__ import annotations

import json
import os
import re
import resource
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bad_inputs_support import Ctx

from das_assert.cli import main
from das_assert.errors import DasError, OutputWriteError
from das_assert.store import atomic_write_bytes


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """``ulimit -f``: a write past ``size`` bytes fails with EFBIG (Python ignores SIGXFSZ),
    as a write to a full disk fails with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_write_past_the_file_size_limit_is_one_clear_error_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(b"an earlier run's report")
    with file_size_limit(1000), pytest.raises(OutputWriteError) as caught:
        atomic_write_bytes(path, b"x" * 5000)
    assert isinstance(caught.value, DasError)  # the CLI's exit 2 and the plugin's one line
    assert isinstance(caught.value, OSError)  # the cache goes on without its entry
    assert re.search(
        rf"could not write {re.escape(str(path))} \(File too large\).*ulimit -f", str(caught.value)
    )
    assert path.read_bytes() == b"an earlier run's report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_fit_save_on_a_full_disk_exits_2_with_one_message_not_a_bug_report(
    ctx: Ctx, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # it printed a traceback and "das_assert stopped on an unexpected error ... Please report it"
    saved = tmp_path / "a.safetensors"
    argv = ["fit", "--model", str(ctx.model_dir()), "--hypothesis", "left_boundary"]
    argv += ["--layer", "1", "--n-train", "8", "--n-test", "8", "--epochs", "1"]
    argv += ["--min-task-accuracy", "0", "--save", str(saved)]
    with file_size_limit(1000):
        code = main(argv)
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert f"error: could not write {saved} (File too large)" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def unreadable(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """``path`` cannot be read, as after ``chmod 000`` (which root, running CI in a container,
    reads all the same): reading it raises PermissionError."""
    for name in ("read_bytes", "read_text"):
        read = getattr(Path, name)

        def refuse(self: Path, *args: object, _read: object = read, **kwargs: object) -> object:
            if self.resolve() == path.resolve():
                raise PermissionError(13, "Permission denied", str(self))
            return _read(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(Path, name, refuse)


def test_an_unreadable_cache_entry_is_recomputed_not_a_crash_of_every_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PermissionError came out of load_alignment: every test using the alignment errored
    from das_assert.cache import AlignmentCache, CacheWarning
    from das_assert.featurizers import Interchange

    cache = AlignmentCache(tmp_path)
    cache.put("key", Interchange.boundless(16), {"site": "block_output[layer=1, pos=last]"})
    with monkeypatch.context() as patch:
        unreadable(patch, cache.path("key"))
        with pytest.warns(CacheWarning, match=r"cannot be read \(Permission denied\); give this"):
            assert cache.get("key", 16, n_boxes=1) is None
    # kept: a read that failed says nothing of what the file holds (another user's entry in a
    # shared cache, too many open files, an I/O error that passes): it used to be deleted
    assert cache.get("key", 16, n_boxes=1) is not None


def test_a_cache_entry_that_a_passing_fault_kept_from_being_read_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from das_assert.cache import AlignmentCache, CacheWarning
    from das_assert.featurizers import Interchange

    cache = AlignmentCache(tmp_path)
    cache.put("key", Interchange.boundless(16), {"site": "block_output[layer=1, pos=last]"})
    read = Path.read_bytes

    def too_many_open_files(self: Path) -> bytes:
        if self == cache.path("key"):
            raise OSError(errno.EMFILE, "Too many open files")
        return read(self)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "read_bytes", too_many_open_files)
        with pytest.warns(CacheWarning, match=r"could not be read \(not deleted.*Too many"):
            assert cache.get("key", 16, n_boxes=1) is None
    assert cache.get("key", 16, n_boxes=1) is not None


def test_an_unreadable_alignment_or_baseline_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from das_assert.alignment_file import load_alignment, save_alignment
    from das_assert.baseline import load_baseline, save_baseline
    from das_assert.errors import AlignmentFileError
    from das_assert.featurizers import Interchange

    alignment = tmp_path / "a.safetensors"
    save_alignment(alignment, Interchange.boundless(16), {"site": "x"})
    baseline = tmp_path / "0001_main.json"
    save_baseline(baseline, model={}, environment={}, records=[])
    for path, load in ((alignment, load_alignment), (baseline, load_baseline)):
        unreadable(monkeypatch, path)
        with pytest.raises(AlignmentFileError, match=r"cannot be read \(Permission denied\)"):
            load(path)


def test_a_digest_memo_that_cannot_be_written_costs_time_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on a full disk the cache directory passes its check (creating an empty file takes no
    # space), then the memo's write raised ENOSPC out of the fingerprint: every test errored
    import errno

    from das_assert.digests import DigestMemo, file_sha256

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    memo = DigestMemo(tmp_path / "cache" / "digests.json")
    assert memo.sha256(weights) == file_sha256(weights)
    assert not memo.path.exists()


def test_a_cache_lock_that_cannot_be_taken_warns_and_the_alignment_is_still_computed(
    tmp_path: Path, tiny_llama: object
) -> None:
    # the lock was opened for writing: a directory in its place (or another user's lock file
    # in a cache a group shares) was an IsADirectoryError (PermissionError) in every test
    from das_assert.cache import AlignmentCache, CacheWarning, training_lock
    from das_assert.session import DasSession
    from das_assert.settings import ModelSettings

    settings = ModelSettings(key="tiny", source=Path("das.yaml"), n_train=8, n_test=8, sites={})
    das = DasSession(model=tiny_llama, settings=settings, cache=AlignmentCache(tmp_path))
    (tmp_path / "key.lock").mkdir()
    ran = []
    with pytest.warns(CacheWarning, match=r"cannot take the cache lock .*key\.lock \(Is a dir"):
        with training_lock(das.cache, "key"):
            ran.append(True)
    assert ran == [True]
    (tmp_path / "other.lock").touch(mode=0o444)  # read-only (to a user other than root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # is taken all the same: flock needs no write access
        with training_lock(das.cache, "other"):
            pass


def test_a_cache_lock_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    # a member of a group that shares a cache put <key>.lock -> a path of their choice: the
    # next fit created that file with the victim's rights (the digest memo's lock too)
    from das_assert.cache import AlignmentCache, CacheWarning, training_lock
    from das_assert.digests import DigestMemo, file_sha256

    target = tmp_path / "elsewhere" / "created"
    target.parent.mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "key.lock").symlink_to(target)
    with pytest.warns(CacheWarning, match=r"cannot take the cache lock .*key\.lock \(Too many"):
        with training_lock(AlignmentCache(tmp_path / "cache"), "key"):
            pass
    memo = DigestMemo(tmp_path / "cache" / "digests.json")
    memo.path.with_name("digests.json.lock").symlink_to(target)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w")
    assert memo.sha256(weights) == file_sha256(weights)  # the digest, without the memo
    assert not target.exists()


def test_the_cache_lock_is_taken_where_flock_needs_a_file_open_for_writing(
    tmp_path: Path, tiny_llama: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on NFS flock is emulated by a POSIX lock, and an exclusive one needs the file open for
    # writing: a lock opened read-only failed there (EBADF), a warning in every test, no lock
    import errno
    import fcntl
    import os

    from das_assert.cache import AlignmentCache, training_lock
    from das_assert.session import DasSession
    from das_assert.settings import ModelSettings

    real_flock = fcntl.flock

    def nfs_flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    settings = ModelSettings(key="tiny", source=Path("das.yaml"), n_train=8, n_test=8, sites={})
    das = DasSession(model=tiny_llama, settings=settings, cache=AlignmentCache(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with training_lock(das.cache, "key"):
            pass


def test_run_experiment_trains_under_the_cache_lock_and_reads_a_stored_entry_without_it(
    tmp_path: Path, tiny_llama: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the pytest session took the lock: two notebooks or scripts calling
    # run_experiment(cache=) on one cache directory both trained the same alignment
    import fcntl
    import os

    import das_assert.experiment as experiment_module
    from das_assert.cache import AlignmentCache, cache_key
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig
    from das_assert.sites import Site

    cache = AlignmentCache(tmp_path)
    config = FitConfig(epochs=1, batch_size=8)
    experiment = Experiment(
        hypothesis="left_boundary", site=Site(0), n_train=16, n_test=16, min_task_accuracy=0
    )
    lock = tmp_path / f"{cache_key(tiny_llama, experiment, config)}.lock"

    def held() -> bool:
        if not lock.exists():
            return False
        handle = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(handle)
        return False

    seen: list[tuple[str, bool]] = []
    for name in ("load_entry", "fit_alignment", "store_entry"):
        real = getattr(experiment_module, name)

        def spy(*args: object, _real: object = real, _name: str = name, **kw: object) -> object:
            seen.append((_name, held()))
            return _real(*args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(experiment_module, name, spy)
    first = run_experiment(tiny_llama, experiment, config, cache=cache)
    # read once without the lock (a stored entry waits for no one), again once it is held
    expected = [
        ("load_entry", False),
        ("load_entry", True),
        ("fit_alignment", True),
        ("store_entry", True),
    ]
    assert seen == expected
    assert not held()  # released once the alignment is stored
    seen.clear()
    again = run_experiment(tiny_llama, experiment, config, cache=cache)
    assert seen == [("load_entry", False)]
    assert (first.fitted.from_cache, again.fitted.from_cache) == (False, True)


def test_a_cache_entry_under_another_entrys_name_is_not_served(
    tmp_path: Path, tiny_llama: object
) -> None:
    # a file copied or linked to another key's name was served as that key's alignment: the
    # rotation of one site judged at another, silently (a symlink dedup, a hand-made copy)
    from das_assert.cache import AlignmentCache, CacheWarning
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig
    from das_assert.sites import Site

    cache = AlignmentCache(tmp_path)
    config = FitConfig(epochs=1, batch_size=8)
    at = {
        layer: Experiment(
            hypothesis="left_boundary", site=Site(layer), n_train=16, n_test=16, min_task_accuracy=0
        )
        for layer in (0, 1)
    }
    for experiment in at.values():
        run_experiment(tiny_llama, experiment, config, cache=cache)
    layer0, layer1 = (tmp_path / f"{key}.safetensors" for key in _keys(tiny_llama, at, config))
    layer1.unlink()
    layer1.symlink_to(layer0)
    with pytest.warns(CacheWarning, match=r"holds another alignment \(site='block_output\[layer=0"):
        again = run_experiment(tiny_llama, at[1], config, cache=cache)
    assert not again.fitted.from_cache  # trained again, and cached under its own name
    assert layer1.is_file()
    assert not layer1.is_symlink()
    assert run_experiment(tiny_llama, at[0], config, cache=cache).fitted.from_cache


def _keys(model: object, experiments: dict[int, object], config: object) -> list[str]:
    from das_assert.cache import cache_key

    return [cache_key(model, experiment, config) for experiment in experiments.values()]


def test_a_github_step_summary_that_cannot_be_appended_to_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --das-markdown "$GITHUB_STEP_SUMMARY" appends; on a full disk that raised a bare OSError,
    # which the reporter let through as an INTERNALERROR traceback that hid the summary
    from das_assert.store import write_markdown

    summary = tmp_path / "step_summary.md"
    summary.write_text("another step's table\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with file_size_limit(100), pytest.raises(OutputWriteError) as caught:
        write_markdown(summary, "x" * 5000)
    assert f"could not append to {summary} (File too large)" in str(caught.value)
    assert "is unchanged" not in str(caught.value)  # part of the text may be in it


def test_a_report_to_a_pipe_or_device_is_written_into_it_not_renamed_over_it(
    tmp_path: Path,
) -> None:
    # the temporary file was renamed over the target: as root, --json /dev/null turned the
    # device into a file holding the report, and every later `> /dev/null` wrote into it
    import os
    import stat
    import threading

    from das_assert.store import atomic_write_json, output_path_problem

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    assert output_path_problem(pipe) is None
    atomic_write_json(pipe, {"results": []})
    reader.join(timeout=10)
    assert received == [b'{\n  "results": []\n}\n']
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)  # still the pipe
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary file left


def test_a_link_through_proc_to_a_file_is_refused_not_replaced(tmp_path: Path) -> None:
    # /dev/stdout -> /proc/self/fd/1: where stdout is a file, the rename replaced the link
    import os

    from das_assert.store import output_path_problem

    with open(tmp_path / "captured.txt", "w") as handle:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{handle.fileno()}")
        problem = output_path_problem(link)
        assert problem is not None
        assert "through /proc" in problem
        assert os.path.islink(link)


def test_a_run_waiting_for_the_cache_lock_says_so_on_its_own_stderr(
    tmp_path: Path, tiny_llama: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it waited in silence: a run stopped with Ctrl-Z or at a breakpoint hung every other run
    import fcntl
    import io
    import os
    import sys
    import threading

    from das_assert.cache import AlignmentCache, training_lock

    stderr = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", stderr)
    cache = AlignmentCache(tmp_path)
    lock = tmp_path / "key.lock"
    holder = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    entered = threading.Event()

    def wait_for_it() -> None:
        with training_lock(cache, "key"):
            entered.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert not entered.wait(1.0)  # blocked on the other holder
    assert "das_assert: waiting for another run (or xdist worker) that is training this " in (
        stderr.getvalue()
    )
    assert str(lock) in stderr.getvalue()
    os.close(holder)  # the other run ends
    assert entered.wait(10)
    waiter.join()


def test_a_bad_cache_entry_that_cannot_be_removed_is_a_warning_not_a_crash(
    tmp_path: Path, tiny_llama: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another user's truncated entry in a shared folder: unlink raised PermissionError
    from das_assert.cache import AlignmentCache, CacheWarning

    cache = AlignmentCache(tmp_path)
    cache.path("key").write_bytes(b"truncated")
    real_unlink = Path.unlink

    def not_permitted(self: Path, missing_ok: bool = False) -> None:
        if self == cache.path("key"):
            raise PermissionError(1, "Operation not permitted")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", not_permitted)
    with pytest.warns(CacheWarning, match=r"could not be removed \(Operation not permitted\)"):
        assert cache.get("key", hidden_size=32) is None


def test_a_report_named_through_a_link_is_written_through_it(tmp_path: Path) -> None:
    # the link was replaced by a file, and its target kept the old report, which whatever read
    # through the link then saw
    from das_assert.report import write_report

    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_report(link, {"results": [1]})
    assert link.is_symlink()
    assert json.loads(target.read_text())["results"] == [1]


def test_a_rewritten_file_keeps_its_permissions(tmp_path: Path) -> None:
    # a report kept private (chmod 600) became readable by everyone when rewritten
    from das_assert.store import write_markdown

    private = tmp_path / "private.md"
    private.write_text("old")
    private.chmod(0o600)
    write_markdown(private, "new")
    assert (private.read_text(), stat.S_IMODE(private.stat().st_mode)) == ("new", 0o600)
    fresh = tmp_path / "fresh.bin"
    atomic_write_bytes(fresh, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # as open() makes one


def test_a_fit_over_an_entry_it_cannot_read_warns_once(
    tiny_llama: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fit looks its entry up before taking the entry's lock and again under it: the warning
    # came twice, where the entry was deleted at the first before
    import errno
    import warnings

    from das_assert import Experiment, FitConfig, Site, run_experiment
    from das_assert.cache import AlignmentCache, CacheWarning

    cache = AlignmentCache(tmp_path)
    exp = Experiment(hypothesis="left_boundary", site=Site(1, "last"), n_train=16, n_test=24)
    config = FitConfig(epochs=1, batch_size=8)
    run_experiment(tiny_llama, exp.keeping_definition(min_task_accuracy=0.0), config, cache=cache)
    read = Path.read_bytes

    def refused(self: Path) -> bytes:
        if self.suffix == ".safetensors" and self.parent == tmp_path:
            raise OSError(errno.EACCES, "Permission denied")
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", refused)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(
            tiny_llama, exp.keeping_definition(min_task_accuracy=0.0), config, cache=cache
        )
    said = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1, [str(w.message) for w in said]
