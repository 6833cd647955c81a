"""Bad arguments to the public API (``das_assert.__all__``): one clear DasError at the call.

Each case was a deep AttributeError, TypeError or ZeroDivisionError, or was silently accepted.
"""

from __future__ import annotations

import pytest
from bad_inputs_support import Call, Ctx, assert_one_clear_das_error

from das_assert.errors import DasError, InvalidArgument
from das_assert.sites import parse_site

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
