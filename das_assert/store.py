"""What das_assert writes, written safely: every write goes to a temporary file in the same
directory and is renamed into place, so a crash or a parallel writer never leaves a half-written
file under the final name (a device or pipe, ``/dev/null``, is written into, never replaced);
JSON files may carry the sha256 of their content, checked on reading. Only JSON (and
safetensors, ``alignment_file``) is ever read: loading executes no code.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from das_assert.errors import AlignmentFileError, OutputWriteError

__all__ = [
    "BASELINE_KIND",
    "NEW_DIRECTORY_MODE",
    "SCHEMA_VERSION",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_schema",
    "dangling_link",
    "is_model_directory",
    "open_lock_file",
    "output_path_problem",
    "read_json_checked",
    "unreadable_text",
    "write_failure",
    "write_markdown",
]

SCHEMA_VERSION = 1
BASELINE_KIND = "das_assert baseline"  # a baseline file's "kind", written first after the schema


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NEW_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file
NEW_DIRECTORY_MODE = 0o777 & ~_umask()  # what mkdir() would give a new directory


def atomic_write_bytes(path: Path, data: bytes, *, follow_link: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename. A file there
    before keeps its permissions. With ``follow_link`` (an output the user named), a symbolic
    link at ``path`` is written through, as the shell's ``>`` does, not replaced by a file; a
    link in das_assert's own folders (a cache a team shares) is replaced, never followed.

    Raises:
        OutputWriteError: the file could not be written (disk full, ``ulimit -f``, no
            permission); an earlier file at ``path`` is left as it was.
    """
    path = Path(path)
    if _is_a_stream(path):  # renamed over, /dev/null would become a file holding the report
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise OutputWriteError(write_failure(path, exc, appending=True)) from None
        return
    if follow_link and path.is_symlink():
        path = Path(os.path.realpath(path))
    mode = _NEW_FILE_MODE  # mkstemp's 0600 would hide committed baselines
    try:
        before = os.lstat(path)
        if stat.S_ISREG(before.st_mode):
            mode = stat.S_IMODE(before.st_mode)  # a report kept private (0600) stays so
    except OSError:
        pass  # none there yet (or unreadable: the write says why)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent
        )
        try:
            handle = os.fdopen(fd, "wb")
        except BaseException:  # a Ctrl-C before the file object owns the descriptor
            os.close(fd)
            raise
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            raise OutputWriteError(write_failure(path, exc)) from None
        raise


def write_failure(path: Path, exc: OSError, *, appending: bool = False) -> str:
    """One line for a file that could not be written: where, why, and what to do
    (``appending``: to the end of a file, which may then hold part of the text)."""
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space there, or name a place on another disk"
    elif exc.errno == errno.EFBIG:
        fix = "it exceeds the file size limit of this process (ulimit -f); raise the limit"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "name a place this user may write"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        fix = "a file stands where a folder of that path should be: move it, or name another place"
    else:
        fix = "check that place, or name another"
    if appending:
        return f"could not append to {path} ({why}); {fix}. Part of the text may be in it"
    return (
        f"could not write {path} ({why}); {fix}. Nothing was written under that name: a file "
        "there before is unchanged"
    )


def _temporary_prefix(name: str) -> str:
    """``.NAME.`` for the temporary file beside NAME; a long NAME shortened in the middle: the
    temporary's 14 more bytes past a legal name of 242 to 255 bytes would fail the write after
    the whole run. Its start and end are kept (the cleanups match ``.safetensors.``)."""
    return f".{name if len(name.encode()) <= 200 else name[:20] + '~' + name[-20:]}."


def output_path_problem(path: Path, *, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written (as a file, or as a ``directory``), else None.

    Every such path is a user's output, written through a symbolic link (to its target, which
    may not exist yet). Checked before any work, not after it: a directory where a file is to
    go (or the reverse), a file in the way of its parents, or a first existing parent this
    process may not write in (probed by creating and removing a scratch file there). The
    reason reads after the path.
    """
    path = Path(path)
    if not directory and _is_a_stream(path):
        return None  # written into, as the shell's > does
    if _through_proc(path):
        return (
            " leads to this process's own output or another open file (through /proc), which "
            "is a file here: name that file itself, or let stdout be a pipe"
        )
    if not directory and path.is_symlink():  # written through (atomic_write_bytes's
        path = Path(os.path.realpath(path))  # follow_link): its target's place is what counts
    elif dangling := dangling_link(path):
        return dangling
    if directory and path.exists() and not path.is_dir():
        return " is a file; name a directory"
    if not directory and path.is_dir():
        return " is a directory; name a file inside it"
    if not directory and (clobbered := _input_in_the_way(path)):
        return clobbered
    # The files go into the directory itself where it exists, else into its first existing parent.
    for place in [path] if directory and path.is_dir() else path.parents:
        if place.exists():
            if not place.is_dir():
                return f": {place} is a file, not a directory"
            try:
                with tempfile.TemporaryFile(dir=place):
                    pass
            except OSError as exc:
                return (
                    f": cannot write in {place} ({exc.strerror or exc}); name a place this "
                    "user may write"
                )
            return None
    return None


def dangling_link(path: Path) -> str | None:
    """Why ``path``, a symbolic link to nothing, can be neither written nor made (the OS says
    "File exists"), else None. The reason reads after the path."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return (
        f" is a symbolic link to {target}, which does not exist: create that, or name another place"
    )


def _is_a_stream(path: Path) -> bool:
    """Whether ``path`` is (or links to) a device, pipe or socket: ``/dev/null``, or
    ``/dev/stdout`` where stdout is a pipe. Such a path is written into, not renamed over."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _through_proc(path: Path) -> bool:
    """Whether ``path`` is a link into /proc, or a chain of links through it (``/dev/stdout``,
    ``/dev/fd/1``, ``/proc/self/fd/1``): a file renamed over it would replace the link, not
    write the file behind it."""
    here = os.path.abspath(path)
    for _ in range(16):  # a chain of links, not a loop
        here = os.path.join(os.path.realpath(os.path.dirname(here)), os.path.basename(here))
        if not os.path.islink(here):
            return False
        if here.startswith("/proc/"):
            return True
        here = os.path.normpath(os.path.join(os.path.dirname(here), os.readlink(here)))
        if here == "/proc" or here.startswith("/proc/"):
            return True
    return False


# Files a report or alignment never replaces: code, settings (das.yaml, pyproject.toml, ...).
_SOURCE_SUFFIXES = (".py", ".pyi", ".yaml", ".yml", ".toml", ".cfg", ".ini")


def _input_in_the_way(path: Path) -> str | None:
    """Why writing the file ``path`` would destroy an input rather than a report, else None:
    an existing source or settings file (a test, das.yaml), a saved baseline or one of its
    alignment files, or any file in a model directory (one holding config.json and weights),
    whose fingerprint and loading it would change."""
    if path.is_file() and path.suffix.lower() in _SOURCE_SUFFIXES:
        return (
            f" is an existing {path.suffix} file (code or settings, not a report); writing it "
            "would destroy it: name another file"
        )
    if path.is_file() and path.suffix.lower() == ".json" and _is_a_baseline(path):
        return " is a saved baseline, which a report never replaces; name another file"
    folder = path.parent
    if path.is_file() and _is_a_baseline(folder.parent / f"{folder.name}.json"):
        return (
            f" is an alignment of the saved baseline {folder}.json, which a report never "
            "replaces; name a file elsewhere"
        )
    if is_model_directory(folder):
        return (
            f" is inside the model directory {folder}, which it would change (and with it "
            "the model's fingerprint): name a file elsewhere"
        )
    return None


def is_model_directory(folder: Path) -> bool:
    """Whether ``folder`` holds a model: config.json and weight files."""
    return (folder / "config.json").is_file() and any(
        any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin")
    )


_KIND = re.compile(rf'"kind"\s*:\s*"{re.escape(BASELINE_KIND)}"')


def _is_a_baseline(path: Path) -> bool:
    """Whether ``path`` holds a baseline (``--das-save-baseline``): its ``kind`` says so, however
    the JSON is laid out (compacted, keys sorted); one that no longer parses (truncated) by the
    same key in its text."""
    if not _mentions_the_baseline_kind(path):  # a report: not parsed, however large it is
        return False
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return False
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return bool(_KIND.search(text))
    return isinstance(payload, dict) and payload.get("kind") == BASELINE_KIND


def _mentions_the_baseline_kind(path: Path, chunk: int = 1 << 20) -> bool:
    """Whether ``path``'s text holds a baseline's ``"kind"``, read a chunk at a time: every run
    asks it of the report it is about to replace (a 746 MiB one took 8 s and 2 GB to parse)."""
    overlap = b""
    try:
        with path.open("rb") as file:
            while block := file.read(chunk):
                text = (overlap + block).decode("utf-8", errors="replace")
                if _KIND.search(text):
                    return True
                overlap = block[-256:]
    except OSError:
        return False
    return False


def appends_to_step_summary(path: str | Path) -> bool:
    """Whether ``path`` is ``$GITHUB_STEP_SUMMARY``, which ``write_markdown`` appends to."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return summary is not None and Path(summary).resolve() == Path(path).resolve()


def write_markdown(path: Path, text: str) -> None:
    """Write a Markdown table: appended to ``$GITHUB_STEP_SUMMARY``, which a CI step's tools
    share (GitHub appends every one), atomically replacing any other file."""
    if appends_to_step_summary(path):
        try:
            with open(path, "a", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(("\n" if Path(path).stat().st_size else "") + text)
        except OSError as exc:  # a full disk: the summary's one message, not a traceback
            raise OutputWriteError(write_failure(Path(path), exc, appending=True)) from None
        return
    # a test id of a file named in another encoding holds surrogates: written as escapes
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"), follow_link=True)


def atomic_write_json(
    path: Path, payload: dict[str, Any], *, checksum: bool = False, follow_link: bool = False
) -> None:
    """Write ``payload`` as indented JSON; with ``checksum`` add ``sha256`` of the rest
    (``follow_link``: as ``atomic_write_bytes``)."""
    if checksum:
        payload = {k: v for k, v in payload.items() if k != "sha256"}
        payload["sha256"] = _json_digest(payload)
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode(), follow_link=follow_link)


def _json_digest(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_json_checked(path: Path, *, what: str) -> dict[str, Any]:
    """Read a JSON file written with ``checksum=True``; refuse it if corrupted or too new."""
    path = Path(path)
    if path.is_dir():
        raise AlignmentFileError(f"{what} {str(path)!r} is a directory; name a .json file in it")
    if not path.is_file():
        raise AlignmentFileError(
            f"{what} {str(path)!r} does not exist; check the path (baselines are written by "
            "--das-save-baseline, reports by --das-json)"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a permission, an I/O error: not a traceback
        raise AlignmentFileError(unreadable_text(what, path, exc, "restore it")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # UTF-16, as PowerShell's redirection writes
        raise AlignmentFileError(
            f"{what} {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}), which "
            "das_assert writes: it was re-saved in another encoding (UTF-16?) or is not a "
            "das_assert file. Save it as UTF-8, or restore it from version control"
        ) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AlignmentFileError(
            f"{what} {str(path)!r} is not valid JSON ({exc}); it is truncated or was edited by "
            "hand. Restore it from version control or re-create it"
        ) from None
    except ValueError as exc:  # an integer past Python's 4,300 digits
        raise AlignmentFileError(
            f"{what} {str(path)!r} cannot be read as JSON ({str(exc).split(';')[0]}); "
            "das_assert writes no such number. Restore it from version control or re-create it"
        ) from None
    except RecursionError:  # "[[[[...": no file das_assert writes nests this deep
        raise _too_deep(what, path) from None
    if not isinstance(payload, dict):
        raise AlignmentFileError(f"{what} {str(path)!r} is not a JSON object")
    check_schema(payload.get("schema_version"), path, what)
    try:
        digest = _json_digest(payload) if "sha256" in payload else None
    except RecursionError:  # parsed just under the limit, and written back past it
        raise _too_deep(what, path) from None
    if digest is not None and payload["sha256"] != digest:
        raise AlignmentFileError(
            f"{what} {str(path)!r} fails its checksum: it was modified after it was written. "
            "Re-create it rather than editing it by hand"
        )
    return payload


def _too_deep(what: str, path: Path) -> AlignmentFileError:
    return AlignmentFileError(
        f"{what} {str(path)!r} nests its JSON too deeply to read: das_assert writes no such "
        "file. Restore it from version control or re-create it"
    )


def unreadable_text(what: str, path: Path, exc: OSError, remedy: str) -> str:
    return (
        f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}); give this user read "
        f"access to it, or delete it and {remedy}"
    )


def check_schema(version: Any, path: Path, what: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise AlignmentFileError(f"{what} {str(path)!r} has no integer schema_version")
    if version < 1:
        raise AlignmentFileError(
            f"{what} {str(path)!r} has schema_version {version}, which no das_assert wrote "
            f"(1 to {SCHEMA_VERSION}): it was edited by hand; re-create it"
        )
    if version > SCHEMA_VERSION:
        raise AlignmentFileError(
            f"{what} {str(path)!r} has schema_version {version}, newer than this das_assert "
            f"understands ({SCHEMA_VERSION}); upgrade das_assert"
        )


def open_lock_file(path: Path) -> int:
    """The lock file, opened for writing where this user may: on NFS an exclusive flock is a
    POSIX lock, which a file opened read-only cannot take (EBADF). Read-only otherwise: another
    user's lock file in a cache a group shares, which a local flock takes all the same. A link
    in its place is not followed (OSError): in a shared cache it would make this user create a
    file wherever it points."""
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY | flags, 0o666)
