"""The wrapper a model reads prompts in: written out, or the tokenizer's own chat template."""

from __future__ import annotations

import pytest
from chat_templates import ALPACA_AS_CHAT, ROLES_CHAT

from das_assert.errors import InvalidArgument
from das_assert.prompt_templates import CHAT, check_prompt_template, resolve_prompt_template
from das_assert.tasks.price_tagging import ALPACA_TEMPLATE, PriceFormat, prompt_pairs


@pytest.fixture
def tokenizer():
    from das_assert.embedded.recipe import build_tokenizer

    return build_tokenizer()


def test_a_written_wrapper_is_used_as_written(tokenizer) -> None:
    wrapper = "Q: {instruction}\nAmount: {amount} dollars\nA:"
    assert resolve_prompt_template(wrapper, tokenizer) == wrapper
    assert resolve_prompt_template(wrapper, None) == wrapper  # no tokenizer needed


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (None, "a text with {instruction} and {amount} slots, or 'chat'"),
        ("Q: {instruction}", "{amount} not at all"),
        ("{instruction} {amount} {amount}", "{amount} twice"),
        ("{amount} dollars. {instruction}", "needs {instruction} before {amount}"),
        # bash's "...\n..." is a backslash and an n: the tokenizer read <unk>s, task accuracy 0.6
        (r"Q: {instruction}\nA: {amount} dollars", "holds \\n as two characters"),
    ],
)
def test_a_wrapper_without_its_slots_once_each_in_order_is_refused(template, problem) -> None:
    assert problem in check_prompt_template(template)
    with pytest.raises(InvalidArgument, match="prompt template"):
        resolve_prompt_template(template, None)


def test_chat_needs_a_tokenizer_with_a_chat_template(tokenizer) -> None:
    assert not getattr(tokenizer, "chat_template", None)  # the embedded model has none
    with pytest.raises(InvalidArgument, match=r"tokenizer has no chat template.*write the wrapper"):
        resolve_prompt_template(CHAT, tokenizer)


def test_a_chat_template_written_as_alpacas_gives_alpacas_wrapper_with_one_bos(tokenizer) -> None:
    """The template writes ``<s>`` and the tokenizer adds one: the wrapper drops the written one,
    so a prompt starts with one beginning-of-sequence token, as under Alpaca's wrapper."""
    tokenizer.chat_template = ALPACA_AS_CHAT
    assert resolve_prompt_template(CHAT, tokenizer) == ALPACA_TEMPLATE


def test_a_written_wrapper_that_starts_with_the_bos_the_tokenizer_adds_keeps_one(
    tokenizer,
) -> None:
    # "<s>[INST] ..." copied from a model card: the prompt started with two <s>, silently.
    wrapper = "[INST] {instruction}\n{amount} dollars [/INST]\n"
    written = tokenizer.bos_token + wrapper
    assert resolve_prompt_template(written, tokenizer) == wrapper
    ids = tokenizer(resolve_prompt_template(written, tokenizer))["input_ids"]
    assert ids[0] == tokenizer.bos_token_id != ids[1]


def test_a_chat_wrapper_renders_the_instruction_and_the_amount_where_they_belong(
    tokenizer,
) -> None:
    tokenizer.chat_template = ROLES_CHAT
    wrapper = resolve_prompt_template(CHAT, tokenizer)
    assert wrapper == "<|user|>\n{instruction}\n\n{amount} dollars<|end|>\n<|assistant|>\n"
    pair = prompt_pairs("left_boundary", 2, seed=0, fmt=PriceFormat(template=wrapper))[0]
    text, (start, end) = pair.base.text, pair.base.spans["amount"]
    assert text.startswith("<|user|>\nPlease say yes only if it costs between ")
    assert text.endswith(" dollars<|end|>\n<|assistant|>\n")
    assert text[end:].startswith(" dollars")
    assert text[start:end].replace(".", "").isdigit()


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ raise_exception('only system messages') }}", "fails on one user message"),
        ("<|user|>{{ messages[0]['content'] | upper }}", "does not carry the user message"),
        ("<|user|>\n", "does not carry the user message"),
    ],
    ids=["raises", "changes the message", "drops the message"],
)
def test_a_chat_template_that_fails_or_changes_the_message_is_refused(
    tokenizer, template: str, problem: str
) -> None:
    tokenizer.chat_template = template
    with pytest.raises(InvalidArgument, match=problem):
        resolve_prompt_template(CHAT, tokenizer)


@pytest.mark.parametrize(
    "header",
    [  # Llama 3.x's, which takes date_string; and one that reads the clock itself
        '{%- if not date_string is defined %}{%- set date_string = strftime_now("%d %b %Y") %}'
        "{%- endif %}Today Date: {{ date_string }}\n",
        'Today: {{ strftime_now("%Y-%m-%d") }}\n',
    ],
    ids=["date_string", "strftime_now"],
)
def test_a_chat_template_that_writes_todays_date_gives_one_wrapper_every_day(
    tokenizer, header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its wrapper, and so every cache key, data record and frozen request, changed each day and
    # between time zones: from the next day on every claim was "not comparable" to its baseline
    import datetime as real

    from transformers.utils import chat_template_utils

    tokenizer.chat_template = header + ROLES_CHAT
    today = resolve_prompt_template(CHAT, tokenizer)
    assert "2024" in today.split("\n")[0]

    class Later(real.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def]
            return real.datetime(2031, 1, 2, 23, 59)

    monkeypatch.setattr(chat_template_utils, "datetime", Later)
    assert resolve_prompt_template(CHAT, tokenizer) == today
    assert chat_template_utils.datetime is Later  # put back as it was


def test_a_wrapper_the_tokenizer_cannot_encode_is_one_clear_error() -> None:
    # Looking for a doubled BOS, the wrapper was encoded with a bare call: a word-level
    # tokenizer with no unknown token raised the tokenizers library's bare Exception.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    inner = Tokenizer(models.WordLevel({"<s>": 0, "Q": 1, ":": 2, "A": 3}, unk_token="[UNK]"))
    inner.pre_tokenizer = pre_tokenizers.Whitespace()
    strict = PreTrainedTokenizerFast(tokenizer_object=inner, bos_token="<s>")
    with pytest.raises(InvalidArgument, match=r"the model's tokenizer cannot encode '<s> Q: "):
        resolve_prompt_template("<s> Q: {instruction}\nAmount: {amount}\nA:", strict)
