"""SIGTERM (a CI timeout, ``docker stop``) ends a run as Ctrl-C does, not at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from das_assert.termination import TerminatedError, term_as_interrupt

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX"
)


def _stopped_by_sigterm(command: list[str], cwd: Path, started: Path) -> tuple[int, str]:
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def test_a_pytest_run_stopped_by_sigterm_writes_its_report_as_incomplete(tmp_path: Path) -> None:
    # Python's default SIGTERM ended the run at once: the earlier run's r.json stayed, to be
    # read as this run's, and pytest's own output was lost.
    (tmp_path / "r.json").write_text('{"run": {"complete": true}, "results": ["earlier"]}')
    (tmp_path / "test_slow.py").write_text(
        "import pathlib, time\n\n\ndef test_slow():\n"
        "    pathlib.Path('started').write_text('')\n    time.sleep(120)\n"
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--das-json=r.json"]
    returncode, output = _stopped_by_sigterm(command, tmp_path, tmp_path / "started")
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    run = json.loads((tmp_path / "r.json").read_text())["run"]
    assert run["complete"] is False
    assert run["exit_code"] == "INTERRUPTED"


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler runs between bytecodes, at once


def test_a_handler_of_the_callers_own_is_kept_and_ours_is_undone() -> None:
    def own(signum: int, frame: object) -> None:
        pass

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, own)
        term_as_interrupt()()
        assert signal.getsignal(signal.SIGTERM) is own
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        restore = term_as_interrupt()
        with pytest.raises(TerminatedError, match="SIGTERM"):
            _terminate_self()
        restore()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_command_stopped_by_sigterm_says_so_and_exits_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from das_assert import cli

    def stopped(args: object) -> int:
        raise TerminatedError("stopped by signal SIGTERM")

    monkeypatch.setitem(cli.COMMANDS, "baselines", stopped)
    before = signal.getsignal(signal.SIGTERM)  # whatever this pytest run has: kept
    assert cli.main(["baselines"]) == 143
    assert "interrupted by SIGTERM: no file was left half-written" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


def _child_handler_is_default(queue: object) -> None:
    queue.put(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)  # type: ignore[attr-defined]


def test_a_forked_child_gets_the_default_back() -> None:
    # multiprocessing's forked workers inherited the handler: Process.terminate() raised in
    # their code instead of ending them, in every pytest run of the environment.
    import multiprocessing

    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    restore = term_as_interrupt()
    try:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_handler_is_default, args=(queue,))
        child.start()
        assert queue.get(timeout=60) is True
        child.join(timeout=60)
    finally:
        restore()
        signal.signal(signal.SIGTERM, before)


def test_a_run_that_writes_no_das_output_keeps_pythons_default(tmp_path: Path) -> None:
    # das_assert is loaded by every pytest run of its environment: one without das outputs
    # (a report, a baseline, plots) has nothing a SIGTERM would leave behind, so nothing changes.
    (tmp_path / "test_plain.py").write_text(
        "import signal\n\n\ndef test_default():\n"
        "    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_signal_while_the_reports_are_written_waits_for_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a CI job cancelled after its last test (under xdist, seconds of finishing) left the
    # earlier run's report where this one's belonged, and a half-filled baseline folder
    from das_assert.plugin_report import Reporter
    from das_assert.termination import signals_deferred

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with signals_deferred() as received:
        os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGTERM]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before

    save = Reporter._save_baseline

    def cancelled_meanwhile(self: Reporter, run: dict) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        save(self, run)

    monkeypatch.setattr(Reporter, "_save_baseline", cancelled_meanwhile)
    (pytester.path / "report.json").write_text('{"earlier": "run"}')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--das-json=report.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*das: SIGTERM came while the reports were written: written*"])
    report = json.loads((pytester.path / "report.json").read_text())
    assert report["run"]["tests_collected"] == 1
