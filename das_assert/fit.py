"""Train an interchange intervention (Boundless DAS by default) at one site.

The recipe follows the paper with its known bugs fixed: Adam with one learning rate for the
rotation (1e-3) and another for the boxes (1e-2), linear warm-up then linear decay counted in
optimizer steps, temperature annealed linearly from 50 to 0.1 per optimizer step, cross-entropy on
the answer token over the full vocabulary, and ``backward()`` on every batch.

The boundary penalty is ``boundary_penalty * (coordinates in the boxes) / 4096``: at d = 4096
(Llama-7B) pyvene's ``1.0 * b`` (b = width / d; the original code's b = width / (d/2) doubled it);
at d = 128 the weight of about 0.03 that calibration found necessary, as the cross-entropy gradient
on a box edge shrinks with d and the paper's penalty gradient does not. Boxes are projected into
[0, 1] after each step, not clamped in the forward pass, so a box that touches zero can grow again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from das_assert import rotation, sharing
from das_assert.data import EncodedPairs
from das_assert.errors import InvalidArgument, TrainingDiverged
from das_assert.featurizers import Interchange, temperature_schedule
from das_assert.fit_config import METHODS, FitConfig, parse_method
from das_assert.fit_readback import History, StepLosses
from das_assert.hooks import site_key
from das_assert.kv_cache import (
    out_of_memory,
    plain_cache,
    prefix_caching_works,
    source_pass_rows,
)
from das_assert.model_state import gradients_on, model_version
from das_assert.prefix_store import PrefixStore, first_layer_needed, prefix_batches
from das_assert.runner import BaseRun, shared_source_vectors, tail_blocks
from das_assert.sites import ResolvedSite, existing_sites
from das_assert.transfer import cuda_devices, seed_generators, to_device

__all__ = [  # METHODS, FitConfig and parse_method live in fit_config; imported here as before
    "METHODS",
    "FitConfig",
    "FittedAlignment",
    "fit_alignment",
    "fit_alignments",
    "make_interchange",
]


def make_interchange(
    method: str,
    d: int,
    n_variables: int,
    *,
    init_fraction: float | None = None,
    device: torch.device | str | None = None,
    boxes_used: Sequence[int] | None = None,
    initial_rotation: torch.Tensor | None = None,
) -> Interchange:
    """The untrained intervention for ``method`` on a d-dimensional site; a learned rotation is
    drawn from torch's global generator and factored on ``device`` (the module's other tensors
    stay on the CPU until it is moved), unless ``initial_rotation`` gives one drawn so before.
    ``boxes_used``: the variables the training pairs intervene on (default: all), which ``full``
    needs to be exactly one."""
    kind, k = parse_method(method)
    if kind == "boundless":
        return Interchange.boundless(
            d,
            n_variables,
            init_fraction=init_fraction,
            device=device,
            initial_rotation=initial_rotation,
        )
    if kind == "das":
        if k is None or k * n_variables > d:
            raise InvalidArgument(
                f"das:{k} with {n_variables} variables needs more than d={d} coordinates; "
                f"choose K <= {d // n_variables}"
            )
        return Interchange.fixed(
            d, k, n_variables, device=device, initial_rotation=initial_rotation
        )
    if kind == "full":
        used = sorted(set(range(n_variables) if boxes_used is None else boxes_used))
        if len(used) != 1:
            raise InvalidArgument(
                f"method 'full' swaps the whole vector, so it cannot interchange {len(used)} "
                "variables separately; intervene on one variable (--variables NAME) or use "
                "boundless or das:K"
            )
        return Interchange.full(d, n_variables, box=used[0])
    return Interchange.noop(d, n_variables)


@dataclass
class FittedAlignment:
    """A trained intervention, where it was trained, and how the training went."""

    def __repr__(self) -> str:
        return f"FittedAlignment({self.site.site}, boundary={self.boundary_dims})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    interchange: Interchange
    site: ResolvedSite
    config: FitConfig
    n_train: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    from_cache: bool = False
    tensor_sha256: str | None = None  # read from a cache entry: its tensors' digest
    trained_seed: int | None = None  # the seed of its training pairs, where known

    @property
    def boundary_dims(self) -> list[int]:
        return self.interchange.hard_widths()

    @property
    def collapsed(self) -> bool:
        """True when a learned box ended with no coordinate: the alignment is the no-op."""
        return self.collapsed_for(range(len(self.boundary_dims)))

    def collapsed_for(self, boxes: Iterable[int]) -> bool:
        """True when a learned box among ``boxes`` (the variables a claim intervenes on) ended
        with no coordinate. A box no training pair used shrinks to 0 under the penalty alone."""
        widths = self.boundary_dims
        return self.interchange.method == "boundless" and any(widths[b] == 0 for b in boxes)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(total - warmup, 1))


def fit_alignment(
    model: Any,
    site: ResolvedSite,
    train: EncodedPairs,
    config: FitConfig | None = None,
    *,
    n_variables: int = 1,
) -> FittedAlignment:
    """Train ``config.method`` at ``site`` on the pairs ``train`` and return the alignment.

    With ``config.joint_cells_mib`` set, inside a ``sharing()`` block that plans sites (a
    search), the first fit at a position trains every planned site of that position at once
    (``fit_alignments``) and the others are handed their alignment when they ask; elsewhere, or
    where the joint fit diverged, it fits alone.
    """
    config = config or FitConfig()
    joint = config.joint_cells_mib > 0 and sharing.prefix_stores_active()
    if not joint or not sharing.planned_sites():
        return fit_alignments(model, [site], train, config, n_variables=n_variables)[0]
    version = model_version(model)

    def key(target: ResolvedSite) -> tuple[Any, ...]:
        return ("alignment", id(train), *site_key(target), config, n_variables, version)

    owners = (model, train)
    found = sharing.lookup(key(site), owners=owners)
    if found is not None:
        return found
    tried = ("joint fit", id(train), version)  # one per pair set: a second config fits alone
    planned = [s for s in sharing.planned_sites() if s.position == train.position]
    sites = _unique([site, *existing_sites(model, planned)])
    if sharing.lookup(tried, owners=owners) is not None or len(sites) == 1:
        return fit_alignments(model, [site], train, config, n_variables=n_variables)[0]
    sharing.remember(tried, True, owners=owners)  # even if it fails
    try:
        fitted = fit_alignments(model, sites, train, config, n_variables=n_variables)
    except TrainingDiverged:  # some cell diverged: each fits alone, and only that one fails
        return fit_alignments(model, [site], train, config, n_variables=n_variables)[0]
    for target, alignment in zip(sites, fitted, strict=True):
        sharing.remember(key(target), alignment, owners=owners)
    return fitted[0]


def fit_alignments(
    model: Any,
    sites: Sequence[ResolvedSite],
    train: EncodedPairs,
    config: FitConfig | None = None,
    *,
    n_variables: int = 1,
) -> list[FittedAlignment]:
    """``fit_alignment`` at each of ``sites`` (all at ``train``'s position), trained together.

    Every alignment starts from the same seed and sees the same batches as it would alone. Each
    step runs its batch's prefix once and one pass for all sites: the batch repeated once per
    site, copy g intervened at site g (``BaseRun.joint_logits``), the sum of the sites' losses
    backpropagated. Rows never interact and the sites share no parameter, so each alignment is
    the one it would be alone up to float rounding (an oracle test). ``config.joint_cells_mib``
    bounds the repeated prefix KV cache; sites beyond it train in further groups (at 0, the
    default, one site at a time).
    """
    config = config or FitConfig()
    if not sites:
        return []
    group = _joint_group_size(model, train, config, len(sites))
    fitted: list[FittedAlignment] = []
    # The fit seeds torch's generators in a fork: the caller's draws go on where they were.
    with torch.random.fork_rng(devices=cuda_devices(model)), gradients_on():
        for start in range(0, len(sites), group):
            fitted += _fit_group(model, sites[start : start + group], train, config, n_variables)
    return fitted


def _fit_group(
    model: Any,
    sites: Sequence[ResolvedSite],
    train: EncodedPairs,
    config: FitConfig,
    n_variables: int,
) -> list[FittedAlignment]:
    started = time.perf_counter()
    interchanges = _initial_interchanges(model, len(sites), train, config, n_variables)
    # The source pass holds less than a training step at the rows it runs (source_pass_rows): the
    # batch a user picks bounds the memory of the whole fit, and the vectors do not depend on it.
    rows = source_pass_rows(model, train, config.batch_size)
    sources = [shared_source_vectors(model, site, train, batch_size=rows) for site in sites]
    groups = _parameter_groups(interchanges, config)
    if not groups:  # full / noop: nothing to learn
        seconds = (time.perf_counter() - started) / len(sites)
        return [
            FittedAlignment(interchange, site, config, len(train), seconds)
            for interchange, site in zip(interchanges, sites, strict=True)
        ]
    optimizer = torch.optim.Adam(groups)
    prefixes = _Prefixes.plan(model, sites, train, config)
    total = math.ceil(len(train) / config.batch_size) * config.epochs
    base_lrs = [g["lr"] for g in groups]
    warmup = max(1, int(config.warmup_fraction * total))
    temperatures = temperature_schedule(*config.temperature, total)
    generator = torch.Generator().manual_seed(config.fit_seed)
    step = 0
    progress = _progress(total, config.progress)
    # Read back only where the device is far ahead anyway: a step's losses are checked at the
    # next step (the device still busy with that step's backward), the history at the end.
    unchecked: StepLosses | None = None
    logged = History()
    for epoch in range(config.epochs):
        batches = list(train.batches(config.batch_size, generator=generator))
        for number, index in enumerate(batches):
            if unchecked is not None:
                unchecked.raise_if_diverged(sites, config)
            prefixes.next_window(batches, number)
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * _lr_factor(step, total, warmup)
            for interchange in interchanges:
                interchange.temperature = temperatures[step]
            interventions = _interventions(
                sites, interchanges, sources, index, train.variable_index[index]
            )
            with torch.nn.utils.parametrize.cached():
                run = BaseRun(
                    model,
                    sites[0],
                    train,
                    index,
                    prefix_cache=prefixes.use_prefix,
                    prefix_store=prefixes.current,
                )
                logits = run.joint_logits(interventions).split(len(index))
                # The run's prefix cache holds the keys and values its pass gathered; the
                # backward keeps what it needs of them and frees each layer's once past it.
                del run
                labels = to_device(train.label_ids[index], logits[0].device)
                task_losses, losses = _losses(interchanges, logits, labels, config)
                unchecked = StepLosses(torch.stack([loss.detach() for loss in losses]), step, epoch)
                # One site: its loss as it is (a sum would add 0.0 first, bit for bit the same,
                # but there is no reason to build it).
                try:
                    (losses[0] if len(losses) == 1 else torch.stack(losses).sum()).backward()
                except RuntimeError as exc:  # out of memory: one error that says what to lower
                    if (error := out_of_memory(exc, len(index))) is None:
                        raise
                    raise error from None
            optimizer.step()
            # Dropped now, not before the next backward: they would sit beside the next forward
            # (the rotation's gradient: 32 MiB at Llama-7B's width, where it is stored packed).
            optimizer.zero_grad(set_to_none=True)
            for interchange in interchanges:
                interchange.clamp_widths_()
            step += 1
            if step % max(1, total // 20) == 0 or step == total:
                logged.add(step, interchanges, task_losses)
            progress.update(1)
            if config.progress:  # reading the loss waits for the device; only for a reader
                progress.set_postfix(
                    loss=f"{task_losses[0].item():.3f}", width=interchanges[0].hard_widths()
                )
    progress.close()
    if unchecked is not None:
        unchecked.raise_if_diverged(sites, config)
    histories = logged.rows(len(sites))
    seconds = (time.perf_counter() - started) / len(sites)  # each site's share of the group
    return [
        FittedAlignment(interchange, site, config, len(train), seconds, history)
        for interchange, site, history in zip(interchanges, sites, histories, strict=True)
    ]


def _initial_interchanges(
    model: Any, count: int, train: EncodedPairs, config: FitConfig, n_variables: int
) -> list[Interchange]:
    """``count`` untrained interventions on the model's device, each starting from the
    rotation the seed draws, as it would start alone, and torch's generator left where that
    draw leaves it.

    The seed gives every site the same rotation, so it is drawn once: at d = 4096 the Gaussian
    (0.1 s on one CPU core) and its QR are a fit's largest one-time cost. Inside a search's
    block (one that shares prefix stores) the draw is also kept for the block's other fits with
    the same seed and width. (Each module is built anew around it: a deep copy of a
    parametrized module would share torch's parametrization cache with the original.)"""
    device = model.get_input_embeddings().weight.device
    d = model.config.hidden_size
    devices = [device.index or 0] if device.type == "cuda" else []  # the draws' device alone
    initial = None
    if parse_method(config.method)[0] in ("boundless", "das"):  # the methods that learn one

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            seed_generators(config.fit_seed, devices)
            return rotation.random_orthogonal(d, device), torch.get_rng_state()

        key = ("initial_rotation", d, str(device), config.fit_seed)
        kept = sharing.prefix_stores_active()
        initial, generator_after = sharing.shared(key, draw) if kept else draw()
        seed_generators(config.fit_seed, devices)  # as the draw leaves each device's generator
        torch.set_rng_state(generator_after)
    else:  # full and noop draw nothing, but a fit of them has always seeded the generator
        seed_generators(config.fit_seed, devices)
    interchanges = []
    for _ in range(count):
        interchange = make_interchange(
            config.method,
            d,
            n_variables,
            init_fraction=config.init_fraction,
            device=device,
            boxes_used=train.variable_index.tolist(),
            initial_rotation=initial,
        )
        interchanges.append(interchange.to(device))
    return interchanges


def _parameter_groups(interchanges: Sequence[Interchange], config: FitConfig) -> list[dict]:
    """Adam's groups: each learned rotation at ``lr_rotation``, each learned set of boxes at
    ``lr_boundary``; none for ``full`` and ``noop``."""
    groups: list[dict] = []
    for interchange in interchanges:
        if interchange.rotation_kind == "learned":
            groups.append(
                {"params": list(interchange.rotate.parameters()), "lr": config.lr_rotation}
            )
        if interchange.widths.requires_grad:
            groups.append({"params": [interchange.widths], "lr": config.lr_boundary})
    return groups


@dataclass
class _Prefixes:
    """Where a fit's steps find their batch's prefix: the whole fit's store when it fits the
    budget, else (where the model's cache allows) a window of the next few batches built
    ``together``, else each step's own prefix pass; none without the prefix cache."""

    model: Any
    train: EncodedPairs
    config: FitConfig
    use_prefix: bool
    together: int
    windowed: bool
    blocks: Any
    first_layer: int
    current: PrefixStore | None  # the whole fit's store, or the window of the batches now

    @classmethod
    def plan(
        cls, model: Any, sites: Sequence[ResolvedSite], train: EncodedPairs, config: FitConfig
    ) -> _Prefixes:
        budget = config.prefix_store_mib * 2**20
        use_prefix = config.prefix_cache and prefix_caching_works(model, train.base_ids.shape[1])
        blocks = tail_blocks(model, sites, train)
        first_layer = first_layer_needed(model, sites, train)  # the stores hold no layer before
        together = (
            prefix_batches(model, train, config.batch_size, budget, blocks, first_layer=first_layer)
            if use_prefix
            else 1
        )
        store = (
            PrefixStore.shared(
                model,
                train,
                batch_size=config.batch_size * together,
                max_bytes=budget,
                blocks=blocks,
                first_layer=first_layer,
            )
            if use_prefix
            else None
        )
        windowed = store is None and together > 1 and plain_cache(model)
        return cls(model, train, config, use_prefix, together, windowed, blocks, first_layer, store)

    def next_window(self, batches: Sequence[torch.Tensor], number: int) -> None:
        """Before batch ``number`` of an epoch: a new window where the last one ends."""
        if not self.windowed or number % self.together:
            return
        self.current = None  # the last window goes before the next is built
        self.current = PrefixStore.build(
            self.model,
            self.train,
            batch_size=self.config.batch_size * self.together,
            max_bytes=self.config.prefix_store_mib * 2**20,
            blocks=self.blocks,
            first_layer=self.first_layer,
            rows=torch.cat(list(batches[number : number + self.together])),
        )


def _interventions(
    sites: Sequence[ResolvedSite],
    interchanges: Sequence[Interchange],
    sources: Sequence[torch.Tensor],
    index: torch.Tensor,
    variables: torch.Tensor,
) -> list[tuple[ResolvedSite, Any]]:
    """Each site's intervention on the batch ``index``: its rows of the source vectors mixed
    into the base by its interchange."""
    interventions = []
    for site, interchange, vectors in zip(sites, interchanges, sources, strict=True):
        source = vectors[to_device(index, vectors.device)]

        def mix(
            base: torch.Tensor,
            source: torch.Tensor = source,
            interchange: Interchange = interchange,
        ) -> torch.Tensor:
            # das:K has no boxes to learn: it trains with the K-coordinate mask it is judged
            # with (a soft mask at temperature 50 spread it over every coordinate)
            hard = not interchange.widths.requires_grad
            return interchange(base, source, variables, hard=hard)

        interventions.append((site, mix))
    return interventions


def _losses(
    interchanges: Sequence[Interchange],
    logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    config: FitConfig,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each site's cross-entropy on the answer, and that plus its boundary penalty."""
    task_losses, losses = [], []
    for interchange, cell_logits in zip(interchanges, logits, strict=True):
        task_loss = torch.nn.functional.cross_entropy(cell_logits, labels)
        start, end = interchange.box_edges()
        penalty = config.boundary_penalty * (end - start).sum() / 4096
        task_losses.append(task_loss)
        losses.append(task_loss + penalty)
    return task_losses, losses


def _joint_group_size(model: Any, train: EncodedPairs, config: FitConfig, sites: int) -> int:
    """How many sites train together: the batch's prefix KV cache, repeated once per site, must
    fit ``config.joint_cells_mib`` (estimated from the config as if every head had its own keys
    and values: an upper bound for grouped-query attention)."""
    if sites == 1:
        return 1
    parameter = next(model.parameters())
    width = train.base_ids.shape[1]
    per_copy = (
        min(config.batch_size, len(train))
        * width
        * model.config.num_hidden_layers
        * 2
        * model.config.hidden_size
        * parameter.element_size()
    )
    return max(1, min(sites, config.joint_cells_mib * 2**20 // max(per_copy, 1)))


def _unique(sites: Sequence[ResolvedSite]) -> list[ResolvedSite]:
    seen: dict[tuple[str, str], ResolvedSite] = {}
    for site in sites:
        seen.setdefault(site_key(site), site)
    return list(seen.values())


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="boundless DAS", disable=not enabled, leave=False)
