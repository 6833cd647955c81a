"""``das_assert.sharing``: what a block remembers, who may see it, and when it is dropped."""

from __future__ import annotations

from das_assert.sharing import (
    active,
    lookup,
    planned_sites,
    prefix_stores_active,
    remember,
    shared,
    sharing,
)


class Owner:
    """Stands for a model: a hit needs the very same object."""


def counting():
    """A ``make`` that returns how many times it has been called."""
    calls = []

    def make():
        calls.append(1)
        return len(calls)

    return make, calls


def test_outside_a_block_nothing_is_remembered():
    make, _ = counting()
    assert not active()
    assert shared("k", make) == 1
    assert shared("k", make) == 2
    remember("k", "value")
    assert lookup("k") is None


def test_inside_a_block_a_result_is_made_once_per_key_and_owner():
    owner, other = Owner(), Owner()
    make, _ = counting()
    with sharing():
        assert shared("k", make, owners=(owner,)) == 1
        assert shared("k", make, owners=(owner,)) == 1
        assert shared("k", make, owners=(other,)) == 2  # another model never reuses it
    assert lookup("k", owners=(owner,)) is None  # dropped when the block ends


def test_a_nested_block_sees_the_outer_blocks_results_but_keeps_its_own_to_itself():
    owner = Owner()
    with sharing(prefix_stores=False):
        remember("answers", "outer", owners=(owner,))
        assert not prefix_stores_active()
        with sharing():
            assert prefix_stores_active()
            assert lookup("answers", owners=(owner,)) == "outer"
            remember("store", "large", owners=(owner,))
            remember("answers", "inner", owners=(owner,))
            assert lookup("answers", owners=(owner,)) == "inner"  # innermost first
        assert lookup("store", owners=(owner,)) is None
        assert lookup("answers", owners=(owner,)) == "outer"


def test_the_innermost_block_that_plans_sites_names_them():
    assert planned_sites() == ()
    with sharing(prefix_stores=False):
        assert planned_sites() == ()
        with sharing(sites=("layer 0", "layer 1")):
            with sharing():
                assert planned_sites() == ("layer 0", "layer 1")
            with sharing(sites=("layer 2",)):
                assert planned_sites() == ("layer 2",)
        assert planned_sites() == ()
