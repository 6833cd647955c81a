"""Shared helpers of the plugin tests (test_plugin_*.py): the das.yaml, hypothesis file, runner."""

from __future__ import annotations

from pathlib import Path

import pytest

DAS_YAML = """
models:
  tiny:
    path: {path}
    n_train: 16
    n_test: 24
    epochs: 1
    batch_size: 8
    sites:
      boundary: block_output[layer=1, pos=last]
    thresholds:
      impossible: 0.99
      trivial: 0.0
"""

HYPOTHESIS_FILE = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_an_impossible_claim_fails(das, aligned):
    das.assert_aligned(aligned, claim="impossible")


def test_a_negative_claim_holds(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")
"""


SEARCH_FILE = """
from das_assert.search import search


def test_a_search(das, das_session):
    grid = search(das_session.align, "left_boundary", layers=[0, 1], positions=["last"])
    das.record_search(grid)
"""


def _run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    """pytest on the tiny model's project: in this process (torch and transformers are imported
    already, which saves about 6 s a run), or in a subprocess for xdist's workers and for what
    this process's warning filters would change."""
    model = str(Path(pytester.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    options = [
        f"--das-model={model}",
        "--das-config=das.yaml",
        "--das-min-task-accuracy=0",
        "-p",
        "no:cacheprovider",
        *args,
    ]
    if subprocess:
        return pytester.runpytest_subprocess(*options)
    return pytester.runpytest_inprocess(*options)


def count_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sites of each ``fit_alignments`` call from now on (one list per training: a joint
    fit of two layers is ``[2]``); the runs must be in this process."""
    from das_assert import fit  # the copy every run imports (tests/plugin/conftest.py)

    fits: list[int] = []
    fit_alignments = fit.fit_alignments

    def counting(model: object, sites: list, *args: object, **kwargs: object) -> list:
        fits.append(len(sites))
        return fit_alignments(model, sites, *args, **kwargs)

    monkeypatch.setattr(fit, "fit_alignments", counting)
    return fits
