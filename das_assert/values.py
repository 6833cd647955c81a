"""What the argument checks of every public constructor ask of a value: an integer, a number,
a finite number; never a bool (``True`` is an ``int`` to Python), and a NumPy scalar as well as a
Python one. Imports nothing that loads torch."""

from __future__ import annotations

import math
import numbers

__all__ = ["is_finite_number", "is_integer", "is_number"]


def is_integer(value: object) -> bool:
    """An integer (``numbers.Integral``: a NumPy integer too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number (``numbers.Real``), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A real number, not a bool, neither infinite nor NaN."""
    return is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
