"""What a test's source says about its claims, read before anything trains: the ``claim="..."``
each ``das.assert_*`` call names, the calls that name none, and the das.yaml sites its
``das_session.align`` calls name. Pure functions of the source."""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Any

__all__ = ["CLAIM_TABLES", "assertion_calls", "claimless_calls", "literal_claims", "site_names"]

#: The assertions whose ``claim=`` names a das.yaml entry, and the table it is looked up in.
CLAIM_TABLES = {
    "assert_aligned": "thresholds",
    "assert_not_aligned": "thresholds",
    "assert_robust": "robustness",
    "assert_breaks_on": "robustness",
}


Calls = list[tuple[str, dict[str | None, ast.expr]]]


@functools.lru_cache(maxsize=64)  # a test's function is read for its claims, then its sites
def _parsed(function: Any) -> ast.AST | None:
    """``function``'s source, parsed; None where it cannot be read."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None


def assertion_calls(function: Any) -> Calls:
    """``(method, keywords)`` of each ``<x>.assert_*(...)`` call in ``function``'s source (read
    and parsed once, for both questions below), but those a test expects to fail (inside
    ``with pytest.raises(...)``: a test that an unknown claim is refused names one); none where
    the source cannot be read."""
    if (tree := _parsed(function)) is None:
        return []
    expected_to_fail = _expected_to_fail(tree)
    return [
        (node.func.attr, {k.arg: k.value for k in node.keywords})
        for node in ast.walk(tree)
        if id(node) not in expected_to_fail
        and isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLAIM_TABLES
    ]


def literal_claims(calls: Calls) -> list[tuple[str, str]]:
    """``(claim, table)`` of each assertion of ``calls`` that names its claim as a string literal
    and gives no explicit ``threshold=`` (``threshold=None`` reads das.yaml's, as none does)."""
    found = []
    for method, keywords in calls:
        claim = keywords.get("claim")
        threshold = keywords.get("threshold")
        given = threshold is not None and not (
            isinstance(threshold, ast.Constant) and threshold.value is None
        )
        if isinstance(claim, ast.Constant) and isinstance(claim.value, str) and not given:
            found.append((claim.value, CLAIM_TABLES[method]))
    return found


def claimless_calls(calls: Calls) -> list[str]:
    """The assertions of ``calls`` made without ``claim=`` (nor a ``**`` mapping that may hold
    it): each would fail only after its alignment trained."""
    return [method for method, keywords in calls if not {"claim", None} & set(keywords)]


#: The names the plugin's objects go by in tests and fixtures: ``<name>.align(...)`` on another
#: object (an alias, a library's own ``align``) is left to the check made when it runs.
_RECEIVERS = ("das_session", "das")


def site_names(function: Any) -> list[str]:
    """The das.yaml site names (string literals without ``[``: a written-out site is not one)
    that ``das_session.align(hypothesis, site, ...)`` calls in ``function``'s source ask for.
    Not those a test expects to fail (inside ``with pytest.raises(...)``), and none of a
    function that reads das.yaml's sites itself (``if "deep" in das_session.settings.sites``:
    it asks only for what the model's entry has)."""
    tree = _parsed(function)
    if tree is None or any(
        isinstance(node, ast.Attribute) and node.attr == "sites" for node in ast.walk(tree)
    ):
        return []
    expected_to_fail = _expected_to_fail(tree)
    names = []
    for node in ast.walk(tree):
        if id(node) in expected_to_fail or not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "align"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in _RECEIVERS
        ):
            continue
        site = (
            node.args[1]
            if len(node.args) > 1
            else {k.arg: k.value for k in node.keywords}.get("site")
        )
        if isinstance(site, ast.Constant) and isinstance(site.value, str) and "[" not in site.value:
            names.append(site.value)
    return names


#: What a claim that is asserted but does not hold raises: a test expecting one of these names
#: a claim das.yaml must hold all the same (``with pytest.raises(IIAClaimFailed)``).
_CLAIM_FAILURES = frozenset(
    {"IIAClaimFailed", "IIARegression", "IIAInconclusive", "AssertionError"}
)


def _expected_to_fail(tree: ast.AST) -> set[int]:
    """The ``id`` of every node inside a ``with pytest.raises(...)`` block of ``tree`` that
    expects a refusal, not a claim that does not hold."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.With) and any(_is_raises(item.context_expr) for item in node.items)
        for statement in node.body
        for inner in ast.walk(statement)
    }


def _is_raises(expression: ast.expr) -> bool:
    """``pytest.raises(...)`` (or ``raises(...)``) in a ``with`` statement, of anything but a
    claim that does not hold."""
    if not isinstance(expression, ast.Call) or not (
        (isinstance(expression.func, ast.Attribute) and expression.func.attr == "raises")
        or (isinstance(expression.func, ast.Name) and expression.func.id == "raises")
    ):
        return False
    expected = expression.args[0] if expression.args else None
    names = expected.elts if isinstance(expected, ast.Tuple) else [expected]
    return not any(
        (isinstance(n, ast.Name) and n.id in _CLAIM_FAILURES)
        or (isinstance(n, ast.Attribute) and n.attr in _CLAIM_FAILURES)
        for n in names
    )
