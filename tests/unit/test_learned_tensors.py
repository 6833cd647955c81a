"""The README's "The learned tensors" block reads an alignment's rotation and boxes as the engine
uses them: its ``swapped`` is the engine's own intervention on the same two activations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from das_assert import Experiment, FitConfig, run_experiment

README = Path(__file__).resolve().parents[2] / "README.md"


def _block() -> str:
    text = README.read_text()
    start = text.index("**The learned tensors.**")
    (code,) = re.findall(
        r"```python\n(.*?)```", text[start : text.index("**An ablated", start)], re.S
    )
    return code


def test_the_readmes_subspace_swap_is_the_engines_intervention(tiny_llama: Any) -> None:
    experiment = Experiment(
        hypothesis="left_boundary", site="block_output[layer=1, pos=last]", n_train=16, n_test=16
    )
    result = run_experiment(
        tiny_llama, experiment.keeping_definition(min_task_accuracy=0.0), FitConfig(epochs=1)
    )
    scope: dict[str, Any] = {"result": result}
    torch.manual_seed(0)
    exec(_block(), scope)  # the README's own code, run as a user would
    h, s = scope["h"], scope["s"]
    assert 0 < int(scope["boxes"][0].sum()) < h.numel()  # a box neither empty nor everything
    with torch.no_grad():
        engine = result.fitted.interchange(h[None], s[None], torch.tensor([0]), hard=True)[0]
    torch.testing.assert_close(scope["swapped"], engine, rtol=1e-5, atol=1e-5)
