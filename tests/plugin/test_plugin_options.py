"""The pytest plugin's options: help, option values, usage errors, output paths, name, import."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plugin_support import SEARCH_FILE, _run, count_fits

pytest_plugins = ["pytester"]


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import das_assert.plugin, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "reports",
    [
        [],
        # the JSON report's environment block imported torch for its version and thread count
        ["--das-json=report.json", "--das-markdown=report.md"],
    ],
)
def test_a_run_without_das_tests_never_imports_torch(
    pytester: pytest.Pytester, reports: list[str]
) -> None:
    """The plugin loads on every pytest run where das_assert is installed: a suite with no das
    test (and the reports the plugin writes at the end) must not pay for torch."""
    pytester.makepyfile(
        """
        def test_plain():
            assert True
        """
    )
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            loaded = "torch" in sys.modules
            print("torch loaded:", loaded)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *reports)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*torch loaded: False*"])
    if reports:  # the report is still written, with what is known without torch
        environment = json.loads((pytester.path / "report.json").read_text())["environment"]
        assert environment["torch"]
        assert environment["torch_threads"] is None


def test_a_run_without_fuzz_tests_never_imports_hypothesis(pytester: pytest.Pytester) -> None:
    """Without hypothesis' own plugin (``-p no:hypothesispytest``, or a hypothesis whose plugin
    imports it only for its tests), the plugin alone imported hypothesis, about a second, on
    every run and on ``pytest --help``."""
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            print("hypothesis loaded:", "hypothesis" in sys.modules)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-s"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*hypothesis loaded: False*"])


def test_only_the_plugins_fixtures_make_a_test_a_das_test(pytester: pytest.Pytester) -> None:
    """A user's ``dashboard`` or ``dask_client`` fixture starts with "das" too: such a test kept
    the ``das`` mark, so ``-m "not das"`` dropped it."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def dashboard():
            return "board"

        @pytest.fixture
        def uses_the_session(das_session):
            return das_session

        def test_with_a_dashboard(dashboard):
            assert dashboard == "board"

        def test_through_a_fixture_of_its_own(uses_the_session):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-m", "not das")
    result.assert_outcomes(passed=1, deselected=1)


def test_help_lists_the_das_options_in_their_own_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*das_assert: causal hypotheses as tests*", "*--das-model=PATH*"])
    for option in (
        "--das-seed",
        "--das-cache",
        "--das-json",
        "--das-markdown",
        "--das-inconclusive",
    ):
        assert option in result.stdout.str()
    # it said "beside the first hypothesis file": files beside two das.yaml are refused
    text = " ".join(result.stdout.str().split())  # as argparse wraps it at any width
    assert "first hypothesis file" not in text
    assert "beside the hypothesis files (one for them all)" in text


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--das-cache=sometimes", "'sometimes' is not one of off, read, write, readwrite"),
        ("--das-min-task-accuracy=1.5", "'1.5' must lie in [0, 1]"),
        ("--das-inconclusive=xfial", "'xfial' is not one of fail, xfail, pass"),
        ("--das-dtype=float8", "'float8' is not one of float32, bfloat16, float16"),
        ("--das-profile=fast", "'fast' is not one of ci, dev, thorough"),
        # was "das_assert setup: device='gpu' is not one of ...", once per test, option unnamed
        ("--das-device=gpu", "'gpu' is not one of cpu, cuda, cuda:N, cuda:worker"),
        (f"--das-seed={2**70}", f"'{2**70}' is not a seed: use an integer 0 to 4294967295"),
        (
            "--das-save-baseline=/tmp/base.json",  # was saved as 0001_tmp_base.json.json
            "'/tmp/base.json' is a path: give a NAME; write --das-save-baseline=NAME (with '=' "
            "in addopts or PYTEST_ADDOPTS too, which come before the command line's test "
            "paths), or put test paths before the option; baselines go to --das-baseline-dir "
            "DIR (default hypotheses/baselines/<model>/)",
        ),
        (
            "--das-save-baseline=???",  # was saved as 0001_.json, overwritten by the next save
            "'???' leaves no name: a baseline NAME needs a letter, digit, '.', '-' or '_' (it is "
            "saved as NNNN_NAME.json, other characters made '_')",
        ),
        (
            "--das-save-baseline=版本",
            "'版本' leaves no name: a baseline NAME needs a letter, digit, '.', '-' or '_' (it is "
            "saved as NNNN_NAME.json, other characters made '_')",
        ),
    ],
)
def test_bad_option_values_are_rejected_with_the_accepted_values(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = option.split("=")[0]
    (line,) = [line for line in result.stderr.lines if "argument" in line]
    # the option is named once; the message does not repeat it
    assert line == f"ERROR: argument {name}: {message}"


def test_a_refused_option_value_still_writes_the_reports(pytester: pytest.Pytester) -> None:
    # pytest's parser refused it before any plugin ran: an old --das-json was left in place,
    # to be read as this run's
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    old = pytester.path / "report.json"
    old.write_text('{"results": [{"claim": "left_boundary", "passed": true}]}')
    result = pytester.runpytest_subprocess(  # the report imports torch: not in this process
        "--das-seed=abc", "--das-dtype=float8", "--das-json=report.json", "--das-markdown=r.md"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    both = (
        "argument --das-seed: 'abc' is not a seed: use an integer 0 to 4294967295; "
        "argument --das-dtype: 'float8' is not one of float32, bfloat16, float16"
    )
    assert f"ERROR: {both}" in result.stderr.lines
    report = json.loads(old.read_text())
    assert report["results"] == []
    assert report["run"]["setup_error"] == f"das_assert usage: {both}"
    assert both in (pytester.path / "r.md").read_text()


def test_a_test_path_taken_as_the_baseline_name_is_refused(pytester: pytest.Pytester) -> None:
    # the option's NAME is optional, so a test path after it became the name 0001_test_x.py
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    (pytester.path / "suite").mkdir()
    for path in ("test_x.py", "suite"):
        result = pytester.runpytest("--das-save-baseline", path)
        assert result.ret != 0
        assert (
            f"argument --das-save-baseline: '{path}' is a path: give a NAME; write "
            "--das-save-baseline=NAME (with '=' in addopts or PYTEST_ADDOPTS too, which come "
            "before the command line's test paths), or put test paths before the option"
        ) in result.stderr.str()


def test_a_test_path_taken_as_the_baseline_to_compare_with_is_refused(
    pytester: pytest.Pytester,
) -> None:
    # the option's NAME is optional too: the test path became the baseline's name, and pytest
    # then ran its testpaths instead of the file
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    (pytester.path / "suite").mkdir()
    for path in ("test_x.py", "suite", str(pytester.path / "test_x.py")):
        result = pytester.runpytest("--das-compare", path)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert (
            f"argument --das-compare: '{path}' is a path but not a baseline .json file: "
            "give a NAME (latest, NNNN or NNNN_name), KEY/NAME or a .json file; write "
            "--das-compare=NAME (with '=' in addopts or PYTEST_ADDOPTS too, which come before "
            "the command line's test paths), or put test paths before the option"
        ) in result.stderr.str()
    # from addopts, where the user cannot put the test path first: the advice says '='
    pytester.makeini("[pytest]\naddopts = --das-compare\n")
    result = pytester.runpytest("test_x.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "write --das-compare=NAME (with '=' in addopts" in result.stderr.str()
    config = pytester.parseconfig("--das-compare=main/latest")  # KEY/NAME is not a path
    assert config.getoption("das_compare") == "main/latest"


def test_a_branch_name_is_a_baseline_name(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # CI passes $GITHUB_REF_NAME, such as release/v2: saved as 0001_release_v2 until every name
    # with a / was refused as a path
    from das_assert.baseline import find_baseline, next_baseline_name

    config = pytester.parseconfig("--das-save-baseline=release/v2")
    assert config.getoption("das_save_baseline") == "release/v2"
    assert next_baseline_name(tmp_path, "release/v2") == "0001_release_v2"
    (tmp_path / "0001_release_v2.json").write_text("{}")
    assert find_baseline(tmp_path, "release_v2").name == "0001_release_v2.json"
    # compared by the name it was saved under: "release/v2" and "my run" found nothing
    assert find_baseline(tmp_path, "release/v2").name == "0001_release_v2.json"
    (tmp_path / "0002_my_run.json").write_text("{}")
    assert find_baseline(tmp_path, "my run").name == "0002_my_run.json"


def test_a_name_saved_twice_is_found_at_its_newest(tmp_path: Path) -> None:
    # the oldest was found: a CI job saving "main" on every merge was gated against the first
    from das_assert.baseline import find_baseline

    for stem in ("0001_main", "0002_other", "0003_main"):
        (tmp_path / f"{stem}.json").write_text("{}")
    assert find_baseline(tmp_path, "main").name == "0003_main.json"
    assert find_baseline(tmp_path, "0001").name == "0001_main.json"  # by number
    assert find_baseline(tmp_path, "0001_main").name == "0001_main.json"  # by full stem
    assert find_baseline(tmp_path, "latest").name == "0003_main.json"


def test_a_name_no_baseline_has_lists_the_newest_few_and_the_closest(tmp_path: Path) -> None:
    # a mistyped --das-compare among 1,000 baselines stopped the run with one line of all 1,000
    from das_assert.baseline import find_baseline
    from das_assert.errors import AlignmentFileError

    for number in range(1, 1001):
        name = "release_v2" if number == 500 else "main"
        (tmp_path / f"{number:04d}_{name}.json").write_text("{}")
    with pytest.raises(AlignmentFileError) as error:
        find_baseline(tmp_path, "release/v3")
    assert str(error.value) == (
        f"no baseline 'release/v3' in {tmp_path}; present: 0996_main, 0997_main, 0998_main, "
        "0999_main, 1000_main (the newest 5 of 1000; python3 -m das_assert baselines --dir "
        f"{tmp_path.parent} --model {tmp_path.name} lists them all). Did you mean 'release_v2'?"
    )


def test_a_baseline_name_of_four_digits_is_refused(pytester: pytest.Pytester) -> None:
    # saved as NNNN_0001, it could not be compared with by name: --das-compare=0001 is a number
    result = pytester.runpytest("--das-save-baseline=0001")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'0001' reads as a baseline number: --das-compare=0001 would mean baseline number" in (
        result.stderr.str()
    )


def test_the_baseline_after_9999_is_found_and_the_next_numbered(tmp_path: Path) -> None:
    # 10000_main was no baseline to a four-digit pattern: latest stayed 9999, and every later
    # reservation failed on its folder ("no free baseline number")
    from das_assert.baseline import find_baseline, release_reservation, reserve_baseline_name

    (tmp_path / "9999_main.json").write_text("{}")
    assert reserve_baseline_name(tmp_path, "main", "run-a") == "10000_main"
    (tmp_path / "10000_main.json").write_text("{}")
    release_reservation(tmp_path / "10000_main")
    (tmp_path / "10000_main").mkdir()  # its alignments: the folder stays
    assert find_baseline(tmp_path, "latest").name == "10000_main.json"  # by value, not as text
    assert find_baseline(tmp_path, "main").name == "10000_main.json"
    assert find_baseline(tmp_path, "10000").name == "10000_main.json"
    assert reserve_baseline_name(tmp_path, "main", "run-b") == "10001_main"


def test_a_file_named_by_a_date_is_no_baseline_and_the_numbers_end_at_99999(
    tmp_path: Path,
) -> None:
    # with numbers of any length, 20251207_notes.json became latest and the next save 20251208
    from das_assert.baseline import find_baseline, reserve_baseline_name
    from das_assert.errors import AlignmentFileError

    (tmp_path / "0001_main.json").write_text("{}")
    (tmp_path / "20251207_notes.json").write_text("{}")
    assert find_baseline(tmp_path, "latest").name == "0001_main.json"
    assert reserve_baseline_name(tmp_path, "main", "run-a") == "0002_main"
    (tmp_path / "99999_main.json").write_text("{}")
    with pytest.raises(AlignmentFileError, match="baseline number 99999, the last: move the"):
        reserve_baseline_name(tmp_path, "main", "run-b")


@pytest.mark.parametrize("name", ["10000", "10000_main"])
def test_a_baseline_name_of_five_digits_or_a_five_digit_stem_is_refused(
    pytester: pytest.Pytester, name: str
) -> None:
    # numbers past 9999 are read as numbers too, so such a NAME could not be compared with by name
    result = pytester.runpytest(f"--das-save-baseline={name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"'{name}' reads as a baseline" in result.stderr.str()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (  # the embedded model was judged, against its own baseline, and the gate passed
            ["--das-model=", "--das-compare"],
            "--das-model is empty; give it a value, or leave the option out (an unset variable",
        ),
        (["--das-frozen="], "--das-frozen is empty; give it a value"),  # it trained instead
        (["--das-config= "], "--das-config is empty; give it a value"),
        (  # another model's alignments saved as this model's
            ["--das-frozen=v1", "--das-save-baseline=v2"],
            "--das-frozen trains nothing: a baseline saved from it would hold another model's",
        ),
    ],
    ids=["model-empty", "frozen-empty", "config-blank", "frozen-and-save"],
)
def test_options_that_would_run_something_else_than_asked_are_usage_errors(
    pytester: pytest.Pytester, options: list[str], message: str
) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(*options)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_node_id_taken_as_a_baseline_name_is_refused(pytester: pytest.Pytester) -> None:
    # "--das-save-baseline test_x.py::test_x" saved 0001_test_x.py_test_x, from every test
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    for option in ("--das-save-baseline", "--das-compare"):
        result = pytester.runpytest(option, "test_x.py::test_x")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert f"argument {option}: 'test_x.py::test_x' is a path" in result.stderr.str()


def test_cache_dir_with_the_cache_off_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--das-cache=off", "--das-cache-dir=/tmp/x")
    assert result.ret != 0
    assert "--das-cache=off disables the cache" in result.stderr.str()


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ("--das-json={dir}", "--das-json {dir} is a directory; name a file inside it"),
        ("--das-markdown={file}/x.md", "--das-markdown {file}/x.md: {file} is a file, not a dir"),
        ("--das-json=/proc/report.json", "--das-json /proc/report.json: cannot write in /proc ("),
        ("--das-baseline-dir={file}", "--das-baseline-dir {file} is a file; name a directory"),
        ("--das-plots={file}", "--das-plots {file} is a file; name a directory"),
        ("--das-plots=/proc", "--das-plots /proc: cannot write in /proc ("),
        ("--das-markdown=", "--das-markdown is empty; name a path (an unset variable such as"),
        ("--das-json=das.yaml", "--das-json das.yaml is an existing .yaml file (code or settings"),
        ("--das-markdown=test_x.py", "--das-markdown test_x.py is an existing .py file (code or"),
        ("--das-json={model}/config.json", "--das-json {model}/config.json is inside the model"),
        (
            "--das-json=r.md --das-markdown=r.md",
            "--das-json and --das-markdown both name r.md; name two paths",
        ),
        (  # the 13-claim baseline was replaced by a 1-claim report, and the gate then passed
            "--das-compare={dir}/old.json --das-json={dir}/old.json",
            "--das-json {dir}/old.json is the baseline --das-compare reads; name another file",
        ),
        (
            "--das-baseline-dir=b --das-markdown=b/summary.md",
            "--das-markdown b/summary.md is inside the baseline directory b, where baselines",
        ),
        (
            "--das-json=hypotheses/baselines/embedded/report.json",
            "--das-json hypotheses/baselines/embedded/report.json is inside the baseline dir",
        ),
        ("--das-json={baseline}", "--das-json {baseline} is a saved baseline, which a report"),
        (  # the JUnit XML was lost: the file held the das JSON
            "--junitxml=out.xml --das-json=out.xml",
            "--junitxml and --das-json both name out.xml; name two paths",
        ),
    ],
    ids=[
        *("json-dir", "markdown-under-file", "json-read-only", "baselines-file", "plots"),
        *("plots-read-only", "markdown-empty", "json-over-das-yaml", "markdown-over-a-test"),
        *("json-over-model-config", "json-and-markdown-at-one-path", "json-over-the-compared"),
        *("markdown-in-baseline-dir", "json-in-default-baseline-dir", "json-over-a-baseline"),
        "json-over-junitxml",
    ],
)
def test_an_output_path_that_cannot_be_written_is_a_usage_error_before_any_test(
    pytester: pytest.Pytester, option: str, match: str
) -> None:
    (pytester.path / "dir").mkdir()
    (pytester.path / "file").write_text("")
    (pytester.path / "das.yaml").write_text("models: {}\n")
    (pytester.path / "model").mkdir()  # a model directory: config.json and weights
    for name in ("config.json", "model.safetensors"):
        (pytester.path / "model" / name).write_text("{}")
    pytester.makepyfile(test_x="def test_x():\n    open('ran', 'w').close()\n")
    baseline = pytester.path / "elsewhere" / "0001_v1.json"  # a baseline, moved out of its dir
    baseline.parent.mkdir()
    baseline.write_text('{\n  "schema_version": 1,\n  "kind": "das_assert baseline"\n}\n')
    paths = {"dir": pytester.path / "dir", "file": pytester.path / "file"}
    paths |= {"model": pytester.path / "model", "baseline": baseline}
    before = {p: p.read_bytes() for p in pytester.path.rglob("*") if p.is_file()}
    options = option.format(**paths).split(" ")
    result = pytester.runpytest("-p", "no:cacheprovider", *options, "test_x.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert match.format(**paths) in result.stderr.str()
    assert not (pytester.path / "ran").exists()
    assert {p: p.read_bytes() for p in pytester.path.rglob("*") if p.is_file()} == before


def test_the_das_session_exempts_the_loaded_libraries_from_the_cyclic_collector(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_frozen="""
        import gc

        def test_frozen(das_session):
            assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
        """
    )
    model = str(Path(project.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    try:
        result = project.runpytest(
            f"--das-model={model}",
            "--das-config=das.yaml",
            "-p",
            "no:cacheprovider",
            "test_frozen.py",
        )
    finally:
        gc.unfreeze()  # the run was in this process: give its objects back to the collector
    result.assert_outcomes(passed=1)


def test_an_unknown_model_entry_names_the_entries_there_are(project) -> None:
    result = _run(project, "--das-model-entry=tiyn")
    result.stdout.fnmatch_lines(["*has no model entry 'tiyn' (--das-model-entry)*tiny*"])
    assert result.ret != 0


def test_the_plugin_is_named_das_assert(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses(das_session):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:das_assert", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*fixture 'das_session' not found*"])


def test_a_bad_das_model_variable_is_named_in_the_error(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAS_MODEL", "/no/such/model")
    result = project.runpytest_inprocess(
        "--das-config=das.yaml", "-p", "no:cacheprovider", "test_hyp.py"
    )
    result.stdout.fnmatch_lines(
        ["*'/no/such/model' does not exist*(the model path is $DAS_MODEL='/no/such/model')*"]
    )


def test_an_empty_das_model_variable_is_refused_not_read_as_the_embedded_model(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `DAS_MODEL: ${{ vars.MODEL_DIR }}` with the variable unset judged the embedded model, and
    # gated it against the real model's baselines, without a word; `--das-model=` was refused
    from das_assert.cli import main

    monkeypatch.setenv("DAS_MODEL", "")
    result = project.runpytest_inprocess(
        "--das-config=das.yaml", "-p", "no:cacheprovider", "test_hyp.py"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    says = "DAS_MODEL is set but empty (an unset variable such as $MODEL_DIR expands to nothing)"
    assert f"das_assert setup: {says}" in result.stdout.str()
    # a run of other tests alone, in the same environment, is not refused
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    plain = project.runpytest_inprocess("-p", "no:cacheprovider", "test_plain.py")
    assert plain.ret == pytest.ExitCode.OK
    assert main(["check", "--n-test", "20"]) == 2
    assert f"error: {says}" in capsys.readouterr().err


def test_one_run_reserves_one_number_and_two_runs_two(tmp_path: Path) -> None:
    # Two runs saving one NAME at once chose one number and shared its alignment folder; every
    # process of one run (xdist's workers) must still get the same one.
    import threading

    from das_assert.baseline import release_reservation, reservations, reserve_baseline_name

    (tmp_path / "0001_main.json").write_text("{}")
    start = threading.Barrier(8)
    got: dict[str, set[str]] = {"run-a": set(), "run-b": set()}

    def reserve(token: str) -> None:
        start.wait()
        got[token].add(reserve_baseline_name(tmp_path, "main", token))

    threads = [threading.Thread(target=reserve, args=(t,)) for t in ("run-a", "run-b") * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got["run-a"]) == len(got["run-b"]) == 1
    assert got["run-a"] | got["run-b"] == {"0002_main", "0003_main"}
    (folder,) = reservations(tmp_path, "run-a")
    assert folder.name in got["run-a"]
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes it, not 0700
    # a reserved folder takes its number before its baseline is saved
    assert reserve_baseline_name(tmp_path, "main", "run-c") == "0004_main"
    release_reservation(folder)  # nothing was written into it: it goes
    assert not folder.exists()


def test_a_folder_with_a_marker_that_is_no_token_is_not_a_reservation(tmp_path: Path) -> None:
    # a .reserved-by that is not UTF-8 (a stray file, a broken copy) stopped every later save,
    # and the end of a saving run, with a UnicodeDecodeError: no OSError, so not one message
    from das_assert.baseline import reservations, reserve_baseline_name

    (tmp_path / "0001_main").mkdir()
    (tmp_path / "0001_main" / ".reserved-by").write_bytes(b"\xff\xfe")
    assert reserve_baseline_name(tmp_path, "main", "run-a") == "0002_main"
    assert [p.name for p in reservations(tmp_path, "run-a")] == ["0002_main"]


def test_a_joint_training_budget_trains_a_searchs_layers_together(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the 1.7x it measured on a GPU was reachable from Python alone (FitConfig), not from the
    # plugin that runs the searches of hypotheses/
    trained = count_fits(monkeypatch)
    project.makepyfile(test_search=SEARCH_FILE)
    cells = {}
    for budget in ("0", "64"):
        trained.clear()
        args = ("--das-cache=off", f"--das-joint-cells-mib={budget}", "--das-json=r.json")
        _run(project, *args, "test_search.py").assert_outcomes(passed=1)
        (search,) = json.loads((project.path / "r.json").read_text())["searches"]
        cells[budget] = [(cell["site"], cell["iia"], cell["boundary"]) for cell in search["cells"]]
        assert trained == ([1, 1] if budget == "0" else [2])
    assert cells["64"] == cells["0"]  # the same alignments, up to float rounding


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--das-joint-cells-mib=lots", "argument --das-joint-cells-mib: 'lots' must be an integer"),
        ("--das-warn-unused", "--das-warn-unused needs --das-compare (a baseline to compare with)"),
        # a bad value was found only in a second run, after --das-compare was added
        ("--das-compare-fail=iia:five", "--das-compare-fail: "),
    ],
)
def test_a_new_option_misused_is_a_usage_error(
    pytester: pytest.Pytester, option: str, says: str
) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess(option, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert says in result.stderr.str()


def test_dist_each_with_a_report_or_a_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    # every worker ran every claim: the report held each twice, "baseline saved (2 claims)"
    # over a file of one, the later worker's record silently kept
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-n", "2", "--dist", "each", "--das-json=r.json", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--dist each runs every test on every xdist worker" in result.stderr.str()
    assert "--dist each" in json.loads((pytester.path / "r.json").read_text())["run"]["setup_error"]


def test_the_fixtures_reach_the_model_and_das_yaml_is_found_under_hypotheses(
    project: pytest.Pytester,
) -> None:
    # the das.yaml under the rootdir's hypotheses/, the das_model fixture and das.align were
    # reached by no test (the suite's coverage run)
    model = (project.path / "das.yaml").read_text().split("path: ")[1].split()[0]
    (project.path / "hypotheses").mkdir()
    (project.path / "das.yaml").rename(project.path / "hypotheses" / "das.yaml")
    (project.path / "test_hyp.py").unlink()
    (project.path / "checks").mkdir()
    (project.path / "checks" / "test_model.py").write_text(
        "def test_model(das, das_model, das_session):\n"
        "    assert das_model is das_session.model\n"
        "    result = das.align('left_boundary', 'boundary')\n"
        "    das.assert_not_aligned(result, claim='impossible')\n"
        "    print('ALIGNED', result.n, result.experiment.site)\n"
    )
    result = project.runpytest_inprocess(
        f"--das-model={model}",
        f"--rootdir={project.path}",
        "--das-min-task-accuracy=0",
        "--das-cache=off",
        "-p",
        "no:cacheprovider",
        "-s",
        "checks",
    )
    result.assert_outcomes(passed=1)
    assert "ALIGNED 24 block_output[layer=1, pos=last]" in result.stdout.str()


def test_a_run_reads_das_yaml_once(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check of the claims' names read it at collection, and the session fixture again.
    from das_assert import settings

    reads: list[Path] = []
    load_settings = settings.load_settings

    def counting(path: Path) -> Any:
        reads.append(Path(path))
        return load_settings(path)

    monkeypatch.setattr(settings, "load_settings", counting)

    _run(project, "--das-cache=off").assert_outcomes(passed=1, failed=1)  # as the file says

    assert [path.name for path in reads] == ["das.yaml"]
