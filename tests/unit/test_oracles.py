"""Oracle tests: das_assert's interventions against patching written by hand with plain torch.

The hand-written side never goes through das_assert's sites, positions, hooks, padding or
featurizers: it finds the decoder blocks by attribute, finds token positions from the tokenizer's
offsets, and runs one unpadded prompt at a time with its own forward hooks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from das_assert import cache_layers, kv_cache, prefix_store
from das_assert.data import EncodedPairs, PromptPair, encode
from das_assert.errors import InvalidArgument, PreconditionFailed
from das_assert.evaluate import Evaluation, evaluate
from das_assert.evaluate import _check_gate as check_gate
from das_assert.experiment import Experiment, run_experiment
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment
from das_assert.model_state import model_version
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore
from das_assert.runner import answer_logits, source_vectors, tail_blocks
from das_assert.sharing import sharing
from das_assert.sites import ResolvedSite, Site, last_attention, parse_site
from das_assert.tasks.phrasings import HELD_OUT_PREFIXES, TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, make_pairs, prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")
N_PAIRS = 16
EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# -- the hand-written side ----------------------------------------------------------------------


def hand_blocks(model: Any, arch: str) -> Any:
    """The decoder blocks, found by attribute for each architecture."""
    if arch == "llama":
        return model.model.layers
    if arch == "gpt2":
        return model.transformer.h
    return model.gpt_neox.layers


def hand_position(tokenizer: Any, prompt: Any, name: str) -> int:
    """The token index of ``last`` or ``amount.last``, from the tokenizer's character offsets."""
    encoded = tokenizer(prompt.text, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if name == "last":
        return len(offsets) - 1
    assert name == "amount.last"
    amount_end = prompt.spans["amount"][1]
    (index,) = [i for i, (start, end) in enumerate(offsets) if end == amount_end and end > start]
    return index


def hidden_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def forward_hook(module: torch.nn.Module, hook: Callable[..., Any]) -> Iterator[None]:
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_one(loaded: Any, text: str) -> torch.Tensor:
    """Logits of the last token of one unpadded prompt."""
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    return loaded.model(input_ids=ids, use_cache=False).logits[0, -1].float()


def hand_grab(loaded: Any, module: torch.nn.Module, text: str, position: int) -> torch.Tensor:
    """The output of ``module`` at token ``position`` when the model reads ``text``."""
    grabbed: dict[str, torch.Tensor] = {}

    def grab(_module: Any, _args: Any, output: Any) -> None:
        grabbed["vector"] = hidden_of(output)[0, position].clone()

    with forward_hook(module, grab):
        run_one(loaded, text)
    return grabbed["vector"]


def hand_patch(
    loaded: Any, module: torch.nn.Module, text: str, position: int, vector: torch.Tensor
) -> torch.Tensor:
    """Last-token logits of ``text`` with ``module``'s output at ``position`` set to ``vector``."""

    def patch(_module: Any, _args: Any, output: Any) -> Any:
        hidden = hidden_of(output).clone()
        hidden[0, position] = vector
        return with_hidden(output, hidden)

    with forward_hook(module, patch):
        return run_one(loaded, text)


def hand_interchange(
    loaded: Any, module: torch.nn.Module, pairs: list[PromptPair], position: str
) -> torch.Tensor:
    """(n, vocab) logits of every base with ``module``'s output replaced by the source's."""
    rows = []
    for pair in pairs:
        source_position = hand_position(loaded.tokenizer, pair.source, position)
        base_position = hand_position(loaded.tokenizer, pair.base, position)
        vector = hand_grab(loaded, module, pair.source.text, source_position)
        rows.append(hand_patch(loaded, module, pair.base.text, base_position, vector))
    return torch.stack(rows)


# -- the das_assert side ------------------------------------------------------------------------


def das_logits(
    loaded: Any,
    site: ResolvedSite | None,
    encoded: EncodedPairs,
    interchange: Interchange | None,
    *,
    batch_size: int = 5,
    hard: bool = True,
    prefix_cache: bool = True,
) -> torch.Tensor:
    """(n, vocab) logits through das_assert's runner, in several batches.

    With ``interchange=None`` and a site, the base prompts run through the same path as an
    intervention (an identity mix), so that the two can be compared bit for bit.
    """
    sources = source_vectors(loaded.model, site, encoded, batch_size=3) if site else None
    chunks = []
    for index in encoded.batches(batch_size):
        if interchange is None or sources is None:
            mix: Any = (lambda base: base) if site is not None else None
            chunks.append(
                answer_logits(loaded.model, site, encoded, index, mix, prefix_cache=prefix_cache)
            )
            continue
        source, variables = sources[index], encoded.variable_index[index]

        def mix(base: torch.Tensor, source: torch.Tensor = source, v: Any = variables) -> Any:
            return interchange(base, source, v, hard=hard)

        chunks.append(
            answer_logits(loaded.model, site, encoded, index, mix, prefix_cache=prefix_cache)
        )
    return torch.cat(chunks)


def prefixed_pairs(n: int, seed: int) -> list[PromptPair]:
    """Pairs whose source has an irrelevant prefix (of varying length) and whose base has none."""
    plain = PriceFormat()
    prefixes = [*TRAIN_PREFIXES, *HELD_OUT_PREFIXES]
    rng = random.Random(seed)
    out = []
    for pair in make_pairs("left_boundary", n, seed=seed):
        source_format = plain.with_(prefix=rng.choice(prefixes))
        out.append(
            PromptPair(
                base=plain.render(pair.base),
                source=source_format.render(pair.source),
                expected=plain.answer(pair.label),
                base_expected=plain.answer(pair.base_label),
                variable_index=pair.variable_index,
            )
        )
    return out


def assert_same_predictions(got: torch.Tensor, want: torch.Tensor, atol: float) -> None:
    assert got.shape == want.shape
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    torch.testing.assert_close(got, want, atol=atol, rtol=0)


# -- a. full-vector interchange equals hand-written patching ------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("position", ["last", "amount.last"])
@pytest.mark.parametrize("prefix_cache", [True, False], ids=["kv_prefix", "whole_prompt"])
@torch.no_grad()
def test_full_interchange_equals_hand_written_patching(
    tiny_models: dict[str, Any], arch: str, layer: int, position: str, prefix_cache: bool
) -> None:
    loaded = tiny_models[arch]
    pairs = prompt_pairs("left_boundary", N_PAIRS, seed=layer)
    encoded = encode(loaded, pairs, parse_position(position))
    site = Site(layer, position).resolve(loaded.model)
    full = Interchange.full(loaded.config.hidden_size)
    got = das_logits(loaded, site, encoded, full, prefix_cache=prefix_cache)
    want = hand_interchange(loaded, hand_blocks(loaded.model, arch)[layer], pairs, position)
    assert_same_predictions(got, want, atol=1e-5)
    plain = das_logits(loaded, site, encoded, None, prefix_cache=prefix_cache)
    if layer == 2 and position != "last":
        # After the last block nothing moves information between tokens: a patch at another
        # token cannot reach the last token's logits.
        assert torch.equal(got, plain)
    else:
        # The oracle is not vacuous: the patch moves the logits by far more than the tolerance.
        assert (plain - want).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", ["last", "amount.last"])
@pytest.mark.parametrize("prefix_cache", [True, False], ids=["kv_prefix", "whole_prompt"])
@torch.no_grad()
def test_full_interchange_equals_hand_patching_when_source_and_base_differ_in_length(
    tiny_models: dict[str, Any], arch: str, position: str, prefix_cache: bool
) -> None:
    loaded = tiny_models[arch]
    pairs = prefixed_pairs(N_PAIRS, seed=1)
    encoded = encode(loaded, pairs, parse_position(position))
    assert (encoded.source_position > encoded.base_position).all()
    assert len(set(encoded.source_mask.sum(dim=1).tolist())) > 1  # the sources are padded
    site = Site(1, position).resolve(loaded.model)
    full = Interchange.full(loaded.config.hidden_size)
    got = das_logits(loaded, site, encoded, full, prefix_cache=prefix_cache)
    want = hand_interchange(loaded, hand_blocks(loaded.model, arch)[1], pairs, position)
    assert_same_predictions(got, want, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", ["last", "amount.last"])
@torch.no_grad()
def test_a_prefix_store_gives_the_logits_of_the_per_batch_prefix_and_of_the_whole_prompt(
    tiny_models: dict[str, Any], arch: str, position: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(
        loaded, prompt_pairs("left_boundary", N_PAIRS, seed=5), parse_position(position)
    )
    site = Site(1, position).resolve(loaded.model)
    store = PrefixStore.build(loaded.model, encoded, batch_size=6, max_bytes=2**26)
    assert store is not None
    assert store.prefix == int(encoded.base_position[0])
    full = Interchange.full(loaded.config.hidden_size)
    sources = source_vectors(loaded.model, site, encoded)
    for index in encoded.batches(5, generator=torch.Generator().manual_seed(0)):

        def mix(base: torch.Tensor, index: torch.Tensor = index) -> torch.Tensor:
            return full(base, sources[index], encoded.variable_index[index], hard=True)

        stored = answer_logits(loaded.model, site, encoded, index, mix, prefix_store=store)
        per_batch = answer_logits(loaded.model, site, encoded, index, mix)
        whole = answer_logits(loaded.model, site, encoded, index, mix, prefix_cache=False)
        assert_same_predictions(stored, per_batch, atol=1e-5)
        assert_same_predictions(stored, whole, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("with_tails", [False, True])
@torch.no_grad()
def test_a_store_made_in_one_pass_holds_what_several_passes_make_and_nothing_more(
    tiny_models: dict[str, Any], arch: str, with_tails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window (one pass) keeps its pass's own tensors rather than copying them (at 7B its
    build held both: the fit's peak): the same numbers as a store filled batch by batch, and no
    view that keeps a whole pass alive."""
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=5), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    blocks = tail_blocks(loaded.model, [site]) if with_tails else None
    passes: list[Any] = []
    rows_pass = prefix_store._rows_pass

    def recording(*args: Any, **kwargs: Any) -> Any:
        passes.append(rows_pass(*args, **kwargs))
        return passes[-1]

    monkeypatch.setattr(prefix_store, "_rows_pass", recording)
    one = PrefixStore.build(loaded.model, encoded, batch_size=8, max_bytes=2**26, blocks=blocks)
    assert one is not None
    assert len(passes) == 1
    own, _ = passes[0]
    if one.head_tokens:  # the pass's own keys are compact copies already: kept, not copied
        assert [k.data_ptr() for k, _ in one.layers] == [k.data_ptr() for k, _ in own]
    several = PrefixStore.build(loaded.model, encoded, batch_size=3, max_bytes=2**26, blocks=blocks)
    assert several is not None
    assert one.nbytes == several.nbytes
    for (keys, values), (want_keys, want_values) in zip(one.layers, several.layers, strict=True):
        torch.testing.assert_close(keys, want_keys, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(values, want_values, atol=1e-6, rtol=1e-5)
        for tensor in (keys, values):
            assert tensor.untyped_storage().nbytes() == tensor.nbytes
    assert set(one.tails) == set(several.tails)
    for block, tail in one.tails.items():
        torch.testing.assert_close(tail.hidden, several.tails[block].hidden, atol=1e-6, rtol=1e-5)
        assert tail.hidden.untyped_storage().nbytes() == tail.hidden.nbytes


def test_a_prefix_store_is_not_built_past_its_memory_budget(
    tiny_models: dict[str, Any],
) -> None:
    loaded = tiny_models["llama"]
    same = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("amount.last"))
    store = PrefixStore.build(loaded.model, same, batch_size=4, max_bytes=2**26)
    assert store is not None
    assert 0 < store.nbytes <= 2**26
    for budget in (store.nbytes - 1, 0):
        assert PrefixStore.build(loaded.model, same, batch_size=4, max_bytes=budget) is None


@pytest.mark.parametrize("arch", ARCHS)
def test_a_store_far_past_its_budget_is_refused_before_any_pass(
    tiny_models: dict[str, Any], arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models[arch]
    same = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("amount.last"))
    store = PrefixStore.build(loaded.model, same, batch_size=4, max_bytes=2**26)
    assert store is not None
    # The config's count is the store's size (grouped-query heads included): the shared head
    # once, the rest of the prefix per row.
    head = store.head_tokens
    assert head >= 8
    per_row = kv_cache.estimated_kv_bytes(loaded.model, len(same), store.prefix - head)
    assert per_row + kv_cache.estimated_kv_bytes(loaded.model, 1, head) == store.nbytes

    def no_pass(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pass ran for a store that cannot fit")

    monkeypatch.setattr(kv_cache, "filled_cache", no_pass)
    budget = store.nbytes // 2 - 1
    assert PrefixStore.build(loaded.model, same, batch_size=4, max_bytes=budget) is None


def _shaped(config: Any) -> Any:
    """A model's config and dtype, without its weights."""
    weight = torch.empty(0, dtype=torch.bfloat16)
    return SimpleNamespace(config=config, parameters=lambda: iter([weight]))


def test_a_source_pass_runs_up_to_four_batches_while_it_holds_less_than_a_step(
    tiny_models: dict[str, Any],
) -> None:
    from transformers import GPT2Config, LlamaConfig

    loaded = tiny_models["llama"]
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("last-1"))

    # Llama-7B: a step's prefix cache is 40 MiB a row, a source pass's layer 7.8 MiB a row.
    assert kv_cache.source_pass_rows(_shaped(LlamaConfig()), encoded, 16) == 64
    # A wide MLP over few layers: a pass of more rows would outgrow the step.
    shallow = LlamaConfig(num_hidden_layers=2, intermediate_size=8 * 4096)
    assert kv_cache.source_pass_rows(_shaped(shallow), encoded, 16) == 16
    assert kv_cache.source_pass_rows(_shaped(GPT2Config(n_layer=48)), encoded, 16) == 64
    assert kv_cache.source_pass_rows(_shaped(SimpleNamespace()), encoded, 16) == 16  # unknown


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_prompts_of_mixed_lengths_share_the_prefix_before_their_earliest_site(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    position = "amount.last"
    # Bases with irrelevant prefixes of different lengths: the site moves from row to row.
    swapped = [replace(p, base=p.source, source=p.base) for p in prefixed_pairs(N_PAIRS, seed=2)]
    encoded = encode(loaded, swapped, parse_position(position))
    assert len(set(encoded.base_position.tolist())) > 1
    assert len(set(encoded.base_last.tolist())) > 1
    site = Site(1, position).resolve(loaded.model)
    store = PrefixStore.build(loaded.model, encoded, batch_size=5, max_bytes=2**26)
    assert store is not None
    assert store.prefix == int(encoded.base_position.min())
    full = Interchange.full(loaded.config.hidden_size)
    sources = source_vectors(loaded.model, site, encoded)
    for index in encoded.batches(6, generator=torch.Generator().manual_seed(1)):

        def mix(base: torch.Tensor, index: torch.Tensor = index) -> torch.Tensor:
            return full(base, sources[index], encoded.variable_index[index], hard=True)

        stored = answer_logits(loaded.model, site, encoded, index, mix, prefix_store=store)
        per_batch = answer_logits(loaded.model, site, encoded, index, mix)
        whole = answer_logits(loaded.model, site, encoded, index, mix, prefix_cache=False)
        assert_same_predictions(stored, whole, atol=1e-5)
        assert_same_predictions(per_batch, whole, atol=1e-5)
    want = hand_interchange(loaded, hand_blocks(loaded.model, arch)[1], swapped, position)
    got = das_logits(loaded, site, encoded, full)
    assert_same_predictions(got, want, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_fit_alignment_learns_the_same_alignment_with_and_without_the_prefix_store(
    tiny_models: dict[str, Any], arch: str, assert_same_alignment: Callable[..., None]
) -> None:
    loaded = tiny_models[arch]
    train = encode(loaded, prompt_pairs("left_boundary", 24, seed=0), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    config = FitConfig(epochs=2, batch_size=8, lr_rotation=1e-2)
    stored = fit_alignment(loaded.model, site, train, config)
    per_batch = fit_alignment(loaded.model, site, train, replace(config, prefix_store_mib=0))
    assert_same_alignment(stored, per_batch)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_store_whose_every_prefix_is_the_shared_head_runs_no_pass(
    tiny_models: dict[str, Any], arch: str, assert_same_alignment: Callable[..., None]
) -> None:
    # block_input of layer 0 keeps no block's output, and with a fixed bracket every token
    # before the amount is shared: the store's pass over zero tokens raised inside the model
    loaded = tiny_models[arch]
    pairs = prompt_pairs("left_boundary", 24, seed=0, bracket=(130, 855))
    train = encode(loaded, pairs, parse_position("amount.first"))
    site = Site(0, "amount.first", "block_input").resolve(loaded.model)
    config = FitConfig(epochs=2, batch_size=8, lr_rotation=1e-2)
    stored = fit_alignment(loaded.model, site, train, config)
    per_batch = fit_alignment(loaded.model, site, train, replace(config, prefix_store_mib=0))
    whole = fit_alignment(loaded.model, site, train, replace(config, prefix_cache=False))
    assert_same_alignment(stored, per_batch)
    assert_same_alignment(stored, whole)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", ["last", "amount.last"])
@torch.no_grad()
def test_a_store_of_some_rows_gives_their_logits_and_is_passed_over_for_the_others(
    tiny_models: dict[str, Any], arch: str, position: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(
        loaded, prompt_pairs("left_boundary", N_PAIRS, seed=3), parse_position(position)
    )
    site = Site(1, position).resolve(loaded.model)
    rows = torch.randperm(N_PAIRS, generator=torch.Generator().manual_seed(0))[:10]
    store = PrefixStore.build(
        loaded.model,
        encoded,
        batch_size=10,
        max_bytes=2**26,
        blocks=tail_blocks(loaded.model, [site]),
        rows=rows,
    )
    assert store is not None
    assert store.head_tokens >= 8  # the preamble, held once
    assert store.layers[0][0].shape[0] == 10
    full = Interchange.full(loaded.config.hidden_size)
    sources = source_vectors(loaded.model, site, encoded)
    outside = torch.tensor(sorted(set(range(N_PAIRS)) - set(rows.tolist())))
    for index in (rows[:4], rows[4:], rows[[7, 2, 5]], outside, torch.cat([rows[:2], outside])):
        assert store.holds(index) == bool(set(index.tolist()) <= set(rows.tolist()))

        def mix(base: torch.Tensor, index: torch.Tensor = index) -> torch.Tensor:
            return full(base, sources[index], encoded.variable_index[index], hard=True)

        stored = answer_logits(loaded.model, site, encoded, index, mix, prefix_store=store)
        whole = answer_logits(loaded.model, site, encoded, index, mix, prefix_cache=False)
        assert_same_predictions(stored, whole, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_fit_whose_store_does_not_fit_runs_its_prefixes_a_window_of_batches_at_a_time(
    tiny_models: dict[str, Any],
    arch: str,
    assert_same_alignment: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = tiny_models[arch]
    train = encode(loaded, prompt_pairs("left_boundary", 24, seed=0), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    config = FitConfig(epochs=2, batch_size=4, lr_rotation=1e-2)
    per_batch = fit_alignment(loaded.model, site, train, replace(config, prefix_store_mib=0))
    windows: list[int] = []
    build = PrefixStore.build.__func__

    def spied(cls: type, *args: Any, rows: Any = None, **kwargs: Any) -> Any:
        if rows is None:
            return None  # the whole fit's store, as if it did not fit its budget
        windows.append(len(rows))
        store = build(cls, *args, rows=rows, **kwargs)
        assert store is not None
        return store

    monkeypatch.setattr(PrefixStore, "build", classmethod(spied))
    windowed = fit_alignment(loaded.model, site, train, config)
    together = prefix_store.prefix_batches(loaded.model, train, 4, 2**30)
    assert together >= 2
    # 6 batches an epoch, `together` to a window, the last window what is left; two epochs.
    assert windows == 2 * [4 * min(together, 6 - first) for first in range(0, 6, together)]
    assert_same_alignment(windowed, per_batch)


def test_prefix_passes_run_up_to_four_batches_while_their_prefixes_fit_the_budget(
    tiny_models: dict[str, Any],
) -> None:
    from transformers import LlamaConfig

    loaded = tiny_models["llama"]
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("last-1"))

    # Llama-7B: 16 rows' prefixes after the shared preamble take about 0.26 GiB, a step's
    # prefix cache (the preamble in every row) about 0.6 GiB: two batches a pass.
    seven_b = _shaped(LlamaConfig())
    assert prefix_store.prefix_batches(seven_b, encoded, 16, 2**30) == 2
    assert prefix_store.prefix_batches(seven_b, encoded, 16, 2**28) == 1
    assert prefix_store.prefix_batches(seven_b, encoded, 16, 0) == 1
    # Where the preamble is most of the prefix, up to four.
    late = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("low.last"))
    assert prefix_store.prefix_batches(seven_b, late, 16, 2**32) == 4


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_the_shared_preamble_runs_once_and_changes_no_prediction(
    tiny_models: dict[str, Any], arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models[arch]
    position = "amount.last"
    encoded = encode(
        loaded, prompt_pairs("left_boundary", N_PAIRS, seed=7), parse_position(position)
    )
    ids, mask = encoded.base_batch(torch.arange(N_PAIRS))
    assert kv_cache.shared_head(ids, mask, ids.shape[1]) >= 20  # the Alpaca preamble and more
    site = Site(1, position).resolve(loaded.model)
    full = Interchange.full(loaded.config.hidden_size)

    def outputs() -> list[torch.Tensor]:
        return [
            source_vectors(loaded.model, site, encoded, batch_size=6),
            das_logits(loaded, site, encoded, full),
            das_logits(loaded, site, encoded, full, prefix_cache=False),
            das_logits(loaded, None, encoded, None),
        ]

    with_head = outputs()
    monkeypatch.setattr(kv_cache, "_MIN_HEAD", 10**6)  # every row runs its whole prompt
    for got, want in zip(with_head, outputs(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        if got.dim() == 2 and got.shape[1] > loaded.config.hidden_size:  # logits
            assert torch.equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_shared_head_is_held_once_and_a_read_only_pass_leaves_it_as_it_was(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", N_PAIRS, seed=3), parse_position("last"))
    ids, mask = encoded.base_batch(torch.arange(N_PAIRS))
    plain = loaded.model(input_ids=ids, attention_mask=mask, use_cache=True)
    plain_layers = cache_layers.layer_tensors(kv_cache.returned_cache(plain))
    for keep in (False, True):
        head, cache = kv_cache.split_head(loaded.model, ids, mask, ids.shape[1], keep=keep)
        assert head >= 20
        before = [(k.clone(), v.clone()) for k, v in cache_layers.layer_tensors(cache)]
        assert all(k.shape[0] == 1 for k, _ in before)  # one row, whatever the batch
        output = kv_cache.run_model(loaded.model, ids[:, head:], mask, use_cache=True, cache=cache)
        torch.testing.assert_close(output.logits, plain.logits[:, head:], atol=1e-5, rtol=0)
        layers = cache_layers.layer_tensors(cache)
        if keep:  # the whole prompt's cache, each row's own, as a plain pass leaves it
            for (k, v), (want_k, want_v) in zip(layers, plain_layers, strict=True):
                torch.testing.assert_close(k, want_k, atol=1e-5, rtol=0)
                torch.testing.assert_close(v, want_v, atol=1e-5, rtol=0)
        else:  # read only: nothing stored, nothing grown
            for (k, v), (old_k, old_v) in zip(layers, before, strict=True):
                assert torch.equal(k, old_k)
                assert torch.equal(v, old_v)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_a_prefix_cache_skips_the_last_mlp_and_keeps_every_layers_keys_and_values(
    tiny_models: dict[str, Any], arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models[arch]
    encoded = encode(loaded, prompt_pairs("left_boundary", N_PAIRS, seed=3), parse_position("last"))
    ids, mask = encoded.base_batch(torch.arange(N_PAIRS))
    p = int(encoded.base_position.min())
    last_mlp = Site(-1).resolve(loaded.model).module.mlp
    calls: list[int] = []
    probe = last_mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        stopped = cache_layers.layer_tensors(
            kv_cache.prefix_cache(loaded.model, ids[:, :p], mask[:, :p])
        )
        assert not calls, "the prefix pass ran the last block's MLP"
        monkeypatch.setattr(kv_cache, "last_attention", lambda model: None)  # the whole decoder
        whole = cache_layers.layer_tensors(
            kv_cache.prefix_cache(loaded.model, ids[:, :p], mask[:, :p])
        )
        assert calls, "without the stop the last block's MLP runs"
    finally:
        probe.remove()
    assert stopped is not None
    assert whole is not None
    assert len(stopped) == len(whole) == loaded.config.num_hidden_layers
    for (k, v), (k_whole, v_whole) in zip(stopped, whole, strict=True):
        assert k.shape[2] == p
        assert torch.equal(k, k_whole)
        assert torch.equal(v, v_whole)


def test_an_unknown_architecture_has_no_attention_to_stop_after() -> None:
    class Unknown(torch.nn.Module):
        config = type("Config", (), {"model_type": "not_a_transformer"})()

    assert last_attention(Unknown()) is None


@torch.no_grad()
def test_the_remembered_preamble_is_never_reused_after_the_weights_change(
    tiny_model_dirs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from das_assert.models import load_model

    loaded = load_model(tiny_model_dirs["llama"])  # a private copy: its weights get edited
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=3), parse_position("last"))
    before = das_logits(loaded, None, encoded, None)
    loaded.model.model.layers[0].mlp.down_proj.weight.mul_(3.0)  # in place, as an edit would
    after = das_logits(loaded, None, encoded, None)
    monkeypatch.setattr(kv_cache, "_MIN_HEAD", 10**6)  # no preamble cache at all
    torch.testing.assert_close(after, das_logits(loaded, None, encoded, None), atol=1e-5, rtol=0)
    assert (after - before).abs().max() > 1e-3  # the edit did change the answers' logits


@torch.no_grad()
def test_the_remembered_preamble_is_never_reused_after_the_model_changes_dtype(
    tiny_model_dirs: dict[str, Any],
) -> None:
    """``model.to(dtype)`` swaps every parameter's data in place of the same object without
    bumping its version: the preamble kept from before must not be read after it (it raised a
    dtype mismatch in attention, or read stale keys and values where the dtypes promote)."""
    from das_assert.models import load_model

    loaded = load_model(tiny_model_dirs["llama"])  # a private copy: it gets converted
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=3), parse_position("last"))
    version = model_version(loaded.model)
    das_logits(loaded, None, encoded, None)  # remembers the preamble's keys and values
    loaded.model.to(torch.float64)
    assert model_version(loaded.model) != version
    got = das_logits(loaded, None, encoded, None)
    ids, mask = encoded.base_ids, encoded.base_mask
    plain = loaded.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    want = plain[torch.arange(len(encoded)), encoded.base_last]
    assert got.dtype == torch.float32  # logits_at's cast of the float64 logits
    torch.testing.assert_close(got, want.float(), atol=1e-9, rtol=0)


@contextmanager
def _zeroed_values(block: Any, how: str) -> Iterator[None]:
    """An ablation of ``block``'s attention values: a forward hook, or a replaced ``forward``."""
    projection = block.self_attn.v_proj
    if how == "hook":
        handle = projection.register_forward_hook(lambda module, args, out: out * 0)
        try:
            yield
        finally:
            handle.remove()
        return
    original = projection.forward
    projection.forward = lambda x: original(x) * 0
    try:
        yield
    finally:
        del projection.forward


@pytest.mark.parametrize("how", ["hook", "forward"])
@torch.no_grad()
def test_no_remembered_pass_is_reused_while_the_model_is_ablated(tiny_llama: Any, how: str) -> None:
    """An ablation by a hook, or by a module's replaced ``forward``, changes no parameter: the
    preamble's keys and values and the base answers remembered from before were read under it
    (a reviewer's script: 4 of 64 answers differed, and task accuracy 0.97 where the ablated
    model scores 0.655)."""
    from das_assert.evaluate import base_answers

    encoded = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=3), parse_position("last"))
    ids, mask, last = encoded.base_ids, encoded.base_mask, encoded.base_last

    def plain() -> torch.Tensor:
        logits = tiny_llama.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        return logits[torch.arange(len(encoded)), last].float()

    intact = plain()
    with sharing(prefix_stores=False):  # as the plugin's session keeps base answers
        das_logits(tiny_llama, None, encoded, None)  # remembers the preamble
        assert torch.equal(base_answers(tiny_llama.model, encoded), intact.argmax(-1))
        with _zeroed_values(tiny_llama.model.model.layers[0], how):
            ablated = plain()
            assert not torch.allclose(ablated, intact, atol=1e-3)
            torch.testing.assert_close(das_logits(tiny_llama, None, encoded, None), ablated)
            assert torch.equal(base_answers(tiny_llama.model, encoded), ablated.argmax(-1))
        # Put back: the memos made before the ablation are good again.
        torch.testing.assert_close(das_logits(tiny_llama, None, encoded, None), intact)


def test_the_remembered_preambles_of_a_model_that_is_gone_are_let_go(
    tiny_model_dirs: dict[str, Any], tiny_llama: Any
) -> None:
    import gc

    from das_assert.models import load_model

    loaded = load_model(tiny_model_dirs["llama"])
    encoded = encode(loaded, prompt_pairs("left_boundary", 4, seed=3), parse_position("last"))
    das_logits(loaded, None, encoded, None)
    assert any(ref() is loaded.model for _, ref, _ in kv_cache._HEADS)
    del loaded
    gc.collect()
    # at once, not at the next pass of another model: a GPU's memory is freed with the model
    assert all(ref() is not None for _, ref, _ in kv_cache._HEADS)
    das_logits(tiny_llama, None, encoded, None)  # the next preamble remembered
    assert all(ref() is not None for _, ref, _ in kv_cache._HEADS)


# -- b. a full box is the full interchange, an empty box is the base run -------------------------


def boundless_with_widths(d: int, widths: list[float], seed: int) -> Interchange:
    torch.manual_seed(seed)
    interchange = Interchange.boundless(d, len(widths))
    with torch.no_grad():
        interchange.widths.copy_(torch.tensor(widths))
    return interchange


@pytest.mark.parametrize("arch", ARCHS)
@given(rotation_seed=st.integers(0, 2**16), pair_seed=st.integers(0, 2**16))
@EXAMPLES
@torch.no_grad()
def test_a_boundless_box_covering_every_coordinate_is_the_full_interchange(
    tiny_models: dict[str, Any], arch: str, rotation_seed: int, pair_seed: int
) -> None:
    loaded = tiny_models[arch]
    d = loaded.config.hidden_size
    encoded = encode(
        loaded, prompt_pairs("left_boundary", 8, seed=pair_seed), parse_position("last")
    )
    site = Site(1, "last").resolve(loaded.model)
    boundless = boundless_with_widths(d, [1.0], rotation_seed)
    assert boundless.hard_widths() == [d]
    assert boundless.orthogonality_error() < 1e-5
    got = das_logits(loaded, site, encoded, boundless)
    want = das_logits(loaded, site, encoded, Interchange.full(d))
    assert_same_predictions(got, want, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
@given(rotation_seed=st.integers(0, 2**16), pair_seed=st.integers(0, 2**16))
@EXAMPLES
@torch.no_grad()
def test_an_empty_hard_box_is_exactly_the_base_run(
    tiny_models: dict[str, Any], arch: str, rotation_seed: int, pair_seed: int
) -> None:
    loaded = tiny_models[arch]
    d = loaded.config.hidden_size
    encoded = encode(
        loaded, prompt_pairs("left_boundary", 8, seed=pair_seed), parse_position("amount.last")
    )
    site = Site(1, "amount.last").resolve(loaded.model)
    boundless = boundless_with_widths(d, [0.0], rotation_seed)
    assert boundless.hard_widths() == [0]
    # The plain forward pass, without any hook, against the intervention on the whole prompt.
    plain = das_logits(loaded, None, encoded, None)
    for interchange in (boundless, Interchange.noop(d)):
        assert torch.equal(
            das_logits(loaded, site, encoded, interchange, prefix_cache=False), plain
        )
    # Through the KV-cached prefix, against the base prompts run the same way.
    same_path = das_logits(loaded, site, encoded, None)
    for interchange in (boundless, Interchange.noop(d)):
        assert torch.equal(das_logits(loaded, site, encoded, interchange), same_path)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_evaluating_an_empty_box_skips_nothing_that_could_differ(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    d = loaded.config.hidden_size
    encoded = encode(
        loaded, prompt_pairs("left_boundary", N_PAIRS, seed=9), parse_position("amount.last")
    )
    site = Site(1, "amount.last").resolve(loaded.model)
    empty = boundless_with_widths(d, [0.0], seed=4)
    evaluation = evaluate(loaded.model, FittedAlignment(empty, site, FitConfig(), 0, 0.0), encoded)
    # The intervention actually run through the hooks predicts what evaluate reports for it.
    ran = das_logits(loaded, site, encoded, empty).argmax(-1)
    assert torch.equal(evaluation.predicted, ran)
    assert torch.equal(evaluation.random_predicted, evaluation.base_predicted)
    assert torch.equal(evaluation.predicted, evaluation.base_predicted)


@torch.no_grad()
def test_a_subset_of_an_evaluation_equals_evaluating_the_subset(
    tiny_models: dict[str, Any],
) -> None:
    loaded = tiny_models["llama"]
    d = loaded.config.hidden_size
    pairs = prompt_pairs("left_and_right_boundary", N_PAIRS, seed=5)
    encoded = encode(loaded, pairs, parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    alignment = FittedAlignment(boundless_with_widths(d, [0.3, 0.3], 2), site, FitConfig(), 0, 0.0)
    whole = evaluate(loaded.model, alignment, encoded)
    for variable in ("left", "right"):
        keep = [i for i, pair in enumerate(pairs) if pair.inputs["variable"] == variable]
        part = whole.subset(lambda pair, v=variable: pair.inputs["variable"] == v)
        alone = evaluate(loaded.model, alignment, encoded.select(torch.tensor(keep)))
        assert [pair.inputs["variable"] for pair in part.test.pairs] == [variable] * len(keep)
        assert torch.equal(part.test.base_ids, encoded.base_ids[keep])
        for name in ("predicted", "base_predicted", "random_predicted"):
            assert torch.equal(getattr(part, name), getattr(alone, name)), name
        assert part.baselines() == alone.baselines()
    with pytest.raises(InvalidArgument, match="no pair"):
        whole.subset(lambda pair: False)


def forbid_source_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, an evaluation that runs a source pass fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the source pass ran after the task-accuracy gate had failed")

    monkeypatch.setattr("das_assert.evaluate.shared_source_vectors", refuse)


@torch.no_grad()
def test_a_task_accuracy_gate_that_passes_changes_no_prediction_and_one_that_fails_stops_early(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models["llama"]
    d = loaded.config.hidden_size
    encoded = encode(
        loaded, prompt_pairs("left_boundary", N_PAIRS, seed=12), parse_position("last")
    )
    site = Site(1, "last").resolve(loaded.model)
    alignment = FittedAlignment(boundless_with_widths(d, [0.4], 3), site, FitConfig(), 0, 0.0)
    plain = evaluate(loaded.model, alignment, encoded, batch_size=4)
    wrong = (plain.base_predicted != encoded.base_label_ids).nonzero().flatten().tolist()
    assert wrong, "the random tiny model should miss some base prompts"
    # A gate at exactly the measured accuracy passes, with the evaluation unchanged.
    gated = evaluate(
        loaded.model, alignment, encoded, batch_size=4, min_task_accuracy=plain.task_accuracy
    )
    for name in ("predicted", "base_predicted", "random_predicted"):
        assert torch.equal(getattr(gated, name), getattr(plain, name)), name
    # One more right answer than the model gives: it fails, whatever the batch size.
    above = (N_PAIRS - len(wrong) + 1) / N_PAIRS
    for batch_size in (1, 4, N_PAIRS):
        with pytest.raises(PreconditionFailed, match="task accuracy"):
            evaluate(
                loaded.model, alignment, encoded, batch_size=batch_size, min_task_accuracy=above
            )
    # A gate the first batch already fails never runs a source pass or an intervention.
    forbid_source_passes(monkeypatch)
    with pytest.raises(PreconditionFailed, match=rf"first {wrong[0] + 1} of {N_PAIRS}"):
        evaluate(loaded.model, alignment, encoded, batch_size=wrong[0] + 1, min_task_accuracy=1.0)


@torch.no_grad()
def test_a_saved_alignment_on_a_model_that_fails_the_task_stops_at_the_first_batch(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The regression gate's case: a model update broke the task; no intervention runs."""
    loaded = tiny_models["llama"]
    d = loaded.config.hidden_size
    experiment = Experiment(
        hypothesis="left_boundary",
        site=parse_site("block_output[layer=1, pos=last]"),
        n_train=8,
        n_test=16,
        min_task_accuracy=1.0,  # no random model answers every prompt
    )
    site = experiment.site.resolve(loaded.model)
    saved = FittedAlignment(boundless_with_widths(d, [0.4], 3), site, FitConfig(), 8, 0.0)
    forbid_source_passes(monkeypatch)
    with pytest.raises(
        PreconditionFailed, match=r"of 16 base prompts answered correctly; gate 1\.0.*--das-min"
    ):
        run_experiment(loaded, experiment, fitted=saved)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 2000), data=st.data(), gate=st.floats(0, 1))
def test_the_gate_decides_as_the_task_accuracy_compares(
    n: int, data: st.DataObject, gate: float
) -> None:
    right = data.draw(st.integers(0, n))
    fails = right / n < gate  # exact, as Evaluation.task_accuracy and the precondition count
    if fails:
        with pytest.raises(PreconditionFailed):
            check_gate(n - right, n, n, gate)
    else:
        check_gate(n - right, n, n, gate)


def test_an_accuracy_exactly_at_the_gate_passes_it() -> None:
    check_gate(240, 800, 800, 0.7)  # 560 of 800 is 0.7; float32's 0.699999988 failed it


def test_baselines_are_exact_proportions_of_the_pairs(tiny_models: dict[str, Any]) -> None:
    loaded = tiny_models["llama"]
    encoded = encode(loaded, prompt_pairs("left_boundary", N_PAIRS, seed=8), parse_position("last"))
    labels = encoded.label_ids
    wrong = labels + 1
    base = torch.where(torch.arange(N_PAIRS) < 3, labels, wrong)  # 3 of 16 as the label says
    evaluation = Evaluation(encoded, labels.clone(), base, wrong, 0.0)
    assert evaluation.baselines()["noop"] == 3 / 16
    assert evaluation.baselines()["random_rotation"] == 0.0
    assert isinstance(evaluation.task_accuracy, float)


def test_the_per_variable_lines_count_each_variable_from_its_own_pairs(
    tiny_models: dict[str, Any],
) -> None:
    from das_assert.messages import by_variable_lines
    from das_assert.metrics import wilson_interval

    loaded = tiny_models["llama"]
    pairs = prompt_pairs("left_and_right_boundary", 40, seed=3)
    encoded = encode(loaded, pairs, parse_position("last"))
    labels, base = encoded.label_ids, encoded.base_label_ids
    wrong = torch.where(labels == base, labels + 1, base)  # every intervened answer wrong ...
    right_box = encoded.variable_index == 1
    predicted = torch.where(right_box, labels, wrong)  # ... but where ``right`` was swapped
    evaluation = Evaluation(encoded, predicted, base.clone(), wrong, 0.0)
    lines = by_variable_lines(evaluation, ("left", "right"))
    want = []
    for k, name in enumerate(("left", "right")):
        mine = [p for p in pairs if p.variable_index == k]
        must_change = sum(p.expected != p.base_expected for p in mine)
        stay = len(mine) - must_change
        did, kept = (must_change, stay) if k == 1 else (0, 0)
        noop = stay / len(mine)
        changed = (
            f"{did} of the {must_change} answers that must change did"
            if must_change
            else "no answer must change"
        )
        low, high = wilson_interval(did + kept, len(mine))
        want.append(
            f"  {name:<10} IIA {(did + kept) / len(mine):.3f} (n={len(mine)}, 95% CI "
            f"[{low:.3f}, {high:.3f}]), no-op {noop:.3f}: {changed}, {kept} of the {stay} that "
            "must stay did"
        )
    assert lines == want
    one_variable = evaluation.subset(lambda pair: pair.variable_index == 0)
    assert by_variable_lines(one_variable, ("left", "right")) == []


@torch.no_grad()
def test_an_evaluation_out_of_gpu_memory_halves_its_batch_and_predicts_the_same(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of more than 4 pairs raises CUDA's out-of-memory error (faked: no GPU here)."""
    loaded = tiny_models["llama"]
    d = loaded.config.hidden_size
    encoded = encode(loaded, prompt_pairs("left_boundary", N_PAIRS, seed=8), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    alignment = FittedAlignment(boundless_with_widths(d, [0.4], 3), site, FitConfig(), 0, 0.0)
    want = evaluate(loaded.model, alignment, encoded, batch_size=4)
    for module in (type(loaded.model), type(loaded.model.base_model)):
        real = module.forward

        def forward(self: Any, *args: Any, real: Any = real, **kwargs: Any) -> Any:
            if kwargs["input_ids"].shape[0] > 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(module, "forward", forward)
    got = evaluate(loaded.model, alignment, encoded, batch_size=16)
    assert got.batch_size == 4
    for name in ("predicted", "base_predicted", "random_predicted"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


@given(
    seed=st.integers(0, 2**16),
    widths=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3),
    data=st.data(),
)
@settings(max_examples=50, deadline=None)
def test_a_hard_box_swaps_exactly_the_rotated_coordinates_inside_it(
    seed: int, widths: list[float], data: st.DataObject
) -> None:
    d = 16
    interchange = boundless_with_widths(d, widths, seed)
    rows = st.lists(st.integers(0, len(widths) - 1), min_size=6, max_size=6)
    variables = torch.tensor(data.draw(rows))
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(len(variables), d, generator=generator)
    source = torch.randn(len(variables), d, generator=generator)
    with torch.no_grad():
        out = interchange(base, source, variables, hard=True)
        rotation = interchange.rotation_matrix()
        mask = interchange.masks(hard=True)[variables]
    # The docstring's formula: h' = [(1 - m) * (h R) + m * (s R)] R^T.
    want = ((1 - mask) * (base @ rotation) + mask * (source @ rotation)) @ rotation.T
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    # Box k holds the coordinates whose centres i + 1/2 lie strictly inside it.
    ends = torch.cumsum(torch.tensor(widths) * d, dim=0)
    starts = ends - torch.tensor(widths) * d
    centres = torch.arange(d) + 0.5
    for k in range(len(widths)):
        inside = (centres > starts[k]) & (centres < ends[k])
        assert interchange.hard_widths()[k] == int(inside.sum())


# -- c. training keeps the rotation orthogonal ---------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    ("hypothesis", "n_variables"), [("left_boundary", 1), ("left_and_right_boundary", 2)]
)
def test_fit_alignment_keeps_the_rotation_orthogonal_and_the_model_frozen(
    tiny_models: dict[str, Any], arch: str, hypothesis: str, n_variables: int
) -> None:
    loaded = tiny_models[arch]
    weights = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    train = encode(loaded, prompt_pairs(hypothesis, 24, seed=0), parse_position("amount.last"))
    site = Site(1, "amount.last").resolve(loaded.model)
    config = FitConfig(epochs=1, batch_size=8, lr_rotation=1e-2)
    fitted = fit_alignment(loaded.model, site, train, config, n_variables=n_variables)
    interchange = fitted.interchange
    assert fitted.n_train == 24
    assert interchange.n_variables == n_variables
    assert interchange.orthogonality_error() < 1e-4
    assert ((interchange.widths >= 0) & (interchange.widths <= 1)).all()
    assert fitted.history[-1]["step"] == 3  # ceil(24 / 8) optimizer steps
    masks = interchange.masks(hard=True)
    assert (masks.sum(dim=0) <= 1).all()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.parametrize("arch", ARCHS)
def test_fit_alignment_actually_moves_the_rotation(tiny_models: dict[str, Any], arch: str) -> None:
    loaded = tiny_models[arch]
    train = encode(loaded, prompt_pairs("left_boundary", 16, seed=0), parse_position("last"))
    site = Site(2, "last").resolve(loaded.model)
    config = FitConfig(epochs=1, batch_size=8, lr_rotation=1e-2)
    # The same seed with a zero learning rate keeps the initial rotation.
    frozen = fit_alignment(loaded.model, site, train, replace(config, lr_rotation=0.0))
    fitted = fit_alignment(loaded.model, site, train, config)
    untrained = frozen.interchange.rotation_matrix().detach()
    trained = fitted.interchange.rotation_matrix().detach()
    assert (trained - untrained).abs().max() > 1e-4
    assert fitted.interchange.orthogonality_error() < 1e-4


# -- d. block_input of layer 0 is the embedding output -----------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", ["last", "amount.last"])
@torch.no_grad()
def test_full_interchange_at_block_input_0_equals_patching_the_embedding_output(
    tiny_models: dict[str, Any], arch: str, position: str
) -> None:
    loaded = tiny_models[arch]
    pairs = prompt_pairs("left_boundary", N_PAIRS, seed=4)
    encoded = encode(loaded, pairs, parse_position(position))
    # GPT-2 adds position embeddings after its token embedding module; the two interventions
    # agree when base and source positions coincide, as in the default format.
    assert torch.equal(encoded.base_position, encoded.source_position)
    site = Site(0, position, "block_input").resolve(loaded.model)
    got = das_logits(loaded, site, encoded, Interchange.full(loaded.config.hidden_size))
    want = hand_interchange(loaded, loaded.model.get_input_embeddings(), pairs, position)
    assert_same_predictions(got, want, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_block_input_of_layer_1_equals_block_output_of_layer_0(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    pairs = prefixed_pairs(N_PAIRS, seed=2)
    encoded = encode(loaded, pairs, parse_position("amount.last"))
    full = Interchange.full(loaded.config.hidden_size)
    after_0 = das_logits(loaded, Site(0, "amount.last").resolve(loaded.model), encoded, full)
    before_1 = das_logits(
        loaded, Site(1, "amount.last", "block_input").resolve(loaded.model), encoded, full
    )
    assert_same_predictions(before_1, after_0, atol=1e-5)


# -- e. several variables own disjoint boxes ----------------------------------------------------


@given(widths=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4), d=st.integers(1, 64))
@settings(max_examples=100, deadline=None)
def test_the_hard_masks_of_different_variables_are_disjoint(widths: list[float], d: int) -> None:
    interchange = Interchange.boundless(d, len(widths))
    with torch.no_grad():
        interchange.widths.copy_(torch.tensor(widths))
    masks = interchange.masks(hard=True)
    assert masks.shape == (len(widths), d)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    for i in range(len(widths)):
        for j in range(i + 1, len(widths)):
            assert not (masks[i] * masks[j]).any(), (i, j)


def test_the_initial_boxes_of_two_variables_split_the_coordinates() -> None:
    masks = Interchange.boundless(32, 2).masks(hard=True)
    assert (masks[0] * masks[1] == 0).all()
    assert masks[0, :16].all()
    assert masks[1, 16:].all()


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_each_pair_intervenes_only_on_its_own_variables_box(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    d = loaded.config.hidden_size
    pairs = prompt_pairs("left_and_right_boundary", N_PAIRS, seed=3)
    encoded = encode(loaded, pairs, parse_position("amount.last"))
    assert set(encoded.variable_index.tolist()) == {0, 1}
    site = Site(1, "amount.last").resolve(loaded.model)
    # Variable 0 owns every coordinate, variable 1 none: variable-0 pairs get the full
    # interchange and variable-1 pairs are left exactly as the base run.
    interchange = boundless_with_widths(d, [1.0, 0.0], seed=0)
    got = das_logits(loaded, site, encoded, interchange)
    full = das_logits(loaded, site, encoded, Interchange.full(d, n_variables=2))
    base = das_logits(loaded, site, encoded, None)
    first = encoded.variable_index == 0
    assert_same_predictions(got[first], full[first], atol=1e-4)
    assert torch.equal(got[~first], base[~first])
