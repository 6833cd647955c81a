"""argparse types: each turns one command-line value into what it names, or refuses it with a
message that says the fix. Shared by ``python -m das_assert``, the pytest plugin's options and
the stability script; imports nothing that loads torch, so none of them pays for it."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from das_assert.metrics import check_threshold

#: dollars as digits with at most one point: 2.51, 2.5, 2, .5, 2.
_DOLLARS = re.compile(r"(?=\.?[0-9])([0-9]+)?(?:\.([0-9]*))?")

__all__ = [
    "MAX_PAIRS",
    "MAX_SEED",
    "Once",
    "baseline_name",
    "baseline_reference",
    "cents",
    "distinct",
    "empty_model_variable",
    "non_negative_int",
    "pair_count",
    "parse_fraction",
    "parse_threshold",
    "path_arg",
    "positive_int",
    "seed_int",
]


def cents(text: str) -> int:
    """An argparse type: an amount in dollars (2.51), as whole cents, 0.00 to 9.99. Digits and
    one point only: Python's float read ``1_0`` as 10 and ``1.100000001`` as 1.10."""
    amount = _DOLLARS.fullmatch(text.strip())
    if amount is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like 2.51")
    whole, decimals = amount.group(1) or "0", amount.group(2) or ""
    if decimals.rstrip("0")[2:]:
        raise argparse.ArgumentTypeError(f"{text!r} has more than two decimals; amounts are cents")
    if len(whole.lstrip("0")) > 3:  # no hint to give; and int() stops at 4,300 digits
        shown = repr(text) if len(text) <= 20 else f"{text[:20]!r}..."
        raise argparse.ArgumentTypeError(f"{shown} is outside 0.00..9.99 dollars")
    value = int(whole) * 100 + int((decimals + "00")[:2])
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


def named_path(text: str) -> str:
    """An argparse type: ``path_arg``'s refusal of an empty value, the text kept as given (a
    model's ``embedded``): an empty --model loaded the model in the current folder."""
    path_arg(text)
    return text


def path_arg(text: str) -> Path:
    """An argparse type: a path, never an empty string (which Path reads as "."), with a
    leading ``~`` as the home folder, as pytest's --das-* paths and --model read it (the shell
    leaves ``--json=~/x`` as it is: it wrote into a folder named ``~``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the path is empty; name a file or directory (an unset variable such as "
            "$GITHUB_STEP_SUMMARY expands to nothing)"
        )
    try:
        return Path(text).expanduser()
    except RuntimeError as error:  # ~nobody, or no home folder to read ~ as
        raise argparse.ArgumentTypeError(f"{text!r}: {error}; write the path out") from None


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


def baseline_name(value: str) -> str:
    """An argparse type: a baseline's NAME, saved as NNNN_NAME.json in the model's baseline
    folder, NAME slugged (``release/v2``, a CI branch name, is saved as ``0001_release_v2``).

    Refused: what is clearly a path (an absolute one, a ``.json`` file, or one that exists: the
    option's argument is optional, so ``--das-save-baseline tests/test_x.py`` took the test path
    as its NAME), and a NAME that slugs to nothing (``???`` was saved as ``0001_.json``, which the
    next save overwrote and ``--das-compare`` could not find)."""
    from das_assert.baseline import slug

    if os.path.isabs(value) or value.endswith(".json") or _a_test(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is a path: give a NAME; write --das-save-baseline=NAME (with '=' in "
            "addopts or PYTEST_ADDOPTS too, which come before the command line's test paths), "
            "or put test paths before the option; baselines go to --das-baseline-dir DIR "
            "(default hypotheses/baselines/<model>/)"
        )
    if re.fullmatch(r"\d{4,5}", slug(value)):
        raise argparse.ArgumentTypeError(
            f"{value!r} reads as a baseline number: --das-compare={slug(value)} would mean "
            "baseline number " + slug(value) + "; give a NAME with a letter in it"
        )
    if slug(value) == "latest" or re.fullmatch(r"\d{4,5}_.+", slug(value)):
        what = "the newest baseline" if slug(value) == "latest" else "that saved file"
        raise argparse.ArgumentTypeError(
            f"{value!r} reads as a baseline of its own: --das-compare={slug(value)} would mean "
            f"{what}, not this one; give another NAME"
        )
    if not slug(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} leaves no name: a baseline NAME needs a letter, digit, '.', '-' or '_' "
            "(it is saved as NNNN_NAME.json, other characters made '_')"
        )
    return value


def _a_test(value: str) -> bool:
    """Whether ``value`` is a path that exists or a test's node id (``test_x.py::test``), which
    an option with an optional argument took as its NAME."""
    path = value.partition("::")[0]
    return os.path.exists(value) or (
        "::" in value and (path.endswith(".py") or os.path.exists(path))
    )


def baseline_reference(flag: str) -> Any:
    """An argparse type: ``flag``'s baseline (NAME, KEY/NAME or a ``.json`` file), as
    ``--das-compare`` and ``--das-frozen`` take it.

    Refused: a path that is not a ``.json`` file (the argument is optional, so
    ``--das-compare hypotheses/test_x.py`` took the test path as the baseline's NAME)."""

    def parse(value: str) -> str:
        if not value.endswith(".json") and (os.path.isabs(value) or _a_test(value)):
            raise argparse.ArgumentTypeError(
                f"{value!r} is a path but not a baseline .json file: give a NAME (latest, NNNN "
                f"or NNNN_name), KEY/NAME or a .json file; write {flag}=NAME (with '=' in "
                "addopts or PYTEST_ADDOPTS too, which come before the command line's test "
                "paths), or put test paths before the option"
            )
        return value

    return parse


def empty_model_variable() -> str | None:
    """Why ``$DAS_MODEL``, set but empty, is refused, else None: a CI file's
    ``DAS_MODEL: ${{ vars.MODEL_DIR }}`` with the variable unset would judge the embedded model
    and gate it against the real one's baselines, as ``--das-model=""`` would."""
    value = os.environ.get("DAS_MODEL")
    if value is None or value.strip():
        return None
    return (
        "DAS_MODEL is set but empty (an unset variable such as $MODEL_DIR expands to nothing); "
        "set it to the model's folder, or unset it (unset DAS_MODEL) to use the embedded model"
    )
