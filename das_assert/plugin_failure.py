"""How a das test stopped by bad input reports it: one message, not a traceback through the
engine, with the line of the test that called it, as pytest's own one-line failures have."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OneMessage", "one_message"]


@dataclass(frozen=True)
class _Crash:
    """Where it failed, as ``--tb=line``, the short summary and ``--junitxml`` read it."""

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}"


class OneMessage:
    """A report's ``longrepr``: the message whole, and its crash location (pytest's
    ``--tb=line`` printed a plain string's first 50 characters, with no file or line)."""

    def __init__(self, message: str, crash: _Crash) -> None:
        self.message = message
        self.reprcrash = crash

    def toterminal(self, tw: Any) -> None:
        for line in self.message.split("\n"):
            tw.line(line)

    def __str__(self) -> str:
        return self.message


def one_message(item: Any, excinfo: Any) -> OneMessage:
    """``excinfo``'s ``Type: message``, located at the test file's last line in its traceback
    (the call that raised it), else where it was raised."""
    message = f"{excinfo.typename}: {excinfo.value}"
    entries = [entry for entry in excinfo.traceback if Path(entry.path) == Path(item.path)]
    entry = entries[-1] if entries else excinfo.traceback[-1]
    return OneMessage(message, _Crash(str(entry.path), entry.lineno + 1, message))
