"""Alignment files: one safetensors file per alignment, its manifest in the file's header.

A saved alignment is the rotation matrix and the box widths as tensors, plus a JSON manifest (site,
method, hidden size, hypothesis, model fingerprint, fit settings, metrics) stored as safetensors
metadata with the sha256 of the tensor bytes. Only safetensors and JSON are read: loading executes
no code. A file that das_assert did not write as it is (edited, converted, truncated, not a
rotation) is refused with what is wrong. Writes are atomic (``store.atomic_write_bytes``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from das_assert.canonical import FINGERPRINT_SCHEME
from das_assert.errors import AlignmentFileError, InvalidArgument, UnreadableAlignmentFile
from das_assert.fit_config import METHODS, parse_method
from das_assert.model_files import LFS_POINTER
from das_assert.store import SCHEMA_VERSION, atomic_write_bytes, check_schema, unreadable_text
from das_assert.values import is_integer, is_number

__all__ = ["load_alignment", "manifest_mismatches", "save_alignment", "without_fit_remedy"]


def save_alignment(
    path: Path, interchange: Any, manifest: dict[str, Any], *, follow_link: bool = False
) -> str:
    """Save a trained ``Interchange`` and its manifest to one safetensors file, atomically;
    return the file's sha256, by which a baseline pins it (``load_alignment(sha256=)``)."""
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
        "fingerprint_scheme": FINGERPRINT_SCHEME,  # how its model's digests were made
        "method": interchange.method,
        "hidden_size": interchange.d,
        "n_variables": interchange.n_variables,
        "tensor_sha256": digest.hexdigest(),
    }
    raw = save(tensors, metadata={"manifest": json.dumps(header)})
    atomic_write_bytes(Path(path), raw, follow_link=follow_link)
    return hashlib.sha256(raw).hexdigest()


def transfer_of(manifest: dict[str, Any], here: dict[str, str]) -> bool | None:
    """Whether the alignment of ``manifest`` is scored on another model than it was fitted on
    (``here`` is this model's fingerprint): True where the weights differ, or the config or
    tokenizer digests do and both were made the same way; None where only those differ and
    the file's were made by an earlier way of digesting them (``FINGERPRINT_SCHEME``), which
    differ for the same files: not known."""
    trained_on = manifest.get("model")
    if trained_on == here:
        return False
    if not isinstance(trained_on, dict) or trained_on.get("weights") != here.get("weights"):
        return True
    return True if manifest.get("fingerprint_scheme") == FINGERPRINT_SCHEME else None


def transfer_note(path: Any, manifest: dict[str, Any], here: dict[str, str]) -> str | None:
    """What ``evaluate`` says before its numbers when ``transfer_of`` is not False: which of the
    model's files differ, or that an older file's digests cannot tell."""
    transfer = transfer_of(manifest, here)
    if transfer is False:
        return None
    trained_on = manifest.get("model")
    if not isinstance(trained_on, dict):
        return f"{path} does not record the model it was fitted on: scored as a transfer"
    differ = sorted(part for part in {*trained_on, *here} if trained_on.get(part) != here.get(part))
    if transfer is None:
        return (
            f"{path} was trained on this model's weights; its {' and '.join(differ)} digests "
            "were made by an older das_assert, which digested those files otherwise, so whether "
            "they are this model's is not known (the JSON's transfer is null; fit and save it "
            "again to know)"
        )
    if "weights" in differ:
        recorded = trained_on.get("weights")
        what = f"another model (weights {str(recorded)[:12]}...)" if recorded else "another model"
    else:
        what = f"this model's weights with other {' and '.join(differ)} files"
    return f"{path} was trained on {what}: this is a transfer, not a fit here"


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
    "dtype": str,
    "restarts": dict,
    "data": dict,
}

#: A manifest's ``data`` (``Experiment.data_record``: the prompts it was fitted on), its types.
_DATA_TYPES: dict[str, tuple[type, ...]] = {
    "instruction": (str,),
    "answers": (list,),
    "prefix": (str,),
    "suffix": (str,),
    "numbers": (str,),
    "template": (str,),
    "bracket": (list, type(None)),
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
    if "restarts" in manifest and not _restarts_record_ok(manifest["restarts"]):
        return f"restarts={manifest['restarts']!r}, not the record of a best-of-k fit"
    if "data" in manifest and not _data_record_ok(manifest["data"]):
        return f"data={manifest['data']!r}, not the record of the prompts it was fitted on"
    return None


def _data_record_ok(record: dict[str, Any]) -> bool:
    """Whether ``record`` has every prompt setting, each of its type (an answer pair, a bracket
    of two whole cents)."""
    if not set(_DATA_TYPES) <= set(record) or not all(
        isinstance(record[key], kinds) for key, kinds in _DATA_TYPES.items()
    ):
        return False
    answers, bracket = record["answers"], record["bracket"]
    return (
        len(answers) == 2
        and all(isinstance(word, str) for word in answers)
        and (bracket is None or (len(bracket) == 2 and all(is_integer(c) for c in bracket)))
    )


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
    sha256: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load an alignment saved by ``save_alignment``: ``(Interchange, manifest)``; ``require``
    names manifest keys the caller needs beyond the rotation's own, ``n_boxes`` the number of
    variables' boxes the caller will use, ``sha256`` the file's digest where a baseline pinned
    it (``save_alignment``'s return).

    Raises:
        AlignmentFileError: missing, truncated or tampered file, newer schema, a hidden size
            other than the model's, or tensors of the wrong shape or not finite.
    """
    from das_assert.featurizers import Interchange

    path = Path(path)
    tensors, manifest = _read_alignment_file(path, sha256)
    _check_manifest(path, manifest, tensors, require)
    rotation, widths = _checked_tensors(path, tensors, manifest, hidden_size, n_boxes)
    interchange = Interchange.frozen(rotation, widths.tolist(), manifest["method"])
    return interchange, manifest


_FIT_REMEDY = re.compile(
    r"(?:[;:] (?:check the path, or save an alignment with .*|delete it and fit again"
    r"|fit it again|fit a new alignment on this model)|, or (?:delete it and fit|fit it) again)$"
)


#: What names the alignment a file holds: a file under another claim's name (its key cut or
#: slugged to that name) differs in one of these from what it was asked for.
IDENTITY_FIELDS = ("hypothesis", "variable", "site", "seed", "n_train", "claim", "test_id")


def manifest_mismatches(
    manifest: dict[str, Any], wanted: dict[str, Any], *, baseline: dict[str, Any] | None = None
) -> list[str]:
    """``field=saved, not wanted`` for each identity field both record and differ in, the fit
    settings and prompts (``fit``, ``data``) where both record them, and the model where the
    manifest's is not the model of ``baseline`` (the payload of the baseline that holds the
    file)."""
    wrong = [
        f"{field}={manifest[field]!r}, not {wanted[field]!r}"
        for field in IDENTITY_FIELDS
        if field in manifest and field in wanted and manifest[field] != wanted[field]
    ]
    for field in ("fit", "data"):
        if field in manifest and field in wanted:
            saved, asked = json.loads(json.dumps([manifest[field], wanted[field]], default=str))
            if saved != asked:
                differ = (
                    sorted(k for k in {*saved, *asked} if saved.get(k) != asked.get(k))
                    if isinstance(saved, dict) and isinstance(asked, dict)
                    else []
                )
                wrong.append(f"other {field} settings ({', '.join(differ) or 'another kind'})")
    saved_by = (baseline or {}).get("model")
    saved_on = saved_by.get("fingerprint") if isinstance(saved_by, dict) else None
    if isinstance(saved_on, dict) and manifest.get("model", saved_on) != saved_on:
        wrong.append("fitted on another model than the baseline's")
    return wrong


def without_fit_remedy(message: str) -> str:
    """``load_alignment``'s refusal without its advice to fit again (or save with ``fit``),
    for a file that a fit does not remake: a baseline's, which saving the baseline remakes."""
    return _FIT_REMEDY.sub("", message)


def _read_alignment_file(path: Path, sha256: str | None) -> tuple[dict[str, Any], Any]:
    """The file's tensors and the manifest in its metadata, as read; refused where its bytes
    are not those ``sha256`` pins."""
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
        raise UnreadableAlignmentFile(
            unreadable_text("alignment file", path, exc, "fit again")
        ) from None
    if raw.startswith(LFS_POINTER):  # a checkout made without git-lfs: not the file's fault
        raise AlignmentFileError(
            f"alignment file {str(path)!r} is a Git LFS pointer, not the file itself (a clone "
            "made without git-lfs): run `git lfs pull`, or `git lfs install` before cloning"
        )
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} is not the file its baseline saved (its sha256 is "
            "not the baseline's alignment_sha256): it was replaced or changed since"
        )
    which = (
        "give the file that fit --save (or pytest --das-save-baseline, beside its baseline) wrote"
    )
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, RecursionError) as exc:
        if raw.lstrip()[:1] in (b"{", b"["):  # a report, say, which is no reason to delete it
            raise AlignmentFileError(
                f"alignment file {str(path)!r} is a JSON file, not a safetensors alignment: a "
                f"report (--json) holds no weights; {which}"
            ) from None
        raise AlignmentFileError(
            f"alignment file {str(path)!r} is not a readable safetensors file ({exc}): it is "
            "truncated or corrupted, or not a das_assert alignment (check the path); fit it again"
        ) from None
    if "manifest" not in metadata:  # another tool's tensors, or a model's weights: keep them
        raise AlignmentFileError(
            f"alignment file {str(path)!r} is a safetensors file without das_assert's manifest "
            f"(a model's weights, or another tool's tensors), not an alignment: {which}"
        )
    try:
        return tensors, json.loads(metadata["manifest"])
    except (ValueError, RecursionError) as exc:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} has a manifest that cannot be read ({exc}): it was "
            "edited or corrupted since das_assert wrote it; fit it again"
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
    check_schema(manifest.get("schema_version"), path, "alignment file")
    missing = [k for k in (*_MANIFEST_KEYS, *require) if k not in manifest] + [
        k for k in ("rotation", "widths") if k not in tensors
    ]
    if missing:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} lacks {', '.join(missing)}: it was not written by "
            "`das_assert fit --save` or a baseline; fit it again"
        )
    method = manifest.get("method")
    if isinstance(method, str) and not _known_method(method):  # as an unknown fit setting is
        raise AlignmentFileError(
            f"alignment file {str(path)!r} was trained with method {method!r}, which this "
            f"das_assert does not know (it knows {METHODS}): a newer version's, or "
            "the file was edited by hand; upgrade das_assert, or fit it again"
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
        shown = (
            widths.tolist() if len(widths) <= 8 else f"{widths[:8].tolist()} ... ({len(widths)})"
        )
        wrong.append(f"box widths {shown} outside [0, {d}] coordinates")
    if not wrong and (error := _rotation_error(rotation)) > _ROTATION_TOLERANCE:
        wrong.append(f"a matrix that is not a rotation (|R^T R v - v| / |v| = {error:.2g})")
    if wrong:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} holds {'; '.join(wrong)}: it is not a usable "
            "alignment; delete it and fit again"
        )
    return rotation, widths


#: How far from orthogonal a stored rotation may be. Learned float32 rotations drift with the
#: width and the generator's norm: about 1e-5 at d = 128, 5e-5 at d = 1024, 1.2e-3 at d = 4096
#: with a norm of 50 (a reviewer's measurement); a matrix scaled by 1.01 is off by 2e-2.
_ROTATION_TOLERANCE = 1e-2


def _rotation_error(rotation: Any) -> float:
    """The largest relative error of ``R^T (R v)`` against ``v`` over 8 fixed random vectors: a
    matrix that is not orthogonal shows on them, at two products of d x 8 (not one of d x d)."""
    import torch

    probes = torch.randn(rotation.shape[0], 8, generator=torch.Generator().manual_seed(0))
    back = rotation.double().T @ (rotation.double() @ probes.double())
    return float(((back - probes).norm(dim=0) / probes.norm(dim=0)).max())
