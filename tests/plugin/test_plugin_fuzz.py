"""The pytest plugin's fuzz tests: the hypothesis profile, variant reuse, rejected variants, and
the measured limits of ``das.assert_breaks_on`` in the reports."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from plugin_support import _run

pytest_plugins = ["pytester"]


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
    # a negative claim, so that the tiny model's IIA at its no-op level holds
    das.assert_robust(aligned, PromptVariant(), claim="trivial", n=64, expect="not_aligned")
    dollars = PromptVariant(numbers="dollar")
    das.assert_robust(aligned, dollars, claim="trivial", n=64, expect="not_aligned")


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
import dataclasses
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
    # the claim's own gate, as for its verdict: no random model is perfect
    strict = dataclasses.replace(
        aligned, experiment=dataclasses.replace(aligned.experiment, min_task_accuracy=1.0)
    )
    monkeypatch.setattr(das_assert.evaluate, "shared_source_vectors", no_sources)

    @settings(max_examples=1, database=None)
    @given(variant=st.just(PromptVariant(bracket=(100, 500))))
    def fuzz(variant):
        das.assert_robust(strict, variant, claim="trivial", n=16)

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


NAMED_DAS_FILE = """
import pytest
from hypothesis import given, strategies as st

CALLS = {"das": 0, "probe": 0}


@pytest.mark.parametrize("method", ["das", "probe"])
@given(st.integers())
def test_a_users_property(method, x):
    CALLS[method] += 1


def test_a_plain_failure():
    assert 1 == 2


def test_counts():
    print("CALLS", CALLS)
"""


def test_a_test_named_das_by_its_folder_or_a_parameter_is_no_das_test(
    pytester: pytest.Pytester,
) -> None:
    # a test's keywords hold its folders' and parameters' names beside its markers: a plain
    # property test in das/ or with a [das] case got the fuzz profile (6 examples, all its
    # cases), and a plain failure there was listed among das tests "failed before a verdict"
    folder = pytester.mkpydir("das")
    (folder / "test_props.py").write_text(NAMED_DAS_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--das-json=out.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*CALLS {'das': 100, 'probe': 100}*"])
    assert json.loads((pytester.path / "out.json").read_text()).get("unjudged", []) == []


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


OWN_SETTINGS_FILE = """
import time

import pytest
from hypothesis import given, settings, strategies as st

SEEN = []


@pytest.fixture
def recorder():  # function-scoped, as the das fixture is
    return SEEN


@pytest.mark.das
@settings(max_examples=3, database=None)
@given(x=st.integers())
def test_own_settings(recorder, x):
    recorder.append(x)
    if len(recorder) == 1:
        time.sleep(0.3)  # an evaluation; its rerun, served from the memo, takes no time
"""


@pytest.mark.parametrize("profile", [(), ("--hypothesis-profile=default",)])
def test_a_fuzz_test_with_its_own_settings_keeps_them_and_still_runs(
    pytester: pytest.Pytester, profile: tuple[str, ...]
) -> None:
    # Its own @settings (or --hypothesis-profile) dropped the das profile whole: hypothesis
    # refused the function-scoped das fixture, and then the slow first example against its
    # 200 ms deadline ("Unreliable test timings").
    pytester.makepyfile(test_own=OWN_SETTINGS_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *profile)
    result.assert_outcomes(passed=1)


def test_a_second_pytest_main_in_one_process_applies_its_own_profile(
    pytester: pytest.Pytester,
) -> None:
    """pytest.main() imports a test module once per process: the profile the first run gave
    a fuzz test passed, in the second, for the test's own @settings and was kept."""
    pytester.makepyfile(
        test_profiles=PROFILE_FILE.replace(
            'print("CALLS", CALLS)', 'print("CALLS", CALLS)\n    CALLS.update(fuzz=0, own=0)'
        )
    )
    pytester.makepyfile(
        twice="""
        import pytest

        for profile in ("--das-profile=ci", "--das-profile=dev", "--hypothesis-profile=default"):
            pytest.main(["-q", "-s", "-p", "no:cacheprovider", profile, "test_profiles.py"])
        """
    )
    result = pytester.runpython(pytester.path / "twice.py")
    calls = [line.split("CALLS ")[1] for line in result.stdout.lines if "CALLS" in line]
    fuzz = [ast.literal_eval(line)["fuzz"] for line in calls]
    assert fuzz == [6, 20, 100]  # das-ci, das-dev, hypothesis's default profile


SEEDED_FILE = """
import pytest
from hypothesis import given, strategies as st


@pytest.mark.das
@given(st.integers(0, 10**9))
def test_a_das_fuzz_test(x):
    print("DRAWN", x)
"""


def test_a_hypothesis_seed_draws_other_fuzz_examples_under_the_ci_profile(
    pytester: pytest.Pytester,
) -> None:
    # derandomize won over the seed: --hypothesis-seed drew the same variants, silently
    pytester.makepyfile(test_seeded=SEEDED_FILE)

    def drawn(*seed: str) -> list[str]:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *seed)
        result.assert_outcomes(passed=1)
        return [line for line in result.stdout.lines if line.startswith("DRAWN")]

    assert drawn() == drawn()  # derandomized
    assert drawn("--hypothesis-seed=1") == drawn("--hypothesis-seed=1")
    assert drawn("--hypothesis-seed=1") != drawn("--hypothesis-seed=2")


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


def _run_with_a_trivial_robustness_threshold(
    project: pytest.Pytester, *args: str, file: str = "test_fuzz.py"
) -> pytest.RunResult:
    text = Path(project.path / "das.yaml").read_text().rstrip("\n")
    (project.path / "das.yaml").write_text(text + "\n    robustness:\n      trivial: 0.0\n")
    return _run(project, file, *args)


def test_a_fuzz_test_whose_every_variant_is_rejected_says_so(project: pytest.Pytester) -> None:
    project.makepyfile(test_fuzz=REJECTED_FUZZ)
    result = _run_with_a_trivial_robustness_threshold(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*every prompt variant drawn was rejected (*), so no alignment was tested*",
            "*x cannot be built*",
            "*lower --das-min-task-accuracy*",
        ]
    )
    assert "FailedHealthCheck" not in result.stdout.str()


MOSTLY_REJECTED_FUZZ = """
import pytest
from hypothesis import given

import das_assert.robustness
from das_assert.errors import PreconditionFailed
from das_assert.strategies import prompt_variants

REAL = das_assert.robustness.evaluate_variant


def all_but_one_failed(result, variant, n, **keywords):  # a model failing most variants
    if repr(variant) != "PromptVariant(amount_edge='on_bound')":  # hypothesis's first draw
        return PreconditionFailed("task accuracy at most 0.600 (simulated)")
    return REAL(result, variant, n, **keywords)


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


@given(variant=prompt_variants())
def test_mostly_rejected(das, aligned, variant, monkeypatch):
    monkeypatch.setattr(das_assert.robustness, "evaluate_variant", all_but_one_failed)
    das.assert_robust(aligned, variant, claim="trivial", n=16)
"""


def test_a_fuzz_test_stopped_for_rejecting_most_variants_says_why(
    project: pytest.Pytester,
) -> None:
    # hypothesis's filter health check ("It looks like this test is filtering out a lot of
    # inputs ... strategy.filter(...)") was all it said where most, not all, were rejected
    project.makepyfile(test_fuzz=MOSTLY_REJECTED_FUZZ)
    result = _run_with_a_trivial_robustness_threshold(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "* of * prompt variants drawn were rejected, and hypothesis's health check stopped "
            "the test for filtering out too many: the model fails the task under most of them*",
            "* x task accuracy at most 0.600",
            "Draw variants the model can do*",
        ]
    )
    assert "FailedHealthCheck" not in result.stdout.str()
    # where fewer than half were rejected, the test's own filters may be what tripped it:
    # hypothesis's message, which names them, stays
    project.makepyfile(
        test_fuzz=MOSTLY_REJECTED_FUZZ.replace(
            "from hypothesis import given", "from hypothesis import assume, given"
        ).replace(
            "if repr(variant) != \"PromptVariant(amount_edge='on_bound')\":",
            "if len(repr(variant)) % 3 == 0:  # about a third",
        )
        + "    assume(False)\n"
    )
    own = _run(project, "test_fuzz.py")
    own.assert_outcomes(failed=1)
    assert "prompt variants drawn were rejected" not in own.stdout.str()
    own.stdout.fnmatch_lines(["*FailedHealthCheck*"])


DOES_NOTHING = """
import dataclasses

import pytest

from das_assert.strategies import PromptVariant
from das_assert.tasks.price_tagging import prompt_pairs


@pytest.fixture(scope="module")
def does_nothing(das_session):
    config = dataclasses.replace(das_session.fit_config(), method="noop")
    return das_session.align("left_boundary", "boundary", config=config)
"""

NOOP_FUZZ = (
    DOES_NOTHING
    + """

def test_an_alignment_that_does_nothing_does_not_survive(das, does_nothing):
    das.assert_robust(does_nothing, PromptVariant(), claim="trivial", n=400)
"""
)


def test_a_variant_at_its_no_op_level_breaks_a_positive_claim(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 96 pairs an intervention that changes nothing "held" on the default prompt: its upper
    # bound reached the robustness threshold. Like a claim, a variant must beat its no-op; at
    # 400 pairs the interval of its lead over the no-op (none: the same answers) says it does not.
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # torch chose, not tests/conftest.py
    project.makepyfile(test_fuzz=NOOP_FUZZ)
    outputs = ("--das-json=out/r.json", "--das-markdown=out/s.md")
    result = _run_with_a_trivial_robustness_threshold(project, *outputs)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*: not_aligned (robustness threshold 0.0): IIA * does not beat noop (*, lead +0.000 *",
            # a break fails the test only once fresh pairs of the same variant break it too
            "*confirmed on 400 fresh pairs: IIA *: not_aligned: IIA * does not beat noop *",
            # the variant itself, pinned: the same file run alone may draw other variants
            "*replay: @example(variant=PromptVariant()) on "
            "test_fuzz.py::test_an_alignment_that_does_nothing_does_not_survive*",
            # and the das options it ran with, as a claim's failure gives them
            "*reproduce: pytest test_fuzz.py::test_an_alignment_that_does_nothing_does_not_survive"
            " --das-seed=0 *--das-config=das.yaml*",
        ]
    )
    # A broken variant is a verdict: it was filed with the tests that failed before one.
    assert json.loads((project.path / "out" / "r.json").read_text())["unjudged"] == []
    assert "Failed before a verdict" not in (project.path / "out" / "s.md").read_text()


def test_a_broken_variant_is_pinned_under_the_tests_own_argument_name(
    project: pytest.Pytester,
) -> None:
    # the replay line said @example(variant=...) whatever @given called the argument
    renamed = "\nfrom hypothesis import given, settings, strategies as st\n\n\n" + (
        "@settings(max_examples=1, database=None)\n"
        "@given(v=st.just(PromptVariant()))\n"
        "def test_renamed(das, does_nothing, v):\n"
        '    das.assert_robust(does_nothing, v, claim="trivial", n=400)\n'
    )
    project.makepyfile(test_fuzz=DOES_NOTHING + renamed)
    result = _run_with_a_trivial_robustness_threshold(project)
    result.assert_outcomes(failed=1)
    pinned = "*replay: @example(v=PromptVariant()) on test_fuzz.py::test_renamed*"
    result.stdout.fnmatch_lines([pinned])


UNCONFIRMED_FUZZ = (
    DOES_NOTHING
    + """
import das_assert.robustness

REAL = das_assert.robustness._evaluate_once


def fresh_pairs_all_right(session, result, variant, n, fresh=False):
    outcome = REAL(session, result, variant, n, fresh=fresh)
    if fresh:  # the fresh pairs, as if the alignment answered every one as the causal model
        return dataclasses.replace(outcome, predicted=outcome.test.label_ids.clone())
    return outcome


def test_a_break_that_fresh_pairs_do_not_confirm(das, does_nothing, monkeypatch):
    monkeypatch.setattr(das_assert.robustness, "_evaluate_once", fresh_pairs_all_right)
    das.assert_robust(does_nothing, PromptVariant(), claim="trivial", n=400)
"""
)


def test_a_break_that_fresh_pairs_do_not_confirm_passes_and_is_reported(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_fuzz=UNCONFIRMED_FUZZ)
    outputs = ("--das-json=out/r.json", "--das-markdown=out/s.md")
    result = _run_with_a_trivial_robustness_threshold(project, *outputs)
    result.assert_outcomes(passed=1)
    test_id = "test_fuzz.py::test_a_break_that_fresh_pairs_do_not_confirm"
    line = (
        f"a break not confirmed in {test_id}: trivial under PromptVariant(): broke on its 400 "
        "pairs, IIA * (bar 0.0); fresh pairs: holds, 1.000 [[]0.99*, 1.000] on 400; counted "
        "inconclusive"
    )
    result.stdout.fnmatch_lines(["*trivial*default*1*0*1*0*", line])  # [[] is fnmatch's [
    report = json.loads((project.path / "out" / "r.json").read_text())["robustness"]
    (unconfirmed,) = report["unconfirmed"]
    assert (unconfirmed["test_id"], unconfirmed["n"]) == (test_id, 400)
    assert (unconfirmed["fresh"]["status"], unconfirmed["fresh"]["iia"]) == ("holds", 1.0)
    (example,) = report["examples"]
    assert (example["status"], example["verdict"]) == ("inconclusive", "not_aligned")
    assert example["confirmation"] == unconfirmed["fresh"]
    assert (unconfirmed["threshold"], unconfirmed["expect"]) == (0.0, "aligned")
    assert report["per_family"]["trivial"]["default"]["broken"] == 0
    markdown = (project.path / "out" / "s.md").read_text()
    assert f"- a break not confirmed in {test_id}: trivial under PromptVariant()" in markdown


def test_a_fuzz_test_that_failed_after_its_variants_is_not_said_to_have_passed(
    project: pytest.Pytester,
) -> None:
    # "no variant held ...: it passed without showing its claim" was printed for a test whose
    # variants were all inconclusive but that then failed
    body = (
        "(das, does_nothing, monkeypatch):\n"
        "    test_a_break_that_fresh_pairs_do_not_confirm(das, does_nothing, monkeypatch)\n"
        '    raise AssertionError("after the variant")\n'
    )
    later = f"\n\ndef test_then_fails{body}\n\n@pytest.mark.xfail\ndef test_then_xfails{body}"
    project.makepyfile(test_fuzz=UNCONFIRMED_FUZZ + later)
    result = _run_with_a_trivial_robustness_threshold(project, "--das-json=out/r.json")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    passing = "test_fuzz.py::test_a_break_that_fresh_pairs_do_not_confirm"
    result.stdout.fnmatch_lines([f"no variant held in {passing}: 1 inconclusive, 0 rejected;*"])
    result.stdout.no_fnmatch_line("no variant held in test_fuzz.py::test_then_*")
    report = json.loads((project.path / "out" / "r.json").read_text())["robustness"]
    assert [test["test_id"] for test in report["unshown"]] == [passing]


UNTESTABLE_FUZZ = """
import pytest
from hypothesis import given, strategies as st

from das_assert.errors import PreconditionFailed
from das_assert.strategies import PromptVariant

# On a bracket from 0.05 to 1.40 almost no amount lies below the low bound: left = amount >= low
# is nearly always true, and almost no label changes when it is swapped in.
NEAR_ZERO = PromptVariant(bracket=(5, 140))


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


@given(variant=st.just(NEAR_ZERO))
def test_a_negative_claim_is_not_upheld_by_a_variant_that_cannot_test_it(das, aligned, variant):
    das.assert_robust(aligned, variant, claim="trivial", n=64, expect="not_aligned")


def test_called_on_that_variant_alone_it_says_why(das, aligned):
    why = "cannot test claim 'trivial': only .* of 64 pairs"
    with pytest.raises(PreconditionFailed, match=why):
        das.assert_robust(aligned, NEAR_ZERO, claim="trivial", n=64, expect="not_aligned")


@pytest.mark.filterwarnings("ignore::das_assert.errors.NoClaimWarning")  # it means to claim none
def test_a_misspelt_expect_is_refused(das, aligned):
    with pytest.raises(Exception, match="expect='not_algined': one of 'aligned', 'not_aligned'"):
        das.assert_robust(aligned, PromptVariant(), claim="trivial", n=64, expect="not_algined")
"""


def test_a_variant_whose_labels_barely_change_is_rejected_not_counted(
    project: pytest.Pytester,
) -> None:
    # A negative claim once "held" on every fixed bracket of a claim whose labels never change
    # there: no intervention could beat the no-op, so nothing was tested, yet it was pooled.
    project.makepyfile(test_fuzz=UNTESTABLE_FUZZ)
    result = _run_with_a_trivial_robustness_threshold(project)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*every prompt variant drawn was rejected (*), so no alignment was tested*",
            "*only * of 64 pairs have a label the intervention must change*",
        ]
    )


NOOP_LIMIT = (
    DOES_NOTHING
    + """

def test_an_alignment_that_does_nothing_breaks_on_the_top_bracket(das, does_nothing):
    pairs = prompt_pairs("left_boundary", 400, seed=43, bracket=(745, 995))
    das.assert_breaks_on(does_nothing, pairs, claim="trivial", where="bracket [7.45, 9.95]")


def test_an_alignment_that_does_nothing_is_not_aligned_on_a_variant(das, does_nothing):
    das.assert_robust(does_nothing, PromptVariant(), claim="trivial", expect="not_aligned")
"""
)


def test_a_measured_limit_is_reported_with_its_numbers(project: pytest.Pytester) -> None:
    # An intervention that changes nothing is clearly not aligned (no lead over its no-op), so
    # the limit holds; the terminal summary and the JSON report both carry it, with its numbers.
    project.makepyfile(test_limit=NOOP_LIMIT)
    result = _run_with_a_trivial_robustness_threshold(
        project, "--das-json=out/report.json", "--junitxml=out/junit.xml", file="test_limit.py"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "--- measured limits (das.assert_breaks_on:*",
            "claim*where*IIA*95% CI*n*no-op*maj*rand*changed*task*thr*result",
            "trivial*bracket [[]7.45, 9.95]*400*0/*breaks, as claimed",  # [[] is fnmatch's [
            "at block_output[layer=1, pos=last], seed=0",
        ]
    )
    report = json.loads((project.path / "out" / "report.json").read_text())
    (limit,) = report["limits"]
    assert limit["test_id"] == (
        "test_limit.py::test_an_alignment_that_does_nothing_breaks_on_the_top_bracket"
    )
    assert (limit["status"], limit["verdict"], limit["n"]) == ("breaks", "not_aligned", 400)
    assert limit["iia"] == limit["noop"]  # it changes nothing
    assert 0.5 <= limit["majority"] < 1
    assert 0 <= limit["random_rotation"] <= 1
    # a fuzz example carries its verdict and interval, and every control, as a claim does
    (example,) = report["robustness"]["examples"]
    assert (example["status"], example["verdict"], example["n"]) == ("holds", "not_aligned", 400)
    low, high = example["iia_ci"]
    assert low <= example["iia"] == example["noop"] <= high
    assert {"majority", "random_rotation", "task_accuracy"} <= set(example)
    assert limit["changed_labels"]["correct"] == 0
    # --junitxml carries its numbers as a claim's (it had none: das_limit is kept out of it)
    junit = (project.path / "out" / "junit.xml").read_text()
    for name, value in [
        ("claim", "trivial"),
        ("where", "bracket [7.45, 9.95]"),
        ("iia", str(limit["iia"])),
        ("n_test", "400"),
        ("verdict", "not_aligned"),
        ("status", "breaks"),
    ]:
        assert f'<property name="das_{name}" value="{value}"' in junit, name
    assert "das_limit" not in junit


SETTINGS_PROBE_FILE = """
import pytest
from hypothesis import Phase, given, settings, strategies as st


@pytest.mark.das
@given(st.integers())
def test_a_das_fuzz_test(x):
    current = settings()
    print("SETTINGS", current.derandomize, current.database is None, current.verbosity.name,
          Phase.explain in current.phases, Phase.shrink in current.phases)
"""


def _fuzz_settings(pytester: pytest.Pytester, *args: str) -> set[str]:
    pytester.makepyfile(test_probe=SETTINGS_PROBE_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *args)
    result.assert_outcomes(passed=1)
    return {line.split("SETTINGS ")[1] for line in result.stdout.lines if "SETTINGS " in line}


@pytest.mark.parametrize("profile", ["dev", "thorough"])
def test_dev_and_thorough_draw_anew_with_a_database_on_a_ci_machine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    # With CI set hypothesis loads its own "ci" profile (derandomized, no database) and the das
    # profiles inherited it: a nightly thorough job drew the same 200 variants every night.
    # Both shrink a failure to a readable variant; the CI gate does not (minutes per shrink).
    monkeypatch.setenv("CI", "true")
    chosen = _fuzz_settings(pytester, f"--das-profile={profile}")
    assert chosen == {"False False normal False True"}
    assert _fuzz_settings(pytester) == {"True True normal False False"}  # das-ci: derandomized


def test_hypothesis_verbosity_and_explain_apply_to_das_fuzz_tests(
    pytester: pytest.Pytester,
) -> None:
    # both were dropped: the das profile replaced the one hypothesis' options had made
    chosen = _fuzz_settings(pytester, "--hypothesis-verbosity=verbose", "--hypothesis-explain")
    assert chosen == {"True True verbose True False"}


def test_dev_and_thorough_keep_examples_in_memory_where_the_checkout_is_read_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # hypothesis warned that .hypothesis/ was unusable, and where warnings are errors every
    # fuzz test of a read-only checkout failed under --das-profile=dev (ci keeps no examples)
    from hypothesis import settings
    from hypothesis.database import InMemoryExampleDatabase

    from das_assert import plugin_fuzz

    monkeypatch.setattr(plugin_fuzz, "_database_writable", lambda: False)
    plugin_fuzz.register_profiles()
    try:
        for name in ("dev", "thorough"):
            assert isinstance(settings.get_profile(f"das-{name}").database, InMemoryExampleDatabase)
    finally:
        monkeypatch.undo()
        plugin_fuzz.register_profiles()
    assert not isinstance(settings.get_profile("das-dev").database, InMemoryExampleDatabase)


def test_rejections_that_differ_only_in_their_numbers_are_one_cause_with_ranges() -> None:
    # 37 variants too long for the model were nine lines, one per token count, each cut
    # mid-sentence at 100 characters; task accuracies were one line per accuracy
    from das_assert.plugin_fuzz import rejection_reasons

    too_long = (
        "rejected: cannot be built: a prompt of {} tokens is longer than the 256 positions "
        "tiny was built for; use a shorter prompt (template, prefix) or a model with more"
    )
    accuracy = "rejected: task accuracy at most {} (225 of the first 320 ...; gate 0.8): ..."
    statuses = [too_long.format(n) for n in (289, 287, 289, 290)]
    statuses += [accuracy.format(a) for a in ("0.762", "0.565")] + ["rejected: no label changes"]
    assert rejection_reasons(statuses) == [
        "  4 x cannot be built: a prompt of 287-290 tokens is longer than the 256 positions tiny "
        "was built for; use a shorter prompt",
        "  2 x task accuracy at most 0.565-0.762",
        "  1 x no label changes",
    ]


def test_rejection_numbers_are_whole_numbers_not_parts_of_versions_or_exponents() -> None:
    # "1e-06" and "5e-07" were read as 1, 06, 5 and 07: "lead 1-5e-06-07 below margin"
    from das_assert.plugin_fuzz import rejection_reasons

    margins = ["rejected: lead 1e-06 below margin", "rejected: lead 5e-07 below margin"]
    assert rejection_reasons(margins) == ["  2 x lead 5e-07-1e-06 below margin"]
    versions = ["rejected: under transformers 4.57.1", "rejected: under transformers 4.9.0"]
    assert len(rejection_reasons(versions)) == 2  # another text each, not one range
