"""A causal model of your own on the command line: fitted and saved with ``--causal-models``,
evaluated later; an edited definition under the same name is noted, not silently scored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from das_assert.cli import main
from das_assert.tasks import registry
from das_assert.tasks.price_tagging import CAUSAL_MODELS, INTERVENED_VARIABLES

pytestmark = pytest.mark.slow

MODELS = """
from das_assert import CausalModel, register_causal_model

register_causal_model(
    CausalModel(
        name="cli_right_boundary",
        inputs=("lo", "hi", "x"),
        mechanisms={{
            "right": lambda x, hi: x <= hi{edit},
            "answer": lambda right, x, lo: right and x >= lo,
        }},
        output="answer",
    ),
    intervened=("right",),
    replace=True,  # this test process registers both versions
)
"""


@pytest.fixture(autouse=True)
def restored_registry(imported_models_files_let_go: None) -> Iterator[None]:
    tables = (CAUSAL_MODELS, INTERVENED_VARIABLES, registry._registered)
    saved = [dict(table) for table in tables]
    yield
    for live, before in zip(tables, saved, strict=True):
        live.clear()
        live.update(before)


def test_an_edited_causal_model_is_noted_when_a_saved_alignment_is_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models, edited, saved = tmp_path / "m.py", tmp_path / "edited.py", tmp_path / "a.safetensors"
    models.write_text(MODELS.format(edit=""))
    edited.write_text(MODELS.format(edit=" - 20"))
    small = ["--n-train=120", "--epochs=1", "--n-test=40"]
    fit = ["fit", f"--causal-models={models}", "--hypothesis=cli_right_boundary", "--layer=0"]
    assert main([*fit, *small, f"--save={saved}"]) == 0
    assert "IIA" in capsys.readouterr().out
    evaluate = ["evaluate", f"--alignment={saved}", "--n-test=40"]
    assert main([*evaluate, f"--causal-models={models}"]) == 0
    assert "another definition" not in capsys.readouterr().out
    assert main([*evaluate, f"--causal-models={edited}"]) == 0
    assert "trained under another definition of cli_right_boundary" in capsys.readouterr().out


def test_check_reads_the_causal_models_its_hypothesis_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # check took --causal-models but never read it: "unknown causal model", and without
    # --hypothesis "write --causal-models in full", which it was
    models = tmp_path / "m.py"
    models.write_text(MODELS.format(edit=""))
    check = ["check", f"--causal-models={models}", "--n-test=16", "--positions", "last"]
    assert main([*check, "--hypothesis=cli_right_boundary"]) in (0, 1)  # 1: under the gate
    out = capsys.readouterr()
    assert "error" not in out.err
    assert "task accuracy" in out.out
