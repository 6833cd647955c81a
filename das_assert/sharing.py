"""Work shared between alignments for the length of a ``with sharing():`` block.

The cells of a layer x position search at one position use the same training and test pairs,
and the prompt prefix before the site does not depend on the layer; the claims of one hypothesis
file evaluate the same test prompts at several sites, and the base run's answers do not depend on
the site. Inside the block such results are computed once and handed to every alignment that
asks for the same thing; when the block ends they are dropped, so no memory outlives it.

A block may plan the sites its alignments will use (``sites=``): the first alignment that needs
source activations then records them at every planned site in one pass, those of other positions
kept (on the CPU) by the block that plans them.

``sharing(prefix_stores=False)`` shares only the small things (encoded pairs, base answers); the
plugin's ``das_session`` fixture opens one for the test session, so a search finds the test pairs
and base answers of the claim with the same data. ``das_assert.search`` opens one with prefix
stores per position inside it: a nested block sees what the blocks around it remember, and what it
remembers itself (the large prefix stores) is dropped when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "active",
    "lookup",
    "planned_sites",
    "prefix_stores_active",
    "remember",
    "shared",
    "sharing",
]

T = TypeVar("T")


@dataclass
class _Scope:
    prefix_stores: bool
    sites: tuple[Any, ...] = ()
    memo: dict[Hashable, tuple[tuple[Any, ...], Any]] = field(default_factory=dict)


_SCOPES: list[_Scope] = []


@contextmanager
def sharing(*, prefix_stores: bool = True, sites: Sequence[Any] = ()) -> Iterator[None]:
    """Reuse ``shared`` results inside this block and the blocks around it.

    ``sites`` (``das_assert.sites.Site``) are the sites the block's alignments will use.
    """
    scope = _Scope(prefix_stores, tuple(sites))
    _SCOPES.append(scope)
    try:
        yield
    finally:
        _SCOPES.remove(scope)  # its own, even if a block opened inside it was never closed
        scope.memo.clear()


def active() -> bool:
    """Whether a ``sharing`` block is open."""
    return bool(_SCOPES)


def prefix_stores_active() -> bool:
    """Whether the innermost block shares prefix KV stores (large: a search's, not a module's)."""
    return bool(_SCOPES) and _SCOPES[-1].prefix_stores


def planned_sites(*, every: bool = False) -> tuple[Any, ...]:
    """The sites planned by the innermost block that plans any (empty outside such a block);
    with ``every``, those of every open block (a search plans all its cells in an outer block
    and each position's in an inner one)."""
    if every:
        return tuple(dict.fromkeys(site for scope in _SCOPES for site in scope.sites))
    return next((scope.sites for scope in reversed(_SCOPES) if scope.sites), ())


def lookup(key: Hashable, *, owners: tuple[Any, ...] = ()) -> Any | None:
    """The value remembered for ``key`` from the very same ``owners`` (``is``) in an open block,
    innermost first, else None."""
    for scope in reversed(_SCOPES):
        hit = scope.memo.get(key)
        if hit is None or len(hit[0]) != len(owners):
            continue
        if all(a is b for a, b in zip(hit[0], owners, strict=True)):
            return hit[1]
    return None


def remember(
    key: Hashable,
    value: Any,
    *,
    owners: tuple[Any, ...] = (),
    for_site: Any = None,
    outermost: bool = False,
) -> None:
    """Keep ``value`` for ``key`` until the innermost block ends (nothing outside a block).

    ``for_site``: until the innermost block that plans that site ends (a value made early for a
    later position of a search), or the innermost where none plans it. ``outermost``: until the
    outermost block ends (small results that no site changes: tokenized pairs, base answers).
    """
    if not _SCOPES:
        return
    scope = _SCOPES[0] if outermost else _SCOPES[-1]
    if for_site is not None:
        scope = next((s for s in reversed(_SCOPES) if for_site in s.sites), scope)
    scope.memo[key] = (owners, value)


def shared(
    key: Hashable,
    make: Callable[[], T],
    *,
    owners: tuple[Any, ...] = (),
    outermost: bool = False,
) -> T:
    """``make()``, computed once per ``key`` inside a ``sharing`` block, every time outside.

    ``owners`` are the objects the result was computed from; a hit requires the very same
    objects (``is``), so a key built from ``id()`` can never match a recycled id. ``outermost``:
    see ``remember``.
    """
    value = lookup(key, owners=owners)
    if value is None:
        value = make()
        remember(key, value, owners=owners, outermost=outermost)
    return value
