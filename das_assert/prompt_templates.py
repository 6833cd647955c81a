"""How a model reads a prompt: the wrapper around the instruction and the amount.

The paper's wrapper is Alpaca's (``price_tagging.ALPACA_TEMPLATE``). A model tuned on another
format reads prompts in that one: das.yaml's ``prompt_template:`` (and the CLI's
``--prompt-template``) gives it as text with ``{instruction}`` and ``{amount}`` slots, or as
``chat``: the model's own chat template (its tokenizer's ``chat_template``), rendered once with
one user message, the instruction and then the amount, and the assistant's turn opened for the
answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from das_assert.errors import InvalidArgument

__all__ = [
    "CHAT",
    "CHAT_USER_MESSAGE",
    "check_prompt_template",
    "refuse_doubled_bos",
    "resolve_prompt_template",
]

CHAT = "chat"
#: The user's message of a chat prompt: Alpaca's instruction and input, without its headers.
CHAT_USER_MESSAGE = "{instruction}\n\n{amount} dollars"
_SLOTS = ("{instruction}", "{amount}")


def check_prompt_template(template: Any) -> str | None:
    """What is wrong with ``template`` as a wrapper, or None: it must hold ``{instruction}``
    and then ``{amount}``, once each."""
    if not isinstance(template, str):
        return f"a text with {_SLOTS[0]} and {_SLOTS[1]} slots, or {CHAT!r}; got {template!r}"
    counts = {slot: template.count(slot) for slot in _SLOTS}
    if any(count != 1 for count in counts.values()):
        found = ", ".join(f"{slot} {_times(count)}" for slot, count in counts.items())
        return f"needs {_SLOTS[0]} and {_SLOTS[1]} once each (found: {found}): {template!r}"
    if template.index(_SLOTS[1]) < template.index(_SLOTS[0]):
        return f"needs {_SLOTS[0]} before {_SLOTS[1]}, as the prompt reads them: {template!r}"
    if "\\n" in template:  # a shell's "\n", or YAML's single quotes: a tokenizer's <unk>s
        return (
            f"holds \\n as two characters, a backslash and n, not a newline: {template!r}; "
            "in bash write $'...\\n...', in das.yaml put the text in double quotes"
        )
    return None


def _times(count: int) -> str:
    return {0: "not at all", 1: "once", 2: "twice"}.get(count, f"{count} times")


def resolve_prompt_template(written: str, tokenizer: Any) -> str:
    """The wrapper text for ``written``: itself, or for ``chat`` the tokenizer's chat template
    rendered around ``CHAT_USER_MESSAGE``; either without a beginning-of-sequence token written
    out where the tokenizer adds one itself (the prompt would start with two).

    Raises:
        InvalidArgument: the text lacks a slot; the tokenizer has no chat template, or its
            template fails or does not carry the message through unchanged.
    """
    if written != CHAT:
        if problem := check_prompt_template(written):
            raise InvalidArgument(f"prompt template {problem}")
        return _without_doubled_bos(written, tokenizer)  # copied from a model card: "<s>[INST]"
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidArgument(
            f"prompt template {CHAT!r}: this model's tokenizer has no chat template "
            "(tokenizer_config.json's chat_template, or chat_template.jinja beside it); write "
            "the wrapper out instead, with {instruction} and {amount} slots"
        )
    messages = [{"role": "user", "content": CHAT_USER_MESSAGE}]
    try:
        with _fixed_today():  # Llama 3.x's templates write today's date into the prompt
            text = tokenizer.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=True,
                date_string=_FIXED_DAY.strftime("%d %b %Y"),
            )
    except ImportError as exc:  # transformers renders chat templates with jinja2
        raise InvalidArgument(
            f"prompt template {CHAT!r} needs jinja2 to render the chat template ({exc}): "
            "pip install jinja2"
        ) from None
    except Exception as exc:  # the template's own raise_exception, a jinja error
        raise InvalidArgument(
            f"prompt template {CHAT!r}: the tokenizer's chat template fails on one user "
            f"message ({type(exc).__name__}: {exc}); write the wrapper out instead"
        ) from None
    if not isinstance(text, str) or (problem := check_prompt_template(text)):
        raise InvalidArgument(
            f"prompt template {CHAT!r}: the chat template does not carry the user message "
            f"{CHAT_USER_MESSAGE!r} through unchanged (it rendered {text!r}); write the "
            "wrapper out instead"
        )
    return _without_doubled_bos(text, tokenizer)


_FIXED_DAY = datetime(2024, 7, 26)  # Llama 3.1's template's own default date_string


@contextmanager
def _fixed_today() -> Iterator[None]:
    """transformers renders a chat template's ``strftime_now`` by the clock, in local time: a
    date in the wrapper changed every cache key, data record and frozen request each day, and
    between time zones. While this block runs the template's today is ``_FIXED_DAY``."""
    try:
        from transformers.utils import chat_template_utils as module
    except ImportError:
        yield
        return
    real = getattr(module, "datetime", None)
    if not (isinstance(real, type) and issubclass(real, datetime)):
        yield  # another transformers: the template's date_string argument alone
        return

    class FixedToday(real):  # type: ignore[valid-type,misc]
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return _FIXED_DAY if tz is None else _FIXED_DAY.replace(tzinfo=tz)

    setattr(module, "datetime", FixedToday)  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "datetime", real)  # noqa: B010


def _without_doubled_bos(text: str, tokenizer: Any) -> str:
    """``text`` without the beginning-of-sequence token it writes out (a chat template, a
    template copied from a model card), where the tokenizer adds one itself."""
    return text[len(tokenizer.bos_token) :] if _doubled_bos(text, tokenizer) else text


def _doubled_bos(text: str, tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not text.startswith(bos):
        return False
    from das_assert.model_files import tokenized

    ids = tokenized(tokenizer, text)["input_ids"]
    return len(ids) > 1 and ids[0] == ids[1] == tokenizer.bos_token_id


def refuse_doubled_bos(template: str, tokenizer: Any) -> None:
    """Refuse a wrapper given in Python (``PriceFormat(template=...)``) that writes out the BOS
    token the tokenizer adds itself: das.yaml's and the command line's are cut by
    ``resolve_prompt_template``, and the same text must not give other prompts here.

    Raises:
        InvalidArgument: every prompt would begin with two BOS tokens.
    """
    if _doubled_bos(template, tokenizer):
        raise InvalidArgument(
            f"the prompt template starts with {tokenizer.bos_token!r}, the tokenizer's BOS "
            "token, which it adds itself: every prompt would begin with two. Drop it from "
            "PriceFormat(template=...), or pass the text through resolve_prompt_template(text, "
            "model.tokenizer) (das_assert.prompt_templates), as das.yaml and --prompt-template do"
        )


def check_template_fits(template: str, model: Any) -> None:
    """Refuse a resolved template whose plain prompts are already too long for ``model`` (a
    das.yaml ``prompt_template``: checked once at setup, where it failed each test alone).

    Raises:
        InvalidArgument: the default instruction in ``template`` is longer than the model's
            positions (or reads wrongly otherwise: ``data.check_prompts_fit``).
    """
    from das_assert.data import check_prompts_fit
    from das_assert.tasks.price_tagging import PriceFormat

    check_prompts_fit(
        model, [PriceFormat(template=template).render({"lo": 130, "hi": 855, "x": 999})]
    )
