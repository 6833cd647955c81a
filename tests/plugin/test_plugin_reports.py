"""The pytest plugin's reports: JSON, Markdown, junit, run completeness, step summary, unjudged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_support import _run

pytest_plugins = ["pytester"]


@pytest.mark.slow
def test_reports_json_markdown_and_junit_are_written(project) -> None:
    result = _run(
        project,
        "--das-cache=off",
        "--das-json=out/report.json",
        "--das-markdown=out/summary.md",
        "--junitxml=out/junit.xml",
    )
    result.assert_outcomes(passed=1, failed=1)
    report = json.loads((project.path / "out" / "report.json").read_text())
    assert report["schema_version"] == 1
    assert report["model"]["architecture"] == "llama"
    assert {"torch", "transformers", "python"} <= set(report["environment"])
    assert len(report["results"]) == 2
    record = report["results"][0]
    for key in (
        "test_id",
        "hypothesis",
        "variable",
        "site",
        "method",
        "seed",
        "n_train",
        "n_test",
        "iia",
        "iia_ci",
        "task_accuracy",
        "baselines",
        "normalized_iia",
        "boundary_dims",
        "threshold",
        "verdict",
        "train_seconds",
        "from_cache",
        "eval_seconds",
        "pairs",
    ):
        assert key in record, key
    assert len(record["pairs"]) == record["n_test"] == 24
    assert record["fit"]["batch_size"] == 8  # das.yaml's batch_size reaches the fit
    correct = sum(p["expected"] == p["predicted"] for p in record["pairs"])
    assert correct / record["n_test"] == pytest.approx(record["iia"])
    assert "| test | claim |" in (project.path / "out" / "summary.md").read_text()
    junit = (project.path / "out" / "junit.xml").read_text()
    assert 'name="das_iia"' in junit
    assert '<property name="das_claim" value="impossible"' in junit  # whose numbers they are
    assert "das_result" not in junit


SECOND_HYPOTHESIS_FILE = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_and_right_boundary", "boundary")


def test_two_booleans_are_not_found_in_a_random_model(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


def test_the_worker_runs_on_its_share_of_the_cpus(das_session):
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
        assert torch.get_num_threads() == share
"""


@pytest.mark.slow
def test_under_xdist_the_controller_gathers_every_workers_records(project) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(test_two=SECOND_HYPOTHESIS_FILE)
    result = _run(
        project,
        "-n",
        "2",
        "--dist",
        "loadfile",
        "--das-cache=off",
        "--das-json=out/report.json",
        "--das-markdown=out/summary.md",
        "--junitxml=out/junit.xml",
        subprocess=True,
    )
    result.assert_outcomes(passed=3, failed=1)
    report = json.loads((project.path / "out" / "report.json").read_text())
    ids = sorted(r["test_id"] for r in report["results"])
    assert ids == [
        "test_hyp.py::test_a_negative_claim_holds",
        "test_hyp.py::test_an_impossible_claim_fails",
        "test_two.py::test_two_booleans_are_not_found_in_a_random_model",
    ]
    # the threads the workers fitted with, not the controller's (which fits nothing)
    import os

    if "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        assert report["environment"]["torch_threads"] == share
    summary = (project.path / "out" / "summary.md").read_text()
    assert "test_two.py::test_two_booleans_are_not_found_in_a_random_model" in summary
    assert "das: causal hypotheses" in result.stdout.str()
    junit = (project.path / "out" / "junit.xml").read_text()
    assert junit.count('name="das_iia"') == 3
    assert "das_result" not in junit


def test_the_reports_say_why_when_no_claim_reached_a_verdict(project) -> None:
    model = str(Path(project.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    result = project.runpytest_inprocess(
        f"--das-model={model}",
        "--das-config=das.yaml",
        "--das-min-task-accuracy=0.99",  # the random tiny model cannot do the task
        "--das-cache=off",
        "--das-json=out/report.json",
        "--das-markdown=out/summary.md",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret != 0
    report = json.loads((project.path / "out" / "report.json").read_text())
    assert report["results"] == []
    assert report["model"]["path"] == model  # loaded fine: a CI script reads it on this run too
    assert set(report["model"]["fingerprint"]) == {"weights", "tokenizer", "config"}
    assert report["model"]["architecture"] == "llama"
    assert {u["test_id"] for u in report["unjudged"]} == {
        "test_hyp.py::test_an_impossible_claim_fails",
        "test_hyp.py::test_a_negative_claim_holds",
    }
    assert all("PreconditionFailed" in u["message"] for u in report["unjudged"])
    assert all("answers only 0.000 of the 24" in u["message"] for u in report["unjudged"])
    assert "Failed before a verdict" in (project.path / "out" / "summary.md").read_text()


def test_under_xdist_the_report_names_the_model_a_worker_loaded(project) -> None:
    pytest.importorskip("xdist")
    model = str(Path(project.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    result = _run(
        project,
        "-n",
        "2",
        "--das-min-task-accuracy=0.99",  # after _run's 0: no claim reaches a verdict
        "--das-cache=off",
        "--das-json=out/report.json",
        subprocess=True,
    )
    result.assert_outcomes(errors=2)  # the module fixture's alignment checks the precondition
    report = json.loads((project.path / "out" / "report.json").read_text())
    assert report["results"] == []
    assert report["model"]["path"] == model


def test_a_run_that_judges_nothing_replaces_an_old_report(project: pytest.Pytester) -> None:
    (project.path / "out").mkdir()
    old = project.path / "out" / "report.json"
    old.write_text('{"results": [{"claim": "from an earlier run"}]}')
    project.makepyfile(test_broken="import a_module_that_does_not_exist\n")
    result = _run(project, "--das-json=out/report.json", "--das-markdown=out/summary.md")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # pytest stops on a collection error
    report = json.loads(old.read_text())
    assert report["results"] == []
    assert report["model"] is None  # no model was loaded
    assert report["run"]["complete"] is False
    assert report["run"]["exit_code"] == "INTERRUPTED"
    (broken,) = report["unjudged"]
    assert broken["test_id"] == "test_broken.py"
    assert broken["when"] == "collect"
    assert "a_module_that_does_not_exist" in broken["message"]
    assert "did not complete" in (project.path / "out" / "summary.md").read_text()


def test_a_run_stopped_at_setup_says_why_in_its_reports(project: pytest.Pytester) -> None:
    # exit 4 and its message went to the terminal only: the JSON said no more than "USAGE_ERROR"
    das_yaml = project.path / "das.yaml"
    das_yaml.write_text(das_yaml.read_text().replace("boundary:", "boundry:"))
    result = _run(project, "--das-json=out/report.json", "--das-markdown=out/summary.md")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    run = json.loads((project.path / "out" / "report.json").read_text())["run"]
    assert run["exit_code"] == "USAGE_ERROR"
    assert run["complete"] is False
    assert run["setup_error"].startswith("das_assert setup: das.yaml lacks a site that tests ")
    summary = (project.path / "out" / "summary.md").read_text()
    assert "**Stopped at setup**" in summary
    assert run["setup_error"] in summary


@pytest.mark.parametrize(
    "options",
    [
        ("--das-compare", "--das-compare-fail=iia:5"),
        ("--das-cache=off", "--das-cache-dir=x"),
    ],
    ids=["compare-fail", "cache-dir-off"],
)
def test_a_usage_error_replaces_an_old_report(
    project: pytest.Pytester, options: tuple[str, ...]
) -> None:
    # the old report was left, still saying exit_code OK and complete: true
    (project.path / "out").mkdir()
    old = project.path / "out" / "report.json"
    old.write_text('{"results": [{"claim": "from an earlier run"}], "run": {"exit_code": "OK"}}')
    result = _run(project, *options, "--das-json=out/report.json", "--das-markdown=out/s.md")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    report = json.loads(old.read_text())
    assert report["results"] == []
    assert report["run"]["exit_code"] == "USAGE_ERROR"
    assert report["run"]["complete"] is False
    assert report["run"]["setup_error"].startswith("das_assert usage: --das-")
    assert report["run"]["setup_error"] in (project.path / "out" / "s.md").read_text()


def test_a_run_stopped_by_x_says_its_report_is_incomplete(project: pytest.Pytester) -> None:
    passing = "test_hyp.py::test_a_negative_claim_holds"
    ok = _run(project, "--das-cache=off", "--das-json=report.json", passing)
    ok.assert_outcomes(passed=1)
    assert json.loads((project.path / "report.json").read_text())["run"]["exit_code"] == "OK"
    result = _run(project, "-x", "--das-cache=off", "--das-json=report.json", "test_hyp.py")
    result.assert_outcomes(failed=1)  # the impossible claim; -x stops before the next test
    report = json.loads((project.path / "report.json").read_text())
    assert report["run"]["complete"] is False
    assert report["run"]["tests_collected"] == 2
    full = _run(project, "--das-cache=off", "--das-json=report.json", "test_hyp.py")
    full.assert_outcomes(failed=1, passed=1)
    assert json.loads((project.path / "report.json").read_text())["run"] == {
        "exit_status": 1,
        "exit_code": "TESTS_FAILED",
        "complete": True,
        "tests_collected": 2,
        "selection": None,
        "setup_error": None,
        "baseline_claims_not_judged": [],
    }
    # -x whose failure is the last test cut nothing short: the run is whole, its baseline saved
    last = _run(
        project,
        "-x",
        "--das-cache=off",
        "--das-json=report.json",
        "--das-save-baseline=v1",
        "--das-baseline-dir=b",
        "test_hyp.py::test_a_negative_claim_holds",
        "test_hyp.py::test_an_impossible_claim_fails",
    )
    last.assert_outcomes(failed=1, passed=1)
    assert json.loads((project.path / "report.json").read_text())["run"]["complete"] is True
    last.stdout.fnmatch_lines(["das: baseline saved: b/tiny/0001_v1.json (2 claims)"])


def test_a_tests_own_property_named_like_a_das_record_is_left_alone(
    pytester: pytest.Pytester,
) -> None:
    """The reporter read every das_result property as its own JSON record: a test's own
    record_property("das_result", ...) stopped the run with an INTERNALERROR."""
    pytester.makepyfile(
        """
        def test_mine(record_property):
            record_property("das_result", "mine")
            record_property("das_limit", 3)
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--junitxml=junit.xml", "-o", "junit_family=xunit1"
    )
    result.assert_outcomes(passed=1)
    junit = (pytester.path / "junit.xml").read_text()
    assert '<property name="das_result" value="mine"' in junit
    assert '<property name="das_limit" value="3"' in junit


@pytest.mark.parametrize("flag", ["--collect-only", "--setup-plan"])
def test_collect_only_writes_a_report_that_says_nothing_ran(
    project: pytest.Pytester, flag: str
) -> None:
    # --setup-plan ran no test either, but counted as a complete run: a --das-compare gate
    # then failed every claim of the baseline as not judged
    saving = ("--das-save-baseline=v1", "--das-baseline-dir=b", "--das-markdown=r.md")
    result = _run(project, flag, "--das-json=r.json", *saving)
    assert result.ret == pytest.ExitCode.OK
    run = json.loads((project.path / "r.json").read_text())["run"]
    assert run["complete"] is False
    assert run["selection"] is None
    # it said "the run did not complete (pytest exit OK)"
    result.stdout.fnmatch_lines([f"das: baseline v1 NOT saved: {flag} ran no test"])
    assert f"**Nothing ran**: {flag}." in (project.path / "r.md").read_text()


def test_the_markdown_table_is_appended_to_the_github_step_summary(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = project.path / "step_summary.md"
    summary.write_text("## an earlier tool's table\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    passing = "test_hyp.py::test_a_negative_claim_holds"
    _run(project, "--das-cache=off", f"--das-markdown={summary}", passing).assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("## an earlier tool's table\n")
    assert "| test | claim | site | IIA |" in text
    other = project.path / "other.md"
    other.write_text("a previous run's table\n")
    _run(project, "--das-cache=off", f"--das-markdown={other}", passing).assert_outcomes(passed=1)
    assert "previous run" not in other.read_text()  # any other file is replaced, atomically


RECORDED_SEARCH = """
from das_assert.search import search


def test_a_search_is_recorded(das, das_session):
    grid = search(das_session.align, "left_boundary", layers=[0, 1], positions=["last"])
    das.record_search(grid)


def test_a_search_whose_fresh_pairs_fail_the_gate_is_recorded_all_the_same(das, das_session):
    from das_assert.errors import PreconditionFailed

    grid = search(das_session.align, "left_boundary", layers=[0], positions=["last"])

    def gate(*args, **kwargs):
        raise PreconditionFailed("answers only 0.1 of the fresh prompts correctly")

    grid.best_confirmed = gate
    das.record_search(grid)  # the cells are what helps then: it raised before
"""


def test_every_cell_of_a_recorded_search_is_in_the_reports(project: pytest.Pytester) -> None:
    # only the best cell, judged on fresh pairs, reached the reports: the cells it was chosen
    # from, and compared with, were in none
    project.makepyfile(test_search=RECORDED_SEARCH)
    result = _run(project, "test_search.py", "--das-json=r.json", "--das-markdown=r.md")
    result.assert_outcomes(passed=2)
    search, gated = json.loads((project.path / "r.json").read_text())["searches"]
    assert search["test_id"] == "test_search.py::test_a_search_is_recorded"
    assert search["confirmation_error"] is None
    assert gated["best"]["confirmation"] is None
    assert gated["confirmation_error"] == "answers only 0.1 of the fresh prompts correctly"
    assert [cell["site"] for cell in search["cells"]] == [
        "block_output[layer=0, pos=last]",
        "block_output[layer=1, pos=last]",
    ]
    for cell in search["cells"]:
        low, high = cell["iia_ci"]
        assert low <= cell["iia"] <= high
        assert (cell["n"], cell["seed"]) == (24, 0)
        assert {"noop", "majority", "random_rotation", "task_accuracy"} <= set(cell)
    confirmation = search["best"]["confirmation"]
    assert confirmation["test_pairs"] == "confirmation"
    assert confirmation["test_id"] == search["test_id"]  # it was null
    assert len(confirmation["pairs"]) == confirmation["n_test"]
    result.stdout.fnmatch_lines(
        [
            "--- search: left_boundary, one alignment per cell*",
            "site*IIA*95% CI*n*seed*no-op*maj*rand*task",
            "block_output[[]layer=0, pos=last]*",
            "block_output[[]layer=1, pos=last]*",
            "[*] on fresh pairs*",
            "*",
            "* on fresh pairs: not judged: answers only 0.1 of the fresh prompts correctly",
        ]
    )
    markdown = (project.path / "r.md").read_text()
    assert "| block_output[layer=1, pos=last]" in markdown


def test_a_report_or_baseline_that_cannot_be_written_is_said_once_and_fails_the_run(
    project: pytest.Pytester,
) -> None:
    # a full disk at the end of the run: a traceback out of pytest_sessionfinish, the summary
    # lost, and the earlier report left in place with exit status 0
    project.makeconftest(
        """
        import errno
        import os

        import pytest


        @pytest.hookimpl(wrapper=True)  # before das_assert's own (tryfirst) hook
        def pytest_sessionfinish():
            def full(fd):
                raise OSError(errno.ENOSPC, "No space left on device")

            os.fsync = full
            return (yield)
        """
    )
    (project.path / "out").mkdir()
    old = project.path / "out" / "report.json"
    old.write_text('{"results": [{"claim": "from an earlier run"}]}')
    options = ["--das-json=out/report.json", "--das-save-baseline=main"]
    result = _run(project, *options, "test_hyp.py::test_a_negative_claim_holds", subprocess=True)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "das: causal hypotheses" in output  # the summary is still shown
    for what in ("--das-json out/report.json", "baseline 0001_main"):
        assert f"das: {what} NOT written: could not write" in output
    assert "(No space left on device); free some space there" in output
    # nor the alignments of the baseline that was not written: a stray folder, its number taken
    assert "the 1 alignment file(s) written for it were removed" in output
    assert not list((project.path / "hypotheses" / "baselines").rglob("*.safetensors"))
    # the earlier run's report was replaced when this run started: none is read as this one's
    placeholder = json.loads(old.read_text())
    assert placeholder["run"]["exit_status"] is None
    assert placeholder["results"] == []


def test_a_claim_whose_alignment_cannot_be_written_keeps_its_verdict(
    project: pytest.Pytester,
) -> None:
    # the test errored on the full disk, and the summary then said the baseline was "NOT saved:
    # no claim reached a verdict"
    project.makeconftest(
        """
        import errno
        import os


        def pytest_runtest_call():
            def full(fd):
                raise OSError(errno.ENOSPC, "No space left on device")

            os.fsync = full
        """
    )
    options = ["--das-cache=off", "--das-baseline-dir=b", "--das-save-baseline=main"]
    passing = "test_hyp.py::test_a_negative_claim_holds"
    result = _run(project, *options, passing, subprocess=True)
    result.assert_outcomes(passed=1)  # the verdict, as without a baseline
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # but the run did not do all it was asked
    result.stdout.fnmatch_lines(
        [
            "das: baseline 0001_main NOT written: the alignment file of 1 claim(s) could not be "
            "written (could not write *(No space left on device)*; the 0 written for it were "
            "removed"
        ]
    )
    assert list((project.path / "b").rglob("*")) == [project.path / "b/tiny"]


def test_a_claim_whose_alignment_save_raised_is_named_and_no_baseline_is_written(
    project: pytest.Pytester,
) -> None:
    # an error other than a write's (a fault a review injected into os.replace) failed the
    # test, and the baseline was saved without its claim: "baseline saved ... (0 claims)"
    project.makeconftest(
        """
        import os


        def pytest_runtest_call():
            def broken(*args):
                raise RuntimeError("a fault in the save")

            os.replace = broken
        """
    )
    options = ["--das-cache=off", "--das-baseline-dir=b", "--das-save-baseline=main"]
    passing = "test_hyp.py::test_a_negative_claim_holds"
    result = _run(project, *options, passing, subprocess=True)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        [
            "das: baseline 0001_main NOT written: the alignment file of 1 claim(s) could not be "
            "written (RuntimeError: a fault in the save); the 0 written for it were removed*"
        ]
    )
    assert list((project.path / "b").rglob("*")) == [project.path / "b/tiny"]


def test_a_search_whose_alignment_save_raised_before_any_file_is_named(
    project: pytest.Pytester,
) -> None:
    # an error before the save named the baseline's file left the search out of the baseline,
    # which was saved with the claim alone as if complete
    project.makeconftest(
        """
        import das_assert.request


        def broken(*args):
            raise RuntimeError("a fault before the save")


        das_assert.request.save_search_alignments = broken
        """
    )
    project.makepyfile(
        test_search="""
from das_assert.search import search


def test_a_search(das, das_session):
    das.record_search(search(das_session.align, "left_boundary", layers=[0], positions=["last"]))
"""
    )
    options = ["--das-cache=off", "--das-baseline-dir=b", "--das-save-baseline=main"]
    passing = "test_hyp.py::test_a_negative_claim_holds"
    result = _run(project, *options, passing, "test_search.py", subprocess=True)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        [
            "das: baseline 0001_main NOT written: the alignment file of 1 search(es) could not "
            "be written (RuntimeError: a fault before the save); the 1 written for it were "
            "removed*"
        ]
    )
    assert list((project.path / "b").rglob("*.json")) == []


def test_das_plots_draws_every_recorded_search(project: pytest.Pytester) -> None:
    # --das-plots named a folder that stayed empty: only the shipped search test drew itself;
    # then ids that slug alike, and two searches of one test, shared one file
    project.makepyfile(
        test_search="""
import pytest
from das_assert.search import search


@pytest.mark.parametrize("tag", ["grid!", "grid?"])
def test_a_search(das, das_session, tag):
    das.record_search(search(das_session.align, "left_boundary", layers=[0], positions=["last"]))


def test_two_searches(das, das_session):
    for hypothesis in ("left_boundary", "left_and_right_boundary"):
        das.record_search(search(das_session.align, hypothesis, layers=[0], positions=["last"]))
"""
    )
    result = _run(project, "test_search.py", "--das-plots=plots", "--das-json=r.json")
    result.assert_outcomes(passed=3)
    searches = json.loads((project.path / "r.json").read_text())["searches"]
    drawn = {Path(search["heatmap"]) for search in searches}
    assert len(drawn) == len(searches) == 4
    assert drawn == set((project.path / "plots").iterdir())
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in drawn)


def test_a_search_whose_heatmap_cannot_be_written_keeps_its_cells(
    project: pytest.Pytester,
) -> None:
    # The test failed on the full disk, as a failed claim would, and the JSON lost the search.
    project.makeconftest(
        """
        from das_assert import search
        from das_assert.errors import OutputWriteError

        WRITES = search.save_heatmap


        def pytest_runtest_call():
            def full(grid, path, **kwargs):
                raise OutputWriteError(f"could not write {path} (No space left on device)")

            search.save_heatmap = full


        def pytest_unconfigure():  # an in-process run: the module is the outer session's too
            search.save_heatmap = WRITES
        """
    )
    project.makepyfile(
        test_search="""
from das_assert.search import search


def test_a_search(das, das_session):
    das.record_search(search(das_session.align, "left_boundary", layers=[0], positions=["last"]))
"""
    )
    result = _run(project, "test_search.py", "--das-plots=plots", "--das-json=r.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # the run did not do all it was asked
    result.stdout.fnmatch_lines(
        [
            "das: --das-plots heatmap of test_search.py::test_a_search NOT written: could not "
            "write *(No space left on device)"
        ]
    )
    (found,) = json.loads((project.path / "r.json").read_text())["searches"]
    assert found["heatmap"] is None
    assert "No space left" in found["heatmap_unwritten"]


def test_das_plots_without_matplotlib_is_refused_before_any_search_trains(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it was found only when the first heatmap was drawn, after its grid had trained; and one
    # installed but failing to import (another numpy's) passed the check, which only found it
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # its import raises ImportError
    project.makepyfile(test_search="def test_nothing(): pass\n")
    result = _run(project, "test_search.py", "--das-plots=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--das-plots needs matplotlib (*): pip install 'das_assert[[]plots]'*"]
    )


def test_lf_under_xdist_is_a_selection_only_where_the_workers_kept_failures(
    pytester: pytest.Pytester,
) -> None:
    # the controller collects nothing, so it counted every failure in the cache, of other
    # paths too: a run of every test was "a selection", which excused the gate from a claim
    from types import SimpleNamespace

    config = pytester.parseconfigure("--lf")
    reporter = config.pluginmanager.get_plugin("das-reporter")
    last_failed = config.pluginmanager.get_plugin("lfplugin")
    last_failed.lastfailed = {"elsewhere.py::test_x": True}
    last_failed._previously_failed_count = None  # as on the controller
    reporter.pytest_testnodedown(SimpleNamespace(workeroutput={"das_last_failed": 0}), None)
    assert reporter._selection() is None
    reporter.pytest_testnodedown(SimpleNamespace(workeroutput={"das_last_failed": 2}), None)
    assert reporter._selection() == "--lf ran only the tests that failed last time"


def test_tests_deselected_by_stepwise_are_said_to_be_so(pytester: pytest.Pytester) -> None:
    # --sw deselects the tests that passed before: the run said "-k, -m, --deselect", which it
    # was not given
    config = pytester.parseconfigure("--sw")
    reporter = config.pluginmanager.get_plugin("das-reporter")
    reporter.deselected = 2
    assert reporter._selection() == "2 test(s) were deselected (--sw)"
    config = pytester.parseconfigure("-k", "x")
    reporter = config.pluginmanager.get_plugin("das-reporter")
    reporter.deselected = 1
    assert reporter._selection() == "1 test(s) were deselected (-k 'x')"


PARAMETRIZED_CLAIMS = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


@pytest.mark.parametrize("k", [10, 2, 1])
def test_claim(das, aligned, k):
    das.assert_not_aligned(aligned, claim="impossible")
"""


def test_the_reports_list_parametrized_claims_by_their_numbers(project: pytest.Pytester) -> None:
    # the plugin sorted its records as text: test_claim[10] came before test_claim[2]
    project.makepyfile(test_hyp=PARAMETRIZED_CLAIMS)
    _run(project, "--das-cache=off", "--das-json=r.json", "--das-markdown=r.md").assert_outcomes(
        passed=3
    )
    ids = [r["test_id"] for r in json.loads((project.path / "r.json").read_text())["results"]]
    assert ids == [f"test_hyp.py::test_claim[{k}]" for k in (1, 2, 10)]
    table = (project.path / "r.md").read_text()
    assert table.index("test_claim[1]") < table.index("test_claim[2]") < table.index("[10]")
