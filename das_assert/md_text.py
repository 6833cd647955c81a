"""Text put into Markdown (``--das-markdown``, ``compare --markdown``): a test id, claim, path or
message shows as the characters it holds and stays in its table cell.

A ``|`` in a cell ends it (GitHub's tables split a row at a bare ``|`` even inside a code span),
a line break ends the row, a backtick opens a code span, ``<b>`` renders as HTML and ``&amp;``
as ``&``. Those are escaped (``<`` alone: no tag starts without it); ``_``, ``*`` and ``[`` are
not, so that what ``compare`` prints reads plainly in a terminal (at worst a name renders in
italics).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["code", "fenced", "plain"]

_SPECIAL = re.compile(r"([\\`<|&])")  # no tag starts without "<": "0.69 -> 0.76" stays
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def plain(value: Any) -> str:
    """``value`` as text in a table cell or list item: ``|``, backticks, ``<``, ``&`` and
    backslashes escaped, line breaks as ``<br>``."""
    return _LINE_BREAK.sub("<br>", _SPECIAL.sub(r"\\\1", str(value)))


def code(value: Any, *, cell: bool = True) -> str:
    """``value`` as a code span: a fence longer than any run of backticks in it, line breaks as
    spaces, and in a table ``cell`` its ``|`` escaped (outside a table that would show)."""
    text = _LINE_BREAK.sub(" ", str(value))
    if cell:
        text = text.replace("|", "\\|")
    fence = "`" * (1 + _longest_backtick_run(text))
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""  # "``" is no span
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(text: str) -> str:
    """``text`` as a fenced code block, the fence longer than any run of backticks in it."""
    fence = "`" * max(3, 1 + _longest_backtick_run(text))
    return f"{fence}\n{text}\n{fence}\n"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall("`+", text)), default=0)
