"""``das_assert baselines``: every saved baseline of a directory with what it holds, and every
numbered folder that holds none (a run saving now, a killed run's, a baseline's lost JSON)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from das_assert.baseline import RESERVED_BY, save_baseline
from das_assert.baseline_list import baseline_listing, listing_text
from das_assert.cli import main

SITE = "block_output[layer=0, pos=last]"


def _claim(test: str, passed: bool) -> dict[str, Any]:
    return {
        "test_id": f"hypotheses/test_x.py::{test}",
        "claim": "left_boundary",
        "hypothesis": "left_boundary",
        "site": {"canonical": SITE},
        "iia": 0.8,
        "iia_ci": [0.77, 0.83],
        "passed": passed,
    }


def _search(cells: int) -> dict[str, Any]:
    return {
        "test_id": "hypotheses/test_where.py::test_search",
        "cells": [
            {"site": f"block_output[layer={i}, pos=last]", "iia": 0.7, "n": 800}
            | {"alignment_file": f"{i}"}
            | {"request": {}, "baseline_key": f"hypotheses/test_where.py::test_search::{i}"}
            for i in range(cells)
        ],
    }


def _save(path: Path, claims: list[dict[str, Any]], searches: list[dict[str, Any]]) -> None:
    model = {"fingerprint": {"weights": "3242004d9499b1b6"}}
    save_baseline(path, model=model, environment={}, records=claims, searches=searches)


@pytest.fixture
def baselines(tmp_path: Path) -> Path:
    """Two saved baselines of model ``embedded``, one of them with a failed claim and a search;
    a folder reserved now, one reserved two days ago, one whose JSON is gone, and a baseline
    whose JSON was edited."""
    folder = tmp_path / "embedded"
    folder.mkdir()
    _save(folder / "0001_v1.json", [_claim("test_a", True)], [])
    _save(
        folder / "0002_main.json", [_claim("test_a", True), _claim("test_b", False)], [_search(3)]
    )
    for name, age in (("0003_main", 0), ("0004_v2", 2 * 24 * 3600)):
        (folder / name).mkdir()
        marker = folder / name / RESERVED_BY
        marker.write_text("another run's token")
        os.utime(marker, (time.time() - age, time.time() - age))
    (folder / "0002_main").mkdir()  # a saved baseline's alignment folder: not listed apart
    (folder / "0000_lost").mkdir()
    edited = folder / "0005_edited.json"
    _save(edited, [_claim("test_a", True)], [])
    edited.write_text(edited.read_text().replace("0.8", "0.9"))
    (tmp_path / "notes.txt").write_text("not a model folder")
    return tmp_path


def test_each_baseline_is_listed_with_what_it_holds(baselines: Path) -> None:
    (block,) = baseline_listing(baselines)["models"]
    assert block["model"] == "embedded"
    assert block["latest"] == "0005_edited"  # what --das-compare=latest takes, readable or not
    first, second, edited = block["baselines"]
    assert (first["number"], first["name"], first["claims"], first["failed"]) == (
        "0001",
        "v1",
        1,
        0,
    )
    assert (second["claims"], second["failed"], second["search_cells"]) == (2, 1, 3)
    assert second["weights"] == "3242004d9499b1b6"
    assert second["saved_at_from"] == "baseline"
    assert "checksum" in edited["error"]
    states = {other["folder"]: other["state"] for other in block["other_folders"]}
    assert states == {"0000_lost": "orphaned", "0003_main": "reserved", "0004_v2": "abandoned"}


def test_the_listing_reads_as_a_table_with_a_line_for_each_folder_without_a_baseline(
    baselines: Path,
) -> None:
    text = listing_text(baseline_listing(baselines))
    lines = text.splitlines()
    assert lines[0] == f"{baselines / 'embedded'}: 3 baselines; latest = 0005_edited"
    assert lines[1].split() == [
        "number",
        "name",
        "saved",
        "(UTC)",
        "claims",
        "search",
        "cells",
        "weights",
    ]
    assert lines[3].split()[:2] == ["0002", "main"]
    assert "2 (1 failed)" in lines[3]
    assert any(line.startswith("  0005_edited.json: unreadable: ") for line in lines)
    assert "  0000_lost/: no baseline JSON beside it" in text
    assert "  0003_main/: reserved by a run since " in text
    assert "  0004_v2/: reserved since " in text
    assert "never finished (killed?)" in text


def test_a_baseline_saved_before_it_recorded_its_time_shows_the_files(tmp_path: Path) -> None:
    path = tmp_path / "m" / "0001_old.json"
    path.parent.mkdir()
    _save(path, [_claim("test_a", True)], [])
    payload = json.loads(path.read_text())
    del payload["saved_at"], payload["sha256"]
    from das_assert.store import atomic_write_json

    atomic_write_json(path, payload, checksum=True)
    (row,) = baseline_listing(tmp_path)["models"][0]["baselines"]
    assert row["saved_at_from"] == "file time"
    assert "* the file's time" in listing_text(baseline_listing(tmp_path))


def test_the_command_lists_one_model_and_writes_json(
    baselines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = baselines / "listing.json"
    assert (
        main(["baselines", "--dir", str(baselines), "--model", "embedded", "--json", str(out)]) == 0
    )
    assert "latest = 0005_edited" in capsys.readouterr().out
    assert json.loads(out.read_text())["models"][0]["model"] == "embedded"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dir", "nowhere"], "error: no baseline directory nowhere: give the one pytest saves"),
        (["--model", "alpaca"], "error: no baselines of model 'alpaca' in *; present: embedded"),
    ],
)
def test_a_directory_or_model_without_baselines_is_one_error(
    baselines: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(baselines)
    if "--model" in args:
        args = ["--dir", str(baselines), *args]
    assert main(["baselines", *args]) == 2
    from fnmatch import fnmatch

    assert fnmatch(capsys.readouterr().err.strip(), says + "*")
