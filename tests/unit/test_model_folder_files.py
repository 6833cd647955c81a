"""The files of a model folder that are not the model: what transformers does not load never
counts in the fingerprint, a clone without git-lfs is named as one, and a cache never goes
into the model's own folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from das_assert.cache import AlignmentCache
from das_assert.errors import ConfigError, ModelLoadError
from das_assert.models import EMBEDDED_MODEL_DIR, load_model
from das_assert.weight_checks import loaded_weight_files, refuse_pickled_weights


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL_DIR, directory)
    return directory


def _stray_safetensors(path: Path) -> None:
    import torch

    save_file({"lora_A": torch.zeros(2, 2)}, str(path))


def test_a_safetensors_file_beside_the_weights_leaves_the_fingerprint_alone(
    model_copy: Path,
) -> None:
    before = load_model(model_copy).fingerprint
    _stray_safetensors(model_copy / "adapter_model.safetensors")  # a LoRA saved beside it

    assert load_model(model_copy).fingerprint == before
    assert loaded_weight_files(model_copy) == [model_copy / "model.safetensors"]


def test_the_shards_an_index_lists_are_the_weights(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors", '
        '"b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}'
    )
    _stray_safetensors(tmp_path / "consolidated.safetensors")  # Mistral's, beside its shards

    assert loaded_weight_files(tmp_path) == [
        tmp_path / "model-00001-of-00002.safetensors",
        tmp_path / "model-00002-of-00002.safetensors",
    ]


def test_pickled_weights_beside_a_stray_safetensors_file_are_refused_as_pickles(
    tmp_path: Path,
) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    _stray_safetensors(tmp_path / "adapter_model.safetensors")

    with pytest.raises(ModelLoadError, match="only as pickle files"):
        refuse_pickled_weights(tmp_path)


def test_a_cache_in_the_model_folder_is_refused(model_copy: Path) -> None:
    with pytest.raises(ConfigError, match="is a model directory") as caught:
        AlignmentCache(model_copy).check_usable()
    assert "--das-cache-dir" in str(caught.value)
    AlignmentCache(model_copy / "das_cache").check_usable()  # a folder of its own: fine


def test_a_cache_folder_linked_to_nothing_says_so(tmp_path: Path) -> None:
    link = tmp_path / "cache"
    os.symlink(tmp_path / "gone", link)  # a CI cache linked to a mount that is not there

    with pytest.raises(ConfigError, match=r"symbolic link to .*gone, which does not exist"):
        AlignmentCache(link).check_usable()


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_git_lfs_pointers_are_named_with_the_command_that_fetches_them(
    model_copy: Path, name: str
) -> None:
    (model_copy / name).write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 12345\n"
    )

    with pytest.raises(ModelLoadError, match="Git LFS pointer") as caught:
        load_model(model_copy)
    assert name in str(caught.value)
    assert "git lfs pull" in str(caught.value)
