"""How the price-tagging task is written: the Alpaca template, the instruction with its slots
and the number styles (``PriceFormat``), rendered with the character span of every field that a
named position reads (``RenderedPrompt``). Amounts are integer cents."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from das_assert.errors import InvalidArgument, KeywordsChecked, did_you_mean
from das_assert.prompt_templates import CHAT, check_prompt_template
from das_assert.tasks.phrasings import DEFAULT_INSTRUCTION

__all__ = ["ALPACA_TEMPLATE", "NUMBER_STYLES", "PriceFormat", "RenderedPrompt"]

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{amount} dollars\n\n### Response:\n"
)

NUMBER_STYLES = ("plain", "dollar", "one_decimal")


def _format_cents(cents: int, style: str) -> str:
    if not 0 <= cents <= 999:  # "-1.99" for -1, "10.00": not an amount the task writes
        raise InvalidArgument(f"{cents} cents is not an amount of 0.00-9.99 dollars")
    if style == "one_decimal":
        return f"{cents / 100:.1f}"
    text = f"{cents // 100}.{cents % 100:02d}"
    return "$" + text if style == "dollar" else text


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt's text and the character span of each slot (``amount``, ``low``, ``high``, ...)."""

    text: str
    spans: dict[str, tuple[int, int]]


@dataclass(frozen=True, kw_only=True)
class PriceFormat(KeywordsChecked):
    """How a price-tagging example is written as a prompt.

    Args:
        instruction: the instruction with slots ``{low}``, ``{high}`` (once each), ``{yes}``,
            ``{no}``.
        answers: the words for the true and the false answer, e.g. ``("True", "False")``.
        prefix: irrelevant context placed before the instruction (inside it, as in the paper).
        suffix: irrelevant context placed after the instruction.
        numbers: ``plain`` (``1.30``), ``dollar`` (``$1.30``) or ``one_decimal`` (``1.3``).
        template: the outer template with ``{instruction}`` and ``{amount}`` slots.
    """

    instruction: str = DEFAULT_INSTRUCTION
    answers: tuple[str, str] = ("Yes", "No")
    prefix: str = ""
    suffix: str = ""
    numbers: str = "plain"
    template: str = ALPACA_TEMPLATE

    def __post_init__(self) -> None:
        for name in ("instruction", "prefix", "suffix", "numbers"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgument(f"{name}={getattr(self, name)!r}: a text, a str")
        answers = self.answers
        if (
            not isinstance(answers, tuple | list)  # a string "YN" was read as 'Y' and 'N'
            or len(answers) != 2
            or not all(isinstance(word, str) and word.strip() for word in answers)
        ):
            raise InvalidArgument(
                f"answers={answers!r}: a pair of words, true one first, e.g. ('Yes', 'No')"
            )
        object.__setattr__(self, "answers", tuple(answers))  # a list hashes not
        # an unknown slot ({Yes}) found only when a prompt is written: a fuzz variant's was a
        # rejected draw, so a strategy of mistyped instructions tested none of them
        _split_slots(self.instruction, dict.fromkeys(("low", "high", "yes", "no"), ""))
        for slot in ("{low}", "{high}"):
            if slot not in self.instruction:
                raise InvalidArgument(
                    f"instruction {self.instruction!r} has no {slot} slot; the bracket must appear "
                    "in the prompt for the task to be defined"
                )
            if self.instruction.count(slot) > 1:  # positions (low.first) would name one copy
                raise InvalidArgument(
                    f"instruction {self.instruction!r} writes {slot} "
                    f"{self.instruction.count(slot)} times; a position such as "
                    f"{slot.strip('{}')}.first names one token of the prompt, so write each of "
                    "{low} and {high} once"
                )
        if self.template == CHAT:  # a word das.yaml and the command line resolve, not a text
            raise InvalidArgument(
                f"template={CHAT!r} names the model's chat template, which das.yaml's "
                "prompt_template and --prompt-template render; in Python, render it first: "
                f"template=resolve_prompt_template({CHAT!r}, model.tokenizer) "
                "(das_assert.prompt_templates)"
            )
        if problem := check_prompt_template(self.template):
            raise InvalidArgument(f"template {problem}")
        if self.numbers not in NUMBER_STYLES:
            raise InvalidArgument(
                f"numbers={self.numbers!r} is not one of {NUMBER_STYLES}."
                + did_you_mean(self.numbers, NUMBER_STYLES)
            )
        if len(self.answers) != 2 or self.answers[0] == self.answers[1]:
            raise InvalidArgument(f"answers must be two different words, got {self.answers!r}")

    def with_(self, **changes: Any) -> PriceFormat:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def wrapper_parts(self) -> tuple[str, str, str]:
        """The template's text before ``{instruction}``, between it and ``{amount}``, and after
        ``{amount}``: what every prompt in this format starts with, holds and ends with."""
        head, rest = self.template.split("{instruction}", 1)
        between, tail = rest.split("{amount}", 1)
        return head, between, tail

    def answer(self, value: bool) -> str:
        """The answer word for a truth value."""
        return self.answers[0] if value else self.answers[1]

    def render(self, inputs: dict[str, int]) -> RenderedPrompt:
        """Render ``{"lo", "hi", "x"}`` (cents) to text, remembering where each slot landed."""
        # the words as the instruction says them: answers=(" Yes", " No"), spaced for a
        # byte-level BPE's answer token, are "say yes ..." there, not "say  Yes ..."
        yes, no = (word.strip() for word in self.answers)
        values = {
            "low": _format_cents(inputs["lo"], self.numbers),
            "high": _format_cents(inputs["hi"], self.numbers),
            "yes": yes.lower() if yes == "Yes" else yes,
            "no": no.lower() if no == "No" else no,
        }
        pieces: list[tuple[str | None, str]] = []
        instruction_start = len(self.prefix) + (1 if self.prefix else 0)
        if self.prefix:
            pieces.append(("prefix", self.prefix))
            pieces.append((None, " "))
        pieces.extend(_split_slots(self.instruction, values))
        instruction_end = sum(len(text) for _, text in pieces)
        if self.suffix:
            pieces.append((None, " "))
            pieces.append(("suffix", self.suffix))
        instruction_text = "".join(text for _, text in pieces)
        head, before_amount, after_amount = self.wrapper_parts()
        amount = _format_cents(inputs["x"], self.numbers)
        spans: dict[str, tuple[int, int]] = {}
        cursor = len(head)
        for slot, text in pieces:
            if slot is not None:
                spans[slot] = (cursor, cursor + len(text))
            cursor += len(text)
        spans["instruction"] = (len(head) + instruction_start, len(head) + instruction_end)
        amount_start = len(head) + len(instruction_text) + len(before_amount)
        spans["amount"] = (amount_start, amount_start + len(amount))
        text = head + instruction_text + before_amount + amount + after_amount
        return RenderedPrompt(text=text, spans=spans)


def _split_slots(instruction: str, values: dict[str, str]) -> list[tuple[str | None, str]]:
    """Split an instruction into literal text and filled slots, in order."""
    pieces: list[tuple[str | None, str]] = []
    rest = instruction
    while "{" in rest:
        before, _, after = rest.partition("{")
        slot, closing, rest = after.partition("}")
        if not closing or slot not in values:
            wrapper = (
                "; a template around the whole prompt, with {instruction} and {amount}, is a "
                "prompt template (--prompt-template, das.yaml's prompt_template)"
                if slot in ("instruction", "amount", "input")
                else ""
            )
            raise InvalidArgument(
                f"instruction {instruction!r} has an unknown slot {{{slot}}}; "
                "allowed: {low}, {high}, {yes}, {no}" + wrapper
            )
        pieces.append((None, before))
        pieces.append((slot if slot in ("low", "high") else None, values[slot]))
    pieces.append((None, rest))
    return [(slot, text) for slot, text in pieces if text]
