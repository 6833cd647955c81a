"""What stops a das run before any alignment trains (on a 7B model, hours): the claims and
sites the selected tests ask for that das.yaml lacks, an assertion without ``claim=``, and any
setup error, each one message for the whole run (exit 4)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, NoReturn

import pytest

from das_assert.plugin_settings import early_settings

__all__ = ["check_claim_names", "setup_failed", "will_not_run"]


def will_not_run(item: pytest.Item) -> bool:
    """Whether pytest skips ``item`` by its marks (``skip``, a true ``skipif``,
    ``xfail(run=False)``) without running it. This hook runs before pytest's own that skips it."""
    try:
        from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

        xfail = None if item.config.option.runxfail else evaluate_xfail_marks(item)
        return evaluate_skip_marks(item) is not None or (xfail is not None and not xfail.run)
    except Exception:  # a condition that raises, or pytest moved them: pytest says what it says
        return False


#: ``(node id -> assertions without claim=, (name, table) -> node ids das.yaml lacks)``: the
#: tables are ``thresholds`` and ``robustness`` for claims, ``sites`` for sites.
_CLAIM_PROBLEMS = pytest.StashKey[tuple[dict[str, list[str]], dict[tuple[str, str], list[str]]]]()


def check_claim_names(item: pytest.Item) -> None:
    """Stop the run before any alignment trains (on a 7B model, hours) when a selected test
    calls an assertion without ``claim=``, or its ``claim="..."`` has no das.yaml entry: one
    message naming every such claim and its tests, since a typo in das.yaml fails every test of
    that claim. Claims written as literals are checked; anything the settings cannot be read
    for is left to the session fixture."""
    if "das_session" not in getattr(item, "fixturenames", ()):
        return
    config = item.config
    if _CLAIM_PROBLEMS not in config.stash:
        config.stash[_CLAIM_PROBLEMS] = _claim_problems(item)
    claimless, missing = config.stash[_CLAIM_PROBLEMS]
    if hasattr(config, "workerinput"):  # each worker fails its own tests of those claims
        claimless = {test: calls for test, calls in claimless.items() if test == item.nodeid}
        missing = {key: tests for key, tests in missing.items() if item.nodeid in tests}
    if claimless:
        lines = [
            "das_assert setup: an assertion without claim= (checked before any alignment trains):",
            *(f"  {test} calls das.{', das.'.join(calls)}" for test, calls in claimless.items()),
            'Name the claim each asserts, e.g. das.assert_aligned(result, claim="left_boundary"):'
            " das.yaml's thresholds (robustness, for assert_robust and assert_breaks_on) give "
            "its threshold under that name, and the reports and baselines know the result by it.",
        ]
        setup_failed(config, "\n".join(lines))
    if missing:  # sites and claims in one message: a second typo took a second run to find
        settings = early_settings(item)
        sites = {key: tests for key, tests in missing.items() if key[1] == "sites"}
        claims = {key: tests for key, tests in missing.items() if key[1] != "sites"}
        sections = []
        if sites:
            sections.append(
                (
                    f"{settings.source} lacks {_count(sites, 'a site', 'sites')} that tests "
                    "ask for",
                    _entry_lines(settings, sites, "asked for by"),
                    "Add each as `name: block_output[layer=L, pos=P]`, or fix the name in the "
                    "align(...) call.",
                )
            )
        if claims:
            sections.append(
                (
                    f"{settings.source} has no entry for {_count(claims, 'a claim', 'claims')} "
                    "that tests make",
                    _entry_lines(settings, claims, "claimed by"),
                    "Add each as `claim: <number in [0, 1)>` with a comment saying where the "
                    "number comes from, or fix claim= in the test.",
                )
            )
        lines = []
        for header, entries, advice in sections:
            first = not lines
            lines.append(
                f"das_assert setup: {header} (checked before any alignment trains):"
                if first
                else f"{header}:"
            )
            lines += [*entries, advice]
        setup_failed(config, "\n".join(lines))


def _count(entries: dict[Any, Any], one: str, many: str) -> str:
    return one if len(entries) == 1 else f"{len(entries)} {many}"


def _entry_lines(settings: Any, missing: dict[tuple[str, str], list[str]], verb: str) -> list[str]:
    """One line per das.yaml entry that tests ask for and das.yaml lacks: the entry, the tests
    (three, then a count) and das.yaml's closest key."""
    from das_assert.errors import which_is_misspelt

    lines = []
    for (name, table), tests in missing.items():
        shown = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
        lines.append(
            f"  models.{settings.key}.{table}.{name} ({verb} {shown})."
            + which_is_misspelt(name, getattr(settings, table))
        )
    return lines


def _claim_problems(
    item: pytest.Item,
) -> tuple[dict[str, list[str]], dict[tuple[str, str], list[str]]]:
    """Of the selected das tests, each read once: ``node id -> assertions called without
    claim=``, and ``(claim, table) -> node ids`` of the literal claims das.yaml lacks (none
    where the settings cannot be read: the session fixture then says why)."""
    from das_assert.claim_scan import assertion_calls, claimless_calls, literal_claims, site_names

    settings = early_settings(item)
    claimless: dict[str, list[str]] = {}
    missing: dict[tuple[str, str], list[str]] = {}
    sites_of: dict[int, list[str]] = {}  # a fixture's site names, read once for all its tests
    for test in item.session.items:
        if "das_session" not in getattr(test, "fixturenames", ()) or will_not_run(test):
            continue
        calls = assertion_calls(getattr(test, "obj", None))
        if without := claimless_calls(calls):
            claimless[test.nodeid] = without
        for claim, table in literal_claims(calls) if settings is not None else []:
            if claim not in getattr(settings, table):
                missing.setdefault((claim, table), []).append(test.nodeid)
        for function in _test_and_fixtures(test) if settings is not None else []:
            if id(function) not in sites_of:
                sites_of[id(function)] = site_names(function)
            for name in sites_of[id(function)]:
                if name not in settings.sites and test.nodeid not in missing.get(
                    (name, "sites"), []
                ):
                    missing.setdefault((name, "sites"), []).append(test.nodeid)
    return claimless, missing


def _test_and_fixtures(test: pytest.Item) -> list[Any]:
    """The test's function and those of the fixtures it uses (the ones that apply to it)."""
    info = getattr(test, "_fixtureinfo", None)
    fixtures = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    return [getattr(test, "obj", None), *(defs[-1].func for defs in fixtures.values() if defs)]


def setup_failed(config: pytest.Config, message: str) -> NoReturn:
    """Stop the run with one usage error: no test that needs the model can run (a das.yaml typo
    was reported once per test, 23 times). Under xdist each worker fails its tests instead.
    The reports (``--das-json``, ``--das-markdown``) carry the message."""
    reporter = config.pluginmanager.get_plugin("das-reporter")
    if reporter is not None:
        reporter.setup_error = message
    # an xdist worker is one by its workerinput: a run started inside a worker inherits only
    # its environment (PYTEST_XDIST_WORKER), and is a run of its own
    if not hasattr(config, "workerinput"):
        if config.pluginmanager.get_plugin("terminalreporter") is None:  # -p no:terminal
            _say_past_capture(config, message)  # else it exits 4 and says nothing
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
    # from None: the error is the message, not "during handling of" another
    raise pytest.fail.Exception(message, pytrace=False) from None


def _say_past_capture(config: pytest.Config, message: str) -> None:
    """Write ``message`` to the process's stderr, which pytest captures during a test."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    suspended = capture.global_and_fixture_disabled() if capture is not None else None
    with suspended or contextlib.nullcontext():
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
