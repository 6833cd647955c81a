"""The plugin's reporter: gathers every judged claim, fuzz record, measured limit and unjudged
failure (from xdist workers too, inside their reports) and writes the terminal summary,
``--das-json`` and ``--das-markdown``, and the baselines of ``--das-save-baseline``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from das_assert.errors import DasError, OutputWriteError

__all__ = ["Reporter"]

#: The user properties that carry das records from a test's call phase to the reports.
_KINDS = ("das_result", "das_fuzz", "das_limit", "das_search")


class Reporter:
    """Collects the records of judged claims (also from xdist workers) and writes the reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []
        self.fuzz: list[dict[str, Any]] = []
        self.limits: list[dict[str, Any]] = []  # das.assert_breaks_on
        self.searches: list[dict[str, Any]] = []  # das.record_search: every cell of a grid
        self.worker_threads: set[int] = set()  # xdist: the torch threads each worker ran with
        self.unjudged: list[dict[str, Any]] = []  # das tests that failed before any verdict
        self.setup_error: str | None = None  # what stopped the run at setup (exit 4)
        self.deselected = 0  # by -k, -m, --deselect: a baseline then holds only a selection
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
        found = environment(import_torch=bool(ran or self.limits or self.searches))
        if self.worker_threads:
            threads = sorted(self.worker_threads)
            found["torch_threads"] = threads[0] if len(threads) == 1 else threads
        return found

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)  # under xdist on each worker, which collects: sent below

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: every worker collects and deselects the same tests; take one's count."""
        output = getattr(node, "workeroutput", {})
        self.deselected = max(self.deselected, int(output.get("das_deselected", 0)))
        if output.get("das_threads") is not None:
            self.worker_threads.add(int(output["das_threads"]))
        if self.model is None and output.get("das_model"):
            self.model = output["das_model"]  # the controller loads no model itself

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A file that cannot be collected is a reason nothing in it was judged."""
        if report.failed and not hasattr(self.config, "workerinput"):
            message = str(report.longreprtext).strip().splitlines() or ["collection failed"]
            self.unjudged.append(
                {"test_id": report.nodeid, "when": "collect", "message": message[-1][:500]}
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the records travel to the controller inside the report
        judged = any(name == "das_result" for name, _ in report.user_properties)
        if report.failed and "das" in report.keywords and not judged:
            crash = getattr(report.longrepr, "reprcrash", None)  # the exception, one line
            message = getattr(crash, "message", None) or str(report.longreprtext).strip()
            self.unjudged.append(
                {"test_id": report.nodeid, "when": report.when, "message": message[:500]}
            )
        kept = []
        for name, value in report.user_properties:
            record = _record(value) if name in _KINDS else None
            if record is None:  # not ours: a test's own record_property("das_result", 1)
                kept.append((name, value))
                continue
            if report.when != "call":
                continue
            if name in ("das_fuzz", "das_limit", "das_search"):
                record["test_id"] = report.nodeid
                {"das_fuzz": self.fuzz, "das_limit": self.limits, "das_search": self.searches}[
                    name
                ].append(record)
                continue
            record["outcome"] = report.outcome  # das_result
            self.records.append(record)
            self.config.hook.pytest_das_result(config=self.config, record=record)
        report.user_properties = kept  # keep the bulky record out of --junitxml

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not (self.records or self.fuzz or self.limits or self.searches or self.notes):
            return
        from das_assert.summary import fuzz_lines, limit_lines, search_lines, summary_lines

        terminalreporter.section("das: causal hypotheses")
        lines = summary_lines(self.records) + search_lines(self.searches)
        lines += fuzz_lines(self.fuzz) + limit_lines(self.limits)
        for line in lines + self.notes:
            terminalreporter.write_line(line)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the reports asked for, even when nothing was judged: a report left from an
        earlier run would otherwise be read as this one's."""
        if hasattr(self.config, "workerinput"):
            output = self.config.workeroutput  # type: ignore[attr-defined]
            output["das_deselected"] = self.deselected
            if self.loaded is not None:  # a worker that ran das tests: the threads they had
                import torch

                output["das_threads"] = torch.get_num_threads()
            if self.config.getoption("das_json"):
                output["das_model"] = self._model()
            return
        status = pytest.ExitCode(exitstatus) if exitstatus in set(pytest.ExitCode) else None
        # cut short (Ctrl-C, -x, a collection error): the results are not the whole suite
        complete = (
            status in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
            and not (session.shouldfail or session.shouldstop)
            # --continue-on-collection-errors runs the rest, but a file's claims are missing
            and not any(u["when"] == "collect" for u in self.unjudged)
            and not self.config.getoption("collectonly")  # nothing ran
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
            "selection": selection,
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

    def _write_reports(self, run: dict[str, Any]) -> None:
        json_path = self.config.getoption("das_json")
        md_path = self.config.getoption("das_markdown")
        if not (json_path or md_path):
            return
        from das_assert.report import build_report, markdown_table, robustness_summary, write_report
        from das_assert.store import write_markdown

        records = sorted(self.records, key=lambda r: (r["test_id"], r["claim"]))
        # by test (a stable sort: each test's examples keep their order), as xdist's workers
        # report in the order they finish
        fuzz, limits, searches = (
            sorted(kind, key=lambda r: r["test_id"])
            for kind in (self.fuzz, self.limits, self.searches)
        )
        robustness = robustness_summary(fuzz)
        if json_path:
            report = build_report(self._model(), records, self._environment())
            report["run"] = run
            report["robustness"] = robustness
            report["limits"] = limits
            report["searches"] = searches
            report["unjudged"] = self.unjudged
            self._write(f"das: --das-json {json_path}", write_report, Path(json_path), report)
        if md_path:
            table = markdown_table(records, robustness, limits, searches)
            if self.notes:  # the baseline compared with, or saved: the table gives only Δ
                table += "\n" + "".join(f"- {note}\n" for note in self.notes)
            if self.config.getoption("collectonly"):
                table += "\n**Nothing ran**: --collect-only.\n"
            elif not run["complete"]:
                table += (
                    f"\n**This run did not complete** (pytest exit {run['exit_code']}): "
                    "the table covers only the tests that ran.\n"
                )
            if self.setup_error:
                table += "\n**Stopped at setup**\n\n```\n" + self.setup_error + "\n```\n"
            if self.unjudged:
                table += "\n**Failed before a verdict**\n\n" + "".join(
                    f"- `{u['test_id']}` ({u['when']}): {u['message']}\n" for u in self.unjudged
                )
            self._write(f"das: --das-markdown {md_path}", write_markdown, Path(md_path), table)

    def _write(self, what: str, write: Any, path: Path, content: Any) -> None:
        try:
            write(path, content)
        except OutputWriteError as exc:
            self._unwritten(what, exc)

    def _unwritten(self, what: str, exc: Exception | str) -> None:
        """A file asked for could not be written: said once among the notes (not a traceback
        that hides the summary), and the run's exit status is no longer 0."""
        self.write_failed = True
        self.notes.append(f"{what} NOT written: {exc}")

    def _save_baseline(self, run: dict[str, Any]) -> None:
        """Save the baseline of a complete run; a run cut short (Ctrl-C, -x, a collection
        error) saves none and removes the alignment files it wrote for it, for a later
        ``--das-compare latest`` would take the fragment for the whole suite."""
        asked = self.config.getoption("das_save_baseline")
        if not asked:
            return
        try:
            self._save_baseline_files(run, asked)
        finally:  # the folders this run reserved: their tokens go, and each folder left empty
            from das_assert.baseline import (
                RESERVED_BY,
                abandoned_reservations,
                release_reservation,
                reservations,
            )
            from das_assert.plugin_options import baseline_root, run_token

            root = baseline_root(self.config)
            token, now = run_token(self.config), time.time()
            try:
                for directory in root.iterdir() if root.is_dir() else ():
                    for folder in reservations(directory, token):
                        release_reservation(folder)
                    for folder in abandoned_reservations(directory, token, now):
                        self.notes.append(
                            f"das: {self._shown(str(folder))}/ was reserved more than a day ago "
                            "by a run that never finished (killed?) and keeps its number: "
                            "delete it unless a run is still saving into it"
                        )
            except OSError as exc:  # a folder this user may not list: the reports still go out
                self.notes.append(
                    f"das: the baseline folders this run reserved under {self._shown(str(root))} "
                    f"could not all be released ({exc}); a folder holding only a "
                    f"{RESERVED_BY} file can be deleted"
                )

    def _save_baseline_files(self, run: dict[str, Any], asked: str) -> None:
        stems = {r["baseline_file"] for r in self.records + self.searches if r.get("baseline_file")}
        if not stems:  # nothing judged: a collection error, Ctrl-C before the first verdict
            why = (
                "--collect-only ran no test"
                if self.config.getoption("collectonly")
                else f"the run did not complete (pytest exit {run['exit_code']})"
                if not run["complete"]
                else "no claim reached a verdict"
            )
            self.notes.append(f"das: baseline {asked} NOT saved: {why}")
            return
        from das_assert.baseline import save_baseline

        for stem in sorted(stems):
            records = [r for r in self.records if r.get("baseline_file") == stem]
            searches = [r for r in self.searches if r.get("baseline_file") == stem]
            files = _alignment_files(stem, records, searches)
            name = Path(stem).name
            unwritten = [r for r in records + searches if r.get("alignment_unwritten")]
            which = " and ".join(
                f"{len(kind)} {noun}"
                for kind, noun in (
                    ([r for r in records if r.get("alignment_unwritten")], "claim(s)"),
                    ([r for r in searches if r.get("alignment_unwritten")], "search(es)"),
                )
                if kind
            )
            if unwritten or not run["complete"]:
                for file in files:
                    file.unlink(missing_ok=True)
            if unwritten:  # a baseline without a claim's alignment could not gate its transfer
                self._unwritten(
                    f"das: baseline {name}",
                    f"the alignment file of {which} could not be written "
                    f"({unwritten[0]['alignment_unwritten']}); the {len(files)} written for it "
                    "were removed",
                )
                continue
            if not run["complete"]:
                self.notes.append(
                    f"das: baseline {name} NOT saved: the run did not complete (pytest exit "
                    f"{run['exit_code']}), and a baseline must hold the whole suite; the "
                    f"{len(files)} alignment file(s) written for it were removed"
                )
                continue
            if Path(stem + ".json").exists():  # written since this run reserved the number
                self.notes.append(
                    f"das: baseline {name} NOT saved: {self._shown(stem + '.json')} was written "
                    "by another process (an earlier das_assert, which did not reserve its "
                    "number, or by hand) while this run ran, and is not replaced; this run's "
                    f"alignment files are in {self._shown(stem)}/: delete both and save again"
                )
                continue
            try:
                save_baseline(
                    Path(stem + ".json"),
                    model=(records + searches)[0]["model"],
                    environment=self._environment(),
                    records=records,
                    searches=searches,
                )
            except OutputWriteError as exc:  # its alignments, without it, would be a stray folder
                for file in files:
                    file.unlink(missing_ok=True)
                self._unwritten(
                    f"das: baseline {name}",
                    f"{exc}; the {len(files)} alignment file(s) written for it were removed",
                )
                continue
            count = _claims(len(records))
            if cells := sum(len(s["cells"]) for s in searches if not s.get("cells_unsaved")):
                count += f", {cells} search cell{'' if cells == 1 else 's'}"
            self.notes.append(f"das: baseline saved: {self._shown(stem + '.json')} ({count})")
            for search in searches:
                if why := search.get("cells_unsaved"):
                    test = search["test_id"]
                    self.notes.append(f"das: baseline {name} leaves out {test}'s {why}")
            if failed := sorted({r["claim"] for r in records if r.get("passed") is False}):
                self.notes.append(
                    f"das: baseline {name} records {len(failed)} claim(s) that failed in this "
                    f"run ({', '.join(failed)}): a --das-compare against it gates those numbers "
                    "as they are; save it from a passing run to gate against claims that hold"
                )
            if run["selection"]:
                self.notes.append(
                    f"das: baseline {name} holds only the {len(records)} claim(s) selected: "
                    f"{run['selection']}, and a --das-compare against it fails every claim it "
                    "lacks"
                )

    def _note_compared(self) -> None:
        """Name the baseline each judged claim was compared with: a passing gate printed only
        deltas, and with two baselines of one name saved, which one was the reference?"""
        compared: dict[str, int] = {}
        for record in self.records:
            if path := (record.get("baseline") or {}).get("path"):
                compared[path] = compared.get(path, 0) + 1
        # Read only when a baseline was compared: it imports torch, which a run without das tests
        # (a pytester run in-process, a plain test file) never needed.
        here = self._environment() if compared else {}
        for path, count in sorted(compared.items()):
            claims = f"{count} claim{'' if count == 1 else 's'}"
            self.notes.append(f"das: compared with baseline: {self._shown(path)} ({claims})")
            if differs := _other_environment(path, here):
                self.notes.append(
                    f"das: that baseline was saved with {differs}: a fit rounds otherwise there, "
                    "which can move an IIA by about 0.005 with no change to the model"
                )

    def _judge_baseline_coverage(
        self, session: pytest.Session, complete: bool, selection: str | None
    ) -> list[str]:
        """The claims of the baselines compared with that this run did not judge, where that
        fails the gate (``path::key`` each): a complete run, not narrowed, saving no baseline,
        without --das-warn-unused, whose paths cover the claim's test file. As ``das_assert
        compare`` fails an entry missing from NEW, a gate that cannot check a claim does not
        pass; a removed, renamed or skipped claim test is a change to review, and saving a
        baseline without it records that review. Notes say which, either way."""
        from das_assert.baseline import baseline_entries_not_judged

        also = []
        if not any(record.get("baseline") for record in self.records):
            if not (complete and self.config.getoption("das_compare")):
                return []
            # No claim reached the baseline (every das test skipped, say): a gate that checked
            # nothing does not pass. Resolved here, as no das_session fixture did.
            try:
                from das_assert.plugin import compared_baseline

                also = [str(compared_baseline(self.config, session))]
            except DasError as exc:
                self.notes.append(f"das: FAILED: --das-compare: {exc}")
                return [f"--das-compare: {exc}"]
        found = baseline_entries_not_judged(self.records, also)
        for path, keys in found.items():  # in the Markdown too, which the notes end
            self.notes.append(
                f"Baseline entries with no test in this run ({self._shown(path)}):\n"
                + "\n".join(f"  - {key}" for key in keys)
            )
        if not complete:
            return []  # cut short: its exit status says so
        elsewhere = {p: [k for k in keys if not self._given(k)] for p, keys in found.items()}
        if count := sum(map(len, elsewhere.values())):
            files = ", ".join(self._shown(path) for path, keys in elsewhere.items() if keys)
            self.notes.append(
                f"das: {_claims(count)} of {files} not judged: their test files were not among "
                "this run's paths"
            )
        found = {p: [k for k in keys if self._given(k)] for p, keys in found.items()}
        found = {path: keys for path, keys in found.items() if keys}
        if not found:
            return []
        claims = _claims(sum(map(len, found.values())))
        files = ", ".join(self._shown(path) for path in found)
        if selection:
            self.notes.append(f"das: {claims} of {files} not judged, as {selection} (listed above)")
            return []
        if self.config.getoption("das_save_baseline"):
            self.notes.append(
                f"das: {claims} of {files} not judged (listed above): the baseline saved now "
                "leaves them out"
            )
            return []
        if self.config.getoption("das_warn_unused"):
            self.notes.append(
                f"das: {claims} of {files} not judged by this complete run (listed above); "
                "--das-warn-unused: not failed"
            )
            return []
        self.notes.append(
            f"das: FAILED: {claims} of {files} not judged by this complete run (listed above): a "
            "gate that cannot check a claim does not pass. Run each one's test again (removed, "
            "renamed, skipped, or failed before a verdict?), or save a baseline without them "
            "(--das-save-baseline=NAME) and compare with that"
        )
        return [f"{path}::{key}" for path, keys in found.items() for key in keys]

    def _given(self, key: str) -> bool:
        """Whether the test file of baseline claim ``key`` (a rootdir-relative node id) lies
        under a path this run was given (every one where it was given none), or is gone: a
        file that exists outside them was left out by the command line, not by a change."""
        file = (self.config.rootpath / key.split("::")[0]).resolve()
        if not file.exists():
            return True
        start = Path(self.config.invocation_params.dir)
        for arg in self.config.args:
            given = (start / arg.split("::")[0]).resolve()
            if given == file or given in file.parents:
                return True
        return False

    def _shown(self, path: str) -> str:
        from das_assert.plugin_options import shown_path

        return shown_path(path, Path(self.config.invocation_params.dir))

    def _selection(self) -> str | None:
        """Why this run held only some of the collected tests, or None."""
        last_failed = self.config.pluginmanager.get_plugin("lfplugin")
        if self.config.getoption("lf", False) and last_failed is not None:
            # whole files are skipped, never collected nor deselected: ask the plugin itself
            failed = getattr(last_failed, "_previously_failed_count", None)
            if failed is None:  # a pytest without it: the failures it knows of
                failed = len(getattr(last_failed, "lastfailed", {}))
            if failed:
                return "--lf ran only the tests that failed last time"
        if self.deselected:
            return f"{self.deselected} test(s) were deselected (-k, -m, --deselect)"
        # Node ids pick tests out of their files (test files given alone may be the whole suite)
        if narrowed := [a for a in self.config.args if "::" in a]:
            return f"the run was given node ids: {' '.join(narrowed)}"
        return None


def _claims(count: int) -> str:
    return f"{count} claim{'' if count == 1 else 's'}"


def _alignment_files(
    stem: str, records: list[dict[str, Any]], searches: list[dict[str, Any]]
) -> list[Path]:
    """The alignment files that claims ``records`` and the cells of ``searches`` wrote beside
    the baseline ``stem``."""
    named = records + [cell for search in searches for cell in search.get("cells", [])]
    return [Path(stem) / r["alignment_file"] for r in named if r.get("alignment_file")]


def _record(value: Any) -> dict[str, Any] | None:
    """A das record carried in a user property (a JSON object), else None."""
    try:
        record = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _other_environment(path: str, here: dict[str, Any]) -> str | None:
    """What of ``here``'s CPU or GPU and thread count the baseline at ``path`` was saved
    under otherwise, as ``device_name 'X' (here 'Y')``; None when the same or unknown."""
    try:
        saved = json.loads(Path(path).read_text()).get("environment") or {}
    except (OSError, ValueError, AttributeError):
        return None
    differs = [
        f"{key} {saved[key]!r} (here {here.get(key)!r})"
        for key in ("device_name", "torch_threads")
        if saved.get(key) is not None and str(saved[key]) != str(here.get(key))
    ]
    return ", ".join(differs) or None
