"""One rule resolves the answer token for differently built tokenizers."""

from __future__ import annotations

import pytest

from das_assert.errors import InvalidArgument
from das_assert.models import answer_token_id


@pytest.fixture(scope="module")
def word_level():
    from das_assert.embedded.recipe import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def byte_level_bpe():
    """A GPT-2 style byte-level BPE tokenizer, trained here on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["Answer: Yes", "Answer: No", "### Response:\nYes", "### Response:\nNo"] * 50
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


def test_word_level_answer_after_a_newline_is_the_bare_word(word_level):
    token = answer_token_id(word_level, "### Response:\n", "Yes")
    assert word_level.convert_ids_to_tokens(token) == "Yes"


def test_byte_level_answer_after_a_space_carries_the_space_marker(byte_level_bpe):
    token = answer_token_id(byte_level_bpe, "Answer:", " Yes")
    assert byte_level_bpe.convert_ids_to_tokens(token) == "ĠYes"


def test_byte_level_answer_after_a_newline_is_the_bare_word(byte_level_bpe):
    token = answer_token_id(byte_level_bpe, "### Response:\n", "Yes")
    assert byte_level_bpe.convert_ids_to_tokens(token) == "Yes"


def test_an_answer_split_into_several_tokens_is_refused(word_level):
    with pytest.raises(InvalidArgument, match="not a single token"):
        answer_token_id(word_level, "### Response:\n", "Yes No")


def test_an_unknown_answer_word_is_refused(word_level):
    with pytest.raises(InvalidArgument, match=r"unknown to the tokenizer|not a single token"):
        answer_token_id(word_level, "### Response:\n", "Maybe")


def test_a_tokenizer_that_loses_the_prompt_is_named_not_the_answer_words() -> None:
    # A Qwen2 model given another model's tokenizer files loaded as Qwen2Tokenizer and turned
    # every text into one unknown token; the error blamed the answer words, which cannot mend it.
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    lost = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
        unk_token="<unk>",
    )
    with pytest.raises(InvalidArgument, match="special or unknown tokens only") as err:
        answer_token_id(lost, "Please say yes only if it costs between 1.30 and 8.55", "Yes")
    assert "--answers" not in str(err.value)


def test_an_answer_the_tokenizer_drops_names_the_tokenizer_files() -> None:
    # The error said "it adds []" and asked for other answer words
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "Answer": 1, ":": 2}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    inner.normalizer = normalizers.Replace("Yes", "")  # as a broken normalizer would
    inner.pre_tokenizer = pre_tokenizers.Whitespace()
    dropping = PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="<unk>")
    with pytest.raises(InvalidArgument, match="adds no token for the answer ' Yes'") as err:
        answer_token_id(dropping, "Answer:", " Yes")
    assert "tokenizer_config.json and tokenizer.json" in str(err.value)
    assert "adds []" not in str(err.value)


def test_an_answer_that_merges_with_the_prompt_is_named_as_such(byte_level_bpe) -> None:
    with pytest.raises(InvalidArgument, match="'s' merges with the prompt's last token"):
        answer_token_id(byte_level_bpe, "### Response:\nYe", "s")


def test_a_prompt_whose_trailing_space_merges_with_the_answer_is_told_to_drop_it(
    byte_level_bpe,
) -> None:
    # "Answer: " + "Yes" reads as ['Answer', ':', 'ĠYes']: the advice was to end the prompt in
    # a space, which it did.
    with pytest.raises(InvalidArgument, match="end the prompt template without ' '") as err:
        answer_token_id(byte_level_bpe, "Answer: ", "Yes")
    assert "end the prompt in a separator" not in str(err.value)
    said = str(err.value)
    assert "(' Yes' and the other likewise: --answers TRUE FALSE on the command line" in said
    assert "under pytest, das.yaml's answers: [TRUE, FALSE] in this model's entry" in said
    token = answer_token_id(byte_level_bpe, "Answer:", " Yes")  # the advice, taken
    assert byte_level_bpe.convert_ids_to_tokens(token) == "ĠYes"


def test_a_prompt_whose_trailing_newline_reads_as_a_space_is_told_what_to_do(
    byte_level_bpe,
) -> None:
    # A normalizer that turns "\n" into a space (SentencePiece's nmt_nfkc does) merges it with
    # the answer: the advice was to end the prompt in a separator, which it did.
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    inner = byte_level_bpe.backend_tokenizer
    spacing = PreTrainedTokenizerFast(tokenizer_object=inner.__class__.from_str(inner.to_str()))
    spacing.backend_tokenizer.normalizer = normalizers.Replace("\n", " ")
    with pytest.raises(InvalidArgument, match=r"trailing '\\n' and the answer as one token") as err:
        answer_token_id(spacing, "Answer:\n", "Yes")
    assert "end the prompt in a separator" not in str(err.value)
    assert "end the prompt template without '\\n'" in str(err.value)
    token = answer_token_id(spacing, "Answer:", " Yes")  # the advice, taken
    assert spacing.convert_ids_to_tokens(token) == "ĠYes"


def test_a_tokenizer_that_cannot_encode_a_prompt_is_one_clear_error() -> None:
    # A word-level tokenizer whose unknown token is not in its vocabulary raised a bare
    # Exception ("WordLevel error: Missing [UNK] token") out of every fit and CLI command.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from das_assert.model_files import tokenized

    inner = Tokenizer(models.WordLevel({"Answer": 0, ":": 1, "Yes": 2}, unk_token="[UNK]"))
    inner.pre_tokenizer = pre_tokenizers.Whitespace()
    strict = PreTrainedTokenizerFast(tokenizer_object=inner)
    assert tokenized(strict, ["Answer:", "Answer: Yes"])["input_ids"] == [[0, 1], [0, 1, 2]]
    with pytest.raises(InvalidArgument, match=r"cannot encode 'Answer: Maybe': Exception: Word"):
        tokenized(strict, ["Answer: Yes", "Answer: Maybe"], return_offsets_mapping=True)
    with pytest.raises(InvalidArgument, match=r"cannot encode 'Answer: Maybe'"):
        answer_token_id(strict, "Answer: Maybe", " Yes")


def test_answer_words_that_are_one_token_for_the_tokenizer_are_refused() -> None:
    # A tokenizer that lowercases made "Yes" and "YES" one label: the fit ran to a verdict
    # with a majority label of 1.000.
    from types import SimpleNamespace

    from das_assert.data import tokenize
    from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

    pairs = prompt_pairs("left_boundary", 40, seed=0, fmt=PriceFormat(answers=("Yes", "YES")))
    lowercasing = SimpleNamespace(
        answer_id=lambda prompt, word: {"yes": 7, "no": 8}[word.lower()],
        tokenizer=SimpleNamespace(convert_ids_to_tokens=lambda ids: ["yes" for _ in ids]),
    )
    with pytest.raises(InvalidArgument, match=r"the answers \['YES', 'Yes'\] are one token, 'yes'"):
        tokenize(lowercasing, pairs)  # type: ignore[arg-type]
