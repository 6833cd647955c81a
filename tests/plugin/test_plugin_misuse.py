"""What a hypothesis file passes the das assertions wrongly: one clear message each, not an
AttributeError from the engine, and never a number reported under another claim."""

from __future__ import annotations

import pytest
from plugin_support import _run

pytest_plugins = ["pytester"]

MISUSES = """
import pytest
from das_assert.tasks.price_tagging import prompt_pairs
from das_assert.strategies import PromptVariant, prompt_variants


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_session_for_result(das, das_session):
    das.assert_aligned(das_session, claim="trivial")


def test_another_models_claim(das, aligned):
    das.assert_not_aligned(aligned, claim="midpoint_distance", threshold=0.5)


def test_a_strategy_for_a_variant(das, aligned):
    das.assert_robust(aligned, prompt_variants(), claim="trivial")


def test_a_tuple_for_a_variant(das, aligned):
    das.assert_robust(aligned, (100, 500), claim="trivial")


def test_n_of_one(das, aligned):
    das.assert_robust(aligned, PromptVariant(), claim="trivial", n=1)


def test_confirm_as_text(das, aligned):
    das.assert_robust(aligned, PromptVariant(), claim="trivial", confirm="no")


def test_no_pairs(das, aligned):
    das.assert_breaks_on(aligned, [], claim="trivial", where="nowhere")


def test_a_layer_number_for_a_site(das_session):
    das_session.align("left_boundary", 0)


def test_n_test_as_text(das_session):
    das_session.align("left_boundary", "boundary", n_test="800")


def test_a_dict_for_a_config(das_session):
    das_session.align("left_boundary", "boundary", config={"epochs": 1})


def test_a_misspelt_fit_setting(das_session):
    das_session.fit_config(epoch=1)


def test_pairs_of_another_model(das, aligned):
    pairs = prompt_pairs("bracket_identity", 8, seed=5)
    das.assert_breaks_on(aligned, pairs, claim="trivial", where="other pairs")
"""

EXPECTED = {
    "test_session_for_result": "das.assert_aligned takes the result of das_session.align(...) "
    "(or a search's best_confirmed()), not DasSession",
    "test_another_models_claim": "claim 'midpoint_distance' names the causal model "
    "'midpoint_distance', but the result is an alignment of 'left_boundary'",
    "test_a_strategy_for_a_variant": "das.assert_robust takes one drawn variant, not a strategy: "
    "decorate the test with @given(variant=prompt_variants()) and pass variant",
    "test_a_tuple_for_a_variant": "das.assert_robust takes a PromptVariant (from "
    "das_assert.strategies, e.g. PromptVariant(bracket=(100, 500))), not tuple (100, 500)",
    "test_n_of_one": "n=1: the pairs per variant, an integer of at least 2",
    "test_confirm_as_text": "confirm='no': True or False",
    "test_no_pairs": "pairs must be a non-empty list of PromptPair: make them with "
    "result.experiment.pairs(n, seed, bracket=..., edit=...)",
    "test_pairs_of_another_model": "these pairs intervene on",
    "test_a_layer_number_for_a_site": "site=0 (int): name a das.yaml site ('boundary'), write "
    "one out ('block_output[layer=0, pos=last]') or pass a Site",
    "test_n_test_as_text": "n_test='800': a number of pairs, an integer",
    "test_a_dict_for_a_config": "config= takes a FitConfig, not dict {'epochs': 1}: write "
    "config=das_session.fit_config(epochs=..., ...)",
    "test_a_misspelt_fit_setting": "fit_config() has no setting epoch; settings: ",
}


def test_each_misuse_of_an_assertion_fails_its_test_with_one_clear_message(
    project: pytest.Pytester,
) -> None:
    # AttributeError, TypeError and IndexError from the engine; a Mid-point Distance result
    # reported as claim left_boundary; Bracket Identity pairs judged as Left Boundary's limit
    das_yaml = project.path / "das.yaml"
    das_yaml.write_text(
        das_yaml.read_text().rstrip("\n") + "\n    robustness:\n      trivial: 0.0\n"
    )
    project.makepyfile(test_misuse=MISUSES)
    result = _run(project, "--das-cache=off", "test_misuse.py")
    result.assert_outcomes(failed=len(EXPECTED))
    output = result.stdout.str()
    for test, message in EXPECTED.items():
        assert f"FAILED test_misuse.py::{test} - InvalidArgument: " in output
        assert f"InvalidArgument: {message}" in output
    assert "AttributeError" not in output
    assert "rejected" not in output  # n=1 is a typo, not a variant the model cannot do


def test_a_load_model_hook_returning_the_transformers_model_stops_the_run_once(
    project: pytest.Pytester,
) -> None:
    # every test failed with advice to pass "the transformers CausalLM itself", which it was
    project.makeconftest(
        """
        import pytest
        from transformers import AutoModelForCausalLM

        @pytest.hookimpl(optionalhook=True)
        def pytest_das_load_model(config, path):
            return AutoModelForCausalLM.from_pretrained(path)
        """
    )
    result = _run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [
            "*das_assert setup: pytest_das_load_model returned LlamaForCausalLM, not a "
            "LoadedModel: return das_assert.load_model(path, ...)*"
        ]
    )


SKIPPED_FILE = """
import pytest


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_runs(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


@pytest.mark.skipif(True, reason="only on the large model")
def test_a_claim_only_another_model_has(das, aligned):
    das.assert_aligned(aligned, claim="only_on_alpaca")


@pytest.mark.xfail(run=False, reason="not yet")
def test_not_run(das, aligned):
    das.assert_aligned(aligned)


@pytest.mark.skip(reason="later")
@pytest.mark.das(compare_fail="iia:abc")
def test_a_skipped_test_with_a_bad_marker(das, aligned):
    das.assert_aligned(aligned, claim="trivial")
"""


def test_tests_that_will_not_run_neither_stop_the_run_nor_fail_on_their_marker(
    project: pytest.Pytester,
) -> None:
    # A skipped test naming a claim das.yaml lacks, or asserting without claim=, stopped the
    # whole run (exit 4) before the tests after it; a skipped one's bad marker was an error.
    project.makepyfile(test_hyp=SKIPPED_FILE)
    result = _run(project)
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == 0


def test_under_runxfail_an_xfail_that_would_not_run_is_checked_before_it_trains(
    project: pytest.Pytester,
) -> None:
    # --runxfail runs xfail(run=False): its claims are checked up front like any other's
    project.makepyfile(test_hyp=SKIPPED_FILE)
    result = _run(project, "--runxfail", "-k", "not_run")
    assert result.ret == 4
    said = result.stdout.str() + result.stderr.str()
    assert "an assertion without claim=" in said
    assert "test_hyp.py::test_not_run calls das.assert_aligned" in said


def test_a_run_in_this_process_gives_back_the_heap_it_froze(project: pytest.Pytester) -> None:
    # gc.freeze() at the session's start was never undone: a second pytest.main() in one
    # process (a notebook) kept every earlier run's model alive.
    import gc

    _run(project, "test_hyp.py::test_a_negative_claim_holds").assert_outcomes(passed=1)
    assert gc.get_freeze_count() == 0


def test_tb_line_locates_a_misuse_at_the_tests_own_line(project: pytest.Pytester) -> None:
    # --tb=line printed the first 50 characters of the message, with no file or line
    project.makepyfile(
        test_misuse="""
def test_a_threshold_past_one(das, das_session):
    aligned = das_session.align("left_boundary", "boundary")
    das.assert_aligned(aligned, claim="trivial", threshold=1.5)
"""
    )
    result = _run(project, "--das-cache=off", "--tb=line", "test_misuse.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_misuse.py:3: InvalidArgument: threshold=1.5: a threshold*"])


def test_a_setup_error_is_said_without_pytests_terminal(project: pytest.Pytester) -> None:
    # -p no:terminal: the run exited 4 and printed nothing, so a CI log held no reason
    project.makepyfile(
        test_misuse="""
def test_a_misspelt_site(das, das_session):
    das_session.align("left_boundary", "boundry")
"""
    )
    result = _run(project, "--das-cache=off", "-p", "no:terminal", "test_misuse.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "das_assert setup: " in result.stderr.str()
    assert "models.tiny.sites.boundry" in result.stderr.str()
