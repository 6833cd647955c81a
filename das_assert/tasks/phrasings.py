"""Instruction phrasings and irrelevant prefixes for price tagging, in two disjoint families.

The *training* family is what the embedded model was trained on besides the default instruction;
the *held-out* family is never seen in training and is the default pool for robustness fuzzing.
Every phrasing has the slots ``{low}`` and ``{high}`` and the words ``{yes}`` / ``{no}`` for the
answer, so the True/False sibling is the same phrasing with other answer words.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_INSTRUCTION",
    "HELD_OUT_INSTRUCTIONS",
    "HELD_OUT_PREFIXES",
    "TRAIN_INSTRUCTIONS",
    "TRAIN_PREFIXES",
]

DEFAULT_INSTRUCTION = (
    "Please say {yes} only if it costs between {low} and {high} dollars, otherwise {no}."
)

TRAIN_INSTRUCTIONS = (
    "Say {yes} if the price is between {low} and {high} dollars, otherwise say {no}.",
    "Answer {yes} only when the cost is between {low} and {high} dollars, and {no} otherwise.",
    "Reply {yes} if it costs between {low} and {high} dollars; otherwise reply {no}.",
    "Please answer {yes} only if the price lies between {low} and {high} dollars, otherwise {no}.",
    "If the item costs between {low} and {high} dollars say {yes}, otherwise say {no}.",
    "Tell me {yes} only if the amount is between {low} and {high} dollars, otherwise {no}.",
    "Please say {yes} when it costs between {low} and {high} dollars, otherwise {no}.",
    "Output {yes} only if the price is between {low} and {high} dollars, else {no}.",
)

HELD_OUT_INSTRUCTIONS = (
    "Respond {yes} only if it is priced between {low} and {high} dollars, otherwise respond {no}.",
    "Please say {yes} if the cost falls between {low} and {high} dollars, and {no} if it does not.",
    "Say {yes} only when the amount lies between {low} and {high} dollars, otherwise {no}.",
    "Only if it costs between {low} and {high} dollars, say {yes}; otherwise say {no}.",
    "Kindly answer {yes} if the price is within {low} and {high} dollars, otherwise {no}.",
    "Write {yes} only if the item is between {low} and {high} dollars, else write {no}.",
)

TRAIN_PREFIXES = (
    "Pricing tag game!",
    "LLaMA is not conscious.",
    "Here is a question.",
    "The weather is nice today.",
    "Read carefully.",
    "A quick shopping check.",
)

HELD_OUT_PREFIXES = (
    "Fruitarian Frogs May Be Doing Flowers a Favor",
    "This is a short test.",
    "Good morning!",
    "Answer the question below.",
)
