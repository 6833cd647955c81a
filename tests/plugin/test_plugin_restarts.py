"""``das_session.align(..., restarts=k)`` under pytest: k fits cached one by one, the kept one's
record in the JSON report and the baseline, and a frozen run that takes the baseline's choice
without fitting any of them."""

from __future__ import annotations

import json

import pytest
from plugin_support import _run, count_fits

pytest_plugins = ["pytester"]

RESTARTS = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary", restarts=2)


def test_claim(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


def test_the_same_request_is_one_result(das_session, aligned):
    assert das_session.align("left_boundary", "boundary", restarts=2) is aligned
"""


def _record(project: pytest.Pytester, name: str) -> dict:
    (record,) = json.loads((project.path / name).read_text())["results"]
    return record


def test_each_fit_is_cached_and_the_report_keeps_every_development_iia(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits = count_fits(monkeypatch)
    project.makepyfile(test_hyp=RESTARTS)
    first = _run(project, "--das-cache=readwrite", "--das-json=first.json")
    first.assert_outcomes(passed=2)
    assert fits == [1, 1]
    record = _record(project, "first.json")
    chosen = record["restarts"]["chosen_fit_seed"]
    first.stdout.fnmatch_lines([f"impossible *not_aligned  (best of 2 fits: fit seed {chosen})"])
    restarts = record["restarts"]
    assert [row["fit_seed"] for row in restarts["by_fit_seed"]] == [0, 1]
    assert restarts["chosen_fit_seed"] == record["fit"]["seed"]
    assert restarts["dev_pairs"] == {"n": 24, "seed": 300_007}
    assert record["seed"] == 0  # the pairs' seed; the fit seed is the kept fit's
    fits.clear()
    _run(project, "--das-cache=readwrite", "--das-json=again.json").assert_outcomes(passed=2)
    assert fits == []  # both fits from the cache, and the same choice
    assert _record(project, "again.json")["restarts"] == restarts


def test_a_frozen_run_takes_the_fit_the_baseline_kept_and_fits_nothing(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits = count_fits(monkeypatch)
    project.makepyfile(test_hyp=RESTARTS)
    args = ("--das-cache=off", "--das-baseline-dir=b")
    _run(project, *args, "--das-save-baseline=v1", "--das-json=saved.json").assert_outcomes(
        passed=2
    )
    fits.clear()
    frozen = _run(project, *args, "--das-frozen=v1", "--das-json=frozen.json")
    frozen.assert_outcomes(passed=2)
    assert fits == []
    saved, now = _record(project, "saved.json"), _record(project, "frozen.json")
    assert (now["iia"], now["fit"], now["boundary_dims"]) == (
        saved["iia"],
        saved["fit"],
        saved["boundary_dims"],
    )
    assert now["restarts"] == {**saved["restarts"], "from_baseline": True}
    frozen.stdout.fnmatch_lines(["impossible *not_aligned  (best of 2 fits: *)  (frozen: *)"])
    assert now["alignment"]["baseline"].endswith("0001_v1.json")


def test_a_frozen_run_refuses_a_baseline_saved_without_restarts(
    project: pytest.Pytester,
) -> None:
    args = ("--das-cache=off", "--das-baseline-dir=b")
    _run(project, *args, "--das-save-baseline=v1").assert_outcomes(passed=1, failed=1)
    project.makepyfile(test_hyp=RESTARTS)
    result = _run(project, *args, "--das-frozen=v1")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*--das-frozen *0001_v1.json: the baseline holds no best-of-2 alignment for "
            "left_boundary (left) at block_output[[]layer=1, pos=last], seed 0, fit seeds 0 to 1*"
        ]
    )


def test_a_bad_number_of_restarts_fails_its_fixture_with_the_fix(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_hyp=RESTARTS.replace("restarts=2)\n\n\n", "restarts=0)\n\n\n", 1))
    result = _run(project, "--das-cache=off")
    result.assert_outcomes(errors=2)  # both tests use the fixture
    result.stdout.fnmatch_lines(["*restarts=0: choose 1 to 20 (1 is a single fit)*"])


SEARCH_WITH_RESTARTS = """
from das_assert.search import search


def test_a_search(das, das_session):
    grid = search(
        das_session.align,
        "left_boundary",
        layers=[0, 1],
        positions=["last"],
        check=das_session.check,
        restarts=2,
    )
    das.record_search(grid)
    assert all(result.restarts["restarts"] == 2 for result in grid.results.values())
"""


def test_a_recorded_search_of_best_fits_is_judged_frozen_with_the_fits_it_kept(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits = count_fits(monkeypatch)
    project.makepyfile(test_search=SEARCH_WITH_RESTARTS)
    args = ("--das-cache=off", "--das-baseline-dir=b", "test_search.py")
    _run(project, *args, "--das-save-baseline=v1", "--das-json=saved.json").assert_outcomes(
        passed=1
    )
    assert fits == [1, 1, 1, 1]  # two cells, two fits each
    fits.clear()
    _run(project, *args, "--das-frozen=v1", "--das-json=frozen.json").assert_outcomes(passed=1)
    assert fits == []
    saved, now = (
        {c["site"]: c for c in json.loads((project.path / n).read_text())["searches"][0]["cells"]}
        for n in ("saved.json", "frozen.json")
    )
    assert {site: cell["iia"] for site, cell in now.items()} == {
        site: cell["iia"] for site, cell in saved.items()
    }


def test_a_search_checks_its_restarts_before_any_cell_trains(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits = count_fits(monkeypatch)
    project.makepyfile(test_search=SEARCH_WITH_RESTARTS.replace("restarts=2", "restarts=-1"))
    result = _run(project, "--das-cache=off", "test_search.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*restarts=-1: choose 1 to 20*"])
    assert fits == []


def test_a_compared_run_measures_the_transfer_of_the_fit_the_baseline_kept(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_hyp=RESTARTS)
    args = ("--das-cache=off", "--das-baseline-dir=b")
    _run(project, *args, "--das-save-baseline=v1", "--das-json=saved.json").assert_outcomes(
        passed=2
    )
    gated = _run(project, *args, "--das-compare=v1", "--das-json=gated.json")
    gated.assert_outcomes(passed=2)
    saved, now = _record(project, "saved.json"), _record(project, "gated.json")
    assert now["restarts"] == saved["restarts"]  # the same model: the same choice
    assert now["transfer"]["iia"] == saved["iia"]  # the kept fit, scored again


SEARCH_WITH_CONFIG = """
from das_assert.search import search


def test_a_search(das, das_session):
    grid = search(
        das_session.align,
        "left_boundary",
        layers=[0, 1],
        positions=["last"],
        check=das_session.check,
        config=das_session.fit_config(epochs=1),
    )
    das.record_search(grid)


def test_a_search_with_a_bad_config(das, das_session):
    search(
        das_session.align,
        "left_boundary",
        layers=[0, 1],
        positions=["last"],
        check=das_session.check,
        config={"epochs": 1},
    )
"""


def test_a_search_checks_a_config_as_align_takes_it(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # check= refused config=, which align takes: "unknown keyword(s) config ... Did you mean
    # 'config'?", before any cell trained
    fits = count_fits(monkeypatch)
    project.makepyfile(test_search=SEARCH_WITH_CONFIG)
    result = _run(project, "--das-cache=off", "test_search.py")
    result.assert_outcomes(passed=1, failed=1)
    assert fits == [1, 1]  # the good search's two cells; the bad one trained none
    result.stdout.fnmatch_lines(["*config=*FitConfig*"])
    result.stdout.no_fnmatch_line("*Did you mean 'config'*")
