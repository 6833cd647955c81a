"""Counterfactual prompt pairs, and their encoding into padded token tensors with named positions.

A ``PromptPair`` is task-agnostic: two rendered prompts, the answer the causal model expects after
the intervention, the base's own answer, and which variable the pair intervenes on. ``tokenize``
turns a list of them into token tensors for one model, and ``TokenizedPairs.at`` resolves a
site's position on each prompt; ``encode`` does both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from das_assert.model_files import tokenized
from das_assert.models import ANSWER_OPTIONS, LoadedModel
from das_assert.positions import Position

if TYPE_CHECKING:
    import torch

__all__ = [
    "EncodedPairs",
    "PromptPair",
    "TokenizedPairs",
    "check_prompts_fit",
    "encode",
    "tokenize",
]


@dataclass(frozen=True)
class PromptPair:
    """A base and a source prompt with the counterfactual answer the causal model predicts.

    Args:
        base / source: the rendered prompts (``text`` and slot ``spans``).
        expected: the answer word after intervening on the pair's variable.
        base_expected: the base prompt's own (factual) answer word.
        variable_index: which of the alignment's variables this pair intervenes on.
        inputs: the causal inputs behind the prompts, for messages (``base``, ``source``).
        answers: the format's answer words, the true one first (``()`` for a pair built by
            hand): what the answers above are checked against.
    """

    base: Any  # RenderedPrompt: .text, .spans
    source: Any
    expected: str
    base_expected: str
    variable_index: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)
    source_expected: str = ""
    answers: tuple[str, ...] = ()


@dataclass
class EncodedPairs:
    """Pairs tokenized for one model: padded ids, resolved positions, answer token ids."""

    def __repr__(self) -> str:
        return f"EncodedPairs(n={len(self)}, position={self.position!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    pairs: list[PromptPair]
    base_ids: torch.Tensor  # (n, t_base)
    base_mask: torch.Tensor
    base_last: torch.Tensor  # (n,) index of each base prompt's last token
    base_position: torch.Tensor  # (n,) the site's token in each base prompt
    source_ids: torch.Tensor  # (n, t_source)
    source_mask: torch.Tensor
    source_position: torch.Tensor
    label_ids: torch.Tensor  # (n,) counterfactual answer token
    base_label_ids: torch.Tensor  # (n,) the base's own answer token
    variable_index: torch.Tensor  # (n,)
    position: str
    # The tokenization these were resolved on (``TokenizedPairs.at``): another position of the
    # same prompts can be resolved from it. None for a selection of rows.
    tokenized: TokenizedPairs | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.pairs)

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> Iterator[torch.Tensor]:
        """Index tensors of ``batch_size`` pairs, shuffled when a generator is given."""
        import torch

        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]

    def select(self, rows: torch.Tensor) -> EncodedPairs:
        """The pairs at ``rows`` (an index tensor), in that order."""
        pairs = [self.pairs[i] for i in rows.tolist()]
        tensors = {
            f.name: getattr(self, f.name)[rows]
            for f in fields(self)
            if f.name not in ("pairs", "position", "tokenized")
        }
        return EncodedPairs(pairs=pairs, position=self.position, **tensors)

    def base_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and attention mask of some base prompts, trimmed to their longest one."""
        return _trim(self.base_ids[index], self.base_mask[index])

    def source_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _trim(self.source_ids[index], self.source_mask[index])


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    length = int(mask.sum(dim=1).max())
    return ids[:, :length], mask[:, :length]


@dataclass
class TokenizedPrompts:
    """One side (base or source) of some pairs, tokenized: padded ids and each token's span."""

    ids: torch.Tensor
    mask: torch.Tensor
    last: torch.Tensor  # (n,) index of each prompt's last token
    offsets: list[list[tuple[int, int]]]  # (start, end) character span of every real token

    def positions(self, prompts: Sequence[Any], position: Position) -> torch.Tensor:
        import torch

        return torch.tensor(
            [
                position.resolve(offsets, prompt.spans, prompt.text)
                for offsets, prompt in zip(self.offsets, prompts, strict=True)
            ]
        )


def _tokenize(model: LoadedModel, prompts: Sequence[Any]) -> TokenizedPrompts:
    import torch

    texts = [prompt.text for prompt in prompts]
    # Python lists, not return_tensors="pt": transformers flattens nested offset lists one
    # element at a time to build a tensor, which costs more than the tokenization itself.
    # Padded here, on the right whatever the tokenizer's own side (positions count from each
    # row's start), with id 0: padding is masked, so any id the model has will do, and a
    # tokenizer without a pad token (a LoadedModel built by hand) needs none.
    encoded = tokenized(model.tokenizer, texts, return_offsets_mapping=True)
    rows = [list(row) for row in encoded["input_ids"]]
    width = max((len(row) for row in rows), default=0)
    lengths = torch.tensor([len(row) for row in rows])
    ids = torch.tensor([row + [0] * (width - len(row)) for row in rows], dtype=torch.long)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    offsets = [list(row) for row in encoded["offset_mapping"]]
    _check_fits_the_model(model, ids, offsets)
    return TokenizedPrompts(ids, mask, lengths - 1, offsets)


def check_prompts_fit(model: LoadedModel, prompts: Sequence[Any]) -> None:
    """Refuse ``prompts`` (rendered) that ``model`` would read wrongly, as their tokenization
    for a fit or an evaluation would: too many tokens for its positions, ids past its
    embedding, a token appended after the text."""
    _tokenize(model, prompts)


def _check_fits_the_model(
    model: LoadedModel, ids: torch.Tensor, offsets: list[list[tuple[int, int]]]
) -> None:
    """Refuse prompts the model would read wrongly: a token the tokenizer appends after the text
    (the answer is read at the last token), ids past the embedding, or more tokens than the
    model's positions."""
    from das_assert.errors import InvalidArgument

    for index, row in enumerate(offsets):
        if row and tuple(row[-1]) == (0, 0):
            token = model.tokenizer.convert_ids_to_tokens(int(ids[index, len(row) - 1]))
            raise InvalidArgument(
                f"the tokenizer of {model.name} appends {token!r} after the text, so the prompt's "
                "last token is not the text's and the answer would be read after it; load the "
                "tokenizer without it (e.g. add_eos_token=False) and save it again"
            )
    vocabulary = model.model.get_input_embeddings().num_embeddings
    largest = int(ids.max()) if ids.numel() else -1
    if largest >= vocabulary:
        raise InvalidArgument(
            f"the tokenizer of {model.name} gives token id {largest}, but the model embeds "
            f"only {vocabulary} ids: the tokenizer is not this model's; save the model's own "
            "tokenizer beside its weights"
        )
    config = model.model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    if isinstance(positions, int) and ids.shape[1] > positions:
        raise InvalidArgument(
            f"a prompt of {ids.shape[1]} tokens is longer than the {positions} positions "
            f"{model.name} was built for; use a shorter prompt (template, prefix) or a model "
            "with more positions"
        )


@dataclass
class TokenizedPairs:
    """Pairs tokenized for one model, before a site's position is resolved on them: one
    tokenization serves every position (a claim's site and its control, a search's grid)."""

    pairs: list[PromptPair]
    base: TokenizedPrompts
    source: TokenizedPrompts
    label_ids: torch.Tensor
    base_label_ids: torch.Tensor
    variable_index: torch.Tensor

    def at(self, position: Position) -> EncodedPairs:
        """The pairs with ``position`` resolved on every base and source prompt."""
        pairs = self.pairs
        return EncodedPairs(
            pairs=pairs,
            base_ids=self.base.ids,
            base_mask=self.base.mask,
            base_last=self.base.last,
            base_position=self.base.positions([p.base for p in pairs], position),
            source_ids=self.source.ids,
            source_mask=self.source.mask,
            source_position=self.source.positions([p.source for p in pairs], position),
            label_ids=self.label_ids,
            base_label_ids=self.base_label_ids,
            variable_index=self.variable_index,
            position=position.name,
            tokenized=self,
        )

    def source_positions(self, position: Position) -> torch.Tensor:
        """``at(position).source_position``, without resolving the base prompts."""
        return self.source.positions([p.source for p in self.pairs], position)

    def base_positions(self, position: Position) -> torch.Tensor:
        """``at(position).base_position``, without resolving the source prompts."""
        return self.base.positions([p.base for p in self.pairs], position)


def tokenize(model: LoadedModel, pairs: Sequence[PromptPair]) -> TokenizedPairs:
    """Tokenize ``pairs`` for ``model``: ids, masks, token spans and answer token ids."""
    import torch

    pairs = list(pairs)
    label_ids = [model.answer_id(p.base.text, p.expected) for p in pairs]
    base_label_ids = [model.answer_id(p.base.text, p.base_expected) for p in pairs]
    _check_answers_apart(model, pairs, label_ids, base_label_ids)
    return TokenizedPairs(
        pairs=pairs,
        base=_tokenize(model, [p.base for p in pairs]),
        source=_tokenize(model, [p.source for p in pairs]),
        label_ids=torch.tensor(label_ids),
        base_label_ids=torch.tensor(base_label_ids),
        variable_index=torch.tensor([p.variable_index for p in pairs]),
    )


def _check_answers_apart(
    model: LoadedModel, pairs: list[PromptPair], label_ids: list[int], base_label_ids: list[int]
) -> None:
    """Refuse answer words that are one token for this tokenizer (``Yes`` and ``YES`` for one
    that lowercases): the model could not tell them apart, and every label would be one."""
    from das_assert.errors import InvalidArgument

    words: dict[int, set[str]] = {}
    for pair, label, base_label in zip(pairs, label_ids, base_label_ids, strict=True):
        words.setdefault(label, set()).add(pair.expected)
        words.setdefault(base_label, set()).add(pair.base_expected)
    for token, same in words.items():
        if len(same) > 1:
            (piece,) = model.tokenizer.convert_ids_to_tokens([token])
            raise InvalidArgument(
                f"the answers {sorted(same)} are one token, {piece!r}, for this tokenizer: "
                f"the model cannot say which it means. Choose answer words that tokenize apart "
                f"({ANSWER_OPTIONS})"
            )


def encode(model: LoadedModel, pairs: Sequence[PromptPair], position: Position) -> EncodedPairs:
    """Tokenize ``pairs`` for ``model`` and resolve ``position`` on every base and source prompt."""
    return tokenize(model, pairs).at(position)
