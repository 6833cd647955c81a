"""Bad arguments to the public API (``das_assert.__all__``): one clear DasError at the call.

Each case was a deep AttributeError, TypeError or ZeroDivisionError, or was silently accepted.
"""

from __future__ import annotations

import numpy as np
import pytest
from bad_inputs_support import Call, Ctx, assert_one_clear_das_error

from das_assert.errors import DasError, InvalidArgument
from das_assert.experiment import Experiment
from das_assert.sites import Site, parse_site

CASES = [
    # -- parse_site: an AttributeError on .strip()
    pytest.param(
        lambda c: parse_site(None),
        InvalidArgument,
        r"parse_site takes text, not NoneType None; write the site as COMPONENT\[layer=L",
        id="parse_site(None)",
    ),
    pytest.param(
        lambda c: parse_site(3),
        InvalidArgument,
        r"parse_site takes text, not int 3",
        id="parse_site(3)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_a_bad_argument_raises_one_clear_das_error(
    call: Call, error: type[DasError], match: str, ctx: Ctx
) -> None:
    assert_one_clear_das_error(call, error, match, ctx)


def test_numpy_integers_are_taken_as_ints() -> None:
    """A layer or count from a NumPy grid (np.arange) was refused as "not an integer"."""
    site = Site(np.int64(1))
    assert site == Site(1)
    assert type(site.layer) is int
    experiment = Experiment(
        hypothesis="left_boundary",
        site=site,
        n_train=np.int64(8),
        n_test=np.int32(4),
        seed=np.int64(3),
    )
    assert (experiment.n_train, experiment.n_test, experiment.seed) == (8, 4, 3)
    assert all(type(v) is int for v in (experiment.n_train, experiment.n_test, experiment.seed))
    with pytest.raises(InvalidArgument, match="layer must be an integer, not True"):
        Site(True)  # type: ignore[arg-type]
