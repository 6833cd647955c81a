"""Token positions by name, resolved per example on its own tokenization.

Hard-coding token indices (the paper's 69..81) breaks as soon as the tokenizer, the prompt or a
prefix changes. A position here is a name, resolved on each prompt's offsets:

- ``last``: the last prompt token (where the answer is read); ``last-K``: K tokens before it.
- ``SLOT.first`` / ``SLOT.last``: the first / last token of a rendered slot (``amount``, ``low``,
  ``high``, ``instruction``, ``prefix``, ...).
- ``after:SLOT`` / ``before:SLOT``: the token right after / right before the slot; an optional
  ``+K`` (``after:amount+2``) moves further right, ``-K`` further left.

Base and source prompts may have different lengths: each is resolved on its own tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from das_assert.errors import InvalidArgument, SiteError, did_you_mean

__all__ = ["Position", "check_distinct_positions", "parse_position", "whole_number"]

_LAST = re.compile(r"^last(?:-(\d+))?$")
_SLOT = re.compile(r"^([A-Za-z_]\w*)\.(first|last)$")
_NEAR = re.compile(r"^(after|before):([A-Za-z_]\w*)(?:([+-])(\d+))?$")
_INDEX = re.compile(r"^\s*-?\d{1,6}\s*$")  # a token index, as pyvene's unit_locations hold
FORMS = "last, last-K, SLOT.first, SLOT.last, after:SLOT, before:SLOT, after:SLOT+K"
#: Positions written often, for "did you mean" when a name does not parse.
_COMMON = (
    "last",
    "amount.first",
    "amount.last",
    "low.last",
    "high.last",
    "after:amount",
    "before:amount",  # the shipped control site: a typo of it was offered after:amount
)


@dataclass(frozen=True)
class Position:
    """A parsed position name; ``resolve`` turns it into a token index for one prompt."""

    name: str
    anchor: str  # "last" or a slot name
    edge: str  # "last", "first"
    offset: int  # added to the anchor's index

    def resolve(
        self,
        offsets: Sequence[tuple[int, int]],
        spans: Mapping[str, tuple[int, int]],
        prompt: str = "",
    ) -> int:
        """The token index of this position in a prompt with token ``offsets`` and slot ``spans``.

        Raises:
            InvalidArgument: when the slot is not in this prompt, or the index falls outside it.
        """
        n_tokens = len(offsets)
        if self.anchor == "last":
            index = n_tokens - 1 + self.offset
        else:
            if self.anchor not in spans:
                raise SiteError(
                    f"position {self.name!r} refers to slot {self.anchor!r}, which this prompt "
                    f"does not have (slots: {', '.join(sorted(spans))}); prompt: {prompt[:80]!r}..."
                    + did_you_mean(self.anchor, spans)
                )
            start, end = spans[self.anchor]
            covered = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
            if not covered:
                raise SiteError(
                    f"slot {self.anchor!r} covers no token of this prompt (empty slot?); "
                    f"position {self.name!r} cannot be resolved"
                )
            edge = covered[0] if self.edge == "first" else covered[-1]
            if prompt:
                self._check_own_token(offsets[edge], (start, end), prompt)
            index = edge + self.offset
        if not 0 <= index < n_tokens:
            raise SiteError(
                f"position {self.name!r} resolves to token {index}, outside this prompt of "
                f"{n_tokens} tokens; choose a position inside it (a smaller K in last-K or "
                "after:SLOT+K, or a slot such as amount.last)"
            )
        return index

    def _check_own_token(self, token: tuple[int, int], slot: tuple[int, int], prompt: str) -> None:
        """Refuse a slot's edge token that also holds text of its neighbour (a tokenizer that
        writes the amount's last digit and the '.' after it as one token): a position counted
        from it would not be where its name says. Whitespace beside the slot is allowed (GPT-2
        writes ``' 4'``).

        Raises:
            SiteError: naming the token and the text it holds from outside the slot.
        """
        (s, e), (start, end) = token, slot
        outside = prompt[s:start] if self.edge == "first" else prompt[end:e]
        if outside.strip():
            raise SiteError(
                f"position {self.name!r}: the {self.edge} token of slot {self.anchor!r} is "
                f"{prompt[s:e]!r}, which also holds {outside!r} from outside the slot, so this "
                "tokenizer gives the slot no token of its own there; choose a position counted "
                "from the end (last-K), or a prompt template that puts a space or newline on "
                f"that side of {{{self.anchor}}}; prompt: {prompt[:80]!r}..."
            )

    def __str__(self) -> str:
        return self.name


def whole_number(digits: str, where: str) -> int:
    """``digits`` (a ``-`` sign allowed) as an int, refused past 6 digits (no prompt or model is
    that long; Python refuses to read past 4,300 with a ValueError)."""
    if (count := len(digits.lstrip("-"))) > 6:
        shown = where if len(where) <= 60 else where[:60] + "..."
        raise InvalidArgument(f"{shown!r}: a number of {count} digits is past any prompt or model")
    return int(digits)


def parse_position(name: str | Position) -> Position:
    """Parse a position name (see the module docstring for the forms)."""
    if isinstance(name, Position):
        return name
    if _INDEX.match(str(name)) and not isinstance(name, bool):
        raise InvalidArgument(_index_advice(int(str(name))))
    if not isinstance(name, str):
        raise InvalidArgument(f"a position is a name such as 'last' or 'amount.last', not {name!r}")
    text = name.strip()
    if match := _LAST.match(text):
        return Position(text, "last", "last", -whole_number(match.group(1) or "0", text))
    if match := _SLOT.match(text):
        return Position(text, match.group(1), match.group(2), 0)
    if match := _NEAR.match(text):
        where, slot, sign, amount = match.groups()
        shift = whole_number(amount or "0", text) * (-1 if sign == "-" else 1)
        if where == "after":
            return Position(text, slot, "last", 1 + shift)
        return Position(text, slot, "first", -1 + shift)
    raise InvalidArgument(
        f"cannot parse position {name!r}; use one of: {FORMS}." + did_you_mean(text, _COMMON)
    )


def _index_advice(index: int) -> str:
    """What to write instead of a token index: a position is named on each prompt's own tokens."""
    if index < 0:
        instead = "'last'" if index == -1 else f"'last-{-index - 1}'"
        return (
            f"position {index} is a token index; das_assert names positions on each prompt's own "
            f"tokens: write {instead} (counted from the prompt's last token)"
        )
    return (
        f"position {index} is a token index from the start, which moves whenever the prompt, "
        "its amounts or the tokenizer change; name the token instead: the last of a slot "
        "('amount.last', 'high.last'), or one counted from the end ('last', 'last-K')"
    )


def check_distinct_positions(names: Sequence[str | Position], where: str = "positions") -> None:
    """Refuse two names of one token (``last`` and ``last-0``, ``amount.last`` and
    ``after:amount-1``: as parsed, not as written), whose grid cells would train twice.

    Raises:
        InvalidArgument: naming the two and ``where`` they were listed.
    """
    seen: dict[tuple[str, str, int], str] = {}
    for name in names:
        position = parse_position(name)
        key = (position.anchor, position.edge, position.offset)
        if key not in seen:
            seen[key] = position.name
            continue
        first = seen[key]
        twice = (
            f"{first!r} is listed twice"
            if first == position.name
            else (f"{first!r} and {position.name!r} name the same token")
        )
        raise InvalidArgument(f"{where}: {twice}; list it once")
