"""The exceptions das_assert raises, and the helper that suggests a fix for a misspelt name.

Every error a user can cause is a ``DasError`` with a message that names what is wrong and how to
fix it. The CLI turns them into exit code 2; the pytest plugin shows them without a torch traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any, cast

__all__ = [
    "AlignmentFileError",
    "ConfigError",
    "DasError",
    "IIAClaimFailed",
    "IIAInconclusive",
    "IIARegression",
    "InvalidArgument",
    "KeywordsChecked",
    "MissingEntry",
    "ModelChanged",
    "ModelLoadError",
    "NoClaimWarning",
    "OutOfDeviceMemory",
    "OutputWriteError",
    "PreconditionFailed",
    "SetupError",
    "SiteError",
    "SiteNotInModel",
    "TrainingDiverged",
    "did_you_mean",
    "shown_value",
    "which_is_misspelt",
]


class DasError(Exception):
    """Base class of every error das_assert raises on purpose."""


class InvalidArgument(DasError, ValueError):
    """A value passed to a das_assert function is not acceptable."""


class SiteError(InvalidArgument):
    """A site's layer or position does not exist in this model or prompt."""


class ConfigError(DasError, ValueError):
    """A configuration file (das.yaml) or a command-line option is malformed."""


class SetupError(DasError):
    """das.yaml disagrees with the tests or the model: no one test's failure, so the plugin
    stops the run with it (exit 4) rather than fail every test that meets it."""


class MissingEntry(SetupError, ConfigError):
    """das.yaml has no site or claim entry that a test asks for (a typo on one side)."""


class SiteNotInModel(SetupError, SiteError):
    """A das.yaml site names a layer the model under test does not have, or a position its
    default prompt does not have."""


class SearchNotInModel(SetupError, ConfigError):
    """das.yaml's ``search:`` names a layer or position the model or its prompt lacks, or two
    names of one cell on it."""


def which_is_misspelt(name: str, known: Iterable[str]) -> str:
    """The hint for a name that a test asks for and das.yaml lacks: the closest key das.yaml
    has, which either side may have misspelt, or ``""`` when none is close."""
    # 0.75: a letter or two mistyped, not another claim (right_boundary, left_boundary: 0.74)
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    if not close:
        return ""
    return (
        f" das.yaml has {close[0]!r}, the closest key: if one of the two is misspelt, fix it, "
        "in the test or in das.yaml."
    )


class ModelChanged(InvalidArgument):
    """The model under test was changed (a hook, an edit) after the pytest session began."""


class ModelLoadError(DasError):
    """A model directory cannot be loaded (missing files, unknown architecture, ...)."""


class AlignmentFileError(DasError):
    """A saved alignment, cache entry or baseline is missing, corrupted or incompatible."""


class UnreadableAlignmentFile(AlignmentFileError):
    """An alignment file that reading failed on (a permission, an I/O error, too many open
    files): what it holds is not known to be wrong, so a cache keeps the entry."""


class OutputWriteError(DasError, OSError):
    """A file das_assert writes (report, baseline, alignment, cache entry) could not be written:
    the disk is full, a file size limit, no permission. Nothing was written under its name, and
    a file there before is unchanged. An ``OSError`` too, so that callers for whom a write only
    saves time (the cache) go on without it."""


class OutOfDeviceMemory(DasError):
    """A forward pass ran out of GPU memory; ``batch`` is how many pairs it held."""

    def __init__(self, message: str, batch: int) -> None:
        super().__init__(message)
        self.batch = batch


class NoClaimWarning(UserWarning):
    """A test that took the ``das`` fixture passed without asserting a claim or recording a
    search: it measured nothing the reports show (``-W error::das_assert.errors.NoClaimWarning``
    fails such a test)."""


class PreconditionFailed(DasError):
    """The model does not do the task well enough for an alignment to mean anything."""


class TrainingDiverged(DasError):
    """The alignment loss became NaN or infinite."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    others = [choice for choice in choices if choice != name]  # not the name itself
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class KeywordsChecked:
    """A base of the public dataclasses: an unknown keyword is refused with the arguments there
    are, where the dataclass's own ``__init__`` raises a TypeError that names only the keyword."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        names = _init_fields(cls)
        for name in kwargs:
            if name not in names:
                raise InvalidArgument(
                    f"{cls.__name__}() has no argument {name!r}.{did_you_mean(name, names)} "
                    f"It takes: {', '.join(names)}."
                )
        return super().__new__(cls)


_INIT_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _init_fields(cls: type[Any]) -> tuple[str, ...]:
    """The arguments a dataclass's ``__init__`` takes, in order (read once per class)."""
    if cls not in _INIT_FIELDS:
        _INIT_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cast(Any, cls)) if f.init)
    return _INIT_FIELDS[cls]


# The failures of a das test's claims: assertions, so pytest reports them as failed claims.
class IIAClaimFailed(AssertionError):
    """A claim about IIA is contradicted by the interval."""


class IIARegression(AssertionError):
    """A claim's numbers dropped against the saved baseline by more than allowed."""


class IIAInconclusive(AssertionError):
    """The interval straddles the threshold: more pairs are needed to decide."""


def shown_value(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, or ``<TypeName>`` where that spans lines or runs long (a
    torch module's repr is its whole tree of layers)."""
    text = repr(value)
    return f"<{type(value).__name__}>" if "\n" in text or len(text) > limit else text
