"""One Python process that loads a model once and runs many fits (a notebook): a model changed
since it was loaded is never served or stored under the unchanged one's cache key, an
alignment from another load of the model is scored on this one, a record is the caller's own
copy, and Ctrl-C while waiting for a cache lock leaks no file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from das_assert import Experiment, FitConfig, load_model, run_experiment
from das_assert.cache import AlignmentCache, training_lock
from das_assert.errors import ModelChanged
from das_assert.restarts import run_restarts
from das_assert.sites import Site

SMALL = {"hypothesis": "left_boundary", "site": "block_output[layer=1, pos=last]"}
SIZES = {"n_train": 16, "n_test": 16, "min_task_accuracy": 0}
ONE_EPOCH = FitConfig(epochs=1, batch_size=8)


@pytest.fixture
def fresh_llama(tiny_model_dirs: dict[str, Path]) -> Any:
    """A model of its own: these tests hook and convert it."""
    return load_model(tiny_model_dirs["llama"])


def test_a_model_changed_since_it_was_loaded_is_kept_out_of_the_cache(
    fresh_llama: Any, tmp_path: Path
) -> None:
    # An ablation hook: its fit was stored under the clean model's key, and the clean model
    # was then served the ablated model's rotation, bit for bit, as "from_cache".
    cache = AlignmentCache(tmp_path, mode="readwrite")
    experiment = Experiment(**SMALL, **SIZES)
    handle = fresh_llama.model.model.layers[0].mlp.register_forward_hook(lambda m, i, out: -out)
    with pytest.raises(ModelChanged, match=r"forward hooks on model\.layers\.0\.mlp added"):
        run_experiment(fresh_llama, experiment, ONE_EPOCH, cache=cache)
    run_experiment(fresh_llama, experiment, ONE_EPOCH)  # no cache: measured as it is
    handle.remove()

    clean = run_experiment(fresh_llama, experiment, ONE_EPOCH, cache=cache)
    served = run_experiment(fresh_llama, experiment, ONE_EPOCH, cache=cache)

    assert not clean.fitted.from_cache  # nothing of the ablated model's was stored
    assert served.fitted.from_cache
    rotation = clean.fitted.interchange.rotation_matrix()
    assert torch.equal(served.fitted.interchange.rotation_matrix(), rotation)
    fresh_llama.model.to(torch.bfloat16)  # the key says float32, as loaded
    with pytest.raises(ModelChanged, match=r"since it was loaded .*--das-cache=off"):
        run_experiment(fresh_llama, experiment, ONE_EPOCH, cache=cache)


def test_an_alignment_fitted_on_another_load_of_the_model_is_scored_on_this_one(
    tiny_model_dirs: dict[str, Path],
) -> None:
    # A notebook runs its load_model() cell again: fitted= kept its hook on the old model's
    # block, which the new model's pass never runs (KeyError: ('model.layers.1', 'output')).
    first, second = (load_model(tiny_model_dirs["llama"]) for _ in range(2))
    experiment = Experiment(**SMALL, **SIZES)
    result = run_experiment(first, experiment, ONE_EPOCH)

    again = run_experiment(second, experiment, fitted=result.fitted)

    assert again.fitted.site.module is second.model.model.layers[1]
    assert again.iia == result.iia
    assert result.fitted.site.module is first.model.model.layers[1]  # the earlier result's own


def test_a_record_is_a_copy_the_caller_may_edit(tiny_llama: Any) -> None:
    result = run_restarts(tiny_llama, Experiment(**SMALL, **SIZES), ONE_EPOCH, 2)
    summary = result.summary()
    record = result.to_dict(include_pairs=False)

    record["restarts"]["by_fit_seed"].clear()
    record["engine_check"]["tolerance"] = None

    assert result.summary() == summary  # a KeyError once the record was edited
    assert result.to_dict(include_pairs=False)["engine_check"]["tolerance"] is not None


def test_ctrl_c_while_waiting_for_a_cache_lock_leaks_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    def flock(handle: int, operation: int) -> None:
        if operation & fcntl.LOCK_NB:
            raise BlockingIOError  # another run holds it
        raise KeyboardInterrupt  # the user gives up waiting

    monkeypatch.setattr("das_assert.cache.fcntl.flock", flock)
    monkeypatch.setattr("das_assert.cache._say_waiting", lambda path: None)
    cache = AlignmentCache(tmp_path, mode="readwrite")
    open_before = len(os.listdir("/proc/self/fd"))

    with pytest.raises(KeyboardInterrupt), training_lock(cache, "0" * 32):
        pass

    assert len(os.listdir("/proc/self/fd")) == open_before


def test_a_resolved_site_is_shown_without_its_block(tiny_llama: Any) -> None:
    shown = repr(Site(1).resolve(tiny_llama.model))
    assert "module_path='model.layers.1'" in shown
    assert "LlamaDecoderLayer" not in shown
