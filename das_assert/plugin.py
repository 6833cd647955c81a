"""The pytest plugin (entry point ``pytest11: das_assert``; off with ``-p no:das_assert``).
PYTEST_DONT_REWRITE

Its surface is one word, ``das``: ``--das-*`` options in their own help group, the ``das`` marker,
the ``das`` / ``das_session`` / ``das_model`` fixtures and ``pytest_das_*`` hooks. Importing this
module imports neither torch nor transformers; they load when a ``das`` fixture is first used.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from das_assert.plugin_baselines import baseline_setup
from das_assert.plugin_failure import one_message
from das_assert.plugin_fuzz import apply_fuzz_profile, register_profiles, too_many_rejected
from das_assert.plugin_options import (
    DEFAULTS,
    OUTPUT_OPTIONS,
    add_options,
    check_output_paths,
    invocation_path,
    refused_values,
    reproduce_options,
    reproduce_threads,
    run_token,
)
from das_assert.plugin_records import forget_earlier_attempt
from das_assert.plugin_report import DAS_FIXTURES, DAS_TEST, REPORTED_KINDS, Reporter, is_das_test
from das_assert.plugin_settings import model_path, session_settings
from das_assert.plugin_setup import check_claim_names, setup_failed, will_not_run

#: ``group`` was accepted here and never read: refused now, like any key that does nothing.
MARKER_KEYS = ("compare_fail",)
_CHECKS = pytest.StashKey[list]()
_CALL_PASSED = pytest.StashKey[bool]()
REPEAT_PARAMETER = "__pytest_repeat_step_number"  # the parameter pytest-repeat gives a repeat


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from das_assert import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"das(**settings): a causal-hypothesis test; allowed keys: {', '.join(MARKER_KEYS)}",
    )
    reporter = Reporter(config)
    config.pluginmanager.register(reporter, "das-reporter")
    if _writes_das_outputs(config) and not hasattr(config, "workerinput"):
        # what a SIGTERM would leave behind: an earlier run's report, a reservation (an xdist
        # worker is stopped by its controller; a run asking for neither keeps Python's default)
        from das_assert.termination import term_as_interrupt

        config.stash[_RESTORE_SIGTERM] = term_as_interrupt()
    if str(config.getoption("hypothesis_profile", None) or "").startswith("das-"):
        register_profiles()  # hypothesis loads the profile named at its own configure
    check_output_paths(config)  # first: the reports of a usage error below are written there
    try:
        _check_options(config)
    except pytest.UsageError as exc:
        reporter.usage_error(f"das_assert usage: {exc}")
        raise


def _writes_das_outputs(config: pytest.Config) -> bool:
    names = ("das_json", "das_markdown", "das_save_baseline", "das_plots")
    return any(config.getoption(name, None) for name in names)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: hand the run's token to each worker."""
    node.workerinput["das_run_token"] = run_token(node.config)


def _check_options(config: pytest.Config) -> None:
    """The das options that contradict each other, or parse badly, as one usage error."""
    if refused := refused_values(config):
        raise pytest.UsageError("; ".join(refused))
    for dest in DEFAULTS:  # `--das-model="$MODEL_DIR"` with the variable unset: the default
        flag = "--" + dest.replace("_", "-")
        if flag in OUTPUT_OPTIONS:  # refused by check_output_paths, in its own words
            continue
        value = config.getoption(dest)
        if isinstance(value, str) and not value.strip() and value != DEFAULTS[dest]:
            raise pytest.UsageError(
                f"{flag} is empty; give it a value, or leave the option out (an unset variable "
                "such as $MODEL_DIR expands to nothing)"
            )
    if config.getoption("das_cache_dir") and config.getoption("das_cache") == "off":
        raise pytest.UsageError("--das-cache-dir was given but --das-cache=off disables the cache")
    if config.getoption("das_frozen") and config.getoption("das_save_baseline"):
        raise pytest.UsageError(
            "--das-frozen trains nothing: a baseline saved from it would hold another model's "
            "alignments as this model's; save the baseline from a run that fits (drop "
            "--das-frozen)"
        )
    if config.getoption("das_device_map") and config.getoption("das_device") != "cpu":
        raise pytest.UsageError(
            "--das-device and --das-device-map contradict each other: a device map places the "
            "model itself; drop --das-device"
        )
    gated = _writes_das_outputs(config) or config.getoption("das_compare")
    if gated and config.getoption("dist", None) == "each":
        raise pytest.UsageError(
            "--dist each runs every test on every xdist worker: each claim would be fitted, "
            "reported and saved once per worker; use --dist load or loadfile"
        )
    repeats = config.getoption("count", None)  # pytest-repeat's --count
    baseline = config.getoption("das_save_baseline") or config.getoption("das_compare")
    if baseline and isinstance(repeats, int) and repeats > 1:
        raise pytest.UsageError(
            f"--count {repeats} (pytest-repeat) runs each test under new ids (test[1-{repeats}], "
            f"test[2-{repeats}], ...): a baseline saved from it keys every claim by ids no other "
            "run has, and a compare finds no baseline entry for any claim; drop --count, or "
            "drop --das-save-baseline and --das-compare"
        )
    from das_assert.compare import parse_compare_fail
    from das_assert.errors import ConfigError

    try:  # a bad value first: its fix is found in the same run as the missing --das-compare
        config.stash[_CHECKS] = [
            parse_compare_fail(e) for e in config.getoption("das_compare_fail")
        ]
    except ConfigError as exc:
        raise pytest.UsageError(f"--das-compare-fail: {exc}") from None
    for option in ("das_compare_fail", "das_warn_unused"):
        if config.getoption(option) and not config.getoption("das_compare"):
            flag = "--" + option.replace("_", "-")
            raise pytest.UsageError(f"{flag} needs --das-compare (a baseline to compare with)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if DAS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker("das")
    apply_fuzz_profile(config, items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A das test stopped by bad input (a DasError: an unknown claim or site, a failed
    precondition, a bad file) reports that one message, not a traceback through the engine;
    claim failures (assertions) keep pytest's usual report."""
    report = yield
    if call.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    das_test = is_das_test(item)
    if das_test:
        setattr(report, DAS_TEST, True)
    excinfo = call.excinfo
    if report.failed and excinfo is not None and das_test:
        # only here: every test of an environment with das_assert installed passes this hook
        from das_assert.cache import CacheWarning
        from das_assert.errors import DasError, NoClaimWarning
        from das_assert.settings import ConfigWarning

        if excinfo.errisinstance((DasError, ConfigWarning, CacheWarning, NoClaimWarning)):
            # also a das warning that -W error / filterwarnings made an error: its message is it
            report.longrepr = one_message(item, excinfo)
        else:
            report.longrepr = too_many_rejected(item, excinfo) or report.longrepr
    return report


@pytest.hookimpl(tryfirst=True)  # before the fixtures: an alignment may train for hours
def pytest_runtest_setup(item: pytest.Item) -> None:
    forget_earlier_attempt(item)  # a rerun's (pytest-rerunfailures) records are its own
    if will_not_run(item):  # neither its marker nor its claims can stop the run
        return
    _refuse_a_repeat(item)
    for marker in item.iter_markers("das"):
        unknown = sorted(set(marker.kwargs) - set(MARKER_KEYS))
        if unknown or marker.args:
            pytest.fail(
                f"das marker got unexpected {unknown or marker.args}; "
                f"allowed keywords: {', '.join(MARKER_KEYS)}",
                pytrace=False,
            )
        from das_assert.compare import marker_expressions, parse_compare_fail
        from das_assert.errors import ConfigError

        for expression in marker_expressions(marker.kwargs.get("compare_fail")):
            try:  # a typo fails its test on every run, not only those that compare
                parse_compare_fail(expression)
            except ConfigError as exc:
                message = f"das marker compare_fail: {exc}"
                raise pytest.fail.Exception(message, pytrace=False) from None
    check_claim_names(item)


def _refuse_a_repeat(item: pytest.Item) -> None:
    """pytest-repeat's ``@pytest.mark.repeat(n)`` renames a test as ``--count`` does (refused at
    configure): each repeat of a das test fails where a baseline is saved or read. At its setup,
    not at collection: under xdist only workers collect, and -k may deselect it."""
    config = item.config
    if not (config.getoption("das_save_baseline") or config.getoption("das_compare")):
        return
    params = getattr(getattr(item, "callspec", None), "params", {})
    if REPEAT_PARAMETER in params and is_das_test(item):
        pytest.fail(
            "pytest-repeat repeats this test (its repeat marker): each repeat has an id of its "
            f"own ({item.name}), and a baseline keys every claim by its test's id, so a compare "
            "would find no entry for it; drop the marker, or run it without "
            "--das-save-baseline and --das-compare",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    """A site or claim that das.yaml lacks (or a site the model lacks), asked for by a
    fixture, stops the run once."""
    from das_assert.errors import SetupError

    try:
        return (yield)
    except SetupError as exc:
        setup_failed(request.config, f"das_assert setup: {exc}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """The same, asked for by a test's body (a claim named by a variable)."""
    from das_assert.errors import SetupError

    try:
        return (yield)
    except SetupError as exc:
        setup_failed(item.config, f"das_assert setup: {exc}")


@pytest.fixture(scope="session")
def das_session(request: pytest.FixtureRequest) -> Any:
    """The model under test, its das.yaml settings and the alignments shared by all tests.

    Claims and searches on the same test pairs also share their encodings and the base run's
    answers, which do not depend on the site (``das_assert.sharing``): only these small things
    live for the session; a search's prefix KV stores end with the search.
    """
    from das_assert.cache import AlignmentCache
    from das_assert.digests import DigestMemo
    from das_assert.errors import DasError, SetupError
    from das_assert.models import (
        LoadedModel,
        available_cpus,
        load_model,
        worker_device,
        worker_threads,
    )
    from das_assert.session import DasSession
    from das_assert.settings import ConfigWarning, misspelt_claims
    from das_assert.sharing import sharing

    config = request.config
    path = model_path(config)
    mode = config.getoption("das_cache")
    cache_dir = config.getoption("das_cache_dir") or Path(config.rootpath) / ".das_assert" / "cache"
    cache = None if mode == "off" else AlignmentCache(invocation_path(config, cache_dir), mode)
    try:
        if cache is not None:  # before a model that may take minutes to load
            cache.check_usable()
            if not config.getoption("das_cache_dir") and cache.writes:
                _ignored_by_git(Path(cache_dir).parent)
        settings = session_settings(config, request.session)
        # a worker by its workerinput: a run started inside one inherits only its environment
        worker = getattr(config, "workerinput", {})
        device = worker_device(
            config.getoption("das_device"),
            worker=worker.get("workerid"),
            gpus=_cuda_count() if config.getoption("das_device") == "cuda:worker" else 0,
        )
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
        if worker:
            environ["PYTEST_XDIST_WORKER_COUNT"] = str(worker["workercount"])
        threads = worker_threads(environ, available_cpus())
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        model = config.hook.pytest_das_load_model(config=config, path=path)
        if model is not None and not isinstance(model, LoadedModel):
            raise SetupError(
                f"pytest_das_load_model returned {type(model).__name__}, not a LoadedModel: "
                "return das_assert.load_model(path, ...) (it takes dtype, device and "
                "device_map), or None to let das_assert load the model"
            )
        model = model or load_model(
            path,
            dtype=config.getoption("das_dtype"),
            device=device,
            device_map=config.getoption("das_device_map"),
        )
    except DasError as exc:
        if not config.getoption("das_model") and os.environ.get("DAS_MODEL"):
            exc = type(exc)(f"{exc} (the model path is $DAS_MODEL={os.environ['DAS_MODEL']!r})")
        setup_failed(config, f"das_assert setup: {exc}")
    reporter = config.pluginmanager.get_plugin("das-reporter")
    if reporter is not None:  # the reports name the model even if no claim reaches a verdict
        reporter.model_loaded(model)
    for message in misspelt_claims(settings):
        try:
            warnings.warn(ConfigWarning(message), stacklevel=1)
        except ConfigWarning as exc:  # made an error (-W error): one stop, not every test's
            setup_failed(config, f"das_assert setup: ConfigWarning: {exc}")
    try:
        baselines = baseline_setup(config, settings, config.stash.get(_CHECKS, []))
    except DasError as exc:
        setup_failed(config, str(exc))
    prompt_template = None
    if settings.prompt_template is not None:
        from das_assert.prompt_templates import check_template_fits, resolve_prompt_template

        try:
            prompt_template = resolve_prompt_template(settings.prompt_template, model.tokenizer)
            check_template_fits(prompt_template, model)
        except DasError as exc:
            where = f"{settings.source}: models.{settings.key}.prompt_template"
            setup_failed(config, f"das_assert setup: {where}: {exc}")
    if cache is not None and isinstance(model, LoadedModel) and model.digest_memo is None:
        # The weights' sha256 (the cache key's fingerprint) is read again only when they change.
        model.digest_memo = DigestMemo(cache.directory / "digests.json", writes=cache.writes)
    session = DasSession(
        model=model,
        settings=settings,
        seed=config.getoption("das_seed"),
        cache=cache,
        min_task_accuracy=config.getoption("das_min_task_accuracy"),
        inconclusive=config.getoption("das_inconclusive"),
        plots_dir=(
            invocation_path(config, config.getoption("das_plots"))
            if config.getoption("das_plots")
            else None
        ),
        reproduce_options=reproduce_options(config, _baseline_files(baselines)),
        reproduce_threads=reproduce_threads(
            str(model.device), threads is not None or "OMP_NUM_THREADS" in os.environ
        ),
        fit_overrides=_speed_settings(config),
        prompt_template=prompt_template,
        **baselines,
    )
    _freeze_the_heap()
    request.config.stash[_FROZE] = True
    from das_assert import cache as cache_module

    cache_module.waiting_notice = _past_the_capture(config)
    try:
        with sharing(prefix_stores=False):
            yield session
    finally:
        cache_module.waiting_notice = None


def _past_the_capture(config: pytest.Config) -> Any:
    """A writer to the terminal's stderr that pytest's capture does not hold back: a run
    waiting for another's cache lock says so while it waits, not after its test."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def write(text: str) -> None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            sys.stderr.write(text)
            sys.stderr.flush()

    return write


def _speed_settings(config: pytest.Config) -> dict[str, int]:
    """The FitConfig fields that options set for speed alone (no effect beyond float rounding,
    so not in a cache key or a reproduce line): a search's joint training budget."""
    joint = config.getoption("das_joint_cells_mib")
    return {"joint_cells_mib": joint} if joint else {}


def _ignored_by_git(folder: Path) -> None:
    """A ``.gitignore`` of ``*`` in das_assert's own folder under the rootdir, as pytest keeps
    in ``.pytest_cache``: the cache holds alignment files (at 7B, 64 MiB each) that no one
    means to commit."""
    ignore = folder / ".gitignore"
    if not ignore.exists():
        from das_assert.store import atomic_write_bytes

        try:
            atomic_write_bytes(ignore, b"# Created by das_assert: its alignment cache.\n*\n")
        except OSError:  # a read-only checkout: the cache works without it
            pass


_FROZE = pytest.StashKey[bool]()
_RESTORE_SIGTERM = pytest.StashKey[Any]()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the heap frozen for the session back to the collector: a later run in this process
    (``pytest.main()`` again, a notebook) must not keep this one's model alive for good."""
    if config.stash.get(_FROZE, False):
        import gc

        gc.unfreeze()
    config.stash.get(_RESTORE_SIGTERM, lambda: None)()  # a later pytest.main() sets its own


def _freeze_the_heap() -> None:
    """Exempt what exists once the model is loaded from Python's cyclic garbage collector.

    torch and transformers leave about 375k long-lived objects behind their imports; every full
    collection re-scans them (0.1-0.2 s each on 2 CPU cores, about 14 times in a run of
    ``hypotheses/`` and 5 more when pytest exits). Frozen objects are still freed by reference
    counting; only cycles among them would wait for the process to end.
    """
    import gc

    gc.collect()
    gc.freeze()


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def compared_baseline(config: pytest.Config, session: pytest.Session) -> Path:
    """The baseline file ``--das-compare`` names, resolved as the ``das_session`` fixture does:
    for a run in which no claim reached it (every das test skipped, say).

    Raises:
        DasError: das.yaml, the model directory or the baseline is missing or invalid.
    """
    from das_assert.plugin_baselines import baseline_file

    return baseline_file(config, session_settings(config, session), config.getoption("das_compare"))


def _baseline_files(baselines: dict[str, Any]) -> dict[str, Path]:
    """The files ``--das-compare`` and ``--das-frozen`` resolved to, by option name."""
    options = {"baseline": "das_compare", "frozen": "das_frozen"}
    return {option: baselines[field][0] for field, option in options.items() if field in baselines}


@pytest.fixture
def das(das_session: Any, request: pytest.FixtureRequest) -> Any:
    """Assertions about IIA for this test; each records its numbers for the reports."""
    from das_assert.request import DasRequest

    yield DasRequest(das_session, request.node)
    _warn_if_nothing_asserted(request.node)


def _warn_if_nothing_asserted(item: pytest.Item) -> None:
    """A test that took ``das`` and passed with nothing in the reports asserted nothing (its
    assertion in a helper never called, an ``if`` that skipped it): say so, as a warning,
    rather than count it as a claim that holds."""
    from das_assert.errors import NoClaimWarning

    if not item.stash.get(_CALL_PASSED, False):  # failed or skipped: pytest says so already
        return
    if any(name in REPORTED_KINDS for name, _ in item.user_properties):
        return
    item.warn(  # at the test's own line, not here
        NoClaimWarning(
            f"{item.nodeid} took the das fixture and passed without asserting a claim "
            "(das.assert_aligned, assert_not_aligned, assert_robust, assert_breaks_on) or "
            "recording a search (das.record_search): nothing it measured is in the reports. "
            "Assert its claim, or take das_session where the test needs only the model"
        )
    )


@pytest.fixture(scope="session")
def das_model(das_session: Any) -> Any:
    """The loaded model under test (``LoadedModel``: ``.model``, ``.tokenizer``, ``.path``)."""
    return das_session.model
