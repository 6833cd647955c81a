"""The pytest plugin, driven through pytester: options, marker, verdicts, reports, cache."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DAS_YAML = """
models:
  tiny:
    path: {path}
    n_train: 16
    n_test: 24
    epochs: 1
    batch_size: 8
    sites:
      boundary: block_output[layer=1, pos=last]
    thresholds:
      impossible: 0.99
      trivial: 0.0
"""

HYPOTHESIS_FILE = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_an_impossible_claim_fails(das, aligned):
    das.assert_aligned(aligned, claim="impossible")


def test_a_negative_claim_holds(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]) -> pytest.Pytester:
    pytester.makefile(".yaml", das=DAS_YAML.format(path=tiny_model_dirs["llama"]))
    pytester.makepyfile(test_hyp=HYPOTHESIS_FILE)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    model = str(Path(pytester.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    return pytester.runpytest_subprocess(
        f"--das-model={model}",
        "--das-config=das.yaml",
        "--das-min-task-accuracy=0",
        "-p",
        "no:cacheprovider",
        *args,
    )


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import das_assert.plugin, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


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


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--das-cache=sometimes", "--das-cache: 'sometimes' is not one of off, read, write"),
        ("--das-min-task-accuracy=1.5", "'1.5' must lie in [0, 1]"),
        ("--das-inconclusive=ignore", "--das-inconclusive: 'ignore' is not one of fail"),
        ("--das-dtype=float8", "--das-dtype: 'float8' is not one of"),
        (f"--das-seed={2**70}", "is not a seed: use an integer 0 to 4294967295"),
    ],
)
def test_bad_option_values_are_rejected_with_the_accepted_values(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    result = pytester.runpytest(option)
    assert result.ret != 0
    assert message in result.stderr.str()


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
    ],
    ids=[
        *("json-dir", "markdown-under-file", "json-read-only", "baselines-file", "plots"),
        "plots-read-only",
    ],
)
def test_an_output_path_that_cannot_be_written_is_a_usage_error_before_any_test(
    pytester: pytest.Pytester, option: str, match: str
) -> None:
    (pytester.path / "dir").mkdir()
    (pytester.path / "file").write_text("")
    pytester.makepyfile("def test_x():\n    open('ran', 'w').close()\n")
    paths = {"dir": pytester.path / "dir", "file": pytester.path / "file"}
    result = pytester.runpytest("-p", "no:cacheprovider", option.format(**paths))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert match.format(**paths) in result.stderr.str()
    assert not (pytester.path / "ran").exists()


def test_unknown_marker_keyword_fails_with_the_allowed_keys(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.das(grop="x")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "das marker got unexpected ['grop']; allowed keywords: group" in result.stdout.str()


def test_a_bad_compare_fail_in_the_marker_fails_without_das_compare(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.das(compare_fail="iia:zz")
        def test_x():
            pass

        @pytest.mark.das(compare_fail=["iia:0.02", "transfer:5%"])
        def test_y():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)  # refused in setup, as an unknown keyword is
    result.stdout.fnmatch_lines(
        ["*das marker compare_fail: could not parse the compare-fail expression 'iia:zz'*"]
    )


@pytest.mark.slow
def test_a_failing_claim_fails_its_own_test_with_numbers_and_a_reproduce_line(project) -> None:
    result = _run(project, "--das-cache=off")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "claim 'impossible': IIA >= 0.990" in output
    assert "95% CI [" in output
    assert "site       block_output[layer=1, pos=last]  ->  model.layers.1" in output
    assert "simplest failing pair" in output
    assert "reproduce: pytest test_hyp.py::test_an_impossible_claim_fails --das-seed=0" in output
    (line,) = [line for line in output.splitlines() if "reproduce: pytest" in line]
    for option in ("--das-model=", "--das-config=das.yaml", "--das-min-task-accuracy=0.0"):
        assert option in line, line  # the options the verdict depended on, not their defaults
    assert "--das-dtype" not in line
    assert "--das-inconclusive" not in line
    assert "das: causal hypotheses" in output  # the terminal summary table


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
    assert "das_result" not in junit


@pytest.mark.slow
def test_a_second_run_reuses_the_cached_alignment(project) -> None:
    first = _run(project, "--das-cache=readwrite", "--das-json=first.json")
    second = _run(project, "--das-cache=readwrite", "--das-json=second.json")
    first.assert_outcomes(passed=1, failed=1)
    second.assert_outcomes(passed=1, failed=1)
    a = json.loads((project.path / "first.json").read_text())["results"]
    b = json.loads((project.path / "second.json").read_text())["results"]
    assert a[0]["train_seconds"] > 0
    assert a[0]["from_cache"] is False
    assert b[0]["train_seconds"] == 0  # loaded, not trained
    assert b[0]["from_cache"] is True
    assert [r["iia"] for r in a] == [r["iia"] for r in b]
    assert list((project.path / ".das_assert" / "cache").glob("*.safetensors"))
    assert (project.path / ".das_assert" / "cache" / "digests.json").is_file()  # weights' sha256


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


REPEATED_VARIANTS = """
import pytest

import das_assert.variants
from das_assert.strategies import PromptVariant

CALLS = []
REAL = das_assert.variants.evaluate  # the name variants.py calls, however early it was imported


def counting(*args, **kwargs):
    CALLS.append(1)
    return REAL(*args, **kwargs)


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


@pytest.mark.parametrize("repeat", range(3))
def test_a_repeated_variant(das, aligned, repeat, monkeypatch):
    monkeypatch.setattr(das_assert.variants, "evaluate", counting)
    das.assert_robust(aligned, PromptVariant(), claim="trivial", n=16)
    das.assert_robust(aligned, PromptVariant(bracket=(100, 500)), claim="trivial", n=16)


def test_each_variant_was_evaluated_once():
    assert len(CALLS) == 2
"""


def test_a_fuzz_variant_seen_before_reuses_its_evaluation(project: pytest.Pytester) -> None:
    """Hypothesis often draws the plain prompt again: the frozen alignment's evaluation on the
    same seeded pairs cannot differ, so it runs once per session."""
    robustness = "\n    robustness:\n      trivial: 0.0\n"
    yaml = (project.path / "das.yaml").read_text().rstrip() + robustness
    (project.path / "das.yaml").write_text(yaml)
    project.makepyfile(test_repeat=REPEATED_VARIANTS)
    model = yaml.split("path: ")[1].split()[0]
    result = project.runpytest(
        f"--das-model={model}",
        "--das-config=das.yaml",
        "--das-min-task-accuracy=0",
        "--das-cache=off",
        "-p",
        "no:cacheprovider",
        "test_repeat.py",
    )
    result.assert_outcomes(passed=4)


UNDOABLE_VARIANT = """
import json

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.errors import Unsatisfiable

import das_assert.evaluate
from das_assert.strategies import PromptVariant


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def no_sources(*args, **kwargs):
    raise AssertionError("a source pass ran for a variant the model cannot do")


def test_a_variant_below_the_gate_is_rejected_before_any_intervention(
    das, das_session, aligned, monkeypatch, request
):
    monkeypatch.setattr(das_session, "min_task_accuracy", 1.0)  # no random model is perfect
    monkeypatch.setattr(das_assert.evaluate, "shared_source_vectors", no_sources)

    @settings(max_examples=1, database=None)
    @given(variant=st.just(PromptVariant(bracket=(100, 500))))
    def fuzz(variant):
        das.assert_robust(aligned, variant, claim="trivial", n=16)

    with pytest.raises(Unsatisfiable):
        fuzz()
    records = [json.loads(v) for k, v in request.node.user_properties if k == "das_fuzz"]
    assert records, "no fuzz record"
    for record in records:
        assert record["status"].startswith("rejected: task accuracy"), record
        assert "of 16 base prompts answered correctly; gate 1.0" in record["status"], record
"""


def test_a_fuzz_variant_the_model_cannot_do_is_rejected_at_the_gate(
    project: pytest.Pytester,
) -> None:
    """The variant's base run comes first; below the task-accuracy gate nothing else runs."""
    robustness = "\n    robustness:\n      trivial: 0.0\n"
    yaml = (project.path / "das.yaml").read_text().rstrip() + robustness
    (project.path / "das.yaml").write_text(yaml)
    project.makepyfile(test_undoable=UNDOABLE_VARIANT)
    result = _run(project, "--das-cache=off", "test_undoable.py")
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_a_model_without_thresholds_gets_a_clear_message(project, tiny_model_dirs) -> None:
    result = project.runpytest_subprocess(
        f"--das-model={tiny_model_dirs['gpt2']}", "--das-config=das.yaml", "-p", "no:cacheprovider"
    )
    assert result.ret != 0
    assert "has no settings for the model" in result.stdout.str()


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
    )
    result.assert_outcomes(passed=3, failed=1)
    report = json.loads((project.path / "out" / "report.json").read_text())
    ids = sorted(r["test_id"] for r in report["results"])
    assert ids == [
        "test_hyp.py::test_a_negative_claim_holds",
        "test_hyp.py::test_an_impossible_claim_fails",
        "test_two.py::test_two_booleans_are_not_found_in_a_random_model",
    ]
    summary = (project.path / "out" / "summary.md").read_text()
    assert "test_two.py::test_two_booleans_are_not_found_in_a_random_model" in summary
    assert "das: causal hypotheses" in result.stdout.str()
    junit = (project.path / "out" / "junit.xml").read_text()
    assert junit.count('name="das_iia"') == 3
    assert "das_result" not in junit


def _cache_file(index: int) -> str:
    # Two modules per key: each alignment is requested by two workers at once.
    hypothesis = ("left_boundary", "left_and_right_boundary")[index % 2]
    return f"""
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("{hypothesis}", "boundary")


def test_not_found_{index}(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")
"""


@pytest.mark.slow
def test_four_xdist_workers_sharing_one_cache_directory_lose_nothing(project) -> None:
    pytest.importorskip("xdist")
    (project.path / "test_hyp.py").unlink()
    project.makepyfile(**{f"test_cache_{i}": _cache_file(i) for i in range(4)})
    cache = project.path / "shared-cache"
    first = _run(
        project, "-n", "4", "--dist", "loadfile", f"--das-cache-dir={cache}", "--das-json=a.json"
    )
    first.assert_outcomes(passed=4)
    entries = sorted(path.name for path in cache.iterdir())
    assert len([e for e in entries if e.endswith(".safetensors")]) == 2  # one per alignment key
    assert not [e for e in entries if ".tmp" in e]  # no half-written file left behind
    # Every entry reads back with a valid checksum: a second run, read-only, trains nothing.
    second = _run(project, f"--das-cache-dir={cache}", "--das-cache=read", "--das-json=b.json")
    second.assert_outcomes(passed=4)
    a = json.loads((project.path / "a.json").read_text())["results"]
    b = json.loads((project.path / "b.json").read_text())["results"]
    assert any(r["train_seconds"] > 0 for r in a)
    assert all(r["train_seconds"] == 0 for r in b)  # both alignments reused from disk
    assert sorted((r["test_id"], r["iia"]) for r in a) == sorted(
        (r["test_id"], r["iia"]) for r in b
    )
    assert "CacheWarning" not in second.stdout.str()


def _in(pytester: pytest.Pytester, directory: str, das_yaml: str) -> None:
    (pytester.path / directory).mkdir()
    (pytester.path / directory / "das.yaml").write_text(das_yaml)
    (pytester.path / directory / f"test_{directory}.py").write_text(HYPOTHESIS_FILE)


def test_the_das_yaml_beside_the_hypothesis_files_is_the_one_used(
    pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]
) -> None:
    model = tiny_model_dirs["llama"]
    mine = DAS_YAML.format(path=model).replace("impossible: 0.99", "impossible: 0.987")
    _in(pytester, "myhyp", mine)
    result = pytester.runpytest_subprocess(
        f"--das-model={model}", "--das-min-task-accuracy=0", "-p", "no:cacheprovider", "myhyp"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*claim 'impossible': IIA >= 0.987*"])  # myhyp/das.yaml's


def test_hypothesis_files_with_different_das_yaml_files_are_refused_in_one_run(
    pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]
) -> None:
    model = tiny_model_dirs["llama"]
    _in(pytester, "one", DAS_YAML.format(path=model))
    _in(pytester, "two", DAS_YAML.format(path=model))
    result = pytester.runpytest_subprocess(
        f"--das-model={model}", "--das-min-task-accuracy=0", "-p", "no:cacheprovider", "one", "two"
    )
    result.stdout.fnmatch_lines(
        ["*das_assert setup: the hypothesis files of this run have different das.yaml files*"]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling of the above exception" not in result.stdout.str()  # said once


def test_the_reports_say_why_when_no_claim_reached_a_verdict(project) -> None:
    model = str(Path(project.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    result = project.runpytest_subprocess(
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
    assert {u["test_id"] for u in report["unjudged"]} == {
        "test_hyp.py::test_an_impossible_claim_fails",
        "test_hyp.py::test_a_negative_claim_holds",
    }
    assert all("PreconditionFailed" in u["message"] for u in report["unjudged"])
    assert all("answers only 0.000 of the 24" in u["message"] for u in report["unjudged"])
    assert "Failed before a verdict" in (project.path / "out" / "summary.md").read_text()


def test_bad_input_inside_a_test_reports_one_message_not_a_traceback(project) -> None:
    project.makepyfile(
        test_bad="""
        def test_unknown_site(das_session):
            das_session.align("left_boundary", "nowhere")
        """
    )
    result = _run(project, "--das-cache=off", "test_bad.py")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "'nowhere'" in output
    assert "das_assert/session.py" not in output  # no frames from the engine
    assert "das_assert/experiment.py" not in output


TWICE = """
def test_the_same_claim_twice(das, das_session):
    aligned = das_session.align("left_boundary", "boundary")
    das.assert_not_aligned(aligned, claim="impossible")
    das.assert_not_aligned(aligned, claim="impossible")
"""


def test_a_claim_asserted_twice_in_one_test_is_one_clear_error(project) -> None:
    # Baselines key a claim by test and name: the second once silently replaced the first.
    project.makepyfile(test_hyp=TWICE)
    result = _run(project, "--das-cache=off", "--das-save-baseline=v1", "--das-baseline-dir=b")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*claim 'impossible' is asserted twice in *parametrize*"])
    assert "Traceback" not in result.stdout.str()


def test_an_unknown_model_entry_names_the_entries_there_are(project) -> None:
    result = _run(project, "--das-model-entry=tiyn")
    result.stdout.fnmatch_lines(["*has no model entry 'tiyn' (--das-model-entry)*tiny*"])
    assert result.ret != 0


def test_a_cache_dir_that_is_a_file_fails_before_the_model_loads(project) -> None:
    (project.path / "occupied").write_text("not a directory")
    result = _run(project, "--das-cache-dir=occupied")
    result.stdout.fnmatch_lines(["*the cache directory *occupied is a file; *--das-cache=read*"])
    assert "Traceback" not in result.stdout.str()
    assert result.ret != 0


PROFILE_FILE = """
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

CALLS = {"plain": 0, "fuzz": 0, "own": 0}


@given(st.integers())
def test_a_users_own_property(x):
    CALLS["plain"] += 1
    # hypothesis's default profile (or its own "ci" one, loaded when $CI is set), not das's
    assert HealthCheck.function_scoped_fixture not in settings.default.suppress_health_check


@pytest.mark.das
@given(st.integers())
def test_a_das_fuzz_test(x):
    CALLS["fuzz"] += 1


@pytest.mark.das
@settings(max_examples=3)
@given(st.integers())
def test_a_das_fuzz_test_with_its_own_settings(x):
    CALLS["own"] += 1


def test_counts():
    print("CALLS", CALLS)
"""


def test_the_fuzz_profile_applies_to_das_fuzz_tests_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_profiles=PROFILE_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=4)
    # hypothesis's own default for the user's test; das-ci's 6 for the fuzz test; 3 as asked
    result.stdout.fnmatch_lines(["*CALLS {'plain': 100, 'fuzz': 6, 'own': 3}*"])


def test_an_explicit_hypothesis_profile_wins_over_das_profile(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from hypothesis import settings\n"
        "settings.register_profile('mine', max_examples=4, database=None)\n"
    )
    pytester.makepyfile(test_profiles=PROFILE_FILE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "--hypothesis-profile=mine"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*CALLS {'plain': 4, 'fuzz': 4, 'own': 3}*"])


REJECTED_FUZZ = """
import pytest
from hypothesis import given, strategies as st

from das_assert.strategies import PromptVariant


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


# answer words of several tokens: no variant can be written for this tokenizer
@given(variant=st.builds(PromptVariant, answers=st.sampled_from([("Yes indeed", "No way")])))
def test_every_variant_is_rejected(das, aligned, variant):
    das.assert_robust(aligned, variant, claim="trivial", n=16)
"""


def test_a_fuzz_test_whose_every_variant_is_rejected_says_so(project: pytest.Pytester) -> None:
    project.makepyfile(test_fuzz=REJECTED_FUZZ)
    text = Path(project.path / "das.yaml").read_text().rstrip("\n")
    (project.path / "das.yaml").write_text(text + "\n    robustness:\n      trivial: 0.0\n")
    result = _run(project, "test_fuzz.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*every prompt variant drawn was rejected (*), so no alignment was tested*",
            "*x cannot be built*",
            "*lower --das-min-task-accuracy*",
        ]
    )
    assert "FailedHealthCheck" not in result.stdout.str()


def test_a_run_that_judges_nothing_replaces_an_old_report(project: pytest.Pytester) -> None:
    (project.path / "out").mkdir()
    old = project.path / "out" / "report.json"
    old.write_text('{"results": [{"claim": "from an earlier run"}]}')
    project.makepyfile(test_broken="import a_module_that_does_not_exist\n")
    result = _run(project, "--das-json=out/report.json", "--das-markdown=out/summary.md")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # pytest stops on a collection error
    report = json.loads(old.read_text())
    assert report["results"] == []
    assert report["run"]["complete"] is False
    assert report["run"]["exit_code"] == "INTERRUPTED"
    (broken,) = report["unjudged"]
    assert broken["test_id"] == "test_broken.py"
    assert broken["when"] == "collect"
    assert "a_module_that_does_not_exist" in broken["message"]
    assert "did not complete" in (project.path / "out" / "summary.md").read_text()


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
    }


def test_a_run_cut_short_saves_no_baseline_and_leaves_no_alignment_file(
    project: pytest.Pytester,
) -> None:
    args = ("--das-cache=off", "--das-save-baseline=v1", "--das-baseline-dir=b")
    result = _run(project, "-x", *args, "test_hyp.py")
    result.assert_outcomes(failed=1)  # the impossible claim, judged; -x stops the run there
    result.stdout.fnmatch_lines(
        ["*baseline 0001_v1 NOT saved: the run did not complete (pytest exit TESTS_FAILED)*"]
    )
    assert [p for p in (project.path / "b").rglob("*") if p.is_file()] == []
    selected = _run(project, *args, "-k", "negative", "test_hyp.py")
    selected.assert_outcomes(passed=1)
    selected.stdout.fnmatch_lines(
        ["*baseline 0001_v1 holds only the 1 claim(s) selected: 1 test(s) were deselected*"]
    )
    (saved,) = (project.path / "b").rglob("*v1.json")
    assert len(json.loads(saved.read_text())["entries"]) == 1


def test_a_run_past_a_collection_error_saves_no_baseline(project: pytest.Pytester) -> None:
    project.makepyfile(test_broken="import a_module_that_does_not_exist\n")
    args = ("--das-cache=off", "--das-save-baseline=v1", "--das-baseline-dir=b")
    passing = "test_hyp.py::test_a_negative_claim_holds"
    result = _run(project, *args, "--continue-on-collection-errors", passing, "test_broken.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*baseline 0001_v1 NOT saved: the run did not complete*"])
    assert not list((project.path / "b").rglob("*.json"))


def test_a_last_failed_rerun_is_noted_on_its_baseline(project: pytest.Pytester) -> None:
    project.makepyfile(test_other="def test_plain():\n    pass\n")
    args = ("--das-cache=off", "-p", "cacheprovider", "test_hyp.py", "test_other.py")
    _run(project, *args).assert_outcomes(passed=2, failed=1)
    saving = ("--das-save-baseline=lf", "--das-baseline-dir=b", "--das-json=r.json")
    result = _run(project, "--lf", *saving, *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*baseline 0001_lf holds only the 1 claim(s) selected: --lf ran only the tests that*"]
    )
    run = json.loads((project.path / "r.json").read_text())["run"]
    assert run["selection"] == "--lf ran only the tests that failed last time"


def test_collect_only_writes_a_report_that_says_nothing_ran(project: pytest.Pytester) -> None:
    result = _run(project, "--collect-only", "--das-json=r.json")
    assert result.ret == pytest.ExitCode.OK
    run = json.loads((project.path / "r.json").read_text())["run"]
    assert run["complete"] is False
    assert run["selection"] is None


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


def test_the_plugin_is_named_das_assert(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses(das_session):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:das_assert", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*fixture 'das_session' not found*"])


def test_a_selection_under_xdist_is_noted_on_its_baseline(project: pytest.Pytester) -> None:
    args = ("--das-cache=off", "--das-save-baseline=v1", "--das-baseline-dir=b")
    result = _run(project, *args, "-n", "2", "-k", "negative", "test_hyp.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*baseline 0001_v1 holds only the 1 claim(s) selected: 1 test(s)*"]
    )


SEARCH_SETTINGS = """
def test_the_search_settings(das_session):
    das_session.search_settings()
"""


@pytest.mark.parametrize(
    ("search", "match"),
    [
        ("{layers: [0, 9], positions: [last]}", "*models.tiny.search.layers: 9: layer=9 is out*"),
        (
            "{layers: [0], positions: [last, after:amout]}",
            "*models.tiny.search.positions: 'after:amout': position 'after:amout' refers to slot*",
        ),
    ],
    ids=["layer", "slot"],
)
def test_a_das_yaml_search_the_model_cannot_run_fails_the_search_only_naming_its_key(
    project: pytest.Pytester, search: str, match: str
) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(yaml.read_text().rstrip("\n") + f"\n    search: {search}\n")
    project.makepyfile(test_search=SEARCH_SETTINGS)
    args = ("test_hyp.py::test_a_negative_claim_holds", "test_search.py")
    result = _run(project, "--das-cache=off", *args)
    result.assert_outcomes(passed=1, failed=1)  # the claim that does not search still runs
    result.stdout.fnmatch_lines([match])
    assert "Traceback" not in result.stdout.str()


def test_a_das_yaml_site_outside_the_model_is_named_by_its_key(project: pytest.Pytester) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(yaml.read_text().replace("layer=1, pos=last", "layer=99, pos=last"))
    result = _run(project, "--das-cache=off", "test_hyp.py::test_an_impossible_claim_fails")
    result.assert_outcomes(errors=1)  # in the module fixture that aligns, before any claim
    assert (
        "SiteError: das.yaml: models.tiny.sites.boundary = 'block_output[layer=99, pos=last]': "
        "layer=99 is out of range for llama"
    ) in result.stdout.str()


def test_a_threshold_key_one_typo_from_a_causal_model_warns_before_training(
    project: pytest.Pytester,
) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(
        yaml.read_text().replace("trivial: 0.0", "trivial: 0.0\n      left_bondary: 0.7")
    )
    result = _run(project, "--das-cache=off", "test_hyp.py::test_a_negative_claim_holds")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*ConfigWarning*models.tiny.thresholds.left_bondary names no causal model; "
            "did you mean 'left_boundary'?*"
        ]
    )


def test_a_das_warning_made_an_error_is_one_line_not_a_traceback(
    project: pytest.Pytester,
) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(
        yaml.read_text().replace("trivial: 0.0", "trivial: 0.0\n      left_bondary: 0.7")
    )
    args = ("-W", "error::UserWarning", "test_hyp.py::test_a_negative_claim_holds")
    result = _run(project, "--das-cache=off", *args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ConfigWarning: das.yaml: models.tiny.thresholds.left_bondary names no causal model*"]
    )
    assert "Traceback" not in result.stdout.str()
    assert "raise " not in result.stdout.str()


def test_a_bad_das_model_variable_is_named_in_the_error(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAS_MODEL", "/no/such/model")
    result = project.runpytest_subprocess(
        "--das-config=das.yaml", "-p", "no:cacheprovider", "test_hyp.py"
    )
    result.stdout.fnmatch_lines(
        ["*'/no/such/model' does not exist*(the model path is $DAS_MODEL='/no/such/model')*"]
    )


def test_the_gate_refuses_a_baseline_judged_on_other_pairs(project: pytest.Pytester) -> None:
    passing = "test_hyp.py::test_a_negative_claim_holds"
    args = ("--das-cache=readwrite", "--das-baseline-dir=b", passing)
    _run(project, "--das-save-baseline=v1", *args).assert_outcomes(passed=1)
    (saved,) = (project.path / "b").rglob("*v1.json")
    _run(project, "--das-compare=v1", *args).assert_outcomes(passed=1)  # the same pairs
    from das_assert.baseline import load_baseline, save_baseline

    payload = load_baseline(saved)
    records = [{**entry, "test_pairs": "confirmation"} for entry in payload["entries"].values()]
    save_baseline(  # as a search's best cell judged on fresh pairs, checksum and all
        saved, model=payload["model"], environment=payload["environment"], records=records
    )
    result = _run(project, "--das-compare=v1", *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*judged on other pairs (confirmation -> test): not comparable*"])
