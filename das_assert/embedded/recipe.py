"""The data recipe of the embedded price-tagging model: its tokenizer and its training mixture.

The tokenizer is a word-level fast tokenizer built with the ``tokenizers`` library: digits are
single tokens (as in LLaMA's tokenizer), punctuation characters are single tokens, newlines are
tokens, spaces separate words and are dropped. A BOS token starts every sequence, as in LLaMA.

The training mixture (fractions are of examples):

- 50 % the default instruction, yes/no;
- 20 % a training-family paraphrase (``TRAIN_INSTRUCTIONS``);
- 15 % a training-family irrelevant prefix before the default instruction;
- 15 % the True/False sibling of the default or a training paraphrase;
- independently, 10 % of amounts are put on a bound or one cent beside it.

Training has two phases: the mixture above, then a shorter *focus* phase (fresh optimizer, lower
learning rate) in which half of the amounts lie within 0.30 of a bound, where the comparisons are
hardest, and the rest follow the same mixture.

The held-out families (``HELD_OUT_INSTRUCTIONS``, ``HELD_OUT_PREFIXES``) never appear in training.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from das_assert.tasks.phrasings import (
    DEFAULT_INSTRUCTION,
    HELD_OUT_INSTRUCTIONS,
    HELD_OUT_PREFIXES,
    TRAIN_INSTRUCTIONS,
    TRAIN_PREFIXES,
)
from das_assert.tasks.price_tagging import ALPACA_TEMPLATE, PriceFormat, sample_inputs

__all__ = ["FAMILIES", "build_tokenizer", "family_example", "training_example"]

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>")
EXTRA_WORDS = ("Yes", "No", "True", "False", "yes", "no", "$")


def _corpus() -> Iterator[str]:
    yield ALPACA_TEMPLATE.replace("{instruction}", "").replace("{amount}", "")
    for instruction in (DEFAULT_INSTRUCTION, *TRAIN_INSTRUCTIONS, *HELD_OUT_INSTRUCTIONS):
        yield instruction.format(low="", high="", yes="", no="")
    yield from TRAIN_PREFIXES
    yield from HELD_OUT_PREFIXES
    yield " ".join(EXTRA_WORDS)
    yield "0 1 2 3 4 5 6 7 8 9 . , ; : ! ? $"


def build_tokenizer() -> Any:  # a transformers.PreTrainedTokenizerFast
    """Build the word-level fast tokenizer (deterministic: the vocabulary is sorted)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex(" +"), behavior="removed"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation(behavior="isolated"),
        ]
    )
    words: set[str] = set()
    for text in _corpus():
        words.update(piece for piece, _ in pre.pre_tokenize_str(text))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="right",
        model_max_length=256,
    )


def _amount_near_bound(rng: random.Random, inputs: dict[str, int]) -> dict[str, int]:
    bound = rng.choice((inputs["lo"], inputs["hi"]))
    x = min(max(bound + rng.choice((-1, 0, 0, 1)), 1), 999)
    return {**inputs, "x": x}


def _amount_close_to_bound(rng: random.Random, inputs: dict[str, int]) -> dict[str, int]:
    bound = rng.choice((inputs["lo"], inputs["hi"]))
    return {**inputs, "x": min(max(bound + rng.randint(-30, 30), 1), 999)}


def training_example(
    rng: random.Random, *, close_to_bound: float = 0.0
) -> tuple[PriceFormat, dict[str, int]]:
    """One example of the training mixture: its format and its inputs (cents).

    ``close_to_bound`` is the share of amounts put within 0.30 of a bound (the focus phase).
    """
    inputs = sample_inputs(rng)
    if close_to_bound and rng.random() < close_to_bound:  # no draw in phase 1: same stream
        inputs = _amount_close_to_bound(rng, inputs)
    elif rng.random() < 0.10:
        inputs = _amount_near_bound(rng, inputs)
    kind = rng.random()
    fmt = PriceFormat()
    if kind < 0.20:
        fmt = fmt.with_(instruction=rng.choice(TRAIN_INSTRUCTIONS))
    elif kind < 0.35:
        fmt = fmt.with_(prefix=rng.choice(TRAIN_PREFIXES))
    elif kind < 0.50:
        instruction = rng.choice((DEFAULT_INSTRUCTION, *TRAIN_INSTRUCTIONS))
        fmt = fmt.with_(instruction=instruction, answers=("True", "False"))
    return fmt, inputs


#: Variant families on which the model card reports task accuracy.
FAMILIES = (
    "default",
    "held_out_paraphrase",
    "held_out_prefix",
    "true_false",
    "amount_on_bound",
    "amount_one_cent_outside",
)


def family_example(family: str, rng: random.Random) -> tuple[PriceFormat, dict[str, int]]:
    """One fresh example of an evaluation family."""
    inputs = sample_inputs(rng)
    fmt = PriceFormat()
    if family == "held_out_paraphrase":
        fmt = fmt.with_(instruction=rng.choice(HELD_OUT_INSTRUCTIONS))
    elif family == "held_out_prefix":
        fmt = fmt.with_(prefix=rng.choice(HELD_OUT_PREFIXES))
    elif family == "true_false":
        fmt = fmt.with_(answers=("True", "False"))
    elif family == "amount_on_bound":
        inputs["x"] = rng.choice((inputs["lo"], inputs["hi"]))
    elif family == "amount_one_cent_outside":
        inputs["x"] = rng.choice((inputs["lo"] - 1, inputs["hi"] + 1))
    elif family != "default":
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    return fmt, inputs
