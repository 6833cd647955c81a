"""A cache entry of one experiment's fit: read back as a ``FittedAlignment``, or written with
the manifest that names it (checked on reading) and says where it came from (``das-assert
cache`` reads that)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from das_assert.cache import AlignmentCache
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig, FittedAlignment
    from das_assert.models import LoadedModel

__all__ = ["load_entry", "store_entry"]


def load_entry(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig,
    resolved: Any,
    cache: AlignmentCache,
    key: str,
) -> FittedAlignment | None:
    """The cached fit of ``key``, or None (missing, bad: ``AlignmentCache.get`` warns)."""
    from das_assert.fit import FittedAlignment

    boxes = len(experiment.boxes)
    hit = cache.get(
        key, model.config.hidden_size, n_boxes=boxes, expect=_identity(model, experiment)
    )
    if hit is None:
        return None
    interchange, manifest = hit
    interchange.to(model.input_device)
    fitted = FittedAlignment(interchange, resolved, config, experiment.n_train, 0.0)
    fitted.history = manifest.get("history", [])
    fitted.from_cache = True
    fitted.tensor_sha256 = manifest.get("tensor_sha256")  # checked as it was read
    return fitted


def store_entry(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig,
    fitted: FittedAlignment,
    cache: AlignmentCache,
    key: str,
) -> None:
    """Cache ``fitted`` under ``key`` (a failed write warns: the fit is used all the same)."""
    cache.put(
        key,
        fitted.interchange,
        {
            **_identity(model, experiment),
            **_provenance(model),
            "fit": config.as_dict(),
            "train_seconds": round(fitted.train_seconds, 3),
            "history": fitted.history,
        },
    )


def _provenance(model: LoadedModel) -> dict[str, Any]:
    """What ``das-assert cache`` reads of an entry: its model's name, and the das_assert
    version, fit revision and key scheme that key it (an entry of others is never read again)."""
    from das_assert import __version__
    from das_assert.cache import FIT_REVISION, KEY_SCHEME

    return {
        "model_name": model.name,
        "das_assert_version": __version__,
        "fit_revision": FIT_REVISION,
        "key_scheme": KEY_SCHEME,
    }


def _identity(model: LoadedModel, experiment: Experiment) -> dict[str, Any]:
    """The manifest fields that say which alignment a cache entry is: written with it, and
    checked when it is read (a file under another entry's name is another alignment)."""
    return {
        "hypothesis": experiment.hypothesis,
        "variables": list(experiment.variables or ()),
        "site": str(experiment.site),
        "model": model.fingerprint,
        "n_train": experiment.n_train,
        "seed": experiment.seed,
    }
