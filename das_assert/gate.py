"""A judged claim against the saved baseline: its alignment saved beside the baseline, its numbers
compared with the baseline's entry, and the baseline's frozen alignment applied to this model
(transfer). ``DasRequest._judge`` calls these after the verdict.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from das_assert import sharing
from das_assert.alignment_file import (
    load_alignment,
    manifest_mismatches,
    save_alignment,
    without_fit_remedy,
)
from das_assert.alignment_result import AlignmentResult
from das_assert.baseline import KeyIndex, alignment_path, entry_key, matching_key
from das_assert.compare import (
    marker_expressions,
    not_comparable,
    parse_compare_fail,
    prompt_differences,
    same_site,
)
from das_assert.errors import AlignmentFileError
from das_assert.evaluate import Evaluation, evaluate
from das_assert.fit import FittedAlignment
from das_assert.hooks import site_key
from das_assert.metrics import rounded_interval, unpaired_difference, wilson_interval
from das_assert.model_state import model_version
from das_assert.summary import fit_method, transfer_text
from das_assert.tasks.registry import causal_model_manifest

if TYPE_CHECKING:
    from das_assert.session import DasSession

__all__ = [
    "SEARCH_CELLS_MAX_BYTES",
    "compare_search_cells",
    "compare_with_baseline",
    "regression_message",
    "save_claim_alignment",
    "save_search_alignments",
    "transfer",
]


def save_claim_alignment(
    session: DasSession, result: AlignmentResult, record: dict[str, Any]
) -> None:
    """Write the claim's learned alignment beside the baseline being saved, and name it in the
    record."""

    save_to = session.save_to
    assert save_to is not None
    path = alignment_path(save_to.parent, save_to.name, entry_key(record))
    manifest = {k: record[k] for k in ("hypothesis", "variable", "seed", "n_train", "fit")}
    manifest.update(
        site=str(result.experiment.site),
        model=session.model.fingerprint,
        dtype=session.model.dtype,
        data=result.experiment.data_record(),
        iia=record["iia"],
        claim=record["claim"],
        test_id=record["test_id"],
        **causal_model_manifest(result.experiment.hypothesis, result.experiment.causal),
    )
    sha256 = save_alignment(path, result.fitted.interchange, manifest)
    record["baseline_file"] = f"{save_to}.json"  # the folder beside it holds the alignments
    record["alignment_file"] = path.name
    record["alignment_sha256"] = sha256  # the baseline's checksum then covers the file


#: A recorded search's cells are saved with a baseline while their alignments total at most
#: this (float32 rotations: the embedded model's 8 cells 0.5 MiB; Llama-7B's 7 x 2 grid 0.9
#: GiB, its 7 x 13 grid 5.7 GiB).
SEARCH_CELLS_MAX_BYTES = 1 << 30


def save_search_alignments(
    session: DasSession, grid: Any, record: dict[str, Any], test_id: str
) -> None:
    """Write each cell's alignment of a recorded search beside the baseline being saved, naming
    the file and the request it serves in the record's cells: a frozen run (``--das-frozen``)
    then judges the search without fitting a cell. A grid too large to keep is noted in the
    record (``cells_unsaved``) instead."""
    from das_assert.frozen import alignment_request, request_text

    save_to = session.save_to
    assert save_to is not None
    record.update(baseline_file=f"{save_to}.json", model=session.model.describe())
    results = [grid.results[(cell["layer"], cell["position"])] for cell in record["cells"]]
    size = sum(4 * result.fitted.interchange.d**2 for result in results)
    if size > SEARCH_CELLS_MAX_BYTES:
        cells = f"{len(results)} cell{'' if len(results) == 1 else 's'}"
        record["cells_unsaved"] = (
            f"{cells} of {size / 2**30:.1f} GiB (over {SEARCH_CELLS_MAX_BYTES / 2**30:.0f} "
            "GiB): a frozen run cannot judge this search"
        )
        return
    for cell, result in zip(record["cells"], results, strict=True):
        request = alignment_request(result.experiment, result.config)
        # one key per request: a test may record two searches over the same sites
        digest = hashlib.sha256(request_text(request).encode()).hexdigest()[:12]
        key = f"{test_id}::search::{cell['site']}::{digest}"
        path = alignment_path(save_to.parent, save_to.name, key)
        manifest = {name: request[name] for name in ("hypothesis", "variable", "seed", "n_train")}
        manifest.update(
            site=cell["site"],
            fit=request["fit"],
            model=session.model.fingerprint,
            dtype=session.model.dtype,
            data=result.experiment.data_record(),
            iia=cell["iia"],
            test_id=test_id,
            search=True,
            **causal_model_manifest(result.experiment.hypothesis, result.experiment.causal),
        )
        sha256 = save_alignment(path, result.fitted.interchange, manifest)
        cell.update(
            baseline_key=key, alignment_file=path.name, alignment_sha256=sha256, request=request
        )
        if result.restarts is not None:  # the best of several fits: a frozen run takes it
            cell.update(restarts=result.restarts)


_CELLS_FOR_CORRELATION = 3


def compare_search_cells(
    grid: Any, baseline: tuple[Path, dict[str, Any]], test_id: str
) -> dict[str, Any] | None:
    """A recorded search's grid against the cells its test saved in ``baseline`` (the same
    hypothesis, variables and site): how many cells both hold, the correlation of their IIA
    (Pearson; None where either grid is flat, or they share fewer than three cells) and the
    largest change. A cell fitted on other prompts (another wrapper or answer words) is not
    compared: where every cell was, ``cells`` is 0 and ``other_prompts`` names what differs.
    None when the baseline holds no cell of this test's search (saved before baselines kept
    cells, or left out)."""
    from statistics import StatisticsError, correlation

    path, payload = baseline
    saved = {}
    for key, cell in sorted((payload.get("search_cells") or {}).items()):
        request = cell.get("request") or {}
        if matching_key(test_id, [key.split("::search::")[0]]) is not None:  # rootdir moved
            saved[(request.get("hypothesis"), request.get("variable"), cell.get("site"))] = cell
    both = []  # (the cell then, the result now)
    other_prompts: set[str] = set()  # what differs of cells fitted on other prompts
    for result in grid.results.values():
        exp = result.experiment
        if (cell := saved.get((exp.hypothesis, exp.variable, str(exp.site)))) is None:
            continue
        then = (cell.get("request") or {}).get("data")  # None: saved before cells kept it
        if then and (changed := prompt_differences(then, exp.data_record())):
            other_prompts.update(changed)  # another wrapper or answer words
        else:
            both.append((cell, result))
    if not both:
        if other_prompts:
            return {"file": path.name, "cells": 0, "other_prompts": sorted(other_prompts)}
        return None
    r = None  # two cells always correlate at +-1: it says nothing of them
    if len(both) >= _CELLS_FOR_CORRELATION:
        try:
            r = round(correlation([c["iia"] for c, _ in both], [now.iia for _, now in both]), 4)
        except StatisticsError:  # a flat grid
            pass
    cell, now = max(both, key=lambda b: abs(b[1].iia - b[0]["iia"]))
    change = {"site": cell["site"], "from": cell["iia"], "to": round(now.iia, 6), "n": now.n}
    if cell.get("n"):  # its interval: the two evaluations taken as independent (conservative)
        before = round(cell["iia"] * cell["n"])
        low, high = unpaired_difference(now.evaluation.successes, now.n, before, cell["n"])
        change.update(n_from=cell["n"], ci=rounded_interval(low, high))
    return {"file": path.name, "cells": len(both), "correlation": r, "largest_change": change}


_INDEXED: list[tuple[dict[str, Any], KeyIndex]] = []  # the baseline's entries last indexed


def _key_index(entries: dict[str, Any]) -> KeyIndex:
    """The ``KeyIndex`` of a baseline's entries, built once for all of a run's claims."""
    if not _INDEXED or _INDEXED[0][0] is not entries:
        _INDEXED[:] = [(entries, KeyIndex(entries))]
    return _INDEXED[0][1]


_RUN_KEYS: dict[tuple[int, int, str], KeyIndex] = {}  # this run's, per claim name


def _run_keys(node: Any, claim: str) -> KeyIndex | None:
    """The keys this run's collected tests would give ``claim``: the baseline key of another
    rootdir that one of them matches is not taken by another (``matching_key``'s ``among``)."""
    items = getattr(getattr(node, "session", None), "items", None)
    if not items:
        return None
    memo = (id(items), len(items), claim)
    if memo not in _RUN_KEYS:
        if any(key[:2] != memo[:2] for key in _RUN_KEYS):  # another run's (pytester)
            _RUN_KEYS.clear()
        _RUN_KEYS[memo] = KeyIndex(f"{item.nodeid}::{claim}" for item in items)
    return _RUN_KEYS[memo]


def compare_with_baseline(
    session: DasSession, node: Any, result: AlignmentResult, record: dict[str, Any]
) -> list[str]:
    """The regressions of ``record`` against its baseline entry (numbers, the frozen alignment's
    transfer, drift of site), by the session's --das-compare-fail checks and the test's
    ``das(compare_fail=...)`` marker; fills the record's baseline, drift and transfer."""
    assert session.baseline is not None
    path, payload = session.baseline
    found = matching_key(
        entry_key(record), _key_index(payload["entries"]), among=_run_keys(node, record["claim"])
    )
    entry = payload["entries"][found] if found is not None else None
    if entry is None:
        if session.save_to is not None:
            return []
        return [
            f"no baseline entry for this claim in {path}; save one with "
            "--das-save-baseline (a claim without a baseline fails, as a missing "
            "snapshot does)"
        ]
    record["baseline"] = {
        "file": path.name,
        "path": str(path),
        "iia": entry["iia"],
        "n": entry.get("n_test"),  # None: a report filtered by hand (it has no checksum)
        "iia_ci": entry["iia_ci"],
        "delta": round(record["iia"] - entry["iia"], 6),
        "seed": entry.get("seed"),
        "method": fit_method(entry),
        "noop": (entry.get("baselines") or {}).get("noop"),
        "threshold": entry.get("threshold"),  # a bar moved since: the summary says so
    }
    record["drift"] = None  # none: the same site and boundary width as the baseline's
    if not same_site(entry["site"], record["site"]):
        record["drift"] = {
            "from": entry["site"]["canonical"],
            "to": record["site"]["canonical"],
        }
    if entry.get("boundary_dims") != record["boundary_dims"]:
        widths = [entry.get("boundary_dims"), record["boundary_dims"]]
        record["drift"] = {**(record["drift"] or {}), "boundary_dims": widths}
    record["transfer"] = transfer(session, result, path, entry, record["site"])
    checks = list(session.compare_checks)
    # every das marker's: the plugin marks each das test itself, closer than a module's or
    # class's `pytestmark`, whose checks the closest marker alone left out
    expressions: list[str] = []
    for marker in node.iter_markers("das"):
        expressions += marker_expressions(marker.kwargs.get("compare_fail"))
    checks += [parse_compare_fail(e) for e in dict.fromkeys(expressions)]
    return not_comparable(entry, record) + [
        f"{message} [--das-compare-fail {check}]"
        for check in checks
        if (message := check.check(record, entry))
    ]


def transfer(
    session: DasSession,
    result: AlignmentResult,
    path: Path,
    entry: dict[str, Any],
    site: dict[str, Any],
) -> dict:
    """The baseline's frozen alignment applied to this model: IIA on this run's test pairs
    (``site``: this run's record's)."""
    if not entry.get("alignment_file"):
        return {"skipped": "the baseline holds no alignment file for this claim"}
    fitted_at = entry["site"]["canonical"]
    if not same_site(entry["site"], site):  # its rotation means nothing at another block
        return {
            "skipped": f"the baseline's alignment was fitted at {fitted_at}, and this run's "
            f"claim is at {site['canonical']} (drift)"
        }
    file = path.parent / path.stem / entry["alignment_file"]
    if result.alignment is not None and Path(result.alignment["file"]) == file:
        # a frozen run judged the claim with this very alignment: that is the transfer
        return {
            "iia": round(result.iia, 6),
            "n": result.n,
            "iia_ci": rounded_interval(*result.iia_ci),
        }
    try:
        interchange, manifest = load_alignment(
            file,
            hidden_size=session.model.config.hidden_size,
            sha256=entry.get("alignment_sha256"),
        )
    except AlignmentFileError as exc:  # a baseline's file is remade by saving, not by a fit
        return {
            "skipped": f"{without_fit_remedy(str(exc))}; this file is the baseline's: save the "
            "baseline again with --das-save-baseline"
        }
    wanted = {**entry, "site": fitted_at}
    assert session.baseline is not None  # compare_with_baseline's
    # a file under another claim's name, fitted otherwise, or on another model
    wrong = manifest_mismatches(manifest, wanted, baseline=session.baseline[1])
    if wrong:
        return {
            "skipped": f"the baseline's alignment file {str(file)!r} holds another alignment "
            f"({'; '.join(wrong)}): save the baseline again (--das-save-baseline)"
        }
    if _scored_already(result, manifest):
        evaluation = result.evaluation
    else:
        interchange.to(session.model.input_device)
        evaluation = _evaluated_once(
            session.model.model, _frozen(interchange, result), manifest, result
        )
    low, high = wilson_interval(evaluation.successes, evaluation.n)
    return {
        "iia": round(evaluation.iia, 6),
        "n": evaluation.n,
        "iia_ci": rounded_interval(low, high),
    }


def _scored_already(result: AlignmentResult, manifest: dict[str, Any]) -> bool:
    """Whether ``result`` was scored with the baseline's very tensors: read from the cache,
    they hold the digest of the file's (a ``--das-compare`` over the alignments a baseline was
    saved from). Its evaluation is then the transfer's, on the same pairs, site and seed; a fresh
    fit is scored again, as its rotation is formed otherwise than a saved one is read."""
    fitted = result.fitted
    return (
        fitted.from_cache
        and fitted.tensor_sha256 is not None
        and fitted.tensor_sha256 == manifest.get("tensor_sha256")
        and fitted.interchange.method == manifest.get("method")
    )


def _frozen(interchange: Any, result: AlignmentResult) -> FittedAlignment:
    """A baseline's ``interchange`` at ``result``'s site, as evaluate takes it."""
    return FittedAlignment(
        interchange,
        result.fitted.site,
        result.config,
        result.experiment.n_train,
        0.0,
        from_cache=True,
    )


def _evaluated_once(
    model: Any, frozen: FittedAlignment, manifest: dict[str, Any], result: AlignmentResult
) -> Evaluation:
    """``evaluate`` of a baseline's frozen alignment on ``result``'s test pairs, once per run
    inside the session's ``sharing()`` block: the claims of one module fixture name a file each
    (their manifests differ) holding the same tensors, which each claim scored again on the same
    pairs (10 claims: 6-7 s each, against 0.02 s without --das-compare)."""
    test, seed = result.evaluation.test, result.experiment.seed
    # all that evaluate reads: the rotation and widths (their digest, checked on loading) and
    # method, the site, the pairs, the random-rotation control's seed, the weights and hooks
    key = (
        "transfer",
        manifest["tensor_sha256"],
        manifest["method"],
        *site_key(frozen.site),
        id(test),
        seed,
        model_version(model),
    )
    return sharing.shared(
        key, lambda: evaluate(model, frozen, test, seed=seed), owners=(model, test)
    )


def _ci(interval: Any) -> str:
    low, high = interval
    return f"[{low:.3f}, {high:.3f}]"


def regression_message(
    claim: str, record: dict[str, Any], failures: list[str], baseline_file: Path
) -> str:
    """The lines a regressed claim's failure adds: what failed, now against then, the transfer."""
    base = record.get("baseline") or {}
    lines = [
        f"claim {claim!r} regressed against baseline {baseline_file.name}:"
        if base
        else f"claim {claim!r} has no entry in baseline {baseline_file.name} (a new claim, or "
        "one renamed since the baseline was saved):"
    ]
    lines += [f"  {f}" for f in failures]
    if base:
        lines.append(
            f"  now IIA {record['iia']:.3f} (n={record['n_test']}, CI {_ci(record['iia_ci'])}); "
            f"baseline {base['iia']:.3f} (n={base['n']}, CI {_ci(base['iia_ci'])})"
        )
        noop = (record.get("baselines") or {}).get("noop")
        if isinstance(noop, float | int) and isinstance(base.get("noop"), float | int):
            lines.append(
                f"  no-op now {noop:.3f}, baseline {base['noop']:.3f}: lead over it now "
                f"{record['iia'] - noop:+.3f}, baseline {base['iia'] - base['noop']:+.3f}"
                + (
                    " (a claim that the variable is absent regresses by rising)"
                    if record.get("expected_verdict") == "not_aligned"
                    else ""
                )
            )
        if base.get("seed") is not None and base["seed"] != record.get("seed"):
            lines.append(
                f"  the baseline ran with seed {base['seed']}, this run with seed "
                f"{record.get('seed')}: IIA moves with the seed (python3 -m das_assert.stability "
                "shows by how much); compare runs of one seed"
            )
    transferred = record.get("transfer") or {}
    if "iia" in transferred:
        lines.append(
            "  transfer: the baseline's frozen alignment reaches IIA "
            f"{transfer_text(transferred)} on this model"
        )
    return "\n".join(lines)
