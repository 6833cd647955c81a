"""The plugin's reporter: gathers every judged claim, fuzz record, measured limit and unjudged
failure (from xdist workers too, inside their reports) and writes the terminal summary,
``--das-json`` and ``--das-markdown``, and the baselines of ``--das-save-baseline``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from das_assert.errors import OutputWriteError
from das_assert.md_text import code, fenced, plain
from das_assert.plugin_baselines import BaselineReporting, ran_no_test
from das_assert.plugin_records import (
    JUNIT_PROPERTIES,
    REPORTED_KINDS,
    cut,
    judged,
    not_ours,
    outcome_of,
    record_of,
)
from das_assert.store import appends_to_step_summary

__all__ = ["DAS_FIXTURES", "DAS_TEST", "REPORTED_KINDS", "Reporter", "is_das_test"]

#: The plugin's fixtures: a test that uses one, directly or through its own fixtures, is a das test
#: and gets the ``das`` marker (a user's ``dashboard`` fixture is not one of them).
DAS_FIXTURES = frozenset({"das", "das_session", "das_model"})

#: The attribute set on a das test's reports (``plugin.pytest_runtest_makereport``; xdist carries
#: it to the controller): a report's ``keywords`` hold the names of its folders and parameters
#: beside its markers, so a test in ``tests/das/`` or with a ``[das]`` case read as one.
DAS_TEST = "das_assert_test"


def is_das_test(item: pytest.Item) -> bool:
    """Whether ``item`` has the ``das`` marker: its own, or given for using a das fixture."""
    return item.get_closest_marker("das") is not None


#: What a report written at the run's start says until the run writes its own.
UNFINISHED = (
    "This run has not finished. Read after it ended, it stopped before it wrote this report "
    "(killed: SIGKILL, pytest-timeout's os._exit; or the write failed, as its output says): "
    "nothing of it is recorded here"
)
#: The ``run`` block of that report: ``exit_status`` null, as no finished run's is.
UNFINISHED_RUN: dict[str, Any] = {
    "exit_status": None,
    "exit_code": None,
    "complete": False,
    "tests_collected": 0,
    "selection": None,
    "setup_error": None,
    "baseline_claims_not_judged": [],
}


class Reporter(BaselineReporting):
    """Collects the records of judged claims (also from xdist workers) and writes the reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []
        self.fuzz: list[dict[str, Any]] = []
        self.limits: list[dict[str, Any]] = []  # das.assert_breaks_on
        self.searches: list[dict[str, Any]] = []  # das.record_search: every cell of a grid
        self.worker_threads: set[int] = set()  # xdist: the torch threads each worker ran with
        self.unjudged: list[dict[str, Any]] = []  # das tests that failed before any verdict
        self.not_passed: set[str] = set()  # failed in any phase, xfailed or skipped: node ids
        self.failed_subtests: set[str] = set()  # node ids: pytest fails the test after its call
        self.torn_down: set[str] = set()  # node ids whose teardown reported: they ran whole
        self.rerun: set[str] = set()  # tests whose attempt pytest-rerunfailures runs again
        # each test's records from its call report, counted at its teardown report
        self.pending: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
        self.setup_error: str | None = None  # what stopped the run at setup (exit 4)
        self.deselected = 0  # by -k, -m, --deselect: a baseline then holds only a selection
        self.last_failed: int | None = None  # --lf under xdist: the workers' count
        self.notes: list[str] = []  # about the baseline saved, or not saved, at the end
        self.write_failed = False  # a report or baseline asked for could not be written
        self.loaded: Any = None  # the model das_session loaded (None: none was, or it failed)
        self.model: dict[str, Any] | None = None  # its report block; from a worker under xdist

    def model_loaded(self, model: Any) -> None:
        """das_session loaded ``model``: the reports name it even when nothing is judged."""
        self.loaded = model

    def _model(self) -> dict[str, Any] | None:
        """The report's ``model`` block: the loaded model's, or a worker's, or a record's;
        described at the end, for its fingerprint hashes the weights (a judged claim has done
        so already)."""
        if self.model is None and hasattr(self.loaded, "describe"):
            self.model = self.loaded.describe()
        if self.model is None:
            self.model = next((r["model"] for r in self.records if r.get("model")), None)
        return self.model

    def _environment(self) -> dict[str, Any]:
        """``report.environment``, with the thread count the tests ran with: under xdist the
        workers', not the controller's (one value, or a sorted list if they differed)."""
        from das_assert.report import environment

        # torch only where das tests ran: a plain suite's --das-json must not import it
        ran = self.loaded is not None or self.worker_threads or self.records or self.fuzz
        model = self._model()
        found = environment(
            import_torch=bool(ran or self.limits or self.searches),
            model_device=model.get("device") if model else None,
        )
        if self.worker_threads:
            threads = sorted(self.worker_threads)
            found["torch_threads"] = threads[0] if len(threads) == 1 else threads
        return found

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        # das tests alone: a run of hypotheses/ beside tests that addopts' -m 'not bench' drops
        # was called a selection, which excused the gate from claims the baseline had
        self.deselected += sum(  # under xdist on each worker, which collects: sent below
            bool(DAS_FIXTURES.intersection(getattr(item, "fixturenames", ()))) for item in items
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: every worker collects and deselects the same tests; take one's count."""
        output = getattr(node, "workeroutput", {})
        self.deselected = max(self.deselected, int(output.get("das_deselected", 0)))
        if output.get("das_last_failed") is not None:  # the controller collects nothing
            self.last_failed = max(self.last_failed or 0, int(output["das_last_failed"]))
        if output.get("das_threads") is not None:
            self.worker_threads.add(int(output["das_threads"]))
        if self.model is None and output.get("das_model"):
            self.model = output["das_model"]  # the controller loads no model itself

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A file that cannot be collected is a reason nothing in it was judged."""
        if report.failed and not hasattr(self.config, "workerinput"):
            message = str(report.longreprtext).strip().splitlines() or ["collection failed"]
            self.unjudged.append(
                {"test_id": report.nodeid, "when": "collect", "message": cut(message[-1])}
            )

    def pytest_sessionstart(self) -> None:
        """Replace the reports asked for with one that says the run has not finished, until
        it writes its own: a run killed past every handler (SIGKILL, pytest-timeout's
        ``os._exit``) left the earlier run's reports, read as this one's."""
        if not hasattr(self.config, "workerinput"):
            self._write_reports(UNFINISHED_RUN, placeholder=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take a test's records from its call report, and count them at its teardown report:
        pytest-rerunfailures may run it again after either (a ``rerun`` outcome)."""
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the records travel to the controller inside the report
        if report.outcome == "rerun" or (report.when == "teardown" and report.nodeid in self.rerun):
            self._run_again(report)
            return
        if not report.passed:  # an xfail or a skip did not pass either
            self.not_passed.add(report.nodeid)
        if isinstance(report, pytest.SubtestReport):  # one of its subtests: its records are the
            if report.failed:  # test's own (its call report has them); a failure fails the test
                self.failed_subtests.add(report.nodeid)
            report.user_properties = not_ours(report.user_properties)
            return
        has_verdict = judged(report.user_properties)
        if report.failed and getattr(report, DAS_TEST, False) and not has_verdict:
            crash = getattr(report.longrepr, "reprcrash", None)  # the exception, one line
            message = getattr(crash, "message", None) or str(report.longreprtext).strip()
            self.unjudged.append(
                {"test_id": report.nodeid, "when": report.when, "message": cut(message)}
            )
        if report.when == "call":
            outcome = outcome_of(report)
            if outcome == "passed" and report.nodeid in self.failed_subtests:
                outcome = "failed"  # as pytest says of it later ("contains 1 failed subtest")
            self.pending[report.nodeid] = [
                (name, record, outcome)
                for name, value in report.user_properties
                if name in REPORTED_KINDS and (record := record_of(value)) is not None
            ]
        report.user_properties = not_ours(report.user_properties)  # the bulky records: not junit
        if report.when == "teardown":
            self.torn_down.add(report.nodeid)
            self._count(report.nodeid)

    def _run_again(self, report: pytest.TestReport) -> None:
        """An attempt that pytest-rerunfailures runs again: none of its records count, nor
        reach ``--junitxml`` (which reads a test's properties from its teardown reports)."""
        self.pending.pop(report.nodeid, None)  # its call's, where the teardown failed
        report.user_properties = not_ours(report.user_properties)
        if report.when == "teardown":
            self.rerun.discard(report.nodeid)
            report.user_properties = [
                (k, v) for k, v in report.user_properties if k not in JUNIT_PROPERTIES
            ]
        else:
            self.rerun.add(report.nodeid)

    def _count(self, nodeid: str) -> None:
        """Add the records of ``nodeid``'s last call to the reports."""
        for name, record, outcome in self.pending.pop(nodeid, []):
            if name in ("das_fuzz", "das_limit", "das_search"):
                record["test_id"] = nodeid
                if isinstance(confirmed := (record.get("best") or {}).get("confirmation"), dict):
                    confirmed["test_id"] = nodeid  # a search's best cell, on fresh pairs
                {"das_fuzz": self.fuzz, "das_limit": self.limits, "das_search": self.searches}[
                    name
                ].append(record)
                if record.get("heatmap_unwritten"):  # the search stands without its picture
                    self._unwritten(
                        f"das: --das-plots heatmap of {nodeid}", record["heatmap_unwritten"]
                    )
                continue
            record["outcome"] = outcome  # das_result
            self.records.append(record)
            self.config.hook.pytest_das_result(config=self.config, record=record)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not (self.records or self.fuzz or self.limits or self.searches or self.notes):
            return
        from das_assert.summary import fuzz_lines, limit_lines, search_lines, summary_lines

        terminalreporter.section("das: causal hypotheses")
        lines = summary_lines(self.records) + search_lines(self.searches)
        lines += fuzz_lines(self.fuzz, self.not_passed) + limit_lines(self.limits)
        for line in lines + self.notes:
            terminalreporter.write_line(line)

    @pytest.hookimpl(tryfirst=True)  # before xdist waits for its workers to exit (seconds)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the reports asked for, even when nothing was judged: a report left from an
        earlier run would otherwise be read as this one's. Ctrl-C and SIGTERM wait until they
        are written (a CI job cancelled after its last test left the earlier run's reports
        and a half-filled baseline folder), and then make the exit status INTERRUPTED."""
        from das_assert.termination import signals_deferred

        with signals_deferred() as received:
            self._finish(session, exitstatus)
        if received and not hasattr(self.config, "workerinput"):
            import signal

            names = ", ".join(sorted({signal.Signals(s).name for s in received}))
            self.notes.append(f"das: {names} came while the reports were written: written whole")
            session.exitstatus = pytest.ExitCode.INTERRUPTED

    def _finish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):
            output = self.config.workeroutput  # type: ignore[attr-defined]
            output["das_deselected"] = self.deselected
            output["das_last_failed"] = self._last_failed_count()
            if self.loaded is not None:  # a worker that ran das tests: the threads they had
                import torch

                output["das_threads"] = torch.get_num_threads()
            if self.config.getoption("das_json"):
                output["das_model"] = self._model()
            return
        for nodeid in list(self.pending):  # a test whose teardown never reported (Ctrl-C)
            self._count(nodeid)
        status = pytest.ExitCode(exitstatus) if exitstatus in set(pytest.ExitCode) else None
        # cut short (Ctrl-C, -x, a collection error): the results are not the whole suite; -x
        # or --maxfail at the last test cut nothing short
        ran_all = bool(session.items) and all(i.nodeid in self.torn_down for i in session.items)
        complete = (
            status in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
            and (ran_all or not (session.shouldfail or session.shouldstop))
            # --continue-on-collection-errors runs the rest, but a file's claims are missing
            and not any(u["when"] == "collect" for u in self.unjudged)
            and not ran_no_test(self.config)  # nothing ran (--collect-only, --setup-plan)
        )
        selection = self._selection()  # the run was narrowed to some of the tests
        not_judged = self._judge_baseline_coverage(session, complete, selection)
        if not_judged and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            status = pytest.ExitCode.TESTS_FAILED
        run = {
            "exit_status": int(status if status is not None else exitstatus),
            "exit_code": status.name if status is not None else None,
            "complete": complete,
            "tests_collected": session.testscollected,
            "selection": selection or self._files_left_out(),
            "setup_error": self.setup_error,  # das.yaml, model, cache or baseline: no verdicts
            # a baseline's claims this complete run did not judge: the gate failed on them
            "baseline_claims_not_judged": not_judged,
        }
        try:
            self._save_baseline(run)
        except OutputWriteError as exc:  # disk full, ulimit -f: the run's results stand
            self._unwritten(f"das: baseline {self.config.getoption('das_save_baseline')}", exc)
        self._note_compared()
        self._write_reports(run)
        if self.write_failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR  # CI must not take it as done

    def pytest_unconfigure(self) -> None:
        self.loaded = None  # the model: a later run in this process must not keep it alive

    def usage_error(self, message: str) -> None:
        """The run stops on a usage error before any test (its output paths checked already):
        the reports asked for still say so, for an old one must not be read as this run's."""
        self.setup_error = message
        usage = pytest.ExitCode.USAGE_ERROR
        run = {
            "exit_status": int(usage),
            "exit_code": usage.name,
            "complete": False,
            "tests_collected": 0,
            "selection": None,
            "setup_error": message,
            "baseline_claims_not_judged": [],
        }
        self._write_reports(run)

    def _write_reports(self, run: dict[str, Any], *, placeholder: bool = False) -> None:
        """Write ``--das-json`` and ``--das-markdown``. A ``placeholder`` (the run's start) is
        not appended to ``$GITHUB_STEP_SUMMARY``, and where it cannot be written the run's own
        reports, at its end, say so."""
        from das_assert.plugin_options import invocation_path

        json_path = self.config.getoption("das_json")
        md_path = self.config.getoption("das_markdown")
        json_path = json_path and invocation_path(self.config, json_path)
        md_path = md_path and invocation_path(self.config, md_path)
        if placeholder and md_path and appends_to_step_summary(md_path):
            md_path = None
        if not (json_path or md_path):
            return
        from das_assert.report import build_report, markdown_table, robustness_summary, write_report
        from das_assert.row_order import by_test_id, in_report_order
        from das_assert.store import write_markdown

        records = in_report_order(self.records)
        # by test (a stable sort: each test's examples keep their order), as xdist's workers
        # report in the order they finish
        fuzz, limits, searches = (
            sorted(kind, key=by_test_id) for kind in (self.fuzz, self.limits, self.searches)
        )
        robustness = robustness_summary(fuzz, self.not_passed)
        if json_path:
            report = build_report(self._model(), records, self._environment())
            report["run"] = run
            report["robustness"] = robustness
            report["limits"] = limits
            report["searches"] = searches
            report["unjudged"] = self.unjudged
            what = f"das: --das-json {self._shown(str(json_path))}"
            self._write(what, write_report, Path(json_path), report, placeholder=placeholder)
        if md_path:
            table = markdown_table(records, robustness, limits, searches)
            if self.notes:  # the baseline compared with, or saved: the table gives only Δ
                table += "\n" + "".join(f"- {note}\n" for note in self.notes)  # nested lists too
            if placeholder:
                table += f"\n**{UNFINISHED}**\n"
            elif ran_no_test(self.config):
                table += f"\n**Nothing ran**: {plain(ran_no_test(self.config))}.\n"
            elif not run["complete"]:
                table += (
                    f"\n**This run did not complete** (pytest exit {run['exit_code']}): "
                    "the table covers only the tests that ran.\n"
                )
            if self.setup_error:
                table += "\n**Stopped at setup**\n\n" + fenced(self.setup_error)
            if self.unjudged:
                table += "\n**Failed before a verdict**\n\n" + "".join(
                    f"- {code(u['test_id'], cell=False)} ({u['when']}): {plain(u['message'])}\n"
                    for u in self.unjudged
                )
            what = f"das: --das-markdown {self._shown(str(md_path))}"
            self._write(what, write_markdown, Path(md_path), table, placeholder=placeholder)

    def _write(
        self, what: str, write: Any, path: Path, content: Any, *, placeholder: bool = False
    ) -> None:
        try:
            write(path, content)
        except OutputWriteError as exc:
            if not placeholder:  # the run's own reports, at its end, say it once
                self._unwritten(what, exc)

    def _unwritten(self, what: str, exc: Exception | str) -> None:
        """A file asked for could not be written: said once among the notes (not a traceback
        that hides the summary), and the run's exit status is no longer 0."""
        self.write_failed = True
        self.notes.append(f"{what} NOT written: {exc}")

    def _shown(self, path: str) -> str:
        from das_assert.plugin_options import shown_path

        return shown_path(path, Path(self.config.invocation_params.dir))

    def _last_failed_count(self) -> int | None:
        """How many of the collected tests --lf kept as failed last time (whole files are
        skipped, never collected nor deselected: the plugin itself knows), or None."""
        plugin = self.config.pluginmanager.get_plugin("lfplugin")
        if not self.config.getoption("lf", False) or plugin is None:
            return None
        failed = getattr(plugin, "_previously_failed_count", None)
        if failed is None and not hasattr(self.config, "workerinput"):
            failed = len(getattr(plugin, "lastfailed", {}))  # a pytest without the count
        return failed

    def _selection(self) -> str | None:
        """Why this run held only some of the collected tests, or None."""
        if self.config.getoption("lf", False):
            # under xdist the workers' count: the controller collects nothing
            failed = self._last_failed_count() if self.last_failed is None else self.last_failed
            if failed:
                return "--lf ran only the tests that failed last time"
        if self.deselected:
            given = [
                f"{flag} {value!r}"
                for flag, name in (("-k", "keyword"), ("-m", "markexpr"))
                if (value := self.config.getoption(name, None))
            ]
            given += [f"--deselect {d}" for d in self.config.getoption("deselect", None) or []]
            given += [  # which deselect what ran before: the tests that passed, or all of them
                flag
                for flag, name in (("--sw", "stepwise"), ("--lf", "lf"))
                if self.config.getoption(name, False)
            ]
            how = ", ".join(given) or "by a plugin"
            return f"{self.deselected} test(s) were deselected ({how})"
        # Node ids pick tests out of their files (test files given alone may be the whole suite)
        if narrowed := [a for a in self.config.args if "::" in a]:
            return f"the run was given node ids: {' '.join(narrowed)}"
        return None

    def _files_left_out(self) -> str | None:
        """Why a run given some of a folder's das test files (``pytest hypotheses/test_a.py``)
        holds only their claims, or None: a baseline it saves says so (it was saved as the
        whole suite, and became ``latest``). Not a selection for the gate: the claims of the
        files given must all be judged, and those of files not given are noted apart."""
        if not (left_out := self._test_files_left_out()):
            return None
        more = f" and {len(left_out) - 3} more" if len(left_out) > 3 else ""
        return (
            f"the run was given some of its folders' das test files: {', '.join(left_out[:3])}"
            f"{more} not among its paths"
        )

    def _test_files_left_out(self) -> list[str]:
        """das test files (ones that use the das fixtures) in the folders of this run's das
        tests that lie outside the paths it was given. Rootdir-relative, sorted."""
        root = self.config.rootpath
        records = self.records + self.limits + self.searches + self.fuzz
        tested = {r["test_id"].split("::")[0] for r in records if r.get("test_id")}
        beside = {
            path
            for folder in {(root / file).parent for file in tested}
            for pattern in ("test_*.py", "*_test.py")
            for path in folder.glob(pattern)
            if _uses_das(path)
        }
        names = {path.relative_to(root).as_posix() for path in beside if path.is_relative_to(root)}
        return sorted(name for name in names - tested if not self._given(name))


def _uses_das(path: Path) -> bool:
    """Whether a test file asks for das_assert's fixtures (``das``, ``das_session``)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(name in text for name in ("das_session", "das.assert_", "das.record_search"))
