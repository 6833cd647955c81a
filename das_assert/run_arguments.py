"""The arguments of ``run_experiment`` and ``run_restarts``, checked at the call: one that is
swapped, of another type or not theirs (a training setting, an experiment's field) gets one
error that says where it belongs, not an AttributeError mid-run."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from das_assert.cache import AlignmentCache
from das_assert.errors import ConfigError, InvalidArgument, did_you_mean, shown_value
from das_assert.experiment import Experiment
from das_assert.fit import FitConfig, FittedAlignment
from das_assert.models import LoadedModel

__all__ = ["check_run_arguments", "unknown_run_keyword"]


def unknown_run_keyword(given: dict[str, Any]) -> str:
    """What the first keyword ``run_experiment`` does not take should be instead."""
    name, value = next(iter(given.items()))
    if name in {f.name for f in fields(FitConfig)}:
        return (
            f"run_experiment() takes no {name}: a training setting; pass "
            f"config=FitConfig({name}={value!r})"
        )
    if name in {f.name for f in fields(Experiment)}:
        return (
            f"run_experiment() takes no {name}: the experiment's; make it "
            f"Experiment(..., {name}={value!r})"
        )
    return (
        f"run_experiment() has no argument {name!r}.{did_you_mean(name, _RUN_KEYWORDS)} It takes: "
        f"model, experiment, {', '.join(_RUN_KEYWORDS)}."
    )


_RUN_KEYWORDS = ("config", "cache", "fitted")


def check_run_arguments(model: Any, experiment: Any, config: Any, cache: Any, fitted: Any) -> None:
    """Refuse arguments of the wrong type at the call, not as an AttributeError mid-run."""
    if isinstance(model, Experiment) and isinstance(experiment, LoadedModel):
        raise InvalidArgument(
            "run_experiment(experiment, model): the arguments are swapped; call "
            "run_experiment(model, experiment)"
        )
    if not isinstance(model, LoadedModel):
        load = f"load_model({model!r})" if isinstance(model, str) else "load_model(path)"
        saved = (  # a model in memory: das_assert reads a directory, as its fingerprint hashes it
            " (a model in memory: model.save_pretrained(path) and "
            "tokenizer.save_pretrained(path) first)"
            if hasattr(model, "save_pretrained")
            else ""
        )
        raise InvalidArgument(
            f"model={shown_value(model)}: a LoadedModel, not {type(model).__name__}; load it "
            f"first: run_experiment({load}, experiment){saved}"
        )
    if not isinstance(experiment, Experiment):
        raise InvalidArgument(
            f"experiment={shown_value(experiment)}: an Experiment, not "
            f"{type(experiment).__name__}, e.g. "
            "Experiment(hypothesis='left_boundary', site='block_output[layer=1, pos=last]')"
        )
    if config is not None and not isinstance(config, FitConfig):
        example = "FitConfig(**config)" if isinstance(config, dict) else "FitConfig(epochs=1)"
        raise InvalidArgument(
            f"config={shown_value(config)}: a FitConfig, not {type(config).__name__}, "
            f"e.g. {example}"
        )
    if cache is not None and not isinstance(cache, AlignmentCache):
        raise InvalidArgument(
            f"cache={shown_value(cache)}: an AlignmentCache, not {type(cache).__name__}, e.g. "
            "das_assert.cache.AlignmentCache(Path('.das_cache'))"
        )
    if cache is not None and not cache.writes and not Path(cache.directory).is_dir():
        raise ConfigError(
            f"AlignmentCache(mode={cache.mode!r}): its directory {cache.directory} does not "
            "exist, so there is nothing to read and the alignment would train unseen; give the "
            "directory a run wrote, or mode='readwrite'"
        )
    if fitted is not None and not isinstance(fitted, FittedAlignment):
        raise InvalidArgument(
            f"fitted={shown_value(fitted)}: a FittedAlignment (an earlier result's .fitted), not "
            f"{type(fitted).__name__}; load a saved alignment file with "
            "das_assert.load_fitted(path, model)"
        )
