"""The ``das`` fixture's assertions refuse a misspelt keyword with the keywords they take."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from das_assert.errors import InvalidArgument
from das_assert.request import DasRequest


@pytest.mark.parametrize(
    ("call", "arguments", "expected"),
    [
        # a bare TypeError with a traceback into the plugin, naming only the typo
        (
            "assert_not_aligned",
            {"claim": "left_boundary", "treshold": 0.7},
            r"das\.assert_not_aligned\(\) takes no keyword 'treshold'; it takes claim, "
            r"threshold\. Did you mean 'threshold'\?",
        ),
        ("assert_aligned", {"claim": "c", "thresold": 0.7}, r"Did you mean 'threshold'\?"),
        ("assert_robust", {"claim": "c", "expected": "aligned"}, r"Did you mean 'expect'\?"),
        (
            "assert_breaks_on",
            {"claim": "c", "where": "x", "expect": "not_aligned"},
            r"das\.assert_breaks_on\(\) takes no keyword 'expect'; it takes claim, where\.$",
        ),
    ],
)
def test_a_misspelt_keyword_is_refused_with_the_keywords_there_are(
    call: str, arguments: dict[str, object], expected: str
) -> None:
    request = DasRequest(SimpleNamespace(), SimpleNamespace(nodeid="test_x.py::test_x"))
    positional = (object(), object()) if call in ("assert_robust", "assert_breaks_on") else ()
    with pytest.raises(InvalidArgument, match=expected):
        getattr(request, call)(*positional or (object(),), **arguments)


def test_das_request_is_still_importable_from_its_old_module() -> None:
    # it moved to das_assert.request; a user's `das: DasRequest` annotation imported it here
    from das_assert.session import DasRequest as Old

    assert Old is DasRequest
