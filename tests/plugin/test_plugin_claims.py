"""The pytest plugin's claims: verdicts, das marker, failure messages, das.yaml errors, warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_support import DAS_YAML, HYPOTHESIS_FILE, _run

pytest_plugins = ["pytester"]


def test_unknown_marker_keyword_fails_with_the_allowed_keys(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.das(group="x")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    out = result.stdout.str()
    assert "das marker got unexpected ['group']; allowed keywords: compare_fail" in out


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
def test_a_failing_claim_fails_its_own_test_with_numbers_and_a_reproduce_line(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # torch chose, not tests/conftest.py
    result = _run(project, "--das-cache=off")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "claim 'impossible': IIA >= 0.990" in output
    assert "95% CI [" in output
    assert "site       block_output[layer=1, pos=last]  ->  model.layers.1" in output
    assert "simplest failing pair" in output
    assert "reproduce: pytest test_hyp.py::test_an_impossible_claim_fails --das-seed=0" in output
    # the first: with $CI set, pytest's short summary repeats the whole message
    line = next(line for line in output.splitlines() if "reproduce: pytest" in line)
    for option in ("--das-model=", "--das-config=das.yaml", "--das-min-task-accuracy=0.0"):
        assert option in line, line  # the options the verdict depended on, not their defaults
    assert "--das-dtype" not in line
    assert "--das-inconclusive" not in line
    assert "das: causal hypotheses" in output  # the terminal summary table


def test_the_reproduce_line_runs_from_where_pytest_was_started(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node ids are relative to the rootdir; started in a subdirectory, the line named the test
    file by its rootdir path, which pytest there does not find."""
    project.makeini("[pytest]\n")  # the rootdir, above the hypothesis files
    sub = project.path / "hyp"
    sub.mkdir()
    (project.path / "test_hyp.py").rename(sub / "test_hyp.py")
    (sub / "das.yaml").write_text((project.path / "das.yaml").read_text())
    monkeypatch.chdir(sub)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # torch chose, not tests/conftest.py
    result = _run(project, "--das-cache=off")
    result.assert_outcomes(passed=1, failed=1)
    assert "hyp/test_hyp.py::test_an_impossible_claim_fails" in result.stdout.str()  # the id
    line = next(line for line in result.stdout.lines if "reproduce: pytest" in line)
    assert "reproduce: pytest test_hyp.py::test_an_impossible_claim_fails --das-seed=0" in line


def test_the_reproduce_line_names_a_thread_count_the_run_chose(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a CPU fit rounds by torch's thread count: a fit at an xdist worker's share, or under
    # OMP_NUM_THREADS, was "reproduced" by a line that ran at torch's own count
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    result = _run(project, "--das-cache=off")
    result.assert_outcomes(passed=1, failed=1)
    line = next(line for line in result.stdout.lines if "reproduce: " in line)
    assert (
        f"reproduce: OMP_NUM_THREADS={torch.get_num_threads()} pytest "
        "test_hyp.py::test_an_impossible_claim_fails --das-seed=0"
    ) in line


@pytest.mark.slow
def test_a_model_without_thresholds_gets_a_clear_message(project, tiny_model_dirs) -> None:
    result = project.runpytest_inprocess(
        f"--das-model={tiny_model_dirs['gpt2']}", "--das-config=das.yaml", "-p", "no:cacheprovider"
    )
    assert result.ret != 0
    assert "has no settings for the model" in result.stdout.str()


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
    result = pytester.runpytest_inprocess(
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
    result = pytester.runpytest_inprocess(
        f"--das-model={model}", "--das-min-task-accuracy=0", "-p", "no:cacheprovider", "one", "two"
    )
    result.stdout.fnmatch_lines(
        ["*das_assert setup: the hypothesis files of this run have different das.yaml files*"]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling of the above exception" not in result.stdout.str()  # said once
    # one usage error for the run, not one error per test (each file here has two tests)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stdout.str().count("das_assert setup:") == 1


def test_a_das_config_that_does_not_exist_names_the_option(
    pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path]
) -> None:
    # It said "/tmp/none.yaml does not exist", without the option that named it.
    model = tiny_model_dirs["llama"]
    _in(pytester, "one", DAS_YAML.format(path=model))
    result = pytester.runpytest_inprocess(
        f"--das-model={model}", "--das-config=none.yaml", "-p", "no:cacheprovider", "one"
    )
    result.stdout.fnmatch_lines(
        ["*das_assert setup: --das-config=none.yaml: no such file; give the path of a das.yaml*"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_bad_input_inside_a_test_reports_one_message_not_a_traceback(project) -> None:
    project.makepyfile(
        test_bad="""
        def test_a_layer_the_model_lacks(das_session):
            das_session.align("left_boundary", "block_output[layer=99, pos=last]")
        """
    )
    result = _run(project, "--das-cache=off", "test_bad.py")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "SiteError: " in output
    assert "99" in output
    assert "das_assert/session.py" not in output  # no frames from the engine
    assert "das_assert/request.py" not in output
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
def test_a_das_yaml_search_the_model_cannot_run_stops_the_run_once_naming_its_key(
    project: pytest.Pytester, search: str, match: str
) -> None:
    # each test that read the grid failed on its own, the same message once per test, while
    # the claims trained on: a das.yaml written for another model, as a site's layer is
    yaml = project.path / "das.yaml"
    yaml.write_text(yaml.read_text().rstrip("\n") + f"\n    search: {search}\n")
    again = "\ndef test_them_again(das_session):\n    das_session.search_settings()\n"
    project.makepyfile(test_search=SEARCH_SETTINGS + again)
    result = _run(project, "--das-cache=off", "test_search.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([f"*das_assert setup: das.yaml: {match.lstrip('*')}"])
    assert result.stdout.str().count("das_assert setup:") == 1
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("site", "says"),
    [
        # It errored each test of the fixture (exit 1, read by a gate as a failed claim): a
        # das.yaml written for another model is a setup error, as a misspelt key is
        (
            "layer=99, pos=last",
            "layer=99 is out of range for llama (3 layers: 0..2; negative indices count from "
            "the end); fix the site, or check that the entry is this model's (",
        ),
        # a slot the prompt lacks (or last-200 on 79 tokens) was one error per test, and the
        # claims that did not use the site trained on: das.yaml is for another prompt
        ("layer=1, pos=after:price", "position 'after:price' refers to slot 'price'"),
    ],
    ids=["layer", "position"],
)
def test_a_das_yaml_site_the_model_or_prompt_lacks_stops_the_run_once_naming_its_key(
    project: pytest.Pytester, site: str, says: str
) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(yaml.read_text().replace("layer=1, pos=last", site))
    result = _run(project, "--das-cache=off", "test_hyp.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    text = result.stdout.str()
    assert text.count("das_assert setup:") == 1
    entry = f"das_assert setup: das.yaml: models.tiny.sites.boundary = 'block_output[{site}]': "
    assert entry + says in text


def test_a_das_yaml_site_on_a_slot_of_the_claims_own_prompt_is_not_a_setup_error(
    project: pytest.Pytester,
) -> None:
    # the site's position was resolved on the default prompt, which has no prefix, and the
    # whole run stopped: the claim that brings the prefix is the one that decides
    yaml = project.path / "das.yaml"
    yaml.write_text(
        yaml.read_text().replace(
            "      boundary: block_output[layer=1, pos=last]\n",
            "      boundary: block_output[layer=1, pos=last]\n"
            "      context: block_output[layer=1, pos=prefix.last]\n",
        )
    )
    project.makepyfile(
        test_ctx="""
        from das_assert.tasks.price_format import PriceFormat

        def test_context_claim(das, das_session):
            fmt = PriceFormat(prefix="Note: prices vary.")
            result = das_session.align("left_boundary", "context", fmt=fmt)
            das.assert_aligned(result, claim="trivial")
        """
    )
    result = _run(project, "--das-cache=off", "test_ctx.py")
    assert "das_assert setup:" not in result.stdout.str()
    assert result.ret != pytest.ExitCode.USAGE_ERROR
    # it trained and reached a verdict at that site (on the tiny model, an inconclusive one)
    assert "block_output[layer=1, pos=prefix.last]  ->  model.layers.1" in result.stdout.str()


def _add_a_threshold_one_typo_from_a_causal_model(project: pytest.Pytester) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(
        yaml.read_text().replace("trivial: 0.0", "trivial: 0.0\n      left_bondary: 0.7")
    )


def test_a_threshold_key_one_typo_from_a_causal_model_warns_before_training(
    project: pytest.Pytester,
) -> None:
    _add_a_threshold_one_typo_from_a_causal_model(project)
    # In a process of its own: this one's warning filters would make the warning an error.
    only = "test_hyp.py::test_a_negative_claim_holds"
    result = _run(project, "--das-cache=off", only, subprocess=True)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*ConfigWarning*models.tiny.thresholds.left_bondary names no causal model; "
            "did you mean 'left_boundary'?*"
        ]
    )


def test_a_das_yaml_warning_made_an_error_stops_the_run_once_in_one_line(
    project: pytest.Pytester,
) -> None:
    # it was an error in every test that took the session, the same line each time
    _add_a_threshold_one_typo_from_a_causal_model(project)
    result = _run(project, "--das-cache=off", "-W", "error::UserWarning")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    out = result.stdout.str()
    line = "ConfigWarning: das.yaml: models.tiny.thresholds.left_bondary names no causal model"
    assert out.count(line) == 1, out
    assert "Traceback" not in out
    assert "raise " not in out


MISSPELT_CLAIM = """
import pytest

import das_assert.session


def never_trains(*args, **kwargs):
    raise AssertionError("an alignment trained for a claim das.yaml cannot judge")


@pytest.fixture(scope="module")
def aligned(das_session, request):
    request.getfixturevalue("monkeypatch").setattr(das_session, "align", never_trains)
    return das_session.align("left_boundary", "boundary")


def test_misspelt(das, aligned):
    das.assert_aligned(aligned, claim="trivail")


def test_with_its_own_threshold(das, das_session):
    aligned = das_session.align("left_boundary", "boundary")
    das.assert_not_aligned(aligned, claim="x", threshold=0.99)
"""


def test_a_claim_without_a_das_yaml_entry_fails_before_its_alignment_trains(
    project: pytest.Pytester,
) -> None:
    # The assertion found the typo only after the fixture had trained (on a 7B model, hours),
    # and its advice led with adding the misspelt name to das.yaml.
    project.makepyfile(test_claims=MISSPELT_CLAIM)
    result = _run(project, "--das-cache=off", "test_claims.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # one setup error, before any fixture
    result.assert_outcomes()
    result.stdout.fnmatch_lines(
        [
            "*das_assert setup: *das.yaml has no entry for a claim that tests make (checked "
            "before any alignment trains):",
            "  models.tiny.thresholds.trivail (claimed by test_claims.py::test_misspelt). "
            "das.yaml has 'trivial', the closest key: if one of the two is misspelt, fix it, in "
            "the test or in das.yaml.",
            "Add each as `claim: <number in [0, 1)>` with a comment saying where the number "
            "comes from, or fix claim= in the test.*",
        ]
    )
    assert "an alignment trained" not in result.stdout.str()


CLAIMLESS = (
    MISSPELT_CLAIM.split("def test_misspelt")[0]
    + """
def test_without_a_claim(das, aligned):
    das.assert_aligned(aligned)


def test_with_one(das, aligned):
    das.assert_aligned(aligned, claim="trivial")
"""
)


def test_an_assertion_without_a_claim_fails_before_its_alignment_trains(
    project: pytest.Pytester,
) -> None:
    # It was Python's TypeError (a missing keyword-only argument), raised after the fixture
    # had trained, with no word of what a claim is.
    project.makepyfile(test_claimless=CLAIMLESS)
    result = _run(project, "--das-cache=off", "test_claimless.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    result.stdout.fnmatch_lines(
        [
            "*das_assert setup: an assertion without claim= (checked before any alignment trains):",
            "  test_claimless.py::test_without_a_claim calls das.assert_aligned",
            'Name the claim each asserts, e.g. das.assert_aligned(result, claim="left_boundary")*',
        ]
    )
    assert "test_with_one" not in result.stdout.str()
    assert "an alignment trained" not in result.stdout.str()


MISSING_LIMIT_CLAIM = (
    MISSPELT_CLAIM.split("def test_misspelt")[0]
    + """
def test_a_limit(das, aligned):
    das.assert_breaks_on(aligned, [], claim="trivial", where="nowhere")
"""
)


def test_a_limit_claim_without_a_robustness_entry_fails_before_its_alignment_trains(
    project: pytest.Pytester,
) -> None:
    # assert_breaks_on reads the robustness table too, but its literal claim was not checked
    # early: the run stopped only after the fixture had trained.
    project.makepyfile(test_limits=MISSING_LIMIT_CLAIM)
    result = _run(project, "--das-cache=off", "test_limits.py", subprocess=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["  models.tiny.robustness.trivial (claimed by test_limits.py::test_a_limit).*"]
    )
    assert "an alignment trained" not in result.stdout.str()


@pytest.mark.parametrize(
    ("key", "typo", "message"),
    [
        (  # it failed every test of that claim, each with "Did you mean 'imposible'?"
            "impossible:",
            "imposible:",
            "  models.tiny.thresholds.impossible (claimed by test_hyp.py::"
            "test_an_impossible_claim_fails, test_hyp.py::test_a_negative_claim_holds). das.yaml "
            "has 'imposible', the closest key: if one of the two is misspelt, fix it, in the test "
            "or in das.yaml.",
        ),
        (  # it errored every test that used the fixture asking for the site
            "boundary:",
            "boundry:",
            "  models.tiny.sites.boundary (asked for by test_hyp.py::"
            "test_an_impossible_claim_fails, test_hyp.py::test_a_negative_claim_holds). das.yaml "
            "has 'boundry', the closest key: if one of the two is misspelt, fix it, in the test "
            "or in das.yaml.",
        ),
    ],
    ids=["threshold-key", "site-key"],
)
def test_a_misspelt_das_yaml_key_stops_the_run_once(
    project: pytest.Pytester, key: str, typo: str, message: str
) -> None:
    das_yaml = project.path / "das.yaml"
    das_yaml.write_text(das_yaml.read_text().replace(key, typo))
    result = _run(project, "--das-cache=off", "test_hyp.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    text = result.stdout.str()
    assert text.count("das_assert setup:") == 1
    assert message in text


N_TEST_IN_THE_TEST = """
def test_few_pairs(das, das_session):
    das.assert_aligned(das_session.align("left_boundary", "boundary", n_test=30), claim="trivial")
"""


def test_an_inconclusive_claim_says_where_its_n_test_was_set(project: pytest.Pytester) -> None:
    # It said "raise n_test (now 30) in das.yaml" for an n_test the test itself passed.
    project.makepyfile(test_few=N_TEST_IN_THE_TEST)
    result = _run(project, "--das-cache=off", "test_few.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*inconclusive: raise n_test (now 30) where the test sets it (n_test= of align)*"]
    )


NOTHING_ASSERTED = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def _check(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


def test_forgets_to_call_its_check(das, aligned):
    _check  # the call's parentheses forgotten: the test passed, claiming nothing


def test_calls_it(das, aligned):
    _check(das, aligned)


def test_skipped_inside(das, aligned):
    pytest.skip("not on this model")


def test_takes_only_the_session(das_session, aligned):
    assert aligned.evaluation.iia >= 0
"""


def test_a_test_that_takes_das_and_asserts_nothing_warns_naming_it(
    project: pytest.Pytester,
) -> None:
    # it passed like a claim that holds, with nothing of it in the reports
    project.makepyfile(test_hyp=NOTHING_ASSERTED)
    result = _run(project, "--das-cache=off", subprocess=True)
    result.assert_outcomes(passed=3, skipped=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*test_hyp.py:13: NoClaimWarning: test_hyp.py::test_forgets_to_call_its_check took "
            "the das fixture and passed without asserting a claim*"
        ]
    )
    # made an error, it is one line at the test's teardown, not a traceback
    error = _run(project, "--das-cache=off", "-W", "error::UserWarning", subprocess=True)
    error.assert_outcomes(passed=3, skipped=1, errors=1)
    error.stdout.fnmatch_lines(["*ERROR at teardown of test_forgets_to_call_its_check*"])
    assert "Traceback" not in error.stdout.str()


MISSPELT_SITE = """
import pytest

import das_assert.experiment


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


@pytest.fixture(scope="module")
def at_the_control(das_session):
    return das_session.align("left_boundary", site="boundry")


def test_first(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


def test_second(das, at_the_control):
    das.assert_not_aligned(at_the_control, claim="impossible")


def test_written_out(das, das_session):
    result = das_session.align("left_boundary", "block_output[layer=0, pos=last]")
    das.assert_not_aligned(result, claim="impossible")
"""


def test_a_site_a_fixture_asks_for_and_das_yaml_lacks_stops_the_run_before_any_training(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # found only when the fixture ran: after the first test's alignment had trained (on a 7B
    # model, hours), though the name was written in the file all along
    from plugin_support import count_fits

    fits = count_fits(monkeypatch)
    project.makepyfile(test_sites=MISSPELT_SITE)
    result = _run(project, "--das-cache=off", "test_sites.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    assert fits == []
    result.stdout.fnmatch_lines(
        [
            "*das_assert setup: *das.yaml lacks a site that tests ask for (checked before any "
            "alignment trains):",
            "  models.tiny.sites.boundry (asked for by test_sites.py::test_second). das.yaml has "
            "'boundary', the closest key*",
            "Add each as `name: block_output?layer=L, pos=P?`, or fix the name in the align(...) "
            "call.*",
        ]
    )
    # deselected, the test that asks for it stops nothing
    _run(project, "--das-cache=off", "test_sites.py", "-k", "first").assert_outcomes(passed=1)


def test_a_misspelt_site_and_a_misspelt_claim_are_named_in_one_message(
    project: pytest.Pytester,
) -> None:
    # The site stopped the run before the claim was named: a second typo, a second run.
    both = (
        MISSPELT_SITE
        + """

def test_third(das, aligned):
    das.assert_not_aligned(aligned, claim="imposible")
"""
    )
    project.makepyfile(test_sites=both)
    result = _run(project, "--das-cache=off", "test_sites.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str()
    assert text.count("das_assert setup:") == 1
    result.stdout.fnmatch_lines(
        [
            "*das_assert setup: *das.yaml lacks a site that tests ask for (checked before any "
            "alignment trains):",
            "  models.tiny.sites.boundry (asked for by test_sites.py::test_second)*",
            "Add each as `name: block_output?layer=L, pos=P?`*",
            "*das.yaml has no entry for a claim that tests make:",
            "  models.tiny.thresholds.imposible (claimed by test_sites.py::test_third)*",
            "Add each as `claim: <number in ?0, 1)>`*",
        ]
    )


def test_a_run_started_inside_an_xdist_worker_is_a_run_of_its_own(
    pytester: pytest.Pytester, tiny_model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker was told by PYTEST_XDIST_WORKER, which a run started inside one inherits: its
    # setup error became one error per test and exit 1, not one usage error
    model = tiny_model_dirs["llama"]
    _in(pytester, "one", DAS_YAML.format(path=model))
    _in(pytester, "two", DAS_YAML.format(path=model))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    result = pytester.runpytest_subprocess(
        f"--das-model={model}", "--das-min-task-accuracy=0", "-p", "no:cacheprovider", "one", "two"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stdout.str().count("das_assert setup:") == 1


def test_a_run_started_inside_an_xdist_worker_keeps_its_own_threads(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it took the worker's share of the CPUs from the inherited PYTEST_XDIST_WORKER_COUNT, a
    # thread count that keys the cache and changes a fit's rounding
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    probe = "import torch; print(torch.get_num_threads())"  # torch's own count, in a new process
    own = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True).stdout)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(2 * own))
    model = str(Path(project.path / "das.yaml").read_text().split("path: ")[1].split()[0])
    result = project.runpytest_subprocess(
        f"--das-model={model}",
        "--das-config=das.yaml",
        "--das-cache=off",
        "--das-json=r.json",
        "--das-min-task-accuracy=0",
        "-p",
        "no:cacheprovider",
        "test_hyp.py::test_a_negative_claim_holds",
    )
    result.assert_outcomes(passed=1)
    environment = json.loads((project.path / "r.json").read_text())["environment"]
    assert environment["torch_threads"] == own


def test_a_seed_pinned_in_align_is_the_fits_too_with_a_config_of_the_sessions(
    project: pytest.Pytester,
) -> None:
    # config=das_session.fit_config(epochs=1) carried the session's seed: the pinned test's
    # pairs were seed 1's, its fit --das-seed's, and its numbers moved with --das-seed
    project.makepyfile(
        test_hyp="""
        def test_pinned(das_session):
            config = das_session.fit_config(epochs=1)
            result = das_session.align("left_boundary", "boundary", seed=1, config=config)
            own = das_session.fit_config(epochs=1, seed=7)
            other = das_session.align("left_boundary", "boundary", seed=1, config=own)
            print("FIT SEEDS", result.fitted.config.seed, other.fitted.config.seed)
        """
    )
    for seed in ("0", "5"):
        result = _run(project, "--das-cache=off", f"--das-seed={seed}", "-s")
        result.assert_outcomes(passed=1)
        assert "FIT SEEDS 1 7" in result.stdout.str()  # a config's own seed is kept
