"""An alignment saved from Python loads back as the same alignment, scored where it was trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from das_assert import Experiment, load_fitted, run_experiment
from das_assert.errors import AlignmentFileError, InvalidArgument
from das_assert.fit import FitConfig

CONFIG = FitConfig(epochs=1, batch_size=8)


def experiment(site: str = "block_output[layer=-1, pos=last]", **changes: Any) -> Experiment:
    fields: dict[str, Any] = {"hypothesis": "left_boundary", "site": site, "n_train": 16}
    return Experiment(**{**fields, "n_test": 16, "min_task_accuracy": 0.0, **changes})


def test_a_saved_alignment_is_scored_again_as_it_was(tiny_llama: Any, tmp_path: Path) -> None:
    result = run_experiment(tiny_llama, experiment(), CONFIG)
    path = result.save(tmp_path / "left.safetensors")
    fitted = load_fitted(path, tiny_llama)
    assert fitted.from_cache
    assert fitted.site.module_path == result.fitted.site.module_path  # layer -1 as its block
    assert torch.equal(
        fitted.interchange.rotation_matrix(), result.fitted.interchange.rotation_matrix()
    )
    again = run_experiment(tiny_llama, experiment(), fitted=fitted)
    assert again.iia == result.iia
    assert again.fitted.boundary_dims == result.fitted.boundary_dims
    with pytest.raises(InvalidArgument, match="fitted= was trained at"):
        run_experiment(tiny_llama, experiment("block_output[layer=0, pos=last]"), fitted=fitted)


def test_a_file_for_another_width_or_no_model_is_refused(tiny_llama: Any, tmp_path: Path) -> None:
    from das_assert import load_model

    result = run_experiment(tiny_llama, experiment(), CONFIG)
    path = result.save(tmp_path / "left.safetensors")
    with pytest.raises(InvalidArgument, match="a LoadedModel"):
        load_fitted(path, "embedded")  # type: ignore[arg-type]
    with pytest.raises(AlignmentFileError, match="hidden"):
        load_fitted(path, load_model())  # the embedded model is 128 wide, this file 32
    with pytest.raises(AlignmentFileError):
        load_fitted(tmp_path / "missing.safetensors", tiny_llama)


def test_a_saved_alignment_scored_again_keeps_its_own_fit_settings(
    tiny_llama: Any, tmp_path: Path
) -> None:
    # without config= the result took the default FitConfig: method boundless, epochs 3, and for
    # a `full` alignment the random-rotation control, which changed its verdict
    config = FitConfig(method="full", epochs=1, batch_size=8)
    result = run_experiment(tiny_llama, experiment(), config)
    fitted = load_fitted(result.save(tmp_path / "full.safetensors"), tiny_llama)
    again = run_experiment(tiny_llama, experiment(), fitted=fitted)
    assert again.to_dict()["fit"] == result.to_dict()["fit"]
    assert again.controls == result.controls == ("noop",)


def test_a_path_that_cannot_be_written_is_refused_in_one_readable_sentence(
    tiny_llama: Any, tmp_path: Path
) -> None:
    # the reason was put after ": ", which it brings itself: "to 'D':  is a directory"
    result = run_experiment(tiny_llama, experiment(), CONFIG)
    (tmp_path / "afile").write_text("")
    with pytest.raises(InvalidArgument) as raised:
        result.save(tmp_path)
    assert str(raised.value) == (
        f"cannot save the alignment to {str(tmp_path)!r} is a directory; name a file inside it"
    )
    with pytest.raises(InvalidArgument) as raised:
        result.save(tmp_path / "afile" / "x.safetensors")
    assert str(raised.value).endswith(
        f".safetensors': {tmp_path / 'afile'} is a file, not a directory"
    )


def test_an_older_files_other_digests_of_this_models_weights_are_no_known_transfer(
    tiny_llama: Any, tmp_path: Path
) -> None:
    # Digests of config.json and the tokenizer files changed on 2026-12-03 and 12-06: an
    # alignment saved before then on the very same model was "trained on this model's weights
    # with other config and tokenizer files", transfer true, in evaluate and --das-frozen.
    from das_assert.alignment_file import load_alignment, transfer_note, transfer_of
    from das_assert.canonical import FINGERPRINT_SCHEME

    path = run_experiment(tiny_llama, experiment(), CONFIG).save(tmp_path / "left.safetensors")
    _, manifest = load_alignment(path)
    here = dict(tiny_llama.fingerprint)
    assert manifest["fingerprint_scheme"] == FINGERPRINT_SCHEME
    assert (transfer_of(manifest, here), transfer_note(path, manifest, here)) == (False, None)
    older = {k: v for k, v in manifest.items() if k != "fingerprint_scheme"}
    older["model"] = {**here, "config": "0" * 16, "tokenizer": "1" * 16}
    assert transfer_of(older, here) is None
    assert transfer_note(path, older, here) == (
        f"{path} was trained on this model's weights; its config and tokenizer digests were "
        "made by an older das_assert, which digested those files otherwise, so whether they "
        "are this model's is not known (the JSON's transfer is null; fit and save it again to "
        "know)"
    )
    # digested the same way, they differ: a transfer; other weights are one whatever the way
    assert transfer_of({**older, "fingerprint_scheme": FINGERPRINT_SCHEME}, here) is True
    assert transfer_of({**older, "model": {**here, "weights": "2" * 16}}, here) is True
    assert "another model (weights 222222222222...)" in str(
        transfer_note(path, {**older, "model": {**here, "weights": "2" * 16}}, here)
    )


def test_claims_sharing_one_alignment_evaluate_its_transfer_once(
    tiny_llama: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --das-compare scored one module fixture's rotation on the same pairs once per claim (each
    # claim's file holds it under its own manifest): 10 claims took 6-7 s each
    from types import SimpleNamespace

    from das_assert import gate
    from das_assert.sharing import sharing

    result = run_experiment(tiny_llama, experiment(), CONFIG)
    save_to = tmp_path / "baselines" / "0001_v1"
    path = save_to.with_suffix(".json")
    session = SimpleNamespace(model=tiny_llama, save_to=save_to, baseline=(path, {}))
    evaluate, evaluated = gate.evaluate, []

    def counting(*args: Any, **kwargs: Any) -> Any:
        evaluated.append(1)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(gate, "evaluate", counting)
    entries = []
    for claim in ("kept", "dropped"):
        record = {**result.to_dict(test_id=f"test_x.py::test_{claim}"), "claim": claim}
        gate.save_claim_alignment(session, result, record)  # type: ignore[arg-type]
        entries.append(record)

    def transfer(entry: dict[str, Any]) -> dict[str, Any]:
        return gate.transfer(session, result, path, entry, entry["site"])  # type: ignore[arg-type]

    with sharing(prefix_stores=False):  # the das_session fixture's block
        shared = [transfer(entry) for entry in entries]
    assert len(evaluated) == 1
    alone = transfer(entries[1])
    assert len(evaluated) == 2  # outside the block: evaluated again, to the same numbers
    assert shared == [alone, alone]
    assert "iia" in alone


def test_a_cached_claim_holding_the_baselines_tensors_is_its_own_transfer(
    tiny_llama: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --das-compare over the alignments the baseline was saved from, read from the cache (CI's
    # rescoring): each claim was scored again with the same tensors on the same pairs
    from types import SimpleNamespace

    from das_assert import gate
    from das_assert.cache import AlignmentCache

    cache = AlignmentCache(tmp_path / "cache")
    fitted = run_experiment(tiny_llama, experiment(), CONFIG, cache=cache)
    save_to = tmp_path / "baselines" / "0001_v1"
    path = save_to.with_suffix(".json")
    session = SimpleNamespace(model=tiny_llama, save_to=save_to, baseline=(path, {}))
    record = {**fitted.to_dict(test_id="test_x.py::test_kept"), "claim": "kept"}
    gate.save_claim_alignment(session, fitted, record)  # type: ignore[arg-type]
    evaluate, evaluated = gate.evaluate, []

    def counting(*args: Any, **kwargs: Any) -> Any:
        evaluated.append(1)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(gate, "evaluate", counting)

    def transfer(result: Any) -> dict[str, Any]:
        return gate.transfer(session, result, path, record, record["site"])  # type: ignore[arg-type]

    cached = run_experiment(tiny_llama, experiment(), CONFIG, cache=cache)
    assert cached.fitted.from_cache
    own = transfer(cached)
    assert evaluated == []
    assert own == {"iia": round(cached.iia, 6), "n": cached.n, "iia_ci": own["iia_ci"]}
    # a fresh fit, or a cached one of other tensors, is scored with the baseline's
    assert transfer(fitted) == own
    assert len(evaluated) == 1
    cached.fitted.tensor_sha256 = "0" * 64
    assert transfer(cached) == own
    assert len(evaluated) == 2


def test_a_saved_alignment_scored_under_another_experiment_keeps_its_own_training(
    tiny_llama: Any, tmp_path: Path
) -> None:
    # its record (and a save of it) gave the experiment's n_train and seed, and its test pairs
    # were kept apart from the experiment's training pairs, not from those it was fitted on
    from das_assert.experiment import TEST_STREAM
    from das_assert.held_out import pair_keys
    from das_assert.saved import load_saved

    # seed 0's test stream is seed TEST_STREAM's training stream
    result = run_experiment(tiny_llama, experiment(seed=TEST_STREAM), CONFIG)
    fitted = load_fitted(result.save(tmp_path / "left.safetensors"), tiny_llama)
    assert (fitted.n_train, fitted.trained_seed) == (16, TEST_STREAM)
    again = run_experiment(tiny_llama, experiment(seed=0, n_train=40), fitted=fitted)
    record = again.to_dict()
    assert (record["n_train"], record["seed"]) == (16, 0)
    fitted_on = pair_keys(result.experiment.train_pairs())
    assert not fitted_on & pair_keys(again.evaluation.test.pairs)
    resaved = load_saved(again.save(tmp_path / "again.safetensors"), tiny_llama)[1]
    assert (resaved["n_train"], resaved["seed"]) == (16, TEST_STREAM)
    assert again.fitted.trained_seed == result.fitted.trained_seed == TEST_STREAM


def test_a_file_that_records_no_seed_is_scored_without_one_made_up(
    tiny_llama: Any, tmp_path: Path
) -> None:
    # its seed was taken as 0: test pairs kept apart from seed 0's training pairs, and a re-save
    # wrote seed 0 as though it were known
    from das_assert.alignment_file import load_alignment, save_alignment

    result = run_experiment(tiny_llama, experiment(seed=7), CONFIG)
    interchange, manifest = load_alignment(result.save(tmp_path / "a.safetensors"))
    del manifest["seed"]
    save_alignment(tmp_path / "b.safetensors", interchange, manifest)
    fitted = load_fitted(tmp_path / "b.safetensors", tiny_llama)
    assert fitted.trained_seed is None
    again = run_experiment(tiny_llama, experiment(seed=3), fitted=fitted)
    assert again.fitted.trained_seed is None  # not the seed it was scored at either
    assert load_alignment(again.save(tmp_path / "c.safetensors"))[1]["seed"] == 3  # as before
