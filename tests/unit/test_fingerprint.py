"""A model's fingerprint (the alignment cache's key) follows what the model computes.

The same model saved again keeps it, so its cached alignments are found; any setting changed
changes it, so an alignment is never served to another model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from das_assert.models import EMBEDDED_MODEL_DIR, _canonical_json, load_model


def test_the_embedded_model_saved_again_by_this_transformers_keeps_its_fingerprint(
    tmp_path: Path,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_MODEL_DIR, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR, local_files_only=True)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    assert load_model(tmp_path).fingerprint == load_model(EMBEDDED_MODEL_DIR).fingerprint


def _edit(directory: Path, name: str, key: str, value: Any) -> None:
    settings = json.loads((directory / name).read_text())
    settings[key] = value
    (directory / name).write_text(json.dumps(settings))


@pytest.mark.parametrize(
    ("name", "key", "value", "part"),
    [
        ("config.json", "rms_norm_eps", 1e-5, "config"),
        ("config.json", "a_key_das_assert_never_heard_of", 1, "config"),
        ("tokenizer_config.json", "padding_side", "left", "tokenizer"),
        ("tokenizer_config.json", "pad_token_type_id", 1, "tokenizer"),
        ("tokenizer_config.json", "max_length", 64, "tokenizer"),
        ("tokenizer_config.json", "tokenizer_class", "LlamaTokenizerFast", "tokenizer"),
    ],
)
def test_a_setting_changed_changes_the_fingerprint(
    tmp_path: Path, name: str, key: str, value: Any, part: str
) -> None:
    directory = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL_DIR, directory)
    before = load_model(directory).fingerprint
    _edit(directory, name, key, value)

    after = load_model(directory).fingerprint

    assert after[part] != before[part]
    assert {k: v for k, v in after.items() if k != part} == {
        k: v for k, v in before.items() if k != part
    }


def test_what_a_save_records_about_itself_does_not_count() -> None:
    config = {"hidden_size": 128, "transformers_version": "5.23.0"}
    assert _canonical_json(config) == _canonical_json(
        {"_name_or_path": "/models/x", "hidden_size": 128, "transformers_version": "4.57.6"}
    )
    tokenizer = {"padding_side": "right", "tokenizer_class": "PreTrainedTokenizerFast"}
    saved_again = {
        **tokenizer,
        "tokenizer_class": "TokenizersBackend",  # the same class, by its transformers 5 name
        "is_local": True,
        "local_files_only": True,
        "max_length": None,
        "pad_to_multiple_of": None,
        "pad_token_type_id": 0,
    }
    assert _canonical_json(saved_again, tokenizer_config=True) == _canonical_json(
        tokenizer, tokenizer_config=True
    )


def test_a_default_written_out_counts_once_it_is_not_the_default() -> None:
    plain = {"padding_side": "right"}
    assert _canonical_json({**plain, "pad_to_multiple_of": 8}, tokenizer_config=True) != (
        _canonical_json(plain, tokenizer_config=True)
    )
    # outside a tokenizer config the same key is an ordinary setting
    assert _canonical_json({**plain, "max_length": None}) != _canonical_json(plain)
