"""A saved alignment records the float type it was fitted in, and ``evaluate`` says where it
scores it in another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from das_assert.alignment_file import load_alignment
from das_assert.cli import main

pytestmark = pytest.mark.slow
SMALL = ["--hypothesis=left_boundary", "--layer=0", "--n-train=64", "--n-test=64", "--epochs=1"]


def test_an_alignment_fitted_in_bfloat16_and_scored_in_float32_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # nothing recorded the fit's float type: a bfloat16 fit scored on the float32 model read as
    # a fit of that model
    saved, report = tmp_path / "bf16.safetensors", tmp_path / "eval.json"
    assert main(["fit", *SMALL, "--dtype=bfloat16", f"--save={saved}"]) == 0
    assert load_alignment(saved)[1]["dtype"] == "bfloat16"
    capsys.readouterr()
    assert main(["evaluate", f"--alignment={saved}", "--n-test=64", f"--json={report}"]) == 0
    printed = capsys.readouterr().out
    assert f"note: {saved} was fitted in bfloat16; scored here in float32" in printed
    (record,) = json.loads(report.read_text())["results"]
    assert record["alignment"]["trained_dtype"] == "bfloat16"
    evaluate = ["evaluate", f"--alignment={saved}", "--n-test=64", "--dtype=bfloat16"]
    assert main(evaluate) == 0
    assert "was fitted in" not in capsys.readouterr().out
