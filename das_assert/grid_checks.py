"""A search grid's rows and columns checked before any cell trains: two layers that are one
block of the model (``0`` and ``-4`` of four), or two positions on one token of every prompt
(``last`` and ``after:amount+8``), would train the same alignment twice and split one cell's
result between two names. The command line's ``search`` and das.yaml's ``search:`` alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from das_assert.errors import InvalidArgument, SearchNotInModel, SiteError

__all__ = ["check_distinct_tokens", "checked_search", "distinct_blocks"]


def checked_search(session: Any) -> dict[str, Any]:
    """das.yaml's ``search:`` for ``session``'s model ({} if none), each layer and position
    checked against the model and its prompt, and no two naming one cell: an error names the
    key (``DasSession.search_settings``).

    Raises:
        SearchNotInModel: naming das.yaml's key, before any cell trains (a setup error: the
            run stops once, not at every test that asks for the search).
    """
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import CAUSAL_MODELS

    spec = session.settings.search
    where = f"{session.settings.source}: models.{session.settings.key}.search"
    any_claim = sorted(CAUSAL_MODELS)[0]  # the prompt's slots do not depend on the claim
    for key in ("layers", "positions"):
        for value in spec.get(key, []):
            site = Site(value, "last") if key == "layers" else Site(0, value)
            try:
                session.check(any_claim, site)
            except SiteError as exc:  # the layer or slot itself; anything else is not
                raise SearchNotInModel(f"{where}.{key}: {value!r}: {exc}") from None
    if not spec:
        return spec
    try:  # two names of one cell, as the command line's search refuses them
        layers, positions = spec["layers"], spec["positions"]
        distinct_blocks(session.model, layers, positions, "block_output", f"{where}.layers:")
        sample = session.experiment(any_claim, Site(0, positions[0]))
        pairs = sample.pairs(min(sample.n_train, 256), sample.seed)
        check_distinct_tokens(session.model, pairs, positions, f"{where}.positions:")
    except InvalidArgument as exc:
        raise SearchNotInModel(str(exc)) from None
    return spec


def distinct_blocks(
    model: Any, layers: Sequence[int], positions: Sequence[str], component: str, where: str
) -> list[int]:
    """Each of ``layers`` as its block's own number (``-1``: the last), every cell resolved first,
    so a bad cell fails here, not after the cells before it trained.

    Raises:
        InvalidArgument: two of ``layers`` are one block (``where`` names the list); a cell's
            own ``SiteError``.
    """
    from das_assert.sites import Site

    blocks: dict[int, int] = {}
    for layer in layers:
        block = layer
        for position in positions:
            block = Site(layer, position, component).resolve(model.model).layer
        if blocks.setdefault(block, layer) != layer:
            raise InvalidArgument(
                f"{where} {blocks[block]} and {layer} are the same block of this model "
                f"({block}); list each block once"
            )
    return list(blocks)


def check_distinct_tokens(
    model: Any, pairs: list[Any], positions: Sequence[str], where: str
) -> None:
    """Refuse two ``positions`` that land on the same token of every prompt: their cells would
    train the same alignment twice. Resolved on the run's own prompts, as ``check`` shows them.

    Raises:
        InvalidArgument: naming both positions and the token (``where`` names the list).
    """
    from das_assert.data import tokenize
    from das_assert.positions import parse_position

    tokenized = tokenize(model, pairs)
    seen: dict[tuple[bytes, bytes], str] = {}
    for name in positions:
        encoded = tokenized.at(parse_position(name))
        tokens = (
            encoded.base_position.numpy().tobytes(),
            encoded.source_position.numpy().tobytes(),
        )
        first = seen.setdefault(tokens, name)
        if first != name:
            token = int(encoded.base_position[0])
            raise InvalidArgument(
                f"{where} {first} and {name} land on the same token of every prompt "
                f"(token {token} of the first), so their cells would train the same alignment "
                "twice; list one of them"
            )
