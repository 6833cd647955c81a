"""Outputs at the edges of what a file system and a reader allow: a report name near the
longest a folder takes, a folder that is a link to nothing, a model path with ``$`` in a plot's
title, a bound beside a threshold, a seed's report a full disk refused."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from das_assert.alignment_result import AlignmentResult
from das_assert.search import SearchGrid, save_heatmap
from das_assert.stability import _exit_name, _why_stopped
from das_assert.store import atomic_write_bytes, output_path_problem


def test_a_report_name_as_long_as_the_folder_allows_is_written(tmp_path: Path) -> None:
    path = tmp_path / ("r" * 250 + ".json")  # legal; its temporary's 14 more bytes are not

    atomic_write_bytes(path, b"{}")

    assert path.read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_an_output_folder_linked_to_nothing_names_the_link(tmp_path: Path) -> None:
    link = tmp_path / "baselines"
    os.symlink(tmp_path / "mount" / "gone", link)

    problem = output_path_problem(link, directory=True)

    assert problem is not None
    assert "symbolic link to" in problem
    assert "gone" in problem


def test_a_report_linked_to_a_file_not_yet_written_is_written_through_the_link(
    tmp_path: Path,
) -> None:
    # refused ahead ("which does not exist") though the write goes through the link
    (tmp_path / "out").mkdir()
    link = tmp_path / "link.json"
    os.symlink(tmp_path / "out" / "report.json", link)
    assert output_path_problem(link) is None
    atomic_write_bytes(link, b"{}", follow_link=True)
    assert (tmp_path / "out" / "report.json").read_bytes() == b"{}"
    assert link.is_symlink()
    # a link into folders not there yet: they are made, as for a plain path
    os.symlink(tmp_path / "nowhere" / "deeper" / "r.json", tmp_path / "far.json")
    assert output_path_problem(tmp_path / "far.json") is None
    atomic_write_bytes(tmp_path / "far.json", b"[]", follow_link=True)
    assert (tmp_path / "nowhere" / "deeper" / "r.json").read_bytes() == b"[]"


def _cell(iia: float) -> Any:
    return SimpleNamespace(
        iia=iia,
        n=100,
        iia_ci=(iia - 0.05, iia + 0.05),
        experiment=SimpleNamespace(seed=0),
        baselines={"noop": 0.5, "majority": 0.5, "random_rotation": 0.55},
        evaluation=SimpleNamespace(task_accuracy=0.95),
    )


def test_a_heatmap_shows_a_model_path_as_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    grid = SearchGrid(
        "left_boundary", [0, 1], ["last"], {(0, "last"): _cell(0.6), (1, "last"): _cell(0.8)}
    )
    title = "left_boundary on models/my $\\badcmd$ model: IIA per cell"  # TeX between the $s

    path = save_heatmap(grid, tmp_path / "grid.png", title=title)

    assert path.read_bytes().startswith(b"\x89PNG")


def test_a_bound_beside_the_threshold_is_shown_on_its_side() -> None:
    result = SimpleNamespace(
        iia=0.647,
        n=102,
        test_pairs="test",
        iia_ci=(0.55096, 0.733),
        experiment=SimpleNamespace(site="block_output[layer=0, pos=last]", seed=0, threshold=0.551),
        baselines={"noop": 0.5, "majority": 0.5, "random_rotation": 0.55},
        evaluation=SimpleNamespace(task_accuracy=0.95),
        boundary_text=lambda: "64",
        fitted=SimpleNamespace(interchange=SimpleNamespace(d=128)),
        restarts_text=lambda: "",
    )

    line = AlignmentResult.summary(result)  # type: ignore[arg-type]

    assert "95% CI [0.55096, 0.733]" in line  # not [0.551, ...], which reads as meeting 0.551


def test_a_seed_whose_report_was_not_written_says_why(tmp_path: Path) -> None:
    log = tmp_path / "seed0.log"
    unwritten = (
        f"das: --das-json {tmp_path}/seed0.json NOT written: could not write it "
        "(No space left on device)"
    )
    log.write_text(f"...\n{unwritten}\n=== 1 passed in 26.01s ===\n")

    why = _why_stopped({}, log)

    assert why.startswith(unwritten)
    assert "$TMPDIR" in why
    assert "output not written" in _exit_name(3)
