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

from das_assert.canonical import canonical_config, canonical_tokenizer_config
from das_assert.models import EMBEDDED_MODEL_DIR, load_model


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
    assert canonical_config(config) == canonical_config(
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
    assert canonical_tokenizer_config(saved_again) == canonical_tokenizer_config(tokenizer)


def test_a_default_written_out_counts_once_it_is_not_the_default() -> None:
    plain = {"padding_side": "right"}
    assert canonical_tokenizer_config({**plain, "pad_to_multiple_of": 8}) != (
        canonical_tokenizer_config(plain)
    )
    # outside a tokenizer config the same key is an ordinary setting
    assert canonical_config({**plain, "max_length": None}) != canonical_config(plain)


# What transformers 4.57.6 wrote on re-saving the embedded model (saved by 5.x), beside what 5.x
# wrote: RoPE spelt both ways, and tokenizer settings at their defaults or copied from
# tokenizer.json. The cache missed every alignment of such a re-save.
ROPE_5X = {"rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}
ROPE_457 = {**ROPE_5X, "rope_scaling": None, "rope_theta": 10000.0}


def test_a_config_saved_again_by_transformers_4_57_counts_as_the_same() -> None:
    config = {"hidden_size": 128, **ROPE_5X}
    assert canonical_config({**config, **ROPE_457}) == canonical_config(config)
    # a config written by 4.57 from scratch has no rope_parameters; 5.x folds them in
    assert canonical_config({"hidden_size": 128, "rope_theta": 10000.0}) == canonical_config(config)
    llama3 = {"rope_type": "llama3", "factor": 8.0}
    folded = canonical_config({"rope_parameters": {**llama3, "rope_theta": 5e5}})
    assert canonical_config({"rope_theta": 5e5, "rope_scaling": llama3}) == folded
    old_spelling = {"type": "llama3", "factor": 8.0}  # older configs say type for rope_type
    assert canonical_config({"rope_theta": 5e5, "rope_scaling": old_spelling}) == folded


@pytest.mark.parametrize(
    "other",
    [
        {"rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "rope_theta": 5e5},
        {
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        },
        {"rope_theta": 5e5},
        {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "rope_theta": 10000.0},
    ],
    ids=["theta-disagrees", "scaling-disagrees", "another-theta", "scaled"],
)
def test_rope_settings_that_differ_count(other: dict[str, Any]) -> None:
    assert canonical_config(other) != canonical_config(ROPE_5X)


def test_torch_dtype_of_an_older_checkpoint_and_5x_dtype_count_as_one_setting() -> None:
    # Llama-2's and Alpaca's config.json say torch_dtype; 5.x re-saves it as dtype: every
    # cache entry missed, and the model's own alignments read as transferred from another
    config = {"hidden_size": 128, **ROPE_5X}
    older = canonical_config({**config, "torch_dtype": "float16"})
    assert older == canonical_config({**config, "dtype": "float16"})
    assert older == canonical_config({**config, "dtype": "float16", "torch_dtype": "float16"})
    assert older != canonical_config({**config, "dtype": "bfloat16"})
    assert canonical_config({**config, "dtype": "bfloat16", "torch_dtype": "float16"}) not in (
        older,
        canonical_config({**config, "dtype": "bfloat16"}),
    )


def test_a_tokenizer_config_saved_again_by_transformers_4_57_counts_as_the_same() -> None:
    saved = json.loads((EMBEDDED_MODEL_DIR / "tokenizer_config.json").read_text())
    tokens = json.loads((EMBEDDED_MODEL_DIR / "tokenizer.json").read_text())["added_tokens"]
    decoder = {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in tokens}
    by_457 = {
        **saved,
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": False,
        "extra_special_tokens": {},
    }
    plain = canonical_tokenizer_config(saved, EMBEDDED_MODEL_DIR)
    assert canonical_tokenizer_config(by_457, EMBEDDED_MODEL_DIR) == plain
    changed = {**decoder, "0": {**decoder["0"], "lstrip": True}}
    for other in (
        {**saved, "added_tokens_decoder": changed},  # differs from tokenizer.json: it counts
        {**saved, "clean_up_tokenization_spaces": True},
        {**saved, "extra_special_tokens": {"sep_token": "<sep>"}},
    ):
        assert canonical_tokenizer_config(other, EMBEDDED_MODEL_DIR) != plain


def _fingerprint(directory: Path) -> dict[str, str]:
    """The fingerprint of a directory's files (it reads no weights into a model)."""
    from das_assert.models import LoadedModel

    return LoadedModel(None, None, directory, "float32", "cpu").fingerprint


def test_every_file_a_tokenizer_is_built_from_counts(tmp_path: Path) -> None:
    # A GPT-2 style directory (vocab.json and merges.txt, no tokenizer.json) kept its
    # fingerprint when merges.txt changed how amounts split, and was served the old alignment.
    directory = tmp_path / "model"
    directory.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        shutil.copy(EMBEDDED_MODEL_DIR / name, directory / name)
    (directory / "vocab.json").write_text('{"1": 0, "3": 1, "0": 2, "30": 3}')
    (directory / "merges.txt").write_text("#version: 0.2\n3 0\n")
    (directory / "special_tokens_map.json").write_text('{"eos_token": "0"}')
    before = _fingerprint(directory)
    (directory / "merges.txt").write_text("#version: 0.2\n")  # "30" no longer merges
    after_merges = _fingerprint(directory)
    assert after_merges["tokenizer"] != before["tokenizer"]
    (directory / "special_tokens_map.json").write_text('{"eos_token": "3"}')
    assert _fingerprint(directory)["tokenizer"] != after_merges["tokenizer"]
    # where tokenizer.json holds the whole tokenizer, a re-save's extra files do not count
    shutil.copy(EMBEDDED_MODEL_DIR / "tokenizer.json", directory / "tokenizer.json")
    whole = _fingerprint(directory)
    (directory / "special_tokens_map.json").write_text('{"eos_token": "1"}')
    assert _fingerprint(directory) == whole


def test_the_models_own_code_counts(tmp_path: Path) -> None:
    # with trust_remote_code, the model's code runs: an edit to it kept the fingerprint
    directory = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL_DIR, directory)
    plain = _fingerprint(directory)
    (directory / "modeling_own.py").write_text("SCALE = 1\n")
    with_code = _fingerprint(directory)
    assert with_code["config"] != plain["config"]
    (directory / "modeling_own.py").write_text("SCALE = 2\n")
    edited = _fingerprint(directory)
    assert edited["config"] != with_code["config"]
    assert (edited["weights"], edited["tokenizer"]) == (plain["weights"], plain["tokenizer"])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_python_file_that_is_not_a_regular_file_is_not_read(tmp_path: Path) -> None:
    # modeling_extra.py -> /dev/zero was read to the end: a MemoryError after 18 s at 4 GiB.
    directory = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL_DIR, directory)
    plain = _fingerprint(directory)
    (directory / "modeling_extra.py").symlink_to("/dev/zero")
    assert _fingerprint(directory) == plain
