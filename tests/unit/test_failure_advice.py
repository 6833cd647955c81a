"""What a claim's failure says: an inconclusive one asks for more pairs where its n comes
from (das.yaml, the test's ``n_test=``, a variable's share of them, the pairs given to
``judged_on``) and names ``--das-inconclusive`` only where it could decide the outcome; a
test that failed before a verdict keeps its message's fix in the reports."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from das_assert.messages import _more_pairs


def _result(n: int, n_test: int, test_pairs: str = "test") -> Any:
    experiment = SimpleNamespace(n_test=n_test, variable="left")
    return SimpleNamespace(
        experiment=experiment, evaluation=SimpleNamespace(n=n), test_pairs=test_pairs
    )


SESSION = SimpleNamespace(settings=SimpleNamespace(n_test=200))
DECIDABLE = SimpleNamespace(untestable=False)


@pytest.mark.parametrize(
    ("result", "advice"),
    [
        (_result(200, 200), "raise n_test (now 200) in das.yaml"),
        (_result(30, 30), "raise n_test (now 30) where the test sets it (n_test= of align)"),
        # on_variable's share: "now 98 where the test sets it", of a test that set nothing
        (_result(98, 200), "raise n_test (now 200, of which 98 intervene on left) in das.yaml"),
        # judged_on's pairs: "raise n_test (now 300) where the test sets it (n_test= of align)"
        (_result(300, 200, "given"), "judge it on more pairs (now the 300 given to judged_on)"),
    ],
    ids=["das.yaml", "the-test", "on_variable", "judged_on"],
)
def test_more_pairs_are_asked_for_where_the_claims_n_comes_from(result: Any, advice: str) -> None:
    assert _more_pairs(result, DECIDABLE, SESSION) == advice


def test_pairs_whose_labels_never_change_are_not_helped_by_more_of_them() -> None:
    untestable = SimpleNamespace(untestable=True)
    assert _more_pairs(_result(200, 200), untestable, SESSION).startswith(
        "draw pairs whose labels change"
    )


def test_a_long_message_of_a_test_that_failed_before_a_verdict_keeps_its_fix() -> None:
    # The reports kept its first 500 characters, with no mark: a long model path pushed the fix
    # ("... min_task_accuracy in Python") off the end.
    from das_assert.plugin_records import MESSAGE_CHARS, cut

    message = "embedded answers only " + "x" * 3000 + " lower the gate (min_task_accuracy)"
    kept = cut(message)
    assert len(kept) <= MESSAGE_CHARS
    assert kept.endswith("lower the gate (min_task_accuracy)")
    assert " [...] " in kept
    assert cut("short") == "short"
