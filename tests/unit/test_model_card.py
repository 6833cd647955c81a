"""The embedded model's card, measured again: what it keeps from the card before it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from das_assert.embedded.card import file_digests
from das_assert.embedded.measure import carried_retrain_check, render_readme
from das_assert.models import EMBEDDED_MODEL_DIR


def test_the_shipped_card_vouches_for_the_shipped_weights() -> None:
    card = json.loads((EMBEDDED_MODEL_DIR / "card.json").read_text())
    assert card["sha256"] == file_digests(EMBEDDED_MODEL_DIR)
    assert card["retrain_check"]["sha256_matches"] is True
    assert "matched the sha256 below" in render_readme(card)


def test_a_retrain_check_is_kept_for_the_same_weights_and_dropped_for_others(
    tmp_path: Path,
) -> None:
    """Measuring the card again rewrites it from the model: the hand-written record of a timed
    retrain that reproduced the weights byte for byte was lost with it."""
    model = tmp_path / "price_tagger"
    shutil.copytree(EMBEDDED_MODEL_DIR, model)
    digests = file_digests(model)
    kept = carried_retrain_check(model, digests)
    assert kept == json.loads((model / "card.json").read_text())["retrain_check"]
    other = {**digests, "model.safetensors": "0" * 64}
    assert carried_retrain_check(model, other) is None  # it vouched for other weights
    (model / "card.json").write_text("{not json")
    assert carried_retrain_check(model, digests) is None
    (model / "card.json").unlink()
    assert carried_retrain_check(model, digests) is None


def test_the_cards_command_trains_the_same_first_phase() -> None:
    # a model trained with --steps 100 got a card whose command left --steps out
    from das_assert.embedded.measure import retrain_command

    shipped = json.loads((EMBEDDED_MODEL_DIR / "card.json").read_text())
    assert retrain_command(shipped["train_config"]) == shipped["command"]
    assert retrain_command({**shipped["train_config"], "steps": 100}).endswith(
        "--out DIR --seed 0 --steps 100"
    )


def test_a_model_without_its_training_log_is_refused_before_any_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # it measured for minutes, then stopped on a FileNotFoundError, a heatmap left behind
    from das_assert.embedded import measure

    model = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL_DIR, model)
    (model / "training_log.json").unlink()
    before = sorted(model.iterdir())
    monkeypatch.setattr(measure, "accuracy_by_family", _never)
    with pytest.raises(SystemExit) as exit_:
        measure.main(["--model", str(model)])
    assert exit_.value.code == 2
    assert f"--model {model}: no training_log.json there" in capsys.readouterr().err
    assert sorted(model.iterdir()) == before


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("measured")


def test_the_embedded_model_by_a_relative_path_or_a_link_is_the_embedded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --das-model=das_assert/embedded/price_tagger was "no settings for the model": das.yaml's
    # `embedded` entry, its baselines and the model's name went unused
    import os

    from das_assert.models import resolve_model_path

    link = tmp_path / "tagger"
    link.symlink_to(EMBEDDED_MODEL_DIR)
    monkeypatch.chdir(EMBEDDED_MODEL_DIR.parent)
    for given in ("price_tagger", "./price_tagger/", str(link), os.path.relpath(link)):
        assert resolve_model_path(given) == EMBEDDED_MODEL_DIR, given
    copy = tmp_path / "copy"
    shutil.copytree(EMBEDDED_MODEL_DIR, copy)
    assert resolve_model_path(copy) == copy  # a copy is another model directory
