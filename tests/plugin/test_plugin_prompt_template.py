"""das.yaml's ``prompt_template`` and ``answers``: every claim, fuzz variant and measured limit
of a run reads the model's wrapper and answer words, and a limit written in another wrapper is
refused."""

from __future__ import annotations

import json

import pytest
from plugin_support import _run

pytest_plugins = ["pytester"]

WRAPPER = "Q: {instruction}\\nAmount: {amount} dollars\\nA:"

WRAPPED_FILE = """
import pytest
from hypothesis import given, settings

from das_assert.errors import InvalidArgument
from das_assert.strategies import prompt_variants
from das_assert.tasks.price_tagging import prompt_pairs
from das_assert.variants import variant_pairs


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_a_claim(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


@settings(max_examples=3, database=None)
@given(variant=prompt_variants())
def test_fuzz_variants_keep_the_wrapper(aligned, variant):
    for pair in variant_pairs(aligned.experiment, variant, 2):
        assert pair.base.text.startswith("Q: ") and pair.source.text.endswith(" dollars\\nA:")


@pytest.mark.filterwarnings("ignore::das_assert.errors.NoClaimWarning")  # it means to claim none
def test_a_limit_in_alpacas_wrapper_is_refused(das, aligned):
    pairs = prompt_pairs("left_boundary", 4, seed=1)
    with pytest.raises(InvalidArgument, match="not written in the wrapper the alignment was"):
        das.assert_breaks_on(aligned, pairs, claim="impossible", where="Alpaca's wrapper")
    for wrapped in (
        prompt_pairs("left_boundary", 4, seed=1, fmt=aligned.experiment.fmt),
        aligned.experiment.pairs(4, 1, bracket=(100, 500)),
    ):
        assert wrapped[0].base.text.startswith("Q: ")
"""


def test_das_yaml_prompt_template_wraps_claims_variants_and_limits(project) -> None:
    yaml = project.path / "das.yaml"
    added = f'    prompt_template: "{WRAPPER}"\n    robustness:\n      impossible: 0.99\n'
    yaml.write_text(yaml.read_text().rstrip() + "\n" + added)
    project.makepyfile(test_hyp=WRAPPED_FILE)
    result = _run(project, "--das-cache=off", "--das-json=report.json")
    result.assert_outcomes(passed=3)
    (record,) = json.loads((project.path / "report.json").read_text())["results"]
    assert record["data"]["template"] == "Q: {instruction}\nAmount: {amount} dollars\nA:"
    first = record["pairs"][0]["base_prompt"]
    assert first.startswith("Q: Please say yes only if it costs between ")


def test_chat_for_a_tokenizer_without_a_chat_template_stops_the_run_naming_the_key(
    project,
) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(yaml.read_text().rstrip() + "\n    prompt_template: chat\n")
    result = _run(project, "--das-cache=off", "test_hyp.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    assert (
        "das_assert setup: das.yaml: models.tiny.prompt_template: prompt template 'chat': this "
        "model's tokenizer has no chat template"
    ) in result.stdout.str()


def test_a_prompt_template_too_long_for_the_model_stops_the_run_naming_the_key(project) -> None:
    # each test errored at its setup with the length, and none named das.yaml's key
    yaml = project.path / "das.yaml"
    long = "Good morning! " * 300
    yaml.write_text(
        yaml.read_text().rstrip() + f'\n    prompt_template: "{long}{{instruction}} {{amount}}"\n'
    )
    result = _run(project, "--das-cache=off", "test_hyp.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()
    result.stdout.fnmatch_lines(
        [
            "*das_assert setup: das.yaml: models.tiny.prompt_template: a prompt of * tokens is "
            "longer than the * positions*"
        ]
    )


ANSWERED_FILE = """
import pytest
from hypothesis import given, settings

from das_assert.strategies import prompt_variants
from das_assert.tasks.price_tagging import PriceFormat
from das_assert.variants import variant_pairs


@pytest.fixture(scope="module")
def aligned(das_session):
    return das_session.align("left_boundary", "boundary")


def test_a_claim(das, aligned):
    das.assert_not_aligned(aligned, claim="impossible")


def test_a_claim_with_answers_of_its_own(das, das_session):
    own = das_session.align("left_boundary", "boundary", fmt=PriceFormat(answers=("True", "False")))
    das.assert_not_aligned(own, claim="impossible")


@settings(max_examples=3, database=None)
@given(variant=prompt_variants(answers=("Yes", "No")))
def test_fuzz_variants_keep_the_answers(aligned, variant):
    assert {p.expected for p in variant_pairs(aligned.experiment, variant, 8)} <= {" Yes", " No"}
"""


def test_das_yaml_answers_are_the_default_answers_of_every_claim_and_variant(project) -> None:
    # A byte-level BPE model reads "A:" + " Yes"; das.yaml could give the wrapper but not the
    # words, so every shipped align(...) call had to be edited to run on it.
    yaml = project.path / "das.yaml"
    added = f'    prompt_template: "{WRAPPER}"\n    answers: [" Yes", " No"]\n'
    yaml.write_text(yaml.read_text().rstrip() + "\n" + added)
    project.makepyfile(test_hyp=ANSWERED_FILE)
    result = _run(project, "--das-cache=off", "--das-json=report.json")
    result.assert_outcomes(passed=3)
    records = json.loads((project.path / "report.json").read_text())["results"]
    assert sorted(tuple(r["data"]["answers"]) for r in records) == [
        (" Yes", " No"),
        ("True", "False"),
    ]
    first = next(r for r in records if r["data"]["answers"] == [" Yes", " No"])["pairs"][0]
    assert first["base_prompt"].startswith("Q: Please say yes only if it costs between ")


@pytest.mark.parametrize("answers", ['["Yes"]', '["Yes", "Yes"]', '"Yes No"', '["Yes", " "]'])
def test_das_yaml_answers_that_are_not_two_different_words_stop_the_run(project, answers) -> None:
    yaml = project.path / "das.yaml"
    yaml.write_text(yaml.read_text().rstrip() + f"\n    answers: {answers}\n")
    result = _run(project, "--das-cache=off", "test_hyp.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "models.tiny.answers must be two different words, the true answer first" in (
        result.stdout.str()
    )
