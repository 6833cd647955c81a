"""argparse types: each turns one command-line value into what it names, or refuses it with a
message that says the fix. Shared by ``python -m das_assert``, the pytest plugin's options and
the stability script; imports nothing that loads torch, so none of them pays for it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from das_assert.metrics import check_threshold

__all__ = [
    "MAX_PAIRS",
    "MAX_SEED",
    "Once",
    "cents",
    "distinct",
    "non_negative_int",
    "pair_count",
    "parse_fraction",
    "parse_threshold",
    "path_arg",
    "positive_int",
    "seed_int",
]


def cents(text: str) -> int:
    """An argparse type: an amount in dollars (2.51), as whole cents, 0.00 to 9.99."""
    try:
        cents = float(text) * 100
        value = round(cents)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like 2.51") from None
    if abs(cents - value) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text!r} has more than two decimals; amounts are cents")
    if not 0 <= value <= 999:
        hint = (
            f": amounts on the command line are dollars, so write {value / 10_000:.2f} for "
            f"{value // 100} cents"
            if 1_000 <= value <= 99_900 and value % 100 == 0
            else ""
        )
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0.00..9.99 dollars{hint}")
    return value


def parse_fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        hint = f"; a percentage? write {value / 100:g}" if 10 <= value <= 100 else ""
        raise argparse.ArgumentTypeError(f"{text!r} must lie in [0, 1]{hint}")
    return value


def parse_threshold(text: str) -> float:
    """An argparse type: a threshold, in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if (problem := check_threshold(value)) is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return int(text)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 0")
    return int(text)


MAX_SEED = 2**32 - 1  # torch, random and every derived stream take it; larger overflowed in torch
MAX_PAIRS = 1_000_000  # every pair's tokens and predictions are held in memory at once


def path_arg(text: str) -> Path:
    """An argparse type: a path, never an empty string (which Path reads as ".")."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the path is empty; name a file or directory (an unset variable such as "
            "$GITHUB_STEP_SUMMARY expands to nothing)"
        )
    return Path(text)


def seed_int(text: str) -> int:
    """An argparse type: a seed from 0 to 2**32 - 1."""
    if not text.isdigit() or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: use an integer 0 to {MAX_SEED}")
    return int(text)


def pair_count(text: str) -> int:
    """An argparse type: a number of prompt pairs, 2 to 1,000,000."""
    if not text.isdigit() or not 2 <= int(text) <= MAX_PAIRS:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a number of pairs from 2 to {MAX_PAIRS:,} (every pair is held "
            "in memory at once; 1,000 pairs already give a 95% interval of about +-0.03)"
        )
    return int(text)


class Once(argparse.Action):
    """A list option given once: argparse kept the last of two silently (``--layers 0 1
    --layers 2`` searched layer 2 alone, ``--variables left --variables right`` fitted
    ``right``)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        given = namespace.__dict__.setdefault("_lists_given", set())
        if self.dest in given:
            parser.error(f"{option} given twice; give all its values once: {option} A B ...")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def distinct(kind: str) -> type[argparse.Action]:
    """An argparse action for a list that refuses repeated entries (one cell each)."""

    class Distinct(Once):
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                parser.error(f"{option}: {kind} {', '.join(repeated)} given twice; list each once")
            super().__call__(parser, namespace, values, option)

    return Distinct
