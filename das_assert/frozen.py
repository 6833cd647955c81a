"""Frozen runs (``--das-frozen NAME``): every claim judged with the alignment a saved baseline
holds for it, as fitted on the model the baseline was saved with. Nothing is trained, so a model
update is checked for the cost of its evaluations: whether the mechanism the baseline found is
still where it was, in the same subspace (a transfer, not a re-derivation).

A request is served by the baseline entry that asked for the same alignment: hypothesis,
variables, site, seed, training pairs, prompts and fit settings alike. Which test or claim saved
it does not matter (one alignment serves every claim made on it, as the cache does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from das_assert.alignment_file import (
    load_alignment,
    manifest_mismatches,
    transfer_of,
    without_fit_remedy,
)
from das_assert.errors import AlignmentFileError, DasError
from das_assert.experiment import Experiment
from das_assert.fit import FitConfig, FittedAlignment
from das_assert.models import LoadedModel

__all__ = [
    "FrozenAlignmentMissing",
    "alignment_request",
    "frozen_alignment",
    "frozen_restart",
    "request_text",
]


class FrozenAlignmentMissing(DasError):
    """The baseline of a frozen run holds no alignment for a request."""


def frozen_alignment(
    baseline: tuple[Path, dict[str, Any]],
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig,
) -> tuple[FittedAlignment, dict[str, Any]]:
    """The alignment ``baseline`` (its path and payload) saved for the request ``experiment``
    and ``config``, ready to evaluate on ``model``, and the report's ``alignment`` block: the
    file, the baseline, the model it was trained on, and whether that is another model."""
    path, payload = baseline
    asked = alignment_request(experiment, config)
    wanted = request_text(asked)
    for request, entry in _saved_requests(payload):
        if entry.get("alignment_file") and request_text(request) == wanted:
            break
    else:
        if (older := _saved_by_another_version(payload, asked)) is not None:
            raise FrozenAlignmentMissing(
                f"--das-frozen {path}: the baseline's alignment for {experiment.hypothesis} "
                f"({experiment.variable}) at {experiment.site} was saved by another version of "
                f"das_assert ({older}), so it cannot be matched to this request. Save the "
                "baseline again with this version (--das-save-baseline), or run without "
                "--das-frozen"
            )
        raise FrozenAlignmentMissing(
            f"--das-frozen {path}: the baseline holds no alignment for {experiment.hypothesis} "
            f"({experiment.variable}) at {experiment.site}, seed {experiment.seed}, "
            f"{experiment.n_train} training pairs, method {config.method}: a claim added since "
            "it was saved, other settings (das.yaml, the test's changes), or a search cell "
            "(saved only for a search its test recorded with das.record_search, and only while "
            "its cells' alignments total at most 1 GiB). Save a baseline that holds it "
            "(--das-save-baseline), or run without --das-frozen"
        )
    file = path.parent / path.stem / entry["alignment_file"]
    try:
        interchange, manifest = load_alignment(
            file, hidden_size=model.config.hidden_size, sha256=entry.get("alignment_sha256")
        )
    except AlignmentFileError as exc:  # a baseline's file is remade by saving, not by a fit
        raise AlignmentFileError(
            f"--das-frozen {path}: {without_fit_remedy(str(exc))}; this file is the baseline's: "
            "save the baseline again with --das-save-baseline, or run without --das-frozen"
        ) from None
    _check_identity(
        path, file, manifest, interchange.n_variables, experiment, config, entry, payload
    )
    interchange.to(model.input_device)
    site = experiment.site.resolve(model.model)
    fitted = FittedAlignment(interchange, site, config, experiment.n_train, 0.0, from_cache=True)
    trained_on = manifest.get("model")
    source = {
        "file": str(file),
        "baseline": str(path),
        "trained_on": trained_on,
        "transfer": transfer_of(manifest, model.fingerprint),  # None: not known
        "trained_dtype": manifest.get("dtype"),  # as evaluate's record says it
    }
    return fitted, source


def frozen_restart(
    baseline: tuple[Path, dict[str, Any]], experiment: Experiment, config: FitConfig, restarts: int
) -> tuple[FitConfig, dict[str, Any]]:
    """The fit the baseline kept for a best-of-``restarts`` request (``align(...,
    restarts=k)``): its config and the saved ``restarts`` record. The other fits were not saved,
    so the choice is the baseline's, not made again."""
    from das_assert.restarts import restart_configs, without_provenance

    path, payload = baseline
    by_request = {
        request_text(alignment_request(experiment, one)): one
        for one in restart_configs(config, restarts)
    }
    for request, entry in _saved_requests(payload):
        one = by_request.get(request_text(request))
        record = entry.get("restarts")
        if (
            one is not None
            and entry.get("alignment_file")
            and isinstance(record, dict)
            and record.get("restarts") == restarts
            and record.get("chosen_fit_seed") == one.seed
        ):
            return one, without_provenance(record)
    raise FrozenAlignmentMissing(
        f"--das-frozen {path}: the baseline holds no best-of-{restarts} alignment for "
        f"{experiment.hypothesis} ({experiment.variable}) at {experiment.site}, seed "
        f"{experiment.seed}, fit seeds {config.fit_seed} to {config.fit_seed + restarts - 1}: "
        "a claim added since it was saved, or other settings (restarts, das.yaml, the test's "
        "changes). Save a baseline that holds it (--das-save-baseline), or run without --das-frozen"
    )


def _check_identity(
    path: Path,
    file: Path,
    manifest: dict[str, Any],
    n_variables: int,
    experiment: Experiment,
    config: FitConfig,
    entry: dict[str, Any],
    payload: dict[str, Any],
) -> None:
    """Refuse an alignment file that its manifest says was fitted for another request (its
    fit settings and prompts too), on another model than the baseline's (``payload``'s
    model), or saved for another entry (claim, test): a baseline whose long keys were cut
    to one file name kept only the last cell's rotation, keys that slugged alike shared one
    file, and a file swapped in by hand shows nowhere in the baseline's JSON."""
    wanted = {**alignment_request(experiment, config), **_saved_for(entry)}
    wrong = manifest_mismatches(manifest, wanted, baseline=payload)
    boxes = len(experiment.boxes)
    if n_variables != boxes:
        wrong.append(f"{n_variables} variables' boxes, not {boxes}")
    from das_assert.tasks.registry import defined_otherwise

    if (
        wrong
        and manifest.get("hypothesis") == experiment.hypothesis
        and "causal_model" in manifest  # recorded since 2026-12-04
        and defined_otherwise(manifest, experiment.hypothesis)
    ):  # the user's causal model changed since the save, not the file
        raise AlignmentFileError(
            f"--das-frozen {path}: its alignment for {experiment.hypothesis} was fitted under "
            f"another definition of it ({'; '.join(wrong)}): its mechanisms or intervened "
            "variables have changed since the baseline was saved. Save the baseline again "
            "(--das-save-baseline), or run without --das-frozen"
        )
    if wrong:
        raise AlignmentFileError(
            f"--das-frozen {path}: its alignment file {str(file)!r} for {experiment.hypothesis} "
            f"({experiment.variable}) at {experiment.site} holds another alignment "
            f"({'; '.join(wrong)}): two of the baseline's alignments were saved under one file "
            "name, or the file was replaced. Save the baseline again (--das-save-baseline), or "
            "run without --das-frozen"
        )


def alignment_request(experiment: Experiment, config: FitConfig) -> dict[str, Any]:
    """What an alignment was trained for, as a frozen run matches it: hypothesis, variables,
    site, seed, training pairs, prompts and fit settings."""
    return {
        "hypothesis": experiment.hypothesis,
        "variable": experiment.variable,
        "site": str(experiment.site),
        "seed": experiment.seed,
        "n_train": experiment.n_train,
        "data": experiment.data_record(),
        "fit": config.with_seed(experiment.seed).as_dict(),
    }


def _saved_requests(payload: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Each alignment a baseline holds with the request it answers: its claims' entries, and
    a recorded search's cells (das.record_search), saved too."""
    saved = [(_of_entry(entry), entry) for _, entry in sorted(payload["entries"].items())]
    cells = payload.get("search_cells")
    if isinstance(cells, dict):
        saved += [(cell.get("request"), cell) for _, cell in sorted(cells.items())]
    return saved


def _saved_by_another_version(payload: dict[str, Any], asked: dict[str, Any]) -> str | None:
    """What differs where a saved request is ``asked`` but for what another version records:
    no ``data`` (saved before baselines recorded their prompts, 2026-12-02), or fit settings
    this version has not, or lacks; None where no saved alignment is that near."""
    asked = json.loads(request_text(asked))  # as a baseline holds it
    for request, entry in _saved_requests(payload):
        if not entry.get("alignment_file") or not isinstance(request, dict):
            continue
        request = json.loads(request_text(request))
        fit = request.get("fit") if isinstance(request.get("fit"), dict) else {}
        if {**request, "data": asked["data"], "fit": asked["fit"]} != asked:
            continue
        if request.get("data") is None:
            return "saved before baselines recorded the prompts, 2026-12-02"
        settings = sorted(set(fit) ^ set(asked["fit"]))
        if settings and all(
            fit.get(k) == asked["fit"].get(k) for k in set(fit) & set(asked["fit"])
        ):
            return f"fit settings {', '.join(settings)} known to one version alone"
    return None


def _of_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "hypothesis": entry.get("hypothesis"),
        "variable": entry.get("variable"),
        "site": (entry.get("site") or {}).get("canonical"),
        "seed": entry.get("seed"),
        "n_train": entry.get("n_train"),
        "data": entry.get("data"),
        "fit": entry.get("fit"),
    }


def request_text(fields: dict[str, Any]) -> str:
    """``fields`` as a baseline's JSON holds them (tuples as lists), to compare."""
    return json.dumps(fields, sort_keys=True, default=str)


def _saved_for(entry: dict[str, Any]) -> dict[str, Any]:
    """The claim and test a baseline entry names, as its alignment file's manifest records
    them (a search cell's entry names neither)."""
    return {field: entry[field] for field in ("claim", "test_id") if entry.get(field)}
