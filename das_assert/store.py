"""Alignment artifacts: one safetensors file per alignment, its manifest in the file's header.

A saved alignment is the rotation matrix and the box widths as tensors, plus a JSON manifest (site,
method, hidden size, hypothesis, model fingerprint, fit settings, metrics) stored as safetensors
metadata with the sha256 of the tensor bytes. Only safetensors and JSON are ever read: loading
executes no code. Every write goes to a temporary file in the same directory and is renamed into
place, so a crash or a parallel writer never leaves a half-written file under the final name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from das_assert.errors import AlignmentFileError, InvalidArgument, OutputWriteError
from das_assert.fit_config import METHODS, parse_method
from das_assert.values import is_integer, is_number

__all__ = [
    "BASELINE_KIND",
    "NEW_DIRECTORY_MODE",
    "SCHEMA_VERSION",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_alignment",
    "output_path_problem",
    "read_json_checked",
    "save_alignment",
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    Raises:
        OutputWriteError: the file could not be written (disk full, ``ulimit -f``, no
            permission); an earlier file at ``path`` is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _NEW_FILE_MODE)  # mkstemp's 0600 would hide committed baselines
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


def output_path_problem(path: Path, *, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written (as a file, or as a ``directory``), else None.

    Checked before any work, not after it: a directory where a file is to go (or the reverse),
    a file in the way of its parents, or a first existing parent this process may not write
    in (probed by creating and removing a scratch file there). The reason reads after the path.
    """
    path = Path(path)
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
    if (folder / "config.json").is_file() and any(
        any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin")
    ):
        return (
            f" is inside the model directory {folder}, which it would change (and with it "
            "the model's fingerprint): name a file elsewhere"
        )
    return None


_KIND = re.compile(rf'"kind"\s*:\s*"{re.escape(BASELINE_KIND)}"')


def _is_a_baseline(path: Path) -> bool:
    """Whether ``path`` holds a baseline (``--das-save-baseline``): its ``kind`` says so, however
    the JSON is laid out (compacted, keys sorted); one that no longer parses (truncated) by the
    same key in its text."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return False
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return bool(_KIND.search(text))
    return isinstance(payload, dict) and payload.get("kind") == BASELINE_KIND


def write_markdown(path: Path, text: str) -> None:
    """Write a Markdown table: appended to ``$GITHUB_STEP_SUMMARY``, which a CI step's tools
    share (GitHub appends every one), atomically replacing any other file."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and Path(summary).resolve() == Path(path).resolve():
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(("\n" if Path(path).stat().st_size else "") + text)
        except OSError as exc:  # a full disk: the summary's one message, not a traceback
            raise OutputWriteError(write_failure(Path(path), exc, appending=True)) from None
        return
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, payload: dict[str, Any], *, checksum: bool = False) -> None:
    """Write ``payload`` as indented JSON; with ``checksum`` add ``sha256`` of the rest."""
    if checksum:
        payload = {k: v for k, v in payload.items() if k != "sha256"}
        payload["sha256"] = _json_digest(payload)
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


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
        raise AlignmentFileError(_unreadable(what, path, exc, "restore it")) from None
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
    except RecursionError:  # "[[[[...": no file das_assert writes nests this deep
        raise AlignmentFileError(
            f"{what} {str(path)!r} nests its JSON too deeply to read: das_assert writes no such "
            "file. Restore it from version control or re-create it"
        ) from None
    if not isinstance(payload, dict):
        raise AlignmentFileError(f"{what} {str(path)!r} is not a JSON object")
    _check_schema(payload.get("schema_version"), path, what)
    if "sha256" in payload and payload["sha256"] != _json_digest(payload):
        raise AlignmentFileError(
            f"{what} {str(path)!r} fails its checksum: it was modified after it was written. "
            "Re-create it rather than editing it by hand"
        )
    return payload


def _unreadable(what: str, path: Path, exc: OSError, remedy: str) -> str:
    return (
        f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}); give this user read "
        f"access to it, or delete it and {remedy}"
    )


def _check_schema(version: Any, path: Path, what: str) -> None:
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


def save_alignment(path: Path, interchange: Any, manifest: dict[str, Any]) -> None:
    """Save a trained ``Interchange`` and its manifest to one safetensors file, atomically."""
    import torch
    from safetensors.torch import save

    rotation = interchange.rotation_matrix()
    if rotation is None:
        rotation = torch.eye(interchange.d)
    tensors = {
        "rotation": rotation.detach().float().cpu().contiguous(),
        "widths": (interchange.widths.detach().clamp(0, 1) * interchange.d).float().cpu(),
    }
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    header = {
        **manifest,
        "schema_version": SCHEMA_VERSION,
        "method": interchange.method,
        "hidden_size": interchange.d,
        "n_variables": interchange.n_variables,
        "tensor_sha256": digest.hexdigest(),
    }
    atomic_write_bytes(Path(path), save(tensors, metadata={"manifest": json.dumps(header)}))


_MANIFEST_KEYS = ("hidden_size", "method")


_MANIFEST_TYPES: dict[str, type] = {  # a key a reader needs, where the manifest has it
    "hidden_size": int,
    "method": str,
    "site": str,
    "hypothesis": str,
    "variable": str,
    "seed": int,
    "n_train": int,
    "fit": dict,
    "prompt_template": str,
    "restarts": dict,
}


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the types of an alignment manifest's fields (the tensors' checksum
    does not cover them), or None."""
    for key, kind in _MANIFEST_TYPES.items():
        if key not in manifest:
            continue
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{key}={value!r}, not {'an integer' if kind is int else kind.__name__}"
        if isinstance(value, int) and not 0 <= value <= 2**32 - 1:
            return f"{key}={value!r} out of range (0 to 2**32 - 1)"
    if "method" in manifest and not _known_method(manifest["method"]):
        return f"method={manifest['method']!r}, not one of {METHODS}"
    if "restarts" in manifest and not _restarts_record_ok(manifest["restarts"]):
        return f"restarts={manifest['restarts']!r}, not the record of a best-of-k fit"
    return None


def _known_method(method: str) -> bool:
    try:
        parse_method(method)
    except InvalidArgument:
        return False
    return True


def _restarts_record_ok(record: dict[str, Any]) -> bool:
    """Whether ``record`` has what a summary reads of a best-of-k record (restarts.py)."""
    rows = record.get("by_fit_seed")
    return (
        is_integer(record.get("restarts"))
        and is_integer(record.get("chosen_fit_seed"))
        and isinstance(record.get("dev_pairs"), dict)
        and is_integer(record["dev_pairs"].get("n"))
        and isinstance(rows, list)
        and all(
            isinstance(row, dict)
            and is_integer(row.get("fit_seed"))
            and is_number(row.get("dev_iia"))
            for row in rows
        )
    )


def load_alignment(
    path: Path,
    *,
    hidden_size: int | None = None,
    require: tuple[str, ...] = (),
    n_boxes: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load an alignment saved by ``save_alignment``: ``(Interchange, manifest)``; ``require``
    names manifest keys the caller needs beyond the rotation's own, ``n_boxes`` the number of
    variables' boxes the caller will use.

    Raises:
        AlignmentFileError: missing, truncated or tampered file, newer schema, a hidden size
            other than the model's, or tensors of the wrong shape or not finite.
    """
    from das_assert.featurizers import Interchange

    path = Path(path)
    tensors, manifest = _read_alignment_file(path)
    _check_manifest(path, manifest, tensors, require)
    rotation, widths = _checked_tensors(path, tensors, manifest, hidden_size, n_boxes)
    interchange = Interchange.frozen(rotation, widths.tolist(), manifest["method"])
    return interchange, manifest


def _read_alignment_file(path: Path) -> tuple[dict[str, Any], Any]:
    """The file's tensors and the manifest in its metadata, as read."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if path.is_dir():
        raise AlignmentFileError(
            f"alignment file {str(path)!r} is a directory; name the .safetensors file in it"
        )
    if not path.is_file():
        raise AlignmentFileError(
            f"alignment file {str(path)!r} does not exist; check the path, or save an alignment "
            "with `python -m das_assert fit ... --save FILE`"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a permission, an I/O error: a cache entry is then recomputed
        raise AlignmentFileError(_unreadable("alignment file", path, exc, "fit again")) from None
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
        return tensors, json.loads(metadata["manifest"])
    except (SafetensorError, ValueError, KeyError, RecursionError) as exc:
        if raw.lstrip()[:1] in (b"{", b"["):  # a report, say, which is no reason to delete it
            raise AlignmentFileError(
                f"alignment file {str(path)!r} is a JSON file, not a safetensors alignment: a "
                "report (--json) holds no weights; give the file that fit --save (or "
                "pytest --das-save-baseline, beside its baseline) wrote"
            ) from None
        raise AlignmentFileError(
            f"alignment file {str(path)!r} is not a readable das_assert safetensors file ({exc}); "
            "it is truncated or corrupted: delete it and fit again"
        ) from None


def _check_manifest(
    path: Path, manifest: Any, tensors: dict[str, Any], require: tuple[str, ...]
) -> None:
    """Refuse a manifest das_assert did not write as it is: not an object, a newer schema,
    keys or tensors missing, values edited, tensors changed since (its checksum)."""
    if not isinstance(manifest, dict):
        raise AlignmentFileError(
            f"alignment file {str(path)!r} has a manifest that is not a JSON object: it was not "
            "written by das_assert; fit it again"
        )
    _check_schema(manifest.get("schema_version"), path, "alignment file")
    missing = [k for k in (*_MANIFEST_KEYS, *require) if k not in manifest] + [
        k for k in ("rotation", "widths") if k not in tensors
    ]
    if missing:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} lacks {', '.join(missing)}: it was not written by "
            "`das_assert fit --save` or a baseline; fit it again"
        )
    if problem := _manifest_problem(manifest):
        raise AlignmentFileError(
            f"alignment file {str(path)!r} has a manifest with {problem}: it was edited by hand "
            "or not written by das_assert; fit it again"
        )
    if kinds := sorted({str(t.dtype) for t in tensors.values()} - {"torch.float32"}):
        raise AlignmentFileError(
            f"alignment file {str(path)!r} holds {', '.join(kinds)} tensors, where das_assert "
            "writes float32 alone: it was converted or not written by das_assert; fit it again"
        )
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    if digest.hexdigest() != manifest.get("tensor_sha256"):
        raise AlignmentFileError(
            f"alignment file {str(path)!r} fails its checksum: its tensors were modified after "
            "it was saved; delete it and fit again"
        )


def _checked_tensors(
    path: Path,
    tensors: dict[str, Any],
    manifest: dict[str, Any],
    hidden_size: int | None,
    n_boxes: int | None,
) -> tuple[Any, Any]:
    """``(rotation, widths)`` in float32, refused unless of the model's width, the boxes asked
    for, finite, and each box within the vector."""
    import torch

    d = int(manifest["hidden_size"])
    if hidden_size is not None and d != hidden_size:
        raise AlignmentFileError(
            f"alignment {str(path)!r} was learned on a hidden size of {d}, but this model's "
            f"hidden size is {hidden_size}; a rotation only transfers between models of the same "
            "width: fit a new alignment on this model"
        )
    rotation, widths = tensors["rotation"].to(torch.float32), tensors["widths"].float()
    wrong = []
    if tuple(rotation.shape) != (d, d):
        wrong.append(f"a rotation of shape {tuple(rotation.shape)}, not ({d}, {d})")
    if widths.dim() != 1 or len(widths) == 0:
        wrong.append(f"widths of shape {tuple(widths.shape)}, not one per variable")
    elif n_boxes is not None and len(widths) != n_boxes:
        wrong.append(f"{len(widths)} variables' boxes where {n_boxes} are needed")
    if not (torch.isfinite(rotation).all() and torch.isfinite(widths).all()):
        wrong.append("values that are not finite")
    elif widths.numel() and not bool(((widths >= 0) & (widths <= d)).all()):
        wrong.append(f"box widths {widths.tolist()} outside [0, {d}] coordinates")
    if wrong:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} holds {'; '.join(wrong)}: it is not a usable "
            "alignment; delete it and fit again"
        )
    return rotation, widths
