"""The command line's parser class and what is read before it is built: an option its command
does not know is refused with the closest one it knows, and the ``--causal-models`` files are
found first (the models they register are ``--hypothesis`` choices). Imports argparse only."""

from __future__ import annotations

import argparse
import difflib
from typing import Any, NoReturn

from das_assert.arg_types import named_path

__all__ = ["Parser", "causal_model_files", "unrecognized"]


def causal_model_files(argv: list[str]) -> list[str]:
    """The ``--causal-models`` files in ``argv``: read before the parser is built, because the
    models they register are ``--hypothesis`` choices; none for a command without the option
    (its parser refuses it, and the user's code is not run first)."""
    if not argv or argv[0] not in ("check", "fit", "search", "evaluate"):
        return []
    for word in argv:  # argparse takes an abbreviation, but only once --hypothesis is checked
        name = word.partition("=")[0]
        if name.startswith("--causal-m") and name != "--causal-models":
            from das_assert.errors import InvalidArgument

            raise InvalidArgument(
                f"{name}: write --causal-models in full (it is read before the other options, "
                "to know the causal models that --hypothesis may name)"
            )
    early = _Lenient(add_help=False, allow_abbrev=False)
    early.add_argument("--causal-models", action="append", default=[], type=named_path)
    try:
        known, _ = early.parse_known_args(argv)
    except ValueError:  # e.g. the option without its FILE: the full parser says so
        return []
    return list(known.causal_models)


class _Lenient(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


class Parser(argparse.ArgumentParser):
    """argparse's parser; an option its command does not know is refused by that command, with
    the closest option it does know (argparse itself says only "unrecognized arguments")."""

    def parse_args(  # type: ignore[override]  # typeshed's overloads; this one returns a Namespace
        self, args: Any = None, namespace: Any = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = next(
                (a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {}
            )
            name = getattr(parsed, "command", None)
            command = commands.get(name, self) if isinstance(name, str) else self
            command.error(unrecognized(extras, command))
        return parsed

    def error(self, message: str) -> NoReturn:
        """One line that says what is wrong, and where the options are listed: argparse put
        the whole usage block (twenty lines for fit) before it."""
        self.exit(2, f"{self.prog}: error: {message}\n({self.prog} --help lists the options)\n")


def unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """argparse's message for ``extras``, and a suggestion for the first that looks like a
    misspelt option of ``parser`` (``--n-trian`` -> ``--n-train``)."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    options = [o for action in parser._actions for o in action.option_strings if o[:2] == "--"]
    for extra in extras:
        if extra.startswith("--"):
            close = difflib.get_close_matches(extra.split("=")[0], options, n=1, cutoff=0.6)
            if close:
                return f"{message} (did you mean {close[0]}?)"
    return message
