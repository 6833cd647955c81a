"""What a claim's JSON record says of its outcome: ``passed`` is whether the verdict is the one
the test expected, for a claim that fails as for one that holds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from das_assert.errors import IIAClaimFailed
from das_assert.experiment import Experiment, run_experiment
from das_assert.fit import FitConfig
from das_assert.request import DasRequest
from das_assert.sites import Site


def _request(model: Any) -> DasRequest:
    """A ``das`` fixture on a session without baseline or saving, its claims judged to fail."""
    session = SimpleNamespace(
        threshold=lambda claim: 0.5,
        model=model,
        save_to=None,
        baseline=None,
        inconclusive="fail",
    )
    return DasRequest(session, SimpleNamespace(nodeid="test_x.py::test_x", user_properties=[]))


def test_a_failing_claims_record_says_it_did_not_pass(tiny_llama: Any) -> None:
    # A record that said "passed": true for a claim that failed: the JSON report, the Markdown
    # summary and `compare` ("held in OLD") took a failed claim for one that held.
    experiment = Experiment(
        hypothesis="left_boundary", site=Site(1), n_train=8, n_test=16, min_task_accuracy=0
    )
    result = run_experiment(tiny_llama, experiment, FitConfig(epochs=1, batch_size=8))
    failing = _request(tiny_llama)
    with pytest.raises(IIAClaimFailed):  # no random model's IIA clears 0.99
        failing.assert_aligned(result, claim="left_boundary", threshold=0.99)
    (record,) = failing.records
    assert (record["verdict"], record["passed"]) == ("not_aligned", False)
    holding = _request(tiny_llama)
    holding.assert_not_aligned(result, claim="left_boundary", threshold=0.99)
    assert holding.records[0]["passed"] is True
