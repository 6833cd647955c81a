"""The README's "From Python" example runs as written and prints what the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.slow


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_readmes_python_example_prints_what_the_readme_shows() -> None:
    section = _section(README.read_text(), "From Python")
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, flags=re.DOTALL)[:2]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    # Another kind of CPU, or thread count, rounds floats otherwise (the README's "What a run
    # looks like" gives the drift): the words must match, the numbers nearly.
    number = re.compile(r"\d+\.\d+|\d+")
    assert number.sub("#", run.stdout) == number.sub("#", shown)
    for got, want in zip(number.findall(run.stdout), number.findall(shown), strict=True):
        if "." in want:
            assert float(got) == pytest.approx(float(want), abs=0.03), (got, want)
        else:
            assert int(got) == pytest.approx(int(want), rel=0.1), (got, want)
