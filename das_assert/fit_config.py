"""How an alignment is trained: ``FitConfig``, checked at construction, and the method names.

Apart from the training loop (``das_assert.fit``) so that the settings load without torch: the
command line, das.yaml and the plugin build and check them before any model is loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from das_assert.arg_types import MAX_SEED
from das_assert.errors import InvalidArgument, KeywordsChecked
from das_assert.values import is_finite_number, is_integer, is_number

__all__ = ["METHODS", "FitConfig", "parse_method"]

METHODS = "boundless, das:K (fixed K coordinates), full, noop"


@dataclass(frozen=True, kw_only=True)
class FitConfig(KeywordsChecked):
    """How an alignment is trained. Frozen; change fields with ``dataclasses.replace``."""

    method: str = "boundless"
    epochs: int = 3
    batch_size: int = 32
    lr_rotation: float = 1e-3
    lr_boundary: float = 1e-2
    warmup_fraction: float = 0.1
    temperature: tuple[float, float] = (50.0, 0.1)
    boundary_penalty: float = 1.0  # per 4096 coordinates; see das_assert.fit's docstring
    init_fraction: float | None = None  # None: 0.5 for one variable, 1/k for k variables
    # None: the experiment's seed (run_experiment, run_restarts, a session's align), so that
    # FitConfig(epochs=1) with Experiment(seed=3) fits at 3 as it draws its pairs; 0 for a
    # fit_alignment of pairs alone. A number: that fit seed, whatever the pairs' seed.
    seed: int | None = None
    progress: bool = False
    prefix_cache: bool = True  # run the unchanged prefix once per batch (see runner.BaseRun)
    prefix_store_mib: int = 1024  # keep every prefix for the whole fit when it fits (PrefixStore)
    # A search's sites at one position train together while their copies of a batch's KV cache
    # fit this budget; 0 (the default): each alone. On 2 CPU cores the joint fit gained nothing
    # (the embedded model's grid, 5.0-5.6 s either way); on an H200 at Llama-7B's shape it
    # trained a 7 x 2 grid 1.7x faster (4096). The CLI's search and the plugin set it by option.
    joint_cells_mib: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "seed", "prefix_store_mib", "joint_cells_mib"):
            value = getattr(self, name)
            if value is None and name == "seed":
                continue
            if not is_integer(value):
                raise InvalidArgument(f"{name}={value!r}: an integer")
            object.__setattr__(self, name, int(value))  # a NumPy integer is written as JSON
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise InvalidArgument(f"seed={self.seed}: use an integer 0 to {MAX_SEED}")
        for name in ("progress", "prefix_cache"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(f"{name}={getattr(self, name)!r}: True or False")
        for name in ("lr_rotation", "lr_boundary", "boundary_penalty", "warmup_fraction"):
            value = getattr(self, name)
            if not is_number(value):
                raise InvalidArgument(f"{name}={value!r}: a number")
            object.__setattr__(self, name, float(value))  # a NumPy float32 is not JSON
        if self.epochs < 1:
            raise InvalidArgument(f"epochs={self.epochs}; train for at least 1 epoch")
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size={self.batch_size}; use a positive batch size")
        for name in ("lr_rotation", "lr_boundary", "boundary_penalty"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"{name}={value!r} must be a finite number >= 0")
        for name in ("lr_rotation", "lr_boundary"):  # the optimizers hold them as float32
            if getattr(self, name) > _FLOAT32_MAX:
                raise InvalidArgument(
                    f"{name}={getattr(self, name)!r} is past float32's largest number "
                    f"({_FLOAT32_MAX:.4g}), which the optimizer holds it in: a learning rate is "
                    "far smaller (the default is 1e-3 for the rotation, 1e-2 for the boundary)"
                )
        if self.boundary_penalty > _LARGEST_PENALTY:
            raise InvalidArgument(
                f"boundary_penalty={self.boundary_penalty!r} is past {_LARGEST_PENALTY:.0e}, "
                "which already outweighs any task loss: near 5e22 Adam's float32 statistics "
                "overflow on its gradient and the boxes stop moving instead of shrinking (the "
                "default is 1.0)"
            )
        if self.prefix_store_mib < 0:
            raise InvalidArgument(
                f"prefix_store_mib={self.prefix_store_mib}; use 0 to turn the store off"
            )
        if self.joint_cells_mib < 0:
            raise InvalidArgument(
                f"joint_cells_mib={self.joint_cells_mib}; use 0 to train every site alone"
            )
        if not 0 <= self.warmup_fraction < 1:
            raise InvalidArgument(f"warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.init_fraction is not None and (
            not is_number(self.init_fraction) or not 0 < self.init_fraction <= 1
        ):
            raise InvalidArgument(
                f"init_fraction={self.init_fraction!r}: the fraction of coordinates each box "
                "starts with, a number in (0, 1], or None for the default"
            )
        temperature = self.temperature
        if (
            not isinstance(temperature, tuple | list)
            or len(temperature) != 2
            or not all(is_finite_number(t) for t in temperature)
        ):
            raise InvalidArgument(
                f"temperature={temperature!r}: a pair (start, end) of finite numbers, e.g. "
                "(50.0, 0.1)"
            )
        object.__setattr__(self, "temperature", tuple(float(t) for t in temperature))  # hashable
        if self.init_fraction is not None:
            object.__setattr__(self, "init_fraction", float(self.init_fraction))
        start, end = self.temperature
        if not 0 < end <= start:
            raise InvalidArgument(f"temperature={self.temperature} must go down: 0 < end <= start")
        name, k = parse_method(self.method)
        if k is not None:  # "das:016" is das:16: one spelling, in the cache key and the reports
            object.__setattr__(self, "method", f"{name}:{k}")

    def with_seed(self, seed: int) -> FitConfig:
        """This config, at fit seed ``seed`` where it names none."""
        return self if self.seed is not None else replace(self, seed=seed)

    @property
    def fit_seed(self) -> int:
        """The seed a fit draws from (0 where none was named: ``with_seed`` resolves it)."""
        return 0 if self.seed is None else self.seed

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in _SPEED_ONLY}


_FLOAT32_MAX = 3.4028234663852886e38
# Measured on the embedded model: 1e21 still shrinks the boxes, 5e22 leaves them where they began.
_LARGEST_PENALTY = 1e20

_SPEED_ONLY = (
    "progress",
    "prefix_cache",
    "prefix_store_mib",
    "joint_cells_mib",
)  # no effect beyond float rounding


def parse_method(method: str) -> tuple[str, int | None]:
    """``"boundless"`` -> (boundless, None); ``"das:16"`` -> (das, 16)."""
    if not isinstance(method, str):
        raise InvalidArgument(f"method={method!r}: a method's name, one of: {METHODS}")
    if method in ("boundless", "full", "noop"):
        return method, None
    if (
        method.startswith("das:")
        and method[4:].isascii()
        and method[4:].isdigit()
        and int(method[4:]) > 0
    ):
        return "das", int(method[4:])
    if method.startswith("das:") and method[4:].isascii() and method[4:].isdigit():
        raise InvalidArgument(
            f"method {method!r}: das:K learns a subspace of K dimensions, so K must be at least 1"
        )
    raise InvalidArgument(f"unknown method {method!r}; choose one of: {METHODS}")
