"""The alignment cache: trained alignments keyed by everything that could change them.

The key hashes the model fingerprint (weights, tokenizer, config), its dtype and kind of device,
the causal model and intervened variables (for a registered model of your own, also the labels
of its training pairs and its boxes: a name fixes neither), the data recipe (prompt format,
bracket, number of training pairs, seed), the site, the fit settings, the das_assert version
and ``FIT_REVISION`` (bumped when the fit changes). A hit skips training; evaluation always
runs again. A corrupted entry is reported, ignored and overwritten; it is never used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from das_assert.alignment_file import load_alignment, save_alignment
from das_assert.errors import AlignmentFileError, ConfigError, UnreadableAlignmentFile
from das_assert.store import dangling_link, is_model_directory, open_lock_file

fcntl: Any
try:
    import fcntl
except ImportError:  # Windows: no POSIX locks, so training_lock warns and goes on without one
    fcntl = None

__all__ = ["CACHE_MODES", "KEY_SCHEME", "AlignmentCache", "cache_key", "training_lock"]

CACHE_MODES = ("off", "read", "write", "readwrite")
#: Bump when a change to the fit changes what it learns from the same inputs (the version number
#: moves only on releases, so a cache kept across commits served fits of the code before).
# 1: until 2026-12-04, when das:K fits were keyed by mask_in_training instead; 2: until
# 2026-12-06, when spaced answer words (" Yes") were written into the instruction with the space
FIT_REVISION = 3
#: Bump when ``cache_key``'s recipe changes: an entry keyed otherwise is never read again, and
#: ``das-assert cache`` calls it stale by this number in its manifest.
# 1: until 2026-12-07, when torch's version and the CPU's instruction set joined the key
KEY_SCHEME = 2


def cache_key(model: Any, experiment: Any, config: Any) -> str:
    """A stable hex key for one (model, experiment, fit config). The model counts by its
    fingerprint and by the numbers it computes with: its dtype and the kind of device (a fit in
    bfloat16 or on a GPU is another fit; ``cuda:0`` and ``cuda:1`` share entries where they are
    one kind of GPU, as the GPUs' names say, and a device map counts them all), and on the
    CPU torch's thread count, which changes the rounding of a fit (an xdist worker's one-thread
    fit was served to a serial run, whose own fit scores up to 0.005 apart), and the instruction
    set torch's kernels use there, as torch's version does (a cache machines share served one
    kind of CPU's fit to another)."""
    import torch

    from das_assert import __version__
    from das_assert.tasks.price_tagging import INTERVENED_VARIABLES
    from das_assert.tasks.registry import BUILTIN_CAUSAL_MODELS
    from das_assert.transfer import gpu_names

    fit = config.with_seed(experiment.seed).as_dict()  # no seed named: the experiment's
    if fit.get("method", "").startswith("das:"):  # trained with its hard mask since 2026-12-03
        fit["mask_in_training"] = "hard"
    recipe = {
        "version": __version__,
        "fit_revision": FIT_REVISION,
        "key_scheme": KEY_SCHEME,
        "model": model.fingerprint,
        "dtype": model.dtype,
        "device": model.device.split(":")[0],
        "hypothesis": experiment.hypothesis,
        "variables": list(experiment.variables),
        "format": dataclasses.asdict(experiment.fmt),
        "bracket": experiment.bracket,
        "n_train": experiment.n_train,
        "seed": experiment.seed,
        "site": str(experiment.site),
        "fit": fit,
    }
    recipe["torch"] = torch.__version__  # its kernels round as that version wrote them
    if gpus := gpu_names(model.device):  # an H100 rounds otherwise than an A100
        recipe["gpus"] = gpus
    if not recipe["device"].startswith(("cuda", "xpu")):  # the CPU, or a device map over it
        recipe["threads"] = torch.get_num_threads()
        recipe["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # AVX2, AVX512, ...
    if not config.prefix_cache:  # whole-prompt passes round otherwise: another rotation's bits
        recipe["prefix_cache"] = False
    if experiment.hypothesis not in BUILTIN_CAUSAL_MODELS:
        # A registered model: its name fixes neither its labels nor its boxes.
        labelled = [(p.inputs, p.expected) for p in experiment.train_pairs()]
        recipe["causal_model"] = hashlib.sha256(json.dumps(labelled).encode()).hexdigest()
        recipe["boxes"] = list(INTERVENED_VARIABLES[experiment.hypothesis])
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:32]


STALE_AFTER_S = 3600.0  # a write's temporary file this old was left by a killed process
#: The temporary files ``store.atomic_write_bytes`` makes for the cache's own files (an entry,
#: the digest memo): ``--das-cache-dir`` may name a folder that holds other programs' files.
_TEMPORARY = re.compile(r"^\.(.+\.safetensors|digests\.json)\.[a-z0-9_]+\.tmp$")


def left_temporaries(directory: Path, now: float) -> list[Path]:
    """What killed writers left: ``.NAME.XXXX.tmp`` files (``store.atomic_write_bytes``) of a
    cache entry or the digest memo, untouched for an hour, about 64 MB each for a 7B model's
    alignment. A live write is never that old; any other file is left (``.notes.tmp`` of a
    folder given as ``--das-cache-dir``)."""
    found = []
    for path in sorted(directory.glob(".*.tmp")):
        try:
            if _TEMPORARY.match(path.name) and path.is_file():
                if now - path.stat().st_mtime > STALE_AFTER_S:
                    found.append(path)
        except OSError:
            continue
    return found


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete ``left_temporaries``; one that cannot be deleted is left."""
    for path in left_temporaries(directory, time.time()):
        with contextlib.suppress(OSError):
            path.unlink()


class CacheWarning(UserWarning):
    """A cache entry could not be used and was recomputed."""


@dataclass(frozen=True)
class AlignmentCache:
    """Where cached alignments live and whether to read and/or write them."""

    directory: Path
    mode: str = "readwrite"
    # keys whose read failed, said once: a fit looks an entry up before its lock and under it
    _unread: set[str] = dataclasses.field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in CACHE_MODES:
            raise ConfigError(f"cache mode {self.mode!r} is not one of {', '.join(CACHE_MODES)}")

    @property
    def reads(self) -> bool:
        return self.mode in ("read", "readwrite")

    @property
    def writes(self) -> bool:
        return self.mode in ("write", "readwrite")

    def path(self, key: str) -> Path:
        return Path(self.directory) / f"{key}.safetensors"

    def get(
        self,
        key: str,
        hidden_size: int,
        n_boxes: int | None = None,
        expect: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]] | None:
        """The cached ``(Interchange, manifest)``, or None (missing, unreadable or mismatched):
        ``expect`` holds manifest fields the entry must have (its site, hypothesis, model), for
        a file under another entry's name (renamed, copied, a symlink) is another alignment."""
        if not self.reads or not self.path(key).is_file():
            return None
        try:
            hit = load_alignment(self.path(key), hidden_size=hidden_size, n_boxes=n_boxes)
            wrong = [
                f"{field}={hit[1][field]!r}, not {value!r}"
                for field, value in (expect or {}).items()
                if field in hit[1] and hit[1][field] != value
            ]
            if wrong:
                raise AlignmentFileError(
                    f"cache entry {str(self.path(key))!r} holds another alignment "
                    f"({'; '.join(wrong)}): it was renamed, copied or linked from another entry"
                )
            if self.writes:  # its last use, for `das-assert cache`; a read-only one untouched
                with contextlib.suppress(OSError):
                    os.utime(self.path(key))
            return hit
        except UnreadableAlignmentFile as exc:  # not known to be bad (EMFILE, EIO, EACCES)
            if key not in self._unread:
                self._unread.add(key)
                warnings.warn(
                    "recomputing a cache entry that could not be read (not deleted, as nothing "
                    f"says it is damaged; a fit this run stores replaces it): {exc}",
                    CacheWarning,
                    stacklevel=2,
                )
            return None
        except AlignmentFileError as exc:
            removed = (  # a fit in this mode does not remake it
                "not removed: this cache is only read; once it is deleted, a run with "
                "--das-cache=readwrite fits it again"
            )
            if self.writes:  # gone first: a rerun recomputes it even where warnings are errors
                try:
                    self.path(key).unlink(missing_ok=True)
                    removed = "removed first: where warnings are errors, the next run recomputes it"
                except OSError as gone:  # another user's entry in a shared folder, say
                    removed = f"it could not be removed ({gone.strerror or gone}): delete it"
            warnings.warn(
                f"ignoring a bad cache entry and recomputing it ({removed}): {exc}",
                CacheWarning,
                stacklevel=2,
            )
            return None

    def put(self, key: str, interchange: Any, manifest: dict[str, Any]) -> None:
        """Store an alignment; a write that fails (disk full, permissions) is a warning, since
        the cache only saves time: the caller keeps the alignment it trained."""
        if not self.writes:
            return
        if Path(self.directory).is_dir():  # not only pytest's check_usable: Python's callers too
            _remove_stale_temporaries(Path(self.directory))
        try:
            save_alignment(self.path(key), interchange, manifest)
        except OSError as exc:  # an OutputWriteError, which names the file and the cause
            warnings.warn(
                f"{exc}; the alignment is used but not cached",
                CacheWarning,
                stacklevel=2,
            )

    def check_usable(self) -> None:
        """Refuse, up front, a cache this run cannot use: one error that says what to do.

        Raises:
            ConfigError: the directory is a file or a model's; in ``read`` mode, it does not
                exist (nothing to read: every alignment would train, silently); else it cannot
                be created or written.
        """
        directory = Path(self.directory)
        if dangling := dangling_link(directory):
            raise ConfigError(f"the cache directory {directory}{dangling}")
        if directory.exists() and not directory.is_dir():
            raise ConfigError(
                f"the cache directory {directory} is a file; choose another --das-cache-dir, "
                "or turn the cache off with --das-cache=off"
            )
        if is_model_directory(directory):  # its entries would sit among the model's files
            raise ConfigError(
                f"the cache directory {directory} is a model directory (it holds config.json "
                "and weights); choose another --das-cache-dir, outside it or a folder of its own"
            )
        if not self.writes:
            if not directory.is_dir():
                raise ConfigError(
                    f"--das-cache=read: the cache directory {directory} does not exist, so "
                    "there is nothing to read and every alignment would train; give the "
                    "directory a run wrote (--das-cache-dir DIR), or use --das-cache=readwrite"
                )
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            # --das-cache=read of a directory that could not be made is refused in turn
            other = "read it only with --das-cache=read"
            if not directory.is_dir():
                other = "turn the cache off with --das-cache=off"
            raise ConfigError(
                f"cannot write the cache directory {directory} ({exc}); choose another "
                f"--das-cache-dir, or {other}"
            ) from None
        _remove_stale_temporaries(directory)


@contextlib.contextmanager
def training_lock(cache: AlignmentCache | None, key: str) -> Iterator[None]:
    """Hold the cache's lock of ``key`` (``<key>.lock`` beside the entries) while the block
    trains it, so that parallel runs and xdist workers train each alignment once; nothing
    where the cache is off or only read. A lock that cannot be taken is a warning, not an
    error: the run goes on, and a parallel run may train the alignment too."""
    if cache is None or not cache.writes:
        yield
        return
    lock_path = Path(cache.directory) / f"{key}.lock"
    handle = None
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open_lock_file(lock_path)
        if fcntl is None:
            raise OSError("this platform has no POSIX file locks")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another run trains it: say why this one seems to hang
            _say_waiting(lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        while not _still_there(handle, lock_path):  # `das-assert cache` deleted it meanwhile
            os.close(handle)
            handle = None
            handle = open_lock_file(lock_path)
            fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError as exc:  # a directory in its place, a file system without locks
        if handle is not None:
            os.close(handle)
            handle = None
        warnings.warn(
            f"cannot take the cache lock {lock_path} ({exc.strerror or exc}); going on "
            "without it: a parallel run may train this alignment too. Delete the lock "
            "file or fix its permissions",
            CacheWarning,
            stacklevel=4,
        )
    except BaseException:  # Ctrl-C while waiting for another run's lock: its file is closed
        if handle is not None:
            os.close(handle)
        raise
    try:
        yield
    finally:
        if handle is not None:
            os.close(handle)  # which releases the lock


def _still_there(handle: int, path: Path) -> bool:
    """Whether the lock file held by ``handle`` is still the one at ``path``."""
    try:
        return os.fstat(handle).st_ino == os.stat(path).st_ino
    except OSError:
        return False


#: Where the line of a run waiting for a lock goes: the process's stderr, or (the pytest plugin
#: sets it for its session) past pytest's capture of it, which would hold it until the test ends.
waiting_notice: Callable[[str], None] | None = None


def _say_waiting(lock_path: Path) -> None:
    """One line, not a warning: xdist workers wait on each other's alignments as a matter of
    course, and a warning made an error would fail them."""
    text = (
        f"\ndas_assert: waiting for another run (or xdist worker) that is training this "
        f"alignment; it holds {lock_path}. If no run is active, a stopped one (Ctrl-Z, a "
        "debugger) holds it: resume or end it\n"
    )
    if waiting_notice is not None:
        waiting_notice(text)
        return
    stream = sys.__stderr__
    if stream is not None:
        stream.write(text)
        stream.flush()
