"""The two-phase training recipe of the embedded model runs end to end (a tiny smoke version)."""

from __future__ import annotations

import json

from das_assert.embedded.train import TrainConfig, train_embedded
from das_assert.errors import OutputWriteError
from das_assert.models import EMBEDDED_MODEL_DIR, load_model


def tiny(steps: int, focus_steps: int) -> TrainConfig:
    """The recipe's two phases at a toy size: seconds, not half an hour."""
    return TrainConfig(
        steps=steps,
        focus_steps=focus_steps,
        batch_size=4,
        warmup_steps=1,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        threads=1,
    )


def test_a_tiny_two_phase_training_saves_a_loadable_llama_directory(tmp_path):
    log = train_embedded(tmp_path, tiny(steps=3, focus_steps=2), log_every=1)
    assert [entry["step"] for entry in log["history"]] == [1, 2, 3, 4, 5]
    loaded = load_model(tmp_path)
    assert loaded.config.model_type == "llama"
    assert loaded.config.num_hidden_layers == 1
    # A class name transformers 4.x has too (5.x would write TokenizersBackend, 4.x lacks it).
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast"
    shipped = json.loads((EMBEDDED_MODEL_DIR / "tokenizer_config.json").read_text())
    assert shipped["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_training_is_deterministic_for_a_seed(tmp_path):
    cfg = tiny(steps=2, focus_steps=1)
    train_embedded(tmp_path / "a", cfg, log_every=1)
    train_embedded(tmp_path / "b", cfg, log_every=1)
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("a", "b")]
    assert weights[0] == weights[1]


def test_a_save_that_fails_midway_leaves_no_half_written_model(tmp_path, monkeypatch):
    import pytest
    from transformers import PreTrainedTokenizerFast

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", disk_full)
    out = tmp_path / "model"
    # one message naming the place and the fix (the command line's exit 2), not "unexpected
    # error ... please report it" with a traceback after a half-hour of training
    with pytest.raises(OutputWriteError, match=r"could not write .*model \(No space left"):
        train_embedded(out, tiny(steps=1, focus_steps=1), log_every=1)
    assert list(tmp_path.iterdir()) == []  # no model directory, no staging directory


def test_training_never_writes_over_a_model_directory(tmp_path):
    import pytest

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds files"):
        train_embedded(tmp_path, tiny(steps=1, focus_steps=1), log_every=1)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_an_existing_empty_directory_is_written_in_place_even_as_dot_or_a_symlink(
    tmp_path, monkeypatch
):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    train_embedded(".", tiny(steps=1, focus_steps=1), log_every=1)  # type: ignore[arg-type]
    assert load_model(here).config.num_hidden_layers == 1
    assert not [p for p in here.iterdir() if p.name.startswith(".")]  # no staging left
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    train_embedded(tmp_path / "link", tiny(steps=1, focus_steps=1), log_every=1)
    assert (tmp_path / "link").is_symlink()
    assert (target / "config.json").is_file()
