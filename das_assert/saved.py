"""A result's alignment saved to one safetensors file, and loaded back for another evaluation.

The Python side of ``das_assert fit --save`` and ``evaluate --alignment``: the same file, written
atomically, never pickled (``alignment_file.save_alignment``). A loaded alignment goes to
``run_experiment(model, experiment, fitted=...)``, which scores it where it was trained:

    result.save("left.safetensors")
    fitted = load_fitted("left.safetensors", model)
    again = run_experiment(model, result.experiment, fitted=fitted)  # evaluated, not trained
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from das_assert.errors import AlignmentFileError, DasError, InvalidArgument, shown_value

if TYPE_CHECKING:
    from das_assert.alignment_result import AlignmentResult
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig, FittedAlignment
    from das_assert.models import LoadedModel
    from das_assert.sites import ResolvedSite

__all__ = [
    "alignment_manifest",
    "fitted_for",
    "load_fitted",
    "load_saved",
    "save_result",
    "saved_fit_config",
]


def alignment_manifest(result: AlignmentResult) -> dict[str, Any]:
    """What a saved alignment records beside its tensors: the claim, the site (its block's own
    number), the seed, pairs and fit, the model it was fitted on, its IIA and causal model."""
    from das_assert.restarts import without_provenance
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import ALPACA_TEMPLATE
    from das_assert.tasks.registry import causal_model_manifest

    record = result.to_dict(include_pairs=False)
    given = result.experiment.site
    site = Site(result.fitted.site.layer, given.position, given.component)
    manifest = {k: record[k] for k in ("hypothesis", "variable", "seed", "n_train", "fit")}
    if result.fitted.trained_seed is not None:  # scored at another seed than it was fitted at
        manifest["seed"] = result.fitted.trained_seed
    manifest.update(site=str(site), model=result.model.fingerprint, iia=record["iia"])
    manifest.update(dtype=result.model.dtype)  # the float type it was fitted in
    manifest.update(data=result.experiment.data_record())  # evaluate's prompts, unless given
    manifest.update(causal_model_manifest(result.experiment.hypothesis, result.experiment.causal))
    if result.experiment.fmt.template != ALPACA_TEMPLATE:  # evaluated in the same wrapper
        manifest.update(prompt_template=result.experiment.fmt.template)
    if result.restarts is not None:  # chosen among several fits: evaluate says so
        manifest.update(restarts=without_provenance(result.restarts))
    return manifest


def save_result(result: AlignmentResult, path: str | Path) -> Path:
    """Write ``result``'s alignment and manifest to ``path`` (a ``.safetensors`` file)."""
    from das_assert.alignment_file import save_alignment
    from das_assert.store import output_path_problem

    target = Path(path)
    if (problem := output_path_problem(target)) is not None:
        raise InvalidArgument(f"cannot save the alignment to {str(target)!r}{problem}")
    save_alignment(target, result.fitted.interchange, alignment_manifest(result), follow_link=True)
    return target


def load_fitted(path: str | Path, model: LoadedModel) -> FittedAlignment:
    """The alignment saved at ``path`` (``AlignmentResult.save``, ``fit --save``), on ``model``'s
    device, at the site it was trained at, for ``run_experiment(..., fitted=...)``.

    Raises:
        AlignmentFileError: a missing, truncated or tampered file, or one for another width.
    """
    return load_saved(path, model)[0]


def load_saved(path: str | Path, model: LoadedModel) -> tuple[FittedAlignment, dict[str, Any]]:
    """``load_fitted``, and the manifest beside it (the claim, seed and prompts it was fitted
    with), for a caller that builds the experiment from it (``evaluate --alignment``)."""
    from das_assert.alignment_file import load_alignment
    from das_assert.fit import FittedAlignment
    from das_assert.models import LoadedModel
    from das_assert.sites import parse_site

    if not isinstance(model, LoadedModel):
        raise InvalidArgument(
            f"model={shown_value(model)}: a LoadedModel (load_model(path)), not "
            f"{type(model).__name__}"
        )
    interchange, manifest = load_alignment(
        Path(path), hidden_size=model.config.hidden_size, require=("site", "hypothesis", "fit")
    )
    interchange.to(model.input_device)
    try:
        site = parse_site(manifest["site"]).resolve(model.model)
    except DasError as exc:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} names a site this model does not have ({exc})"
        ) from None
    config = saved_fit_config(Path(path), manifest["fit"])
    n_train, seed = int(manifest.get("n_train", 2)), manifest.get("seed")
    trained_seed = None if seed is None else int(seed)  # a file that records none: unknown
    fitted = FittedAlignment(
        interchange, site, config, n_train, 0.0, from_cache=True, trained_seed=trained_seed
    )
    return fitted, manifest


def saved_fit_config(path: Path, saved: dict[str, Any]) -> FitConfig:
    """The FitConfig an alignment was trained with, from its manifest's ``fit``."""
    from das_assert.fit_config import FitConfig

    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} was trained with settings this das_assert does not "
            f"know ({', '.join(unknown)}): it comes from a newer version; upgrade das_assert"
        )
    try:
        if "temperature" in saved:
            saved = {**saved, "temperature": tuple(saved["temperature"])}
        return FitConfig(**saved)
    except (TypeError, ValueError, DasError) as exc:  # a manifest edited by hand
        raise AlignmentFileError(
            f"alignment file {str(path)!r} holds training settings das_assert cannot use ({exc}); "
            "fit it again"
        ) from None


def fitted_for(
    experiment: Experiment, resolved: ResolvedSite, fitted: FittedAlignment, model: LoadedModel
) -> FittedAlignment:
    """``fitted`` (``run_experiment``'s ``fitted=``) on ``model``'s block at ``resolved``, where
    it was trained, with a box per variable of the hypothesis: scored at another site, its
    numbers were labelled with a site it never touched. One fitted on another load of the
    model (a notebook's cell run again) is put on this one's block: its hook sat on the other
    model's, which this pass never runs (a KeyError).

    Raises:
        InvalidArgument: another site, another number of variables, or another width.
    """
    from dataclasses import replace

    trained = fitted.site
    same_place = (trained.module_path, trained.kind) == (resolved.module_path, resolved.kind)
    if not same_place or trained.site.parsed_position != experiment.site.parsed_position:
        raise InvalidArgument(
            f"fitted= was trained at {trained.site}, but the experiment's site is "
            f"{experiment.site}: an alignment is scored where it was trained; give the "
            "experiment that site"
        )
    boxes, variables = len(fitted.boundary_dims), experiment.boxes
    if boxes != len(variables):
        raise InvalidArgument(
            f"fitted= has {boxes} box(es), but {experiment.hypothesis!r} intervenes on "
            f"{len(variables)} variable(s) ({', '.join(variables)}): it was trained for another "
            "causal model"
        )
    if trained.module is resolved.module:
        return fitted
    if fitted.interchange.d != model.config.hidden_size:
        raise InvalidArgument(
            f"fitted= is {fitted.interchange.d} wide, but {model.name}'s hidden size is "
            f"{model.config.hidden_size}: it was trained on another model"
        )
    fitted.interchange.to(model.input_device)
    return replace(fitted, site=resolved)
