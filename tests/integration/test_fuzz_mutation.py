"""A test of the fuzzing itself: a deliberately brittle alignment must be caught and shrunk.

The mutant is the Left Boundary alignment learned at the control site (the token before the
amount, where ``amount >= low`` cannot be known): its IIA sits at the no-op level, so the fuzz
test must fail, shrink to a readable ``PromptVariant``, and fail again from the example database
on replay.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]

DAS_YAML = """
models:
  embedded:
    path: embedded
    n_train: 256
    n_test: 128
    epochs: 1
    sites:
      brittle: block_output[layer=1, pos=before:amount]
    thresholds:
      left_boundary: 0.8
    robustness:
      left_boundary: 0.8
"""

FUZZ = """
import pytest
from hypothesis import given

from das_assert.strategies import prompt_variants


@pytest.fixture(scope="module")
def brittle(das_session):
    return das_session.align("left_boundary", "brittle")


@given(variant=prompt_variants())
def test_brittle_alignment_survives_variants(das, brittle, variant):
    das.assert_robust(brittle, variant, claim="left_boundary", n=64)
"""


def test_a_brittle_alignment_is_caught_shrunk_and_replayed(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", das=DAS_YAML)
    pytester.makepyfile(test_fuzz=FUZZ)
    args = (
        "--das-config=das.yaml",
        "--das-cache=off",
        "--das-profile=dev",
        "-p",
        "no:cacheprovider",
    )
    first = pytester.runpytest_subprocess(*args)
    first.assert_outcomes(failed=1)
    output = first.stdout.str()
    assert "breaks under PromptVariant(" in output
    # hypothesis's own report of the shrunk example; 6.170 renamed its heading
    assert "Falsifying example" in output or "Failing test case" in output
    shrunk = re.search(r"breaks under (PromptVariant\([^\n]*\))", output)
    assert shrunk, output[-2000:]
    assert "base prompt:" in output
    assert "source prompt:" in output
    assert "95% CI [" in output
    assert "the example database replays this variant first" in output
    assert list((pytester.path / ".hypothesis" / "examples").iterdir()), "nothing was kept"
    # hypothesis' statistics name the phase each failure came from: the replay's must be the
    # database's (reuse), not a fresh draw that met the same simple variant again
    replay = pytester.runpytest_subprocess(*args, "--hypothesis-show-statistics")
    replay.assert_outcomes(failed=1)
    replayed = replay.stdout.str()
    assert shrunk.group(1) in replayed
    reuse = re.search(r"during reuse phase.*\n.*\n\s*- \d+ passing examples, (\d+) fail", replayed)
    assert reuse, replayed[-3000:]
    assert int(reuse.group(1)) >= 1, replayed[-3000:]
