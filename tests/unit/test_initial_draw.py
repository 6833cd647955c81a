"""A fit's untrained rotation is drawn once, not again for every site.

The seed gives every site of a joint fit, and every cell of a search with that seed, the same
draw; at d = 4096 the draw and its QR are a fit's largest one-time cost. Oracles: the
interventions built around one draw hold bit for bit what separate draws give, share no tensor
and no parametrization cache, and leave torch's generator where separate draws leave it; the
fits made from them are those made without any sharing.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from das_assert import fit, rotation
from das_assert.data import EncodedPairs, encode
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, fit_alignment, make_interchange
from das_assert.positions import parse_position
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs

CONFIG = FitConfig(epochs=1, batch_size=8, seed=3)


def _counted_draws(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size d of every rotation drawn."""
    drawn: list[int] = []
    original = rotation.random_orthogonal

    def counted(d: int, device: Any = None) -> torch.Tensor:
        drawn.append(d)
        return original(d, device)

    monkeypatch.setattr(rotation, "random_orthogonal", counted)
    return drawn


def _stub_model(d: int) -> Any:
    """What ``_initial_interchanges`` reads of a model: its width and its device."""
    embeddings = SimpleNamespace(weight=torch.zeros(1))
    return SimpleNamespace(
        config=SimpleNamespace(hidden_size=d), get_input_embeddings=lambda: embeddings
    )


def _pairs(variables: list[int]) -> Any:
    return SimpleNamespace(variable_index=torch.tensor(variables))


def _separately_drawn(d: int, n_variables: int, config: FitConfig) -> tuple[Interchange, Any]:
    torch.manual_seed(config.seed)
    interchange = make_interchange(config.method, d, n_variables)
    return interchange, torch.get_rng_state()


def _assert_same_start(built: list[Interchange], drawn: Interchange) -> None:
    expected = drawn.state_dict()
    for interchange in built:
        state = interchange.state_dict()
        assert state.keys() == expected.keys()
        for name, tensor in state.items():
            assert torch.equal(tensor, expected[name]), name
    tensors = [t.data_ptr() for i in built for t in [*i.parameters(), *i.buffers()]]
    assert len(set(tensors)) == len(tensors)  # training one moves no other


@pytest.mark.parametrize("d", [64, 300])  # torch's orthogonal map, and das_assert's own
def test_the_sites_of_a_joint_fit_start_from_one_draw(
    monkeypatch: pytest.MonkeyPatch, d: int
) -> None:
    expected, generator_after = _separately_drawn(d, 2, CONFIG)
    drawn = _counted_draws(monkeypatch)
    torch.manual_seed(99)
    built = fit._initial_interchanges(_stub_model(d), 3, _pairs([0, 1]), CONFIG, 2)
    assert drawn == [d]
    _assert_same_start(built, expected)
    assert torch.equal(torch.get_rng_state(), generator_after)


def test_interventions_from_one_draw_keep_their_own_parametrization_cache() -> None:
    """torch's cache of a parametrized weight is keyed by the module it was registered on, so a
    deep copy would read its original's rotation inside ``parametrize.cached()``, as a fit's
    step does: the joint fit then trained every site with one site's rotation."""
    first, second = fit._initial_interchanges(_stub_model(64), 2, _pairs([0]), CONFIG, 1)
    with torch.no_grad():
        next(second.rotate.parameters()).add_(0.1)
    with torch.nn.utils.parametrize.cached():
        assert not torch.equal(first.rotation_matrix(), second.rotation_matrix())


def test_a_search_block_keeps_the_draw_for_its_other_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, generator_after = _separately_drawn(300, 1, CONFIG)
    drawn = _counted_draws(monkeypatch)
    model = _stub_model(300)
    with sharing():
        first = fit._initial_interchanges(model, 1, _pairs([0]), CONFIG, 1)
        torch.manual_seed(99)  # whatever ran in between
        second = fit._initial_interchanges(model, 2, _pairs([0]), CONFIG, 1)
        assert torch.equal(torch.get_rng_state(), generator_after)
        fit._initial_interchanges(model, 1, _pairs([0]), FitConfig(seed=4), 1)
        fit._initial_interchanges(_stub_model(256), 1, _pairs([0]), CONFIG, 1)
    assert drawn == [300, 300, 256]  # another seed, another width: drawn
    _assert_same_start(first + second, expected)
    fit._initial_interchanges(model, 1, _pairs([0]), CONFIG, 1)
    assert drawn == [300, 300, 256, 300]  # the block ended: nothing kept


def test_a_block_without_prefix_stores_keeps_no_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's session-long block shares only small things; a 7B draw is 64 MiB."""
    drawn = _counted_draws(monkeypatch)
    model = _stub_model(300)
    with sharing(prefix_stores=False):
        for _ in range(2):
            fit._initial_interchanges(model, 1, _pairs([0]), CONFIG, 1)
    assert drawn == [300, 300]


@pytest.fixture
def tiny_train(tiny_llama: Any) -> EncodedPairs:
    return encode(tiny_llama, prompt_pairs("left_boundary", 16, seed=0), parse_position("last"))


def test_fits_from_a_kept_draw_are_the_fits_made_alone(
    tiny_llama: Any,
    tiny_train: EncodedPairs,
    monkeypatch: pytest.MonkeyPatch,
    assert_same_alignment: Callable[..., None],
) -> None:
    sites = [Site(layer, "last").resolve(tiny_llama.model) for layer in (0, 2)]
    alone = [fit_alignment(tiny_llama.model, site, tiny_train, CONFIG) for site in sites]
    drawn = _counted_draws(monkeypatch)
    with sharing():
        shared = [fit_alignment(tiny_llama.model, site, tiny_train, CONFIG) for site in sites]
    assert drawn == [tiny_llama.model.config.hidden_size]
    for kept, single in zip(shared, alone, strict=True):
        assert_same_alignment(kept, single)


@pytest.mark.parametrize("method", ["full", "noop"])
def test_a_method_that_draws_no_rotation_leaves_the_generator_seeded(method: str) -> None:
    # it was left wherever the caller had it: the fit reseeded it before each intervention
    config = FitConfig(method=method, seed=3)
    torch.manual_seed(3)
    expected = torch.get_rng_state()
    torch.manual_seed(99)
    fit._initial_interchanges(_stub_model(64), 2, _pairs([0]), config, 1)
    assert torch.equal(torch.get_rng_state(), expected)
