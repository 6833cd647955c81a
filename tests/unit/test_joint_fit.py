"""Several sites at one position trained together: one pass per step for all of them.

Oracles: ``BaseRun.joint_logits`` against one ``logits`` pass per site, and ``fit_alignments``
against one ``fit_alignment`` per site. Rows of a batch never interact, so they agree up to float
rounding (a batched matrix product may round differently from a smaller one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from das_assert import fit
from das_assert.data import EncodedPairs, encode
from das_assert.errors import InvalidArgument, TrainingDiverged
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment, fit_alignments
from das_assert.positions import parse_position
from das_assert.runner import BaseRun, source_vectors
from das_assert.sharing import sharing
from das_assert.sites import ResolvedSite, Site
from das_assert.tasks.phrasings import TRAIN_PREFIXES
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")
CONFIG = FitConfig(epochs=2, batch_size=8, lr_rotation=1e-2, joint_cells_mib=64)


def mixed_lengths(loaded: Any, n: int = 6) -> EncodedPairs:
    """Pairs in the default format and under an irrelevant prefix: prompts of several lengths."""
    pairs = prompt_pairs("left_boundary", n, seed=3)
    pairs += prompt_pairs("left_boundary", n, seed=4, fmt=PriceFormat(prefix=TRAIN_PREFIXES[0]))
    return encode(loaded, pairs, parse_position("last"))


def _mixes(
    loaded: Any, sites: list[ResolvedSite], encoded: EncodedPairs, index: torch.Tensor
) -> list[tuple[ResolvedSite, Callable[[torch.Tensor], torch.Tensor]]]:
    """Each site with a random-rotation interchange of its own source vectors."""
    d = loaded.model.config.hidden_size
    variables = encoded.variable_index[index]
    out = []
    for seed, site in enumerate(sites):
        interchange = Interchange.random_rotation(d, [d // 2], seed=seed)
        source = source_vectors(loaded.model, site, encoded)[index]

        def mix(base: torch.Tensor, source: torch.Tensor = source, i: Any = interchange) -> Any:
            return i(base, source, variables, hard=True)

        out.append((site, mix))
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_one_joint_pass_gives_each_sites_logits(
    tiny_models: dict[str, Any], arch: str, prefix_cache: bool
) -> None:
    loaded = tiny_models[arch]
    encoded = mixed_lengths(loaded)
    sites = [Site(layer, "last").resolve(loaded.model) for layer in (2, 0, 1)]
    sites.append(Site(1, "last", "block_input").resolve(loaded.model))
    index = torch.arange(len(encoded))
    interventions = _mixes(loaded, sites, encoded, index)
    run = BaseRun(loaded.model, sites[0], encoded, index, prefix_cache=prefix_cache)
    together = run.joint_logits(interventions).split(len(index))
    for (site, mix), joint in zip(interventions, together, strict=True):
        alone = BaseRun(loaded.model, sites[0], encoded, index, prefix_cache=prefix_cache)
        torch.testing.assert_close(joint, alone.logits(mix, site=site), rtol=0, atol=2e-5)
    # The prefix cache the joint pass repeated is still the batch's own for a later pass.
    if prefix_cache:
        site, mix = interventions[1]
        fresh = BaseRun(loaded.model, sites[0], encoded, index).logits(mix, site=site)
        torch.testing.assert_close(run.logits(mix, site=site), fresh, rtol=0, atol=1e-6)


@pytest.fixture
def same_fit(assert_same_alignment: Callable[..., None]) -> Callable[..., None]:
    """``assert_same_alignment``, and the same site and the same boxes all along the way."""

    def check(joint: FittedAlignment, alone: FittedAlignment) -> None:
        assert_same_alignment(joint, alone)
        assert joint.site.site == alone.site.site
        assert [h["widths"] for h in joint.history] == [h["widths"] for h in alone.history]

    return check


@pytest.fixture
def tiny_fit(tiny_models: dict[str, Any]) -> tuple[Any, EncodedPairs, list[ResolvedSite]]:
    loaded = tiny_models["llama"]
    train = encode(loaded, prompt_pairs("left_boundary", 24, seed=0), parse_position("last"))
    sites = [Site(layer, "last").resolve(loaded.model) for layer in (0, 1, 2)]
    return loaded, train, sites


def test_sites_trained_together_learn_what_each_learns_alone(
    tiny_fit: Any, same_fit: Callable[..., None]
) -> None:
    loaded, train, sites = tiny_fit
    together = fit_alignments(loaded.model, sites, train, CONFIG)
    for site, joint in zip(sites, together, strict=True):
        same_fit(joint, fit_alignment(loaded.model, site, train, CONFIG))


def _counted_groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of sites of every group ``fit`` trains."""
    sizes: list[int] = []
    original = fit._fit_group

    def counted(model: Any, sites: Any, *args: Any) -> Any:
        sizes.append(len(sites))
        return original(model, sites, *args)

    monkeypatch.setattr(fit, "_fit_group", counted)
    return sizes


def test_a_search_block_trains_its_positions_sites_in_the_first_fit(
    tiny_fit: Any, monkeypatch: pytest.MonkeyPatch, same_fit: Callable[..., None]
) -> None:
    loaded, train, sites = tiny_fit
    alone = [fit_alignment(loaded.model, site, train, CONFIG) for site in sites]
    groups = _counted_groups(monkeypatch)
    planned = [Site(layer, "last") for layer in (0, 1, 2)] + [Site(1, "amount.last")]
    with sharing(sites=planned):
        fitted = [fit_alignment(loaded.model, site, train, CONFIG) for site in sites]
        assert groups == [3]  # one joint fit; the other position's site is not in it
        other = FitConfig(epochs=1, batch_size=8, joint_cells_mib=64)
        fit_alignment(loaded.model, sites[1], train, other)  # another config: not handed over
    assert groups == [3, 1]  # and no second joint fit of every site for it
    for joint, single in zip(fitted, alone, strict=True):
        same_fit(joint, single)


def test_by_default_every_site_of_a_search_block_fits_alone(
    tiny_fit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, train, sites = tiny_fit
    groups = _counted_groups(monkeypatch)
    with sharing(sites=[Site(layer, "last") for layer in (0, 1, 2)]):
        for site in sites:
            fit_alignment(loaded.model, site, train, FitConfig(epochs=1, batch_size=8))
    assert groups == [1, 1, 1]


def test_a_diverged_joint_fit_leaves_each_site_to_fit_alone(
    tiny_fit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, train, sites = tiny_fit
    original = fit._fit_group
    groups: list[int] = []

    def diverging(model: Any, group: Any, *args: Any) -> Any:
        groups.append(len(group))
        if len(group) > 1:
            raise TrainingDiverged("one cell's loss became nan")
        return original(model, group, *args)

    monkeypatch.setattr(fit, "_fit_group", diverging)
    with sharing(sites=[Site(layer, "last") for layer in (0, 1, 2)]):
        fitted = [fit_alignment(loaded.model, site, train, CONFIG) for site in sites]
    assert groups == [3, 1, 1, 1]
    assert [f.site for f in fitted] == sites


def test_the_memory_budget_splits_the_sites_into_groups(
    tiny_fit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, train, sites = tiny_fit
    config = loaded.model.config
    # One copy of a batch's KV cache: rows x tokens x layers x (keys, values) x d x 4 bytes.
    copy = 8 * train.base_ids.shape[1] * config.num_hidden_layers * 2 * config.hidden_size * 4
    for mib, expected in ((0, 1), (1, 2**20 // copy), (64, 3)):
        budget = FitConfig(batch_size=8, joint_cells_mib=mib)
        assert fit._joint_group_size(loaded.model, train, budget, 3) == max(1, min(3, expected))
    groups = _counted_groups(monkeypatch)
    fit_alignments(loaded.model, sites, train, FitConfig(epochs=1, joint_cells_mib=0))
    assert groups == [1, 1, 1]
    monkeypatch.setattr(fit, "_joint_group_size", lambda *args: 2)
    groups.clear()
    fit_alignments(loaded.model, sites, train, FitConfig(epochs=1, joint_cells_mib=64))
    assert groups == [2, 1]


def test_a_negative_joint_budget_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="joint_cells_mib=-1; use 0 to train every site"):
        FitConfig(joint_cells_mib=-1)


def _recorded_task_losses(monkeypatch: pytest.MonkeyPatch) -> list[list[float]]:
    """Each training step's task loss per site, as ``fit._losses`` computed it."""
    steps: list[list[float]] = []
    original = fit._losses

    def recorded(interchanges: Any, logits: Any, labels: Any, config: Any) -> Any:
        task_losses, losses = original(interchanges, logits, labels, config)
        steps.append([float(loss.detach()) for loss in task_losses])
        return task_losses, losses

    monkeypatch.setattr(fit, "_losses", recorded)
    return steps


def test_each_sites_history_is_its_own_task_loss(
    tiny_fit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither another site's loss nor the loss with its boundary penalty: the History's "loss"
    # is the task loss of the site it belongs to.
    loaded, train, sites = tiny_fit
    steps = _recorded_task_losses(monkeypatch)
    together = fit_alignments(loaded.model, sites, train, CONFIG)
    assert len(set(steps[-1])) == len(sites)  # the sites' losses differ: they can be told apart
    for cell, fitted in enumerate(together):
        assert fitted.history
        assert [h["loss"] for h in fitted.history] == [
            round(steps[h["step"] - 1][cell], 5) for h in fitted.history
        ]


def test_a_joint_fit_one_of_whose_sites_diverges_stops_naming_that_site(
    tiny_fit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A NaN in one site's loss went unnoticed (an alignment of NaNs returned), or was blamed
    # on the first site; fit_alignment then fits each cell alone.
    loaded, train, sites = tiny_fit
    original = fit._losses
    calls = [0]

    def second_site_diverges(interchanges: Any, logits: Any, labels: Any, config: Any) -> Any:
        task_losses, losses = original(interchanges, logits, labels, config)
        calls[0] += 1
        if calls[0] >= 2:
            losses[1] = losses[1] * float("nan")
        return task_losses, losses

    monkeypatch.setattr(fit, "_losses", second_site_diverges)
    with pytest.raises(TrainingDiverged, match=re.escape(f"at {sites[1].site}")):
        fit_alignments(loaded.model, sites, train, CONFIG)
