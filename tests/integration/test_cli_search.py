"""``python -m das_assert search`` on the embedded model, as a user runs it: every cell fitted and
scored, the JSON report holds each cell's record and the grid, the heatmap is a PNG, and the exit
code is the best cell's verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from das_assert.cli import main

pytestmark = pytest.mark.slow

LAYERS, POSITIONS = [0, 3], ["last", "before:amount"]


def test_a_cli_search_reports_every_cell_and_fails_when_its_best_cell_misses_the_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, heatmap = tmp_path / "search.json", tmp_path / "plots" / "search.png"
    argv = [
        "search",
        "--hypothesis=left_boundary",
        "--layers",
        *map(str, LAYERS),
        "--positions",
        *POSITIONS,
        "--n-train=320",
        "--epochs=1",
        "--n-test=200",
        "--threshold=0.99",  # no cell of this model reaches it: the claim fails, exit 1
        f"--json={report}",
        f"--png={heatmap}",
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    written = json.loads(report.read_text())
    grid, records = written["search"], written["results"]
    assert grid["layers"] == LAYERS
    assert grid["positions"] == POSITIONS
    by_site = {r["site"]["canonical"]: r for r in records}
    assert len(by_site) == len(records) == 4
    for row, layer in zip(grid["iia"], LAYERS, strict=True):
        for iia, position in zip(row, POSITIONS, strict=True):
            record = by_site[f"block_output[layer={layer}, pos={position}]"]
            assert record["iia"] == pytest.approx(iia)
            assert record["n_test"] == 200
            assert record["verdict"] == "not_aligned"
            assert f"{iia:.3f} [{record['iia_ci'][0]:.3f}, {record['iia_ci'][1]:.3f}]" in out
    best = grid["best"]
    assert best["iia"] == max(r["iia"] for r in records)
    assert f"best: IIA {best['iia']:.3f} (n=200" in out
    # The verdict is read on as many fresh pairs: the test pairs chose the cell.
    confirmation = best["confirmation"]
    assert confirmation["test_pairs"] == "confirmation"
    assert confirmation["n_test"] == 200
    assert (
        confirmation["site"]["canonical"]
        == f"block_output[layer={best['layer']}, pos={best['position']}]"
    )
    assert f"best, on fresh pairs: IIA {confirmation['iia']:.3f} (n=200 fresh pairs" in out
    assert f"verdict of the best cell: {confirmation['verdict']}" in out
    assert confirmation["verdict"] == "not_aligned"
    # its pairs recompute the number the verdict follows (the record carried none)
    assert len(confirmation["pairs"]) == 200
    correct = sum(pair["correct"] for pair in confirmation["pairs"])
    assert correct == confirmation["iia_successes"]
    assert heatmap.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in heatmap.parent.iterdir()] == ["search.png"]  # no temporary left
