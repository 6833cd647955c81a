"""The embedded model: its files match its card, it loads like Alpaca, and it does the task."""

from __future__ import annotations

import json

import pytest

from das_assert.embedded.card import file_digests, measure_accuracy
from das_assert.models import EMBEDDED_MODEL_DIR, load_model

CARD = json.loads((EMBEDDED_MODEL_DIR / "card.json").read_text())


@pytest.fixture(scope="module")
def embedded():
    return load_model("embedded")


def test_the_shipped_files_match_the_sha256_recorded_in_the_card():
    assert file_digests(EMBEDDED_MODEL_DIR) == CARD["sha256"]


def test_the_weights_fit_the_size_budget_of_8_mb():
    assert (EMBEDDED_MODEL_DIR / "model.safetensors").stat().st_size <= 8 * 1024 * 1024


def test_it_is_a_llama_loaded_through_the_ordinary_hugging_face_path(embedded):
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    assert isinstance(embedded.model, LlamaForCausalLM)
    assert isinstance(embedded.tokenizer, PreTrainedTokenizerFast)
    assert embedded.path == EMBEDDED_MODEL_DIR


def test_digits_are_single_tokens_as_in_llama(embedded):
    tokens = embedded.tokenizer.tokenize("7.89 dollars")
    assert tokens == ["7", ".", "8", "9", "dollars"]


@pytest.mark.slow
def test_task_accuracy_on_2000_fresh_default_prompts_is_at_least_097(embedded):
    measured = measure_accuracy(embedded, "default", 2000, seed=2026)
    assert measured["accuracy"] >= 0.97, measured


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(set(CARD["accuracy"]) - {"default"}))
def test_accuracy_per_variant_family_matches_the_card(embedded, family):
    """The card's per-family numbers are reproduced within their 95% interval."""
    recorded = CARD["accuracy"][family]
    measured = measure_accuracy(embedded, family, recorded["n"], seed=CARD["accuracy_seed"])
    assert measured["correct"] == recorded["correct"], (measured, recorded)
