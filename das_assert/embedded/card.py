"""Measure the embedded model's task accuracy per variant family, and write its model card.

``card.json`` beside the weights is the machine-readable card (accuracies, sha256 of every shipped
file, the training command and recipe); ``README.md`` is the same for people. A test checks that
the shipped files still match ``card.json`` and that the accuracies still hold.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from das_assert.embedded.recipe import FAMILIES, family_example

__all__ = ["accuracy_by_family", "file_digests", "measure_accuracy"]

SHIPPED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of each shipped file."""
    return {
        name: hashlib.sha256((Path(directory) / name).read_bytes()).hexdigest()
        for name in SHIPPED_FILES
    }


def measure_accuracy(model: Any, family: str, n: int, *, seed: int, batch_size: int = 100) -> dict:
    """Task accuracy of ``model`` (a LoadedModel) on ``n`` fresh prompts of one family."""
    import torch

    from das_assert.metrics import wilson_interval

    rng = random.Random(f"{family}:{seed}")
    examples = [family_example(family, rng) for _ in range(n)]
    hits = 0
    tokenizer = model.tokenizer
    for start in range(0, n, batch_size):
        chunk = examples[start : start + batch_size]
        texts = [fmt.render(inputs).text for fmt, inputs in chunk]
        answers = [
            model.answer_id(text, fmt.answer(inputs["lo"] <= inputs["x"] <= inputs["hi"]))
            for text, (fmt, inputs) in zip(texts, chunk, strict=True)
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model.model(**encoded.to(model.input_device)).logits
        last = encoded["attention_mask"].sum(dim=1) - 1
        predicted = logits[torch.arange(len(chunk)), last].argmax(-1).cpu()
        hits += int((predicted == torch.tensor(answers)).sum())
    low, high = wilson_interval(hits, n)
    return {"n": n, "correct": hits, "accuracy": hits / n, "ci95": [low, high]}


def accuracy_by_family(
    model: Any, *, n_default: int = 2000, n_other: int = 500, seed: int = 1
) -> dict:
    """``family -> accuracy record`` for every family of ``recipe.FAMILIES``."""
    return {
        family: measure_accuracy(
            model, family, n_default if family == "default" else n_other, seed=seed
        )
        for family in FAMILIES
    }


def write_card(directory: Path, card: dict[str, Any], readme: str) -> None:
    from das_assert.store import atomic_write_bytes, atomic_write_json

    atomic_write_json(Path(directory) / "card.json", card)
    atomic_write_bytes(Path(directory) / "README.md", readme.encode())
