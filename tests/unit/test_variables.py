"""A claim on a subset of a hypothesis's variables: boxes, labels and keys follow the alignment's
order, whatever order the user names them in."""

from __future__ import annotations

from typing import Any

from das_assert.experiment import Experiment
from das_assert.sites import Site


def both(**changes: Any) -> Experiment:
    return Experiment(hypothesis="left_and_right_boundary", site=Site(0), **changes)


def test_a_subset_is_kept_in_the_alignments_box_order() -> None:
    named = both(variables=("right", "left"))
    assert named.variables == ("left", "right")
    assert named.variable == "left+right"
    assert both(variables=("right",)).variable == "right"


def test_a_subsets_pairs_use_the_box_of_their_variable() -> None:
    pairs = both(variables=("right",), n_test=40).test_pairs()
    assert {pair.variable_index for pair in pairs} == {1}  # right is the second box
