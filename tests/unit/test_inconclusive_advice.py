"""What an inconclusive claim's message advises: more pairs where its n comes from (das.yaml,
the test's ``n_test=``, a variable's share of them, the pairs given to ``judged_on``), and
``--das-inconclusive`` only where it could decide the outcome."""

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
