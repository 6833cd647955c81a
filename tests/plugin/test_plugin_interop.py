"""The plugin beside other authors' pytest plugins: what pytest-rerunfailures, pytest-repeat and
pytest-timeout do to a run, played by small stand-ins (none of them is a dependency)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from plugin_support import _run

pytest_plugins = ["pytester"]

# pytest-rerunfailures' way with `--reruns 1`: a failed attempt is reported with the outcome
# "rerun" and the same item, its user_properties kept, runs again.
RERUN_CONFTEST = """
import pytest
from _pytest.runner import runtestprotocol


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=None, log=False)
    if any(report.failed for report in reports):
        for report in reports:
            if report.failed:
                report.outcome = "rerun"
            item.ihook.pytest_runtest_logreport(report=report)
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""


@pytest.mark.slow
def test_a_rerun_claim_is_reported_once_with_its_last_attempts_outcome(project) -> None:
    project.makeconftest(RERUN_CONFTEST)
    args = ("--das-cache=off", "--das-json=report.json", "--junitxml=junit.xml")
    result = _run(project, *args, "--das-save-baseline=v1", "--das-baseline-dir=b")
    result.assert_outcomes(passed=1, failed=1)
    report = json.loads((project.path / "report.json").read_text())
    claims = [(r["test_id"].split("::")[-1], r["outcome"]) for r in report["results"]]
    # each attempt's report carried every earlier attempt's records: three rows, one "rerun"
    assert sorted(claims) == [
        ("test_a_negative_claim_holds", "passed"),
        ("test_an_impossible_claim_fails", "failed"),
    ]
    assert "(2 claims)" in result.stdout.str()  # the baseline saved: not three
    assert result.stdout.str().count("test_an_impossible_claim_fails  ") <= 1
    junit = (project.path / "junit.xml").read_text()
    assert junit.count('name="das_iia"') == 2  # one per test, not one per attempt


FLAKY_TEARDOWN_FILE = """
import pytest

ATTEMPTS = []


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


@pytest.fixture
def flaky_teardown():
    yield
    ATTEMPTS.append(1)
    if len(ATTEMPTS) == 1:
        raise RuntimeError("flaky teardown")


def test_a_negative_claim_holds(das, aligned, flaky_teardown):
    das.assert_not_aligned(aligned, claim="impossible")
"""


@pytest.mark.slow
def test_a_claim_whose_teardown_failed_once_is_reported_from_its_rerun(project) -> None:
    # the rerun came after the call report: that attempt's records were counted too
    project.makeconftest(RERUN_CONFTEST)
    project.makepyfile(test_hyp=FLAKY_TEARDOWN_FILE)
    args = ("--das-cache=off", "--das-json=report.json", "--junitxml=junit.xml")
    result = _run(project, *args, "--das-save-baseline=v1", "--das-baseline-dir=b")
    assert result.ret == pytest.ExitCode.OK
    report = json.loads((project.path / "report.json").read_text())
    assert [r["outcome"] for r in report["results"]] == ["passed"]
    assert "(1 claim)" in result.stdout.str()
    junit = (project.path / "junit.xml").read_text()
    assert junit.count('name="das_iia"') == 1


def test_a_users_own_properties_set_before_a_test_are_kept(project) -> None:
    # each test's setup dropped every das-named property, rerun or not
    project.makeconftest(
        """
        def pytest_collection_modifyitems(items):
            for item in items:
                item.user_properties += [("das_where", "lab-3"), ("das_result", "1")]
        """
    )
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = _run(project, "test_plain.py", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    junit = (project.path / "junit.xml").read_text()
    assert '<property name="das_where" value="lab-3"' in junit
    assert '<property name="das_result" value="1"' in junit


REPEAT_CONFTEST = """
import pytest


def pytest_addoption(parser):
    parser.addoption("--count", type=int, default=1)


def pytest_generate_tests(metafunc):
    count = metafunc.config.getoption("count")
    if count > 1:
        metafunc.fixturenames.append("step")
        metafunc.parametrize("step", range(count), ids=[f"{i + 1}-{count}" for i in range(count)])
"""


@pytest.mark.parametrize("gate", ["--das-save-baseline=v1", "--das-compare"])
def test_pytest_repeats_count_is_refused_where_a_baseline_keys_claims_by_test_id(
    project, gate: str
) -> None:
    project.makeconftest(REPEAT_CONFTEST)
    result = _run(project, "--count=2", gate, "--das-baseline-dir=b", "--das-json=r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--count 2 (pytest-repeat) runs each test under new ids*"])
    assert "drop --count" in result.stderr.str()
    run = json.loads((project.path / "r.json").read_text())["run"]
    assert run["setup_error"].startswith("das_assert usage: --count 2")


REPEAT_MARKER_CONFTEST = """
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "repeat(n): run the test n times")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("repeat")
    if marker is not None and marker.args[0] > 1:
        count = marker.args[0]
        # pytest-repeat's own fixture name, which the plugin looks for
        metafunc.fixturenames.append("__pytest_repeat_step_number")
        ids = [f"{i + 1}-{count}" for i in range(count)]
        metafunc.parametrize("__pytest_repeat_step_number", range(count), ids=ids)
"""

REPEATED_CLAIM = """
import pytest


@pytest.mark.repeat(2)
def test_repeated(das_session):
    pass


def test_plain():
    pass
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["", "xdist"])
@pytest.mark.parametrize("gate", ["--das-save-baseline=v1", "--das-compare"])
def test_pytest_repeats_marker_fails_each_repeat_where_a_baseline_keys_claims_by_test_id(
    project, gate: str, xdist: list[str]
) -> None:
    # refused at collection first, which under xdist (only workers collect) was an
    # INTERNALERROR that never said why, and which -k could not deselect
    project.makeconftest(REPEAT_MARKER_CONFTEST)
    project.makepyfile(test_hyp=REPEATED_CLAIM)
    result = _run(project, gate, "--das-baseline-dir=b", *xdist, subprocess=bool(xdist))
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*pytest-repeat repeats this test (its repeat marker)*"])
    deselected = _run(project, gate, "--das-baseline-dir=b", "-k", "plain")
    assert "pytest-repeat" not in deselected.stdout.str()


def test_pytest_repeats_marker_on_a_plain_test_or_without_a_baseline_runs(project) -> None:
    project.makeconftest(REPEAT_MARKER_CONFTEST)
    project.makepyfile(test_hyp=REPEATED_CLAIM.replace("das_session", "tmp_path"))
    _run(project, "--das-save-baseline=v1", "--das-baseline-dir=b").assert_outcomes(passed=3)


def test_pytest_repeats_count_without_a_baseline_runs(project) -> None:
    project.makeconftest(REPEAT_CONFTEST)
    result = _run(project, "--count=2", "--das-cache=off", "-k", "negative")
    result.assert_outcomes(passed=2)


KILLED_FILE = """
import os


def test_killed_past_every_handler(das_session):
    os._exit(1)  # pytest-timeout's thread method, or a SIGKILL
"""


@pytest.mark.slow
def test_a_run_killed_before_its_reports_leaves_none_of_an_earlier_run(project) -> None:
    earlier = _run(project, "--das-cache=off", "-k", "negative", "--das-json=report.json")
    earlier.assert_outcomes(passed=1)
    shutil.copy(project.path / "report.json", project.path / "earlier.json")
    (project.path / "summary.md").write_text("an earlier run's table\n")
    project.makepyfile(test_hyp=KILLED_FILE)
    result = _run(project, "--das-json=report.json", "--das-markdown=summary.md", subprocess=True)
    assert result.ret == 1
    report = json.loads((project.path / "report.json").read_text())
    assert report["run"]["exit_status"] is None
    assert report["run"]["complete"] is False
    assert report["results"] == []
    summary = (project.path / "summary.md").read_text()
    assert "earlier" not in summary
    assert "This run has not finished" in summary
    command = (sys.executable, "-m", "das_assert", "compare", "earlier.json", "report.json")
    compared = project.run(*command)
    compared.stdout.fnmatch_lines(
        ["note: NEW report.json is from a run that did not complete (it stopped before it wrote*"]
    )


def test_a_finished_run_replaces_the_report_its_start_wrote(project) -> None:
    result = _run(
        project,
        "--das-cache=off",
        "-k",
        "negative",
        "--das-json=report.json",
        "--das-markdown=summary.md",
    )
    result.assert_outcomes(passed=1)
    report = json.loads((project.path / "report.json").read_text())
    assert report["run"]["exit_status"] == 0
    assert len(report["results"]) == 1
    assert "not finished" not in (project.path / "summary.md").read_text()


@pytest.mark.parametrize("chdir", [False, True])
def test_the_step_summary_gets_no_placeholder(project, monkeypatch, chdir: bool) -> None:
    summary = project.path / "step_summary.md"
    summary.write_text("an earlier step's table\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    if chdir:  # the path given relative, read from where pytest started
        (project.path / "elsewhere").mkdir()
        project.makeconftest("import os\nos.chdir('elsewhere')\n")
    markdown = "step_summary.md" if chdir else str(summary)
    result = _run(project, "--das-cache=off", "-k", "negative", f"--das-markdown={markdown}")
    result.assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("an earlier step's table\n")
    assert "not finished" not in text
    assert text.count("| test | claim |") == 1


SUBTESTS_FILE = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_a_claim_and_a_check_as_subtests(das, aligned, subtests):
    with subtests.test("claim"):
        das.assert_not_aligned(aligned, claim="impossible")
    with subtests.test("check"):
        assert aligned.n == 25, "another number of test pairs"
"""


def test_a_test_that_pytests_subtests_fail_is_reported_failed(project) -> None:
    # pytest 9 fails a test with a failed subtest after its call report was logged: the JSON
    # report and pytest_das_result said "passed"
    project.makepyfile(test_hyp=SUBTESTS_FILE)
    result = _run(project, "--das-cache=off", "--das-json=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "contains 1 failed subtest" in result.stdout.str()
    report = json.loads((project.path / "report.json").read_text())
    ((claim, outcome),) = [(r["claim"], r["outcome"]) for r in report["results"]]
    assert (claim, outcome) == ("impossible", "failed")  # its claim held, its test failed
