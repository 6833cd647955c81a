"""Models and tokenizers unlike the embedded one: a sliding-window cache, no padding token."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from das_assert.data import encode
from das_assert.embedded.recipe import build_tokenizer
from das_assert.evaluate import evaluate
from das_assert.fit import FitConfig, fit_alignment
from das_assert.models import load_model
from das_assert.positions import parse_position
from das_assert.sites import BLOCK_PATHS, Site
from das_assert.tasks.price_tagging import prompt_pairs


def _save(directory: Path, architecture: str, words: Any, **changes: Any) -> Path:
    """A tiny random ``architecture`` model (2 layers, width 32) with tokenizer ``words``."""
    import transformers

    config = getattr(transformers, f"{architecture}Config")(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        **changes,
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    words.save_pretrained(directory)
    return directory


def test_a_sliding_window_shorter_than_the_prompt_runs_every_pass_in_full(tmp_path: Path) -> None:
    # Its cache forgets tokens and cannot be cut back to a prefix: the prefix passes crashed.
    loaded = load_model(
        _save(tmp_path / "mistral", "Mistral", build_tokenizer(), sliding_window=16)
    )
    train = encode(loaded, prompt_pairs("left_boundary", 16, seed=0), parse_position("last-2"))
    test = encode(loaded, prompt_pairs("left_boundary", 16, seed=1), parse_position("last-2"))
    assert train.base_ids.shape[1] > 16
    site = Site(0, "last-2").resolve(loaded.model)
    config_fast = FitConfig(epochs=1, batch_size=8)
    fitted = fit_alignment(loaded.model, site, train, config_fast)
    plain = fit_alignment(loaded.model, site, train, replace(config_fast, prefix_cache=False))
    assert torch.equal(fitted.interchange.widths, plain.interchange.widths)
    fast = evaluate(loaded.model, fitted, test)
    slow = evaluate(loaded.model, fitted, test, prefix_cache=False)
    assert torch.equal(fast.predicted, slow.predicted)


def test_a_tokenizer_without_pad_eos_or_unk_pads_with_any_id(tmp_path: Path) -> None:
    words = copy.deepcopy(build_tokenizer())
    words.pad_token = words.eos_token = words.unk_token = None
    words.padding_side = "left"
    loaded = load_model(_save(tmp_path / "nopad", "Llama", words))
    # left as its files set it up: das_model.tokenizer is the user's too (it padded on the
    # right, with a pad token added, whatever the files said)
    assert (loaded.tokenizer.pad_token, loaded.tokenizer.padding_side) == (None, "left")
    encoded = encode(loaded, prompt_pairs("left_boundary", 6, seed=0), parse_position("last"))
    assert encoded.base_mask.sum(dim=1).tolist() == [row + 1 for row in encoded.base_last.tolist()]


def test_a_relative_path_in_das_yaml_is_read_from_its_folder(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from das_assert.settings import find_model_settings, load_settings

    (tmp_path / "suite").mkdir()
    (tmp_path / "models" / "mine").mkdir(parents=True)
    settings_file = tmp_path / "suite" / "das.yaml"
    settings_file.write_text(
        "models:\n  alpaca:\n    path: ../models/mine\n    sites: {boundary: "
        '"block_output[layer=0, pos=last]"}\n    thresholds: {left_boundary: 0.8}\n'
    )
    monkeypatch.chdir(tmp_path / "models" / "mine")  # not where the path is relative to
    settings = load_settings(settings_file)
    found = find_model_settings(settings, tmp_path / "models" / "mine", embedded=False)
    assert found.key == "alpaca"
    assert find_model_settings(settings, Path("/elsewhere"), embedded=False, key="alpaca") is found


def test_a_model_type_not_in_block_paths_has_its_blocks_found(tmp_path: Path) -> None:
    # Phi is not listed: its blocks are the one ModuleList as long as num_hidden_layers.
    loaded = load_model(_save(tmp_path / "phi", "Phi", build_tokenizer()))
    assert loaded.config.model_type not in BLOCK_PATHS
    site = Site(-1, "last-2").resolve(loaded.model)
    assert (site.module_path, site.module) == ("model.layers.1", loaded.model.model.layers[1])
    train = encode(loaded, prompt_pairs("left_boundary", 16, seed=0), parse_position("last-2"))
    config_fast = FitConfig(epochs=1, batch_size=8)
    fitted = fit_alignment(loaded.model, site, train, config_fast)
    plain = fit_alignment(loaded.model, site, train, replace(config_fast, prefix_cache=False))
    assert torch.equal(fitted.interchange.widths, plain.interchange.widths)
    fast = evaluate(loaded.model, fitted, train)
    slow = evaluate(loaded.model, fitted, train, prefix_cache=False)
    assert torch.equal(fast.predicted, slow.predicted)


def test_buffers_that_older_checkpoints_saved_are_not_refused_as_weights(tmp_path: Path) -> None:
    """GPT-Neo checkpoints from before transformers made its causal mask non-persistent carry
    ``attn.attention.bias`` and ``masked_bias``; Llama's carried ``rotary_emb.inv_freq`` per
    layer. They are buffers the model recomputes, not weights: loading must not refuse them."""
    import transformers
    from safetensors.torch import load_file, save_file

    words = build_tokenizer()
    config = transformers.GPTNeoConfig(
        vocab_size=len(words), hidden_size=32, num_layers=2, num_heads=4,
        attention_types=[[["global", "local"], 1]], max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    words.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    for layer in (0, 1):
        weights[f"transformer.h.{layer}.attn.attention.bias"] = torch.ones(1, 1, 256, 256)
        weights[f"transformer.h.{layer}.attn.attention.masked_bias"] = torch.tensor(-1e9)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert load_model(tmp_path).config.model_type == "gpt_neo"
