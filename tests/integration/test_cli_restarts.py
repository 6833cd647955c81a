"""``das_assert fit --restarts K``: the fit kept is the best of K on development pairs, its
record in the report, and the file saved is that fit's, evaluated again as it was scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from das_assert.cli import main

pytestmark = pytest.mark.slow

SMALL = ["--n-train=120", "--epochs=1", "--n-test=40"]


def test_the_kept_fit_is_reported_saved_and_evaluated_as_it_was_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved, fitted, scored = (tmp_path / n for n in ("a.safetensors", "fit.json", "eval.json"))
    fit = ["fit", "--hypothesis=left_boundary", "--layer=0", "--seed=3", "--restarts=2"]
    assert main([*fit, *SMALL, f"--save={saved}", f"--json={fitted}"]) == 0
    (record,) = json.loads(fitted.read_text())["results"]
    restarts = record["restarts"]
    assert [row["fit_seed"] for row in restarts["by_fit_seed"]] == [3, 4]
    assert record["fit"]["seed"] == restarts["chosen_fit_seed"]
    assert restarts["dev_pairs"] == {"n": 40, "seed": 3 + 300_007}
    capsys.readouterr()
    assert main(["evaluate", f"--alignment={saved}", "--n-test=40", f"--json={scored}"]) == 0
    (again,) = json.loads(scored.read_text())["results"]
    assert (again["iia"], again["boundary_dims"], again["fit"]) == (
        record["iia"],
        record["boundary_dims"],
        record["fit"],
    )
    # the file says it was the best of two, and evaluate passes that on
    assert again["restarts"] == {**restarts, "from_file": str(saved)}
    out = capsys.readouterr().out
    chosen = restarts["chosen_fit_seed"]
    assert f"fit seed {chosen}, the best of 2 fits by IIA on 40 development pairs" in out
    assert f"(chosen when {saved} was saved)" in out


def test_no_restarts_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--hypothesis=left_boundary", "--layer=0", "--restarts=0"])
    assert exit_.value.code == 2
    assert "--restarts" in capsys.readouterr().err


def test_a_search_keeps_each_cells_best_fit(tmp_path: Path) -> None:
    report = tmp_path / "search.json"
    search = ["search", "--hypothesis=left_boundary", "--layers", "0", "1", "--restarts=2"]
    assert main([*search, *SMALL, "--min-task-accuracy=0", f"--json={report}"]) == 0
    results = json.loads(report.read_text())["results"]
    assert len(results) == 2
    for record in results:
        assert [row["fit_seed"] for row in record["restarts"]["by_fit_seed"]] == [0, 1]
        assert record["fit"]["seed"] == record["restarts"]["chosen_fit_seed"]
