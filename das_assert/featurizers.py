"""Interchange interventions in a rotated basis: Boundless DAS and its controls.

Boundless DAS (Wu et al. 2023) learns an orthogonal rotation R of a hidden vector and, per causal
variable, a box of rotated coordinates. For a base vector h and a source vector s at the same site,

    h' = [ (1 - m) * (h R) + m * (s R) ] R^T

where m is the variable's mask. During training m is soft: with coordinate centres c_i = i + 1/2
and a box [start, end), m_i = sigmoid((c_i - start)/tau) * sigmoid((end - c_i)/tau), annealed
from a high temperature tau to a low one. For evaluation m is hard: m_i = 1 iff start < c_i < end.
Coordinate centres (rather than pyvene's integer indices) make an empty box an exact no-op; the
original's coordinate 0 is always half-mixed.

Several variables share one rotation with disjoint, adjacent boxes: variable k owns
[w_0 + ... + w_{k-1}, w_0 + ... + w_k). Each pair intervenes on one variable.

The same module expresses every control: ``full`` (identity rotation, every coordinate), ``noop``
(empty box), ``fixed`` (learned rotation, k coordinates), ``random_rotation`` (fixed random R).
The rotation is kept in float32 even when the model runs in bfloat16.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from das_assert.errors import InvalidArgument
from das_assert.rotation import orthogonal_rotation, rotation_weight, row_rotation
from das_assert.transfer import to_device
from das_assert.values import is_integer, is_number

__all__ = ["Interchange"]


class Interchange(nn.Module):
    """A rotated interchange intervention over ``n_variables`` disjoint boxes of coordinates.

    Use the constructors: ``boundless``, ``fixed``, ``full``, ``noop``, ``random_rotation``.
    """

    rotate: nn.Module
    fixed_rotation: torch.Tensor
    centres: torch.Tensor

    def __init__(
        self,
        d: int,
        widths: list[float],
        *,
        rotation: str,
        learn_widths: bool,
        temperature: float = 50.0,
        seed: int = 0,
        device: torch.device | str | None = None,
        initial_rotation: torch.Tensor | None = None,
    ) -> None:
        _check_shape(d, len(widths))
        if rotation not in ("learned", "random", "frozen", "identity"):
            raise InvalidArgument(
                f"rotation={rotation!r}: one of learned, random, frozen, identity (or build it "
                "with a constructor: Interchange.boundless, .fixed, .full, .noop)"
            )
        super().__init__()
        self.d = int(d)  # a NumPy integer too
        self.method = ""
        self.rotation_kind = rotation
        if rotation == "learned":
            self.rotate = orthogonal_rotation(d, device=device, initial=initial_rotation)
        elif rotation == "random":
            self.register_buffer("fixed_rotation", _random_orthogonal(d, seed).clone())
        elif rotation == "frozen":
            self.register_buffer("fixed_rotation", torch.eye(d))
        fractions = torch.tensor([w / d for w in widths], dtype=torch.float32)
        self.widths = nn.Parameter(fractions, requires_grad=learn_widths)
        self.register_buffer("centres", torch.arange(d, dtype=torch.float32) + 0.5)
        self.temperature = temperature

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def boundless(
        cls,
        d: int,
        n_variables: int = 1,
        *,
        init_fraction: float | None = None,
        device: torch.device | str | None = None,
        initial_rotation: torch.Tensor | None = None,
    ) -> Interchange:
        """Learned rotation and learned boxes, each starting at ``init_fraction`` of ``d``; the
        rotation is drawn on ``device`` (see ``rotation.random_orthogonal``), or starts at
        ``initial_rotation``, one drawn so before."""
        _check_shape(d, n_variables)
        if init_fraction is not None and (
            not is_number(init_fraction) or not 0 < init_fraction * n_variables <= 1 + 1e-9
        ):
            raise InvalidArgument(
                f"init_fraction={init_fraction!r}: each of the {n_variables} boxes starts with "
                f"this fraction of the d={d} coordinates, so a number in (0, "
                f"{_fraction_text(n_variables)}], or None for the default"
            )
        fraction = min(0.5, 1.0 / n_variables) if init_fraction is None else init_fraction
        module = cls(
            d,
            [fraction * d] * n_variables,
            rotation="learned",
            learn_widths=True,
            device=device,
            initial_rotation=initial_rotation,
        )
        module.method = "boundless"
        return module

    @classmethod
    def fixed(
        cls,
        d: int,
        k: int,
        n_variables: int = 1,
        *,
        device: torch.device | str | None = None,
        initial_rotation: torch.Tensor | None = None,
    ) -> Interchange:
        """Learned rotation, ``k`` coordinates per variable (DAS with a fixed subspace size);
        ``device`` and ``initial_rotation`` as for ``boundless``."""
        _check_shape(d, n_variables)
        if not is_integer(k) or not 1 <= k * n_variables <= d:
            raise InvalidArgument(
                f"k={k!r}: {n_variables} disjoint boxes of k coordinates must fit in d={d}; "
                f"choose an integer k from 1 to {max(1, d // n_variables)}"
            )
        module = cls(
            d,
            [float(k)] * n_variables,
            rotation="learned",
            learn_widths=False,
            device=device,
            initial_rotation=initial_rotation,
        )
        module.method = f"das:{k}"
        return module

    @classmethod
    def full(cls, d: int, n_variables: int = 1, *, box: int = 0) -> Interchange:
        """Full-vector interchange for the variable of box ``box``: its pairs get the source
        vector in place of the base vector (the other boxes are empty; the whole vector cannot
        be two variables' at once)."""
        _check_shape(d, n_variables)
        if not is_integer(box) or not 0 <= box < n_variables:
            raise InvalidArgument(f"box {box!r} is not one of the {n_variables} variables' boxes")
        widths = [float(d) if index == box else 0.0 for index in range(n_variables)]
        module = cls(d, widths, rotation="identity", learn_widths=False)
        module.method = "full"
        return module

    @classmethod
    def noop(cls, d: int, n_variables: int = 1) -> Interchange:
        """An empty box: the base run, unchanged."""
        _check_shape(d, n_variables)
        module = cls(d, [0.0] * n_variables, rotation="identity", learn_widths=False)
        module.method = "noop"
        return module

    @classmethod
    def random_rotation(cls, d: int, widths: list[int], *, seed: int) -> Interchange:
        """A fixed random rotation with boxes of the given widths (a control for a learned one)."""
        _check_shape(d, 1)
        if (
            isinstance(widths, str)
            or not isinstance(widths, list | tuple)
            or not widths
            or any(not is_integer(w) or w < 0 for w in widths)
            or sum(widths) > d
        ):
            raise InvalidArgument(
                f"widths={widths!r}: one box width per variable, integers >= 0 that sum to at "
                f"most d={d} (disjoint boxes of the d coordinates)"
            )
        module = cls(
            d, [float(w) for w in widths], rotation="random", learn_widths=False, seed=seed
        )
        module.method = "random_rotation"
        return module

    @classmethod
    def frozen(cls, rotation: torch.Tensor, widths: list[float], method: str) -> Interchange:
        """A trained intervention restored from its rotation matrix and box widths (coordinates)."""
        module = cls(rotation.shape[0], widths, rotation="frozen", learn_widths=False)
        module.fixed_rotation.copy_(rotation.float())
        module.method = method
        return module

    # -- geometry -----------------------------------------------------------------------------
    @property
    def n_variables(self) -> int:
        return int(self.widths.numel())

    def rotation_matrix(self) -> torch.Tensor | None:
        if self.rotation_kind == "learned":
            return rotation_weight(self.rotate)
        if self.rotation_kind in ("random", "frozen"):
            return self.fixed_rotation
        return None

    def box_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end) of every variable's box, in coordinates."""
        widths = self.widths.clamp(0.0, 1.0) * self.d
        ends = torch.cumsum(widths, dim=0)
        return ends - widths, ends

    def masks(self, *, hard: bool) -> torch.Tensor:
        """(n_variables, d) masks; hard masks are exactly 0 or 1."""
        start, end = self.box_edges()
        c = self.centres
        if hard:
            return ((c > start[:, None]) & (c < end[:, None])).float()
        tau = max(self.temperature, 1e-6)
        return torch.sigmoid((c - start[:, None]) / tau) * torch.sigmoid((end[:, None] - c) / tau)

    def hard_widths(self) -> list[int]:
        """Coordinates each variable owns under the hard mask."""
        return [int(v) for v in self.hard_width_counts().tolist()]

    def hard_width_counts(self) -> torch.Tensor:
        """``hard_widths`` as a tensor where the widths are (reading it waits for the device)."""
        with torch.no_grad():
            return self.masks(hard=True).sum(dim=1)

    def clamp_widths_(self) -> None:
        """Project the learned widths back into [0, 1] after an optimizer step."""
        with torch.no_grad():
            self.widths.clamp_(0.0, 1.0)

    # -- the intervention ---------------------------------------------------------------------
    def forward(
        self,
        base: torch.Tensor,
        source: torch.Tensor,
        variable_index: torch.Tensor,
        *,
        hard: bool,
    ) -> torch.Tensor:
        """Mix ``source`` into ``base`` (both (batch, d)) on each row's variable's box."""
        dtype = base.dtype
        base32, source32 = base.float(), source.to(base.device).float()
        mask = self.masks(hard=hard).to(base.device)[to_device(variable_index, base.device)]
        # [(1 - m) (hR) + m (sR)] R^T = h + (m ((s - h) R)) R^T for an orthogonal R; the second
        # form returns h bit for bit where m = 0, so an empty box is an exact no-op.
        if self.rotation_kind == "learned":
            action = row_rotation(self.rotate, base.shape[0])
            if action is not None:  # training at large d: R applied to the rows, never formed
                device = action.base.device  # the rotation's, not the site's (device_map)
                delta = mask.to(device) * action((source32 - base32).to(device))
                return (base32 + action.transposed(delta).to(base.device)).to(dtype)
        rotation = self.rotation_matrix()
        if rotation is None:
            return (base32 + mask * (source32 - base32)).to(dtype)
        rotation = rotation.to(base.device)
        delta = mask * ((source32 - base32) @ rotation)
        return (base32 + delta @ rotation.T).to(dtype)

    def orthogonality_error(self) -> float:
        """max |R R^T - I| of the current rotation (0 for the identity)."""
        rotation = self.rotation_matrix()
        if rotation is None:
            return 0.0
        with torch.no_grad():
            eye = torch.eye(self.d, device=rotation.device)
            return float((rotation @ rotation.T - eye).abs().max())


def _check_shape(d: Any, n_variables: Any) -> None:
    """Refuse a width ``d`` or a number of variables that is not a positive integer (0 was a
    ZeroDivisionError)."""
    if not is_integer(d) or d < 1:
        raise InvalidArgument(
            f"d={d!r}: the site's width, a positive integer (the model's hidden_size)"
        )
    if not is_integer(n_variables) or n_variables < 1:
        raise InvalidArgument(
            f"n_variables={n_variables!r}: the number of variables, one box each, an integer >= 1"
        )


def _fraction_text(n_variables: int) -> str:
    return "1" if n_variables == 1 else f"1/{n_variables}"


@functools.lru_cache(maxsize=2)
def _random_orthogonal(d: int, seed: int) -> torch.Tensor:
    """The QR factor of a Gaussian d x d matrix drawn from ``seed``: an evaluation's random
    rotation control. Kept for the next evaluation with the same (d, seed), every cell of a
    search: at d = 4096 the QR took 1.8 s on 2 CPU cores, about as long as evaluating the cell.
    Callers copy it, so no module shares (or can change) the kept one."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float32))
    return q


def temperature_schedule(start: float, end: float, steps: int) -> list[float]:
    """Linear annealing from ``start`` to ``end`` over ``steps`` optimizer steps."""
    if steps <= 1:
        return [end]
    return [start + (end - start) * i / (steps - 1) for i in range(steps)]
