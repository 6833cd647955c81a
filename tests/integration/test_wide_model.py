"""A model as wide as the rotation's fast paths start (``rotation.ACTION_MIN_D``), end to end on
the defaults.

The other tests reach the fast paths by lowering their thresholds on tiny models; this one runs
the command line as a user would on a wider model: training applies the rotation to the batch's
rows without forming it, the saved alignment holds the rotation that was learned, and
``evaluate`` scores it again to the same IIA.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from das_assert import rotation
from das_assert.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-block random Llama as wide as the action path starts, with the embedded tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from das_assert.embedded.recipe import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=rotation.ACTION_MIN_D,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=8,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,
        initializer_range=0.5,  # wide enough weights that the answers vary from prompt to prompt
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("wide_llama")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_cli_fit_at_the_action_paths_width_trains_through_the_action_and_saves_what_it_learned(
    wide_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions: list[Any] = []
    original = rotation.RowRotation.__init__

    def counted(self: Any, module: Any) -> None:
        original(self, module)
        actions.append((self.degree, self.steps))

    monkeypatch.setattr(rotation.RowRotation, "__init__", counted)
    common = [
        f"--model={wide_model_dir}",
        "--hypothesis=left_boundary",
        "--n-test=32",
        "--min-task-accuracy=0",  # random weights: the task cannot be done, the mechanics can
    ]
    saved, fitted = tmp_path / "alignment.safetensors", tmp_path / "fit.json"
    argv = ["fit", *common, "--layer=0", "--n-train=32", "--epochs=1", "--batch-size=8"]
    assert main([*argv, f"--save={saved}", f"--json={fitted}"]) == 0
    assert len(actions) == 4  # one per training step: 32 pairs in batches of 8
    assert all(degree >= 1 and steps >= 1 for degree, steps in actions)
    scored = tmp_path / "evaluate.json"
    assert main(["evaluate", *common, f"--alignment={saved}", f"--json={scored}"]) == 0
    assert len(actions) == 4  # evaluation forms the rotation; it trains nothing
    first, again = (json.loads(path.read_text()) for path in (fitted, scored))
    (first,), (again,) = first["results"], again["results"]
    # Random weights answer neither Yes nor No (IIA 0), so compare what the model said instead:
    # every intervened prediction, under the rotation as trained and as saved.
    assert [p["predicted"] for p in again["pairs"]] == [p["predicted"] for p in first["pairs"]]
    assert len(first["pairs"]) == 32
    assert len({p["predicted"] for p in first["pairs"]}) > 1
    assert again["boundary_dims"] == first["boundary_dims"]
