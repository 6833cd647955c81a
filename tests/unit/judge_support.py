"""Stand-ins for what the robustness judgements read of a pytest request and an alignment
result (test_breaks_on.py, test_confirmed_breaks.py): a das.yaml bar of 0.75, the gate at 0.8."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def fake_request(nodeid: str, *, reproduce_options: str = "") -> SimpleNamespace:
    """A ``DasRequest`` as ``robustness`` reads it: its session's settings, its node."""
    return SimpleNamespace(
        session=SimpleNamespace(
            settings=SimpleNamespace(threshold=lambda claim, table: 0.75),
            min_task_accuracy=0.8,
            seed=0,
            reproduce_options=reproduce_options,
        ),
        node=SimpleNamespace(user_properties=[], nodeid=nodeid),
        _failed_once=False,
    )


def fake_result(site: str, gate: float = 0.8, **more: Any) -> SimpleNamespace:
    """An ``AlignmentResult`` of one variable, ``left``, on the embedded model, at ``site``,
    of a claim whose task-accuracy gate is ``gate``."""
    experiment = SimpleNamespace(site=site, seed=0, margin=0.05, min_task_accuracy=gate)
    recipe = SimpleNamespace(hypothesis="left_boundary", variable="left", n_train=1500)
    return SimpleNamespace(
        model=SimpleNamespace(name="embedded", path="embedded", dtype="float32"),
        experiment=SimpleNamespace(**vars(experiment), **vars(recipe), data_record=dict),
        config=SimpleNamespace(with_seed=lambda seed: SimpleNamespace(as_dict=dict)),  # its id
        variable_names=("left",),
        **more,
    )
