"""A recorded search compared with a baseline: its grid against the cells the baseline kept for
the same test (correlation of IIA, the largest change), matched by hypothesis, variables and
site."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from das_assert.baseline import alignment_path, slug
from das_assert.gate import compare_search_cells
from das_assert.summary import search_against_baseline

TEST = "hypotheses/test_where.py::test_search"


def _site(layer: int) -> str:
    return f"block_output[layer={layer}, pos=last]"


def _grid(iia: dict[int, float], hypothesis: str = "left_boundary") -> Any:
    results = {
        (layer, "last"): SimpleNamespace(
            iia=value,
            n=800,
            evaluation=SimpleNamespace(successes=round(value * 800)),
            experiment=SimpleNamespace(hypothesis=hypothesis, variable="left", site=_site(layer)),
        )
        for layer, value in iia.items()
    }
    return SimpleNamespace(results=results)


def _baseline(iia: dict[int, float], test: str = TEST) -> tuple[Path, dict[str, Any]]:
    cells = {
        f"{test}::search::{_site(layer)}::abc": {
            "site": _site(layer),
            "iia": value,
            "n": 800,
            "request": {"hypothesis": "left_boundary", "variable": "left"},
        }
        for layer, value in iia.items()
    }
    return Path("b/embedded/0001_v1.json"), {"search_cells": cells}


def test_a_grid_is_set_against_the_cells_its_test_saved() -> None:
    then = {0: 0.83, 1: 0.79, 2: 0.80, 3: 0.74}
    now = {0: 0.82, 1: 0.80, 2: 0.70, 3: 0.74, 4: 0.69}  # layer 4: a cell the baseline lacks
    found = compare_search_cells(_grid(now), _baseline(then), TEST)
    assert found is not None
    assert (found["file"], found["cells"]) == ("0001_v1.json", 4)
    assert 0 < found["correlation"] < 0.9
    change = found["largest_change"]
    assert {k: change[k] for k in ("site", "from", "to", "n", "n_from")} == {
        "site": _site(2),
        "from": 0.80,
        "to": 0.70,
        "n": 800,
        "n_from": 800,
    }
    low, high = change["ci"]  # 560 of 800 against 640 of 800, taken as independent
    assert low < -0.1 < high < 0  # beyond chance for this cell
    line = search_against_baseline({"baseline": found})
    assert line is not None
    assert line.startswith("vs baseline 0001_v1.json: 4 cells in both, IIA correlation r = 0.")
    assert line.endswith(
        f"largest change -0.100 [{low:+.3f}, {high:+.3f}] at {_site(2)} (0.800 of 800 -> 0.700 "
        "of 800)"
    )


def test_the_same_test_seen_from_another_rootdir_matches() -> None:
    then = {0: 0.83, 1: 0.79}
    found = compare_search_cells(_grid(then), _baseline(then, test=f"suite/{TEST}"), TEST)
    assert found is not None
    assert (found["cells"], found["correlation"]) == (2, None)  # two cells: always +-1


def test_cells_of_another_test_or_hypothesis_are_not_compared() -> None:
    then = {0: 0.83, 1: 0.79}
    assert compare_search_cells(_grid(then), _baseline(then, test="other.py::t"), TEST) is None
    assert compare_search_cells(_grid(then, "bracket_identity"), _baseline(then), TEST) is None
    line = search_against_baseline({"baseline": None})
    assert (
        line == "vs baseline: it holds no cell of this search (saved before baselines kept them?)"
    )
    assert search_against_baseline({}) is None  # not compared


def test_cells_fitted_on_other_prompts_are_not_compared_and_the_line_says_so() -> None:
    # das.yaml's answers or wrapper changed since the baseline: the heatmap line set the
    # True/False cells against the Yes/No ones, while the claims were "not comparable".
    then = {0: 0.83, 1: 0.79, 2: 0.80}
    saved_path, saved = _baseline(then)
    for cell in saved["search_cells"].values():
        cell["request"]["data"] = {"answers": ["Yes", "No"], "template": "T"}
    grid = _grid({0: 0.5, 1: 0.5, 2: 0.5})
    for result in grid.results.values():
        result.experiment.data_record = lambda: {"answers": ["True", "False"], "template": "T"}
    found = compare_search_cells(grid, (saved_path, saved), TEST)
    assert found == {"file": "0001_v1.json", "cells": 0, "other_prompts": ["answers"]}
    assert search_against_baseline({"baseline": found}) == (
        "vs baseline 0001_v1.json: its cells ran on other prompts (answers differ): not compared"
    )
    for result in grid.results.values():  # the same prompts: compared
        result.experiment.data_record = lambda: {"answers": ["Yes", "No"], "template": "T"}
    assert compare_search_cells(grid, (saved_path, saved), TEST)["cells"] == 3


def test_a_flat_grid_has_no_correlation() -> None:
    found = compare_search_cells(_grid({0: 0.69, 1: 0.69}), _baseline({0: 0.69, 1: 0.70}), TEST)
    assert found is not None
    assert found["correlation"] is None


def test_each_cell_of_a_long_test_id_gets_its_own_alignment_file() -> None:
    # Names cut to 150 characters gave 8 cells 4 files: a later cell overwrote an earlier one,
    # and a frozen run judged a cell with another's rotation.
    test = (
        "hypotheses/test_where_left_boundary_lives.py::"
        "test_left_boundary_is_best_found_in_the_expected_region[Llama-2-7b-chat-hf]"
    )
    keys = [
        f"{test}::search::block_output[layer={layer}, pos={pos}]::{layer}{pos}"
        for pos in ("after:amount", "last")
        for layer in range(4)
    ]
    names = {alignment_path(Path("b"), "0001_v1", key).name for key in keys}
    assert len(names) == len(keys)
    assert all(len(name) <= 150 + len(".safetensors") for name in names)
    assert all(name.startswith("hypotheses_test_where_left_boundary_lives.py_") for name in names)
    # a short key's slug is as before (baselines' folders); a baseline records its file names
    assert slug(f"{TEST}::search::{_site(0)}::abc") == (
        "hypotheses_test_where.py_test_search_search_block_output_layer_0_pos_last_abc"
    )


def test_keys_that_slug_alike_get_their_own_alignment_files() -> None:
    # Parametrized ids [Hello!] and [Hello?] made one file: the second claim's save overwrote
    # the first's, and a frozen run judged the first claim with the second's rotation.
    keys = [f"{TEST}[{greeting}]::left_boundary" for greeting in ("Hello!", "Hello?", "Hello, ")]
    assert len({slug(key) for key in keys}) == 1
    names = {alignment_path(Path("b"), "0001_v1", key).name for key in keys}
    assert len(names) == len(keys)
