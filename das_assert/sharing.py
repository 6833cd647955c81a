"""Work shared between the cells of a search, for the length of a ``with sharing():`` block.

The cells of a layer x position search at one position use the same training and test pairs,
and the prompt prefix before the site does not depend on the layer. Inside the block, encoded
pair sets and prefix KV stores are computed once and handed to every cell that asks for the same
thing; when the block ends they are dropped, so no memory outlives the search.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["active", "shared", "sharing"]

T = TypeVar("T")

_SCOPES: list[dict[Hashable, tuple[tuple[Any, ...], Any]]] = []


@contextmanager
def sharing() -> Iterator[None]:
    """Reuse ``shared`` results inside this block (nested blocks start empty)."""
    memo: dict[Hashable, tuple[tuple[Any, ...], Any]] = {}
    _SCOPES.append(memo)
    try:
        yield
    finally:
        _SCOPES.pop()
        memo.clear()


def active() -> bool:
    """Whether a ``sharing`` block is open."""
    return bool(_SCOPES)


def shared(key: Hashable, make: Callable[[], T], *, owners: tuple[Any, ...] = ()) -> T:
    """``make()``, computed once per ``key`` inside a ``sharing`` block, every time outside.

    ``owners`` are the objects the result was computed from; a hit requires the very same
    objects (``is``), so a key built from ``id()`` can never match a recycled id.
    """
    if not _SCOPES:
        return make()
    memo = _SCOPES[-1]
    hit = memo.get(key)
    if hit is not None and len(hit[0]) == len(owners):
        if all(a is b for a, b in zip(hit[0], owners, strict=True)):
            return hit[1]
    value = make()
    memo[key] = (owners, value)
    return value
