"""Sites inside the shared preamble, and rows that agree past the earliest site: every shortcut
of the engine (a head shared by the batch's rows, a prefix cached per batch or stored for a
fit, one store for every position of a search, sources read once for a whole search) must give
what whole prompts give, where the head it shares reaches up to the earliest site and no
further. Found by mutation testing: no test put a site there."""

from __future__ import annotations

from typing import Any

import torch

from das_assert.data import PromptPair, encode, tokenize
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore, first_layer_needed
from das_assert.runner import BaseRun, shared_source_vectors, source_vectors, tail_blocks
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.tasks.price_format import RenderedPrompt
from das_assert.tasks.price_tagging import prompt_pairs

IN_THE_PREAMBLE = "instruction.first"


def _shifts(loaded: Any, count: int) -> list[Any]:
    generator = torch.Generator().manual_seed(0)
    shifts = [torch.randn(loaded.config.hidden_size, generator=generator) for _ in range(count)]
    return [lambda base, v=v: base + 10 * v for v in shifts]


def test_a_search_reads_a_preamble_positions_sources_as_its_own_pass_does(
    tiny_models: dict[str, Any],
) -> None:
    # Prompts of one phrasing share a long head; the sources' pass must not run it past the
    # earliest position of the search (it read another token there, 0.066 off).
    loaded = tiny_models["llama"]
    tokenized = tokenize(loaded, prompt_pairs("left_boundary", 8, seed=3))
    grid = {p: [Site(1, p)] for p in ("last", IN_THE_PREAMBLE)}
    with sharing(sites=[site for sites in grid.values() for site in sites]):
        for position, sites in grid.items():
            encoded = tokenized.at(parse_position(position))
            with sharing(sites=sites):
                for site in sites:
                    resolved = site.resolve(loaded.model)
                    shared = shared_source_vectors(loaded.model, resolved, encoded)
                    alone = source_vectors(loaded.model, resolved, encoded)
                    torch.testing.assert_close(shared, alone, atol=1e-6, rtol=0)


@torch.no_grad()
def test_every_shortcut_at_a_site_in_the_preamble_gives_the_whole_prompts_logits(
    tiny_models: dict[str, Any],
) -> None:
    loaded = tiny_models["llama"]
    tokenized = tokenize(loaded, prompt_pairs("left_boundary", 8, seed=3))
    encoded = tokenized.at(parse_position(IN_THE_PREAMBLE))
    sites = [Site(layer, IN_THE_PREAMBLE).resolve(loaded.model) for layer in (0, 1)]
    index, mixes = torch.arange(2, 7), _shifts(loaded, 2)

    def whole(site: Any, mix: Any, encoded: Any = encoded) -> torch.Tensor:
        return BaseRun(loaded.model, site, encoded, index, prefix_cache=False).logits(mix)

    plain = [whole(site, mix) for site, mix in zip(sites, mixes, strict=True)]
    assert float((plain[0] - whole(sites[0], None)).abs().max()) > 1e-3  # the shift matters

    def close(got: torch.Tensor, want: torch.Tensor) -> None:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    close(BaseRun(loaded.model, sites[0], encoded, index).logits(mixes[0]), plain[0])
    store = PrefixStore.build(
        loaded.model,
        encoded,
        batch_size=3,
        max_bytes=2**26,
        blocks=tail_blocks(loaded.model, sites),
        first_layer=first_layer_needed(loaded.model, sites),
    )
    assert store is not None
    close(
        BaseRun(loaded.model, sites[0], encoded, index, prefix_store=store).logits(mixes[0]),
        plain[0],
    )
    pairs = list(zip(sites, mixes, strict=True))
    for run in (
        BaseRun(loaded.model, sites[0], encoded, index),
        BaseRun(loaded.model, sites[0], encoded, index, prefix_store=store),
    ):
        for got, want in zip(run.joint_logits(pairs).split(len(index)), plain, strict=True):
            close(got, want)
    # A search over this position and the last: one store for both, a view for each.
    at_last = tokenized.at(parse_position("last"))
    last_sites = [Site(layer, "last").resolve(loaded.model) for layer in (0, 1)]
    grid = [Site(layer, p) for p in (IN_THE_PREAMBLE, "last") for layer in (0, 1)]
    with sharing(sites=grid):
        for sites_here, encoded_here, mix in (
            (sites, encoded, mixes[0]),
            (last_sites, at_last, mixes[1]),
        ):
            with sharing(sites=[Site(s.site.layer, s.site.position) for s in sites_here]):
                view = PrefixStore.shared(
                    loaded.model,
                    encoded_here,
                    batch_size=3,
                    max_bytes=2**26,
                    blocks=tail_blocks(loaded.model, sites_here, encoded_here),
                    first_layer=first_layer_needed(loaded.model, sites_here, encoded_here),
                )
                assert view is not None
                site = sites_here[1]
                got = BaseRun(loaded.model, site, encoded_here, index, prefix_store=view).logits(
                    mix
                )
                close(got, whole(site, mix, encoded_here))


def _prompt(amount: str) -> RenderedPrompt:
    preamble = "Below is an instruction. Say yes if the amount is fine.\nInput: "
    text = f"{preamble}{amount} dollars\nAnswer:"
    return RenderedPrompt(text=text, spans={"amount": (len(preamble), len(preamble) + len(amount))})


@torch.no_grad()
def test_rows_that_agree_past_the_earliest_site_are_intervened_where_each_one_is(
    tiny_models: dict[str, Any],
) -> None:
    # Amounts "5" and "5.25" end at different tokens, and the rows agree past the first one:
    # a whole-prompt batch whose shared head ran to the later site put the earlier row's
    # intervention one token before the head's end (index -1), with no error.
    loaded = tiny_models["llama"]
    pairs = [
        PromptPair(
            base=_prompt(base),
            source=_prompt(source),
            expected="Yes",
            base_expected="Yes",
            variable_index=0,
            inputs={},
            source_expected="Yes",
        )
        for base, source in (("5", "7.25"), ("5.25", "9"))
    ]
    encoded = encode(loaded, pairs, parse_position("amount.last"))
    assert len(set(encoded.base_position.tolist())) == 2
    site = Site(1, "amount.last").resolve(loaded.model)
    (mix,) = _shifts(loaded, 1)
    index = torch.arange(2)
    rows = torch.cat(
        [
            BaseRun(loaded.model, site, encoded, torch.tensor([i]), prefix_cache=False).logits(mix)
            for i in range(2)
        ]
    )
    for prefix_cache in (False, True):
        run = BaseRun(loaded.model, site, encoded, index, prefix_cache=prefix_cache)
        torch.testing.assert_close(run.logits(mix), rows, atol=1e-5, rtol=0)
