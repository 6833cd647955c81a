"""``gpu_session.sh``, the one device call, run here with ``python3``, ``pip`` and ``nvidia-smi``
replaced by stubs that record their arguments: which steps it runs, and that the scripts can
import das_assert from the checkout where its install failed. A device call comes rarely and
costs minutes a try, so a mistake here must show before one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "gpu_session.sh"
REPO = Path(__file__).parents[2]

_STUB = """#!/bin/sh
echo "$*|PYTHONPATH=${PYTHONPATH:-}" >> "$CALLS"
case "$*" in *"pip install"*) exit 1;; esac
exit 0
"""


def _run(tmp_path: Path, **env: str) -> list[str]:
    """The calls to python3 that the script made, each as ``arguments|PYTHONPATH=...``."""
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True)
    for name in ("python3", "nvidia-smi"):
        (stubs / name).write_text(_STUB)
        (stubs / name).chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    calls = tmp_path / "calls.txt"
    environment = {
        **os.environ,
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "OUT": str(out),
        "CALLS": str(calls),
        **env,
    }
    environment.pop("PYTHONPATH", None)
    subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, env=environment, capture_output=True, timeout=60
    )
    return [line for line in calls.read_text().splitlines() if "gpu_7b.py" in line]


def test_by_default_it_compares_then_runs_the_other_stages_with_the_checkout_importable(
    tmp_path: Path,
) -> None:
    runs = _run(tmp_path)
    assert len(runs) == 2
    assert "--stages" not in runs[0]  # the comparison first
    assert "--stages" in runs[1]
    for run in runs:  # the stub's editable install failed: das_assert from the checkout
        assert str(REPO) in run.partition("|PYTHONPATH=")[2].split(":")


def test_compare_0_leaves_the_comparison_out_of_a_second_call(tmp_path: Path) -> None:
    runs = _run(tmp_path, COMPARE="0")
    assert len(runs) == 1
    assert "--stages" in runs[0]
    assert _run(tmp_path / "again", COMPARE="0", EXTRAS="") == []


def test_the_torch_compile_stage_whose_compile_time_is_unknown_runs_last(tmp_path: Path) -> None:
    (run,) = _run(tmp_path, COMPARE="0")
    stages = run.split("--stages ")[1].split()[0].split(",")
    assert stages[-1] == "compiled"
