"""Train an interchange intervention (Boundless DAS by default) at one site.

The recipe follows the paper with its known bugs fixed: Adam with one learning rate for the
rotation (1e-3) and another for the boxes (1e-2), linear warm-up then linear decay counted in
optimizer steps, temperature annealed linearly from 50 to 0.1 per optimizer step, cross-entropy on
the answer token over the full vocabulary, and ``backward()`` on every batch.

The boundary penalty is ``boundary_penalty * (coordinates in the boxes) / 4096``. At d = 4096
(Llama-7B) that is the paper's ``1.0 * b``; at d = 128 it is the weight of about 0.03 that
../calibration found necessary, because the cross-entropy gradient on a box edge shrinks with d
while the paper's penalty gradient does not. Boxes are projected back into [0, 1] after each step
instead of being clamped inside the forward pass, so a box that touches zero can grow again.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from das_assert.data import EncodedPairs
from das_assert.errors import InvalidArgument, TrainingDiverged
from das_assert.featurizers import Interchange, temperature_schedule
from das_assert.runner import PrefixStore, answer_logits, shared_source_vectors
from das_assert.sites import ResolvedSite

__all__ = ["METHODS", "FitConfig", "FittedAlignment", "fit_alignment", "make_interchange"]

METHODS = "boundless, das:K (fixed K coordinates), full, noop"


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """How an alignment is trained. Frozen; change fields with ``dataclasses.replace``."""

    method: str = "boundless"
    epochs: int = 3
    batch_size: int = 32
    lr_rotation: float = 1e-3
    lr_boundary: float = 1e-2
    warmup_fraction: float = 0.1
    temperature: tuple[float, float] = (50.0, 0.1)
    boundary_penalty: float = 1.0  # per 4096 coordinates; see the module docstring
    init_fraction: float | None = None  # None: 0.5 for one variable, 1/k for k variables
    seed: int = 0
    progress: bool = False
    prefix_cache: bool = True  # run the unchanged prefix once per batch (see runner.BaseRun)
    prefix_store_mib: int = 1024  # keep every prefix for the whole fit when it fits (PrefixStore)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InvalidArgument(f"epochs={self.epochs}; train for at least 1 epoch")
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size={self.batch_size}; use a positive batch size")
        for name in ("lr_rotation", "lr_boundary", "boundary_penalty"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"{name}={value!r} must be a finite number >= 0")
        if self.prefix_store_mib < 0:
            raise InvalidArgument(
                f"prefix_store_mib={self.prefix_store_mib}; use 0 to turn the store off"
            )
        if not 0 <= self.warmup_fraction < 1:
            raise InvalidArgument(f"warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        start, end = self.temperature
        if not 0 < end <= start:
            raise InvalidArgument(f"temperature={self.temperature} must go down: 0 < end <= start")
        parse_method(self.method)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in _SPEED_ONLY}


_SPEED_ONLY = ("progress", "prefix_cache", "prefix_store_mib")  # no effect beyond float rounding


def parse_method(method: str) -> tuple[str, int | None]:
    """``"boundless"`` -> (boundless, None); ``"das:16"`` -> (das, 16)."""
    if method in ("boundless", "full", "noop"):
        return method, None
    if method.startswith("das:") and method[4:].isdigit() and int(method[4:]) > 0:
        return "das", int(method[4:])
    raise InvalidArgument(f"unknown method {method!r}; choose one of: {METHODS}")


def make_interchange(
    method: str, d: int, n_variables: int, *, init_fraction: float | None = None
) -> Interchange:
    """The untrained intervention for ``method`` on a d-dimensional site."""
    kind, k = parse_method(method)
    if kind == "boundless":
        return Interchange.boundless(d, n_variables, init_fraction=init_fraction)
    if kind == "das":
        if k is None or k * n_variables > d:
            raise InvalidArgument(
                f"das:{k} with {n_variables} variables needs more than d={d} coordinates; "
                f"choose K <= {d // n_variables}"
            )
        return Interchange.fixed(d, k, n_variables)
    if kind == "full":
        return Interchange.full(d, n_variables)
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

    @property
    def boundary_dims(self) -> list[int]:
        return self.interchange.hard_widths()

    @property
    def collapsed(self) -> bool:
        """True when a learned box ended with no coordinate: the alignment is the no-op."""
        return self.interchange.method == "boundless" and min(self.boundary_dims) == 0


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
    """Train ``config.method`` at ``site`` on the pairs ``train`` and return the alignment."""
    config = config or FitConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    d = model.config.hidden_size
    interchange = make_interchange(
        config.method, d, n_variables, init_fraction=config.init_fraction
    )
    device = model.get_input_embeddings().weight.device
    interchange.to(device)
    # The source pass runs at the fit's batch size: the batch a user picks bounds the memory of the
    # whole fit, and the vectors do not depend on it.
    sources = shared_source_vectors(model, site, train, batch_size=config.batch_size)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    history: list[dict[str, float]] = []
    trainable = [p for p in interchange.parameters() if p.requires_grad]
    if not trainable:  # full / noop: nothing to learn
        return FittedAlignment(interchange, site, config, len(train), time.perf_counter() - started)
    groups = []
    if interchange.rotation_kind == "learned":
        groups.append({"params": list(interchange.rotate.parameters()), "lr": config.lr_rotation})
    if interchange.widths.requires_grad:
        groups.append({"params": [interchange.widths], "lr": config.lr_boundary})
    optimizer = torch.optim.Adam(groups)
    store = (
        PrefixStore.shared(
            model,
            train,
            batch_size=config.batch_size,
            max_bytes=config.prefix_store_mib * 2**20,
        )
        if config.prefix_cache
        else None
    )
    base_lrs = [g["lr"] for g in groups]
    warmup = max(1, int(config.warmup_fraction * total))
    temperatures = temperature_schedule(*config.temperature, total)
    generator = torch.Generator().manual_seed(config.seed)
    step = 0
    progress = _progress(total, config.progress)
    for epoch in range(config.epochs):
        for index in train.batches(config.batch_size, generator=generator):
            interchange.temperature = temperatures[step]
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * _lr_factor(step, total, warmup)
            source = sources[index.to(sources.device)]
            variables = train.variable_index[index]

            def mix(
                base: torch.Tensor, source: torch.Tensor = source, variables: Any = variables
            ) -> torch.Tensor:
                return interchange(base, source, variables, hard=False)

            with torch.nn.utils.parametrize.cached():
                logits = answer_logits(
                    model,
                    site,
                    train,
                    index,
                    mix,
                    prefix_cache=config.prefix_cache,
                    prefix_store=store,
                )
                labels = train.label_ids[index].to(logits.device)
                task_loss = torch.nn.functional.cross_entropy(logits, labels)
                start, end = interchange.box_edges()
                penalty = config.boundary_penalty * (end - start).sum() / 4096
                loss = task_loss + penalty
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"the alignment loss became {loss.item()} at step {step} (epoch {epoch}) "
                        f"at {site.site}; lower the learning rates "
                        f"(lr_rotation={config.lr_rotation}, "
                        f"lr_boundary={config.lr_boundary}) or check the model for NaN outputs"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            interchange.clamp_widths_()
            step += 1
            if step % max(1, total // 20) == 0 or step == total:
                history.append(
                    {
                        "step": step,
                        "loss": round(task_loss.item(), 5),
                        "temperature": round(interchange.temperature, 4),
                        "widths": interchange.hard_widths(),
                    }
                )
            progress.update(1)
            progress.set_postfix(loss=f"{task_loss.item():.3f}", width=interchange.hard_widths())
    progress.close()
    return FittedAlignment(
        interchange, site, config, len(train), time.perf_counter() - started, history
    )


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="boundless DAS", disable=not enabled, leave=False)
