"""The learned rotation: torch's orthogonal parametrization, with a cheaper exact backward and,
in training, applied to the batch's rows without forming the matrix.

``torch.nn.utils.parametrizations.orthogonal`` (the map pyvene uses too) writes a square weight as
``Q = base @ exp(A)`` with ``A = tril(X) - tril(X)^T`` skew-symmetric. Its ``matrix_exp`` backward
takes the exponential of the 2d x 2d block matrix ``[[A^T, G], [0, A^T]]``: at d = 4096 on an
H200 a rotation's forward + backward took 470 ms (30 of them the forward) and 3.7 GiB, more than
the rest of a 7B-shape training step together.

``expm_frechet`` computes the same gradient, the Frechet derivative ``L(A^T, G)``, by scaling and
squaring a degree-7 Taylor polynomial carried together with its derivative (three d x d products
per step, each d x d instead of 2d x 2d): 124 ms and 0.94 GiB on that card. Against a float64
reference it is as accurate as torch's backward or more. The forward is torch's ``matrix_exp``
itself, so ``Q`` is bit for bit what torch computes. It is used from ``FRECHET_MIN_D`` = 256
coordinates on. Below that a step's rotation costs a few milliseconds either way (d = 128, 32
rows, 2 CPU cores: 6.5 ms with torch's backward, 2.9 with this one), and the embedded model
(d = 128) keeps torch's map, so its published numbers stay exactly as measured; from 256 on
torch's backward dominates (d = 512: 168-195 ms against 56-60).

In training the rotation need not be formed at all. A step uses it on its batch's rows only (the
mix is ``h + (m * ((s - h) Q)) Q^T``, and ``z Q = (z base) exp(A)``), so each product is the
action of ``exp`` on a few vectors. ``RowRotation`` computes it as a Taylor polynomial of
``A / steps`` applied ``steps`` times (the scheme of Al-Mohy and Higham, 2011), planned from a
power-iteration estimate of ``||A||``: d x d by d x rows products only, about
``12 * products * rows * d^2`` flops a step with the backward, against about ``90 d^3`` to form
``Q`` and its gradient. Its results and gradients are closer to float64 than torch's float32
``matrix_exp`` (tests). On 2 CPU cores, at d = 4096 and 16 rows, a step's rotation took 1.6-3.3 s
against 39-50 s with the Frechet backward; at d = 1024, 59-105 ms against 428-545 ms (and
1.85-1.96 s with torch's backward). ``Interchange`` uses it where gradients are on and it is the
cheaper path by that count; evaluation forms ``Q`` once.
"""

from __future__ import annotations

import functools
import math
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

__all__ = [
    "ACTION_MIN_D",
    "FRECHET_MIN_D",
    "RowRotation",
    "expm_action",
    "expm_frechet",
    "move_generator_",
    "orthogonal_rotation",
    "packed_generator",
    "random_orthogonal",
    "rotation_weight",
    "row_rotation",
    "skew_generator",
    "taylor_plan",
]

FRECHET_MIN_D = 256
ACTION_MIN_D = 256  # and only on das_assert's own map, which starts at FRECHET_MIN_D

_THETA = 0.25  # scale the matrix down to this norm, then ...
_DEGREE = 7  # ... a Taylor polynomial of this degree errs by < 4e-10 (0.25^8 / 8!)


def expm_frechet(m: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """The Frechet derivative of ``exp`` at ``m`` in the direction ``e`` (both (d, d)).

    ``exp(m)`` is approximated by ``T(m / 2^s)^(2^s)``, ``T`` the Taylor polynomial of degree
    ``_DEGREE`` evaluated by Horner's rule; the derivative goes through every step by the product
    rule, so each Horner step and each squaring costs three products.
    """
    norm = _norm_bound(m)
    squarings = max(0, math.ceil(math.log2(norm / _THETA))) if norm > 0 else 0
    scaled, direction = m / 2**squarings, e / 2**squarings
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    power = torch.add(eye, scaled, alpha=1 / _DEGREE)
    derivative = direction / _DEGREE
    for k in range(_DEGREE - 1, 0, -1):
        derivative = (direction @ power + scaled @ derivative) / k
        power = torch.addmm(eye, scaled, power, alpha=1 / k)
    for step in range(squarings):
        derivative = power @ derivative + derivative @ power
        if step + 1 < squarings:
            power = power @ power
    return derivative


def _norm_bound(m: torch.Tensor) -> float:
    """An upper bound of the spectral norm: the least of the 1-norm, the Frobenius norm and
    sqrt(||m^T m||_1); the last is far below the others for a dense skew-symmetric matrix."""
    one = float(m.abs().sum(dim=0).max())
    frobenius = float(torch.linalg.matrix_norm(m))
    gram = float((m.mT @ m).abs().sum(dim=0).max()) ** 0.5
    return min(one, frobenius, gram)


class _SkewExp(torch.autograd.Function):
    """``torch.matrix_exp`` forward; ``expm_frechet`` backward (``L(A^T, G)``, as torch's)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a)
        return torch.matrix_exp(a)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors
        return expm_frechet(a.mT.contiguous(), grad.contiguous())


class _ExpOrthogonal(nn.Module):
    """``P -> base @ exp(A)``, ``A`` the skew-symmetric matrix whose strictly lower triangle is
    held packed in ``P`` (``skew_generator``): torch's square ``matrix_exp`` orthogonal map with
    its dynamic trivialization, which keeps a d x d ``original`` of which only that triangle
    matters. Packed, the parameter and Adam's two moments take half the memory (96 MiB less at
    d = 4096) and train exactly as torch's: the same generator, the same gradient on each entry
    of the triangle, and Adam works entry by entry."""

    base: torch.Tensor

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.register_buffer("base", torch.empty(d, d))

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.base @ _SkewExp.apply(skew_generator(packed, self.d))

    @torch.no_grad()
    def right_inverse(self, q: torch.Tensor) -> torch.Tensor:
        """Store an orthogonal ``q`` as the base; the generator starts at 0."""
        if not _is_orthogonal(q):
            raise ValueError("the initial rotation must be orthogonal")
        self.base = q.clone()
        half = (self.d + 1) // 2
        return q.new_zeros(2, half, half)


def skew_generator(packed: torch.Tensor, d: int) -> torch.Tensor:
    """The d x d skew-symmetric ``L - L^T``, ``L`` strictly lower triangular, from ``packed``
    (2, m, m), m = ceil(d / 2): ``packed[0]`` is L's lower-left m x m block, ``packed[1]`` holds
    the strict lower triangle of its upper-left block below its diagonal and that of its
    lower-right block, transposed, above it (its diagonal is unused). Slices, triangles and
    transposes only, so the backward gathers no index and waits for nothing."""
    corner, folded = packed[0], packed[1]
    upper = torch.cat([folded.tril(-1), torch.zeros_like(corner)], dim=1)
    lower = torch.cat([corner, folded.triu(1).mT], dim=1)
    strict = torch.cat([upper, lower])[:d, :d]
    return strict - strict.mT


def packed_generator(lower: torch.Tensor) -> torch.Tensor:
    """The inverse of ``skew_generator`` on a d x d matrix's strictly lower triangle (the rest of
    ``lower`` is ignored), as torch's map reads its ``original``."""
    d = lower.shape[-1]
    half = (d + 1) // 2
    square = lower.new_zeros(2 * half, 2 * half)
    square[:d, :d] = lower.tril(-1)
    corner = square[half:, :half]
    folded = square[:half, :half] + square[half:, half:].mT  # strictly lower, strictly upper
    return torch.stack([corner, folded])


def _weight_maps(module: nn.Module) -> parametrize.ParametrizationList:
    """The parametrizations of a rotation module's ``weight``: its ``original`` and its maps."""
    maps = cast(nn.ModuleDict, module.parametrizations)
    return cast(parametrize.ParametrizationList, maps["weight"])


def rotation_weight(module: nn.Module) -> torch.Tensor:
    """The d x d rotation of a module made by ``orthogonal_rotation``."""
    return cast(torch.Tensor, module.weight)


@torch.no_grad()
def move_generator_(module: nn.Module, step: torch.Tensor) -> None:
    """Add ``step``'s strictly lower triangle (d x d) to the generator of a rotation made by
    ``orthogonal_rotation``, whichever map holds it: a rotation moved as training moves it."""
    parametrization = _weight_maps(module)
    original = parametrization.original
    if isinstance(parametrization[0], _ExpOrthogonal):
        original.add_(packed_generator(step.to(original)))
    else:
        original.add_(step.to(original).tril(-1))


_PROBE_COLUMNS = 8


def _is_orthogonal(q: torch.Tensor) -> bool:
    """``q^T q = I`` up to rounding, tested on a few random columns: ``q^T (q x) = x``. O(d^2)
    where forming ``q^T q`` is O(d^3) (0.56 s at d = 4096 on 2 CPU cores, on every fit).

    A QR factor's relative residual is about 1e-6 in float32 at any d up to 4096; an error e in
    one entry of ``q^T q`` shows as about e / sqrt(d), so the bound ``10 sqrt(d) eps`` rejects
    whatever an entrywise test at ``10 d eps`` would."""
    d = q.shape[-1]
    generator = torch.Generator().manual_seed(0)
    # in float64: float32 matmuls set to TF32 or bfloat16 (torch.set_float32_matmul_precision)
    # would measure their own rounding, 4e-4, and refuse every rotation from d = 256 on
    wide = q.double()
    probes = torch.randn(d, _PROBE_COLUMNS, generator=generator, dtype=torch.float64).to(wide)
    residual = (wide.mT @ (wide @ probes) - probes).norm(dim=0) / probes.norm(dim=0)
    return bool(residual.max() <= 10 * math.sqrt(d) * torch.finfo(q.dtype).eps)


class _Weight(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)


def random_orthogonal(d: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``nn.init.orthogonal_``'s draw of a d x d matrix, factored on ``device``: the Gaussian
    comes from torch's global CPU generator as there (the same seed gives the same draw on every
    device), its QR runs where the fit will (on 2 CPU cores it took 1.7 s at d = 4096). On the
    CPU it is bit for bit ``nn.init.orthogonal_``."""
    gaussian = torch.empty(d, d, dtype=torch.float32).normal_(0, 1).to(device)
    q, r = torch.linalg.qr(gaussian)
    return (q * r.diagonal().sign()).contiguous()  # QR's factor is column-major


def orthogonal_rotation(
    d: int, *, device: torch.device | str | None = None, initial: torch.Tensor | None = None
) -> nn.Module:
    """A module whose ``weight`` is a learned d x d rotation, orthogonal by construction,
    initialised at random on ``device`` (default the CPU), or at ``initial``, a rotation
    ``random_orthogonal`` drew before (the module keeps a copy of it)."""
    module = _Weight(random_orthogonal(d, device) if initial is None else initial)
    if d < FRECHET_MIN_D:
        return parametrizations.orthogonal(module)
    parametrize.register_parametrization(module, "weight", _ExpOrthogonal(d), unsafe=True)
    return module


# -- the rotation's action on rows ------------------------------------------------------------

_UNIT_ROUNDOFF = 2.0**-24  # float32
_MAX_THETA = 2.2  # the largest ||A / steps|| per step: Taylor terms stay below 2.5, so the
# rounding of their sum stays near float32's; larger steps save products but lose digits
_NORM_MARGIN = 1.25  # power iteration approaches ||A|| from below
_POWER_ITERATIONS = 12
_PROBES = 4


def _theta(degree: int) -> float:
    """The largest t with t^(m+1) / (m+1)! * e^t <= float32's unit roundoff (m = ``degree``): a
    bound of the Taylor remainder of exp on a matrix of norm t."""
    low, high = 0.0, 64.0
    target = math.log(_UNIT_ROUNDOFF)
    for _ in range(60):
        middle = (low + high) / 2
        if (degree + 1) * math.log(middle) - math.lgamma(degree + 2) + middle <= target:
            low = middle
        else:
            high = middle
    return low


_THETAS = {m: t for m in range(1, 40) if (t := _theta(m)) <= _MAX_THETA}


def taylor_plan(norm: float) -> tuple[int, int]:
    """``(degree, steps)`` with the fewest products ``degree * steps`` such that a Taylor
    polynomial of that degree errs by less than float32's roundoff on ``A / steps``, where
    ``norm`` bounds ``||A||``."""
    if not math.isfinite(norm):
        raise ValueError(f"the rotation's generator has norm {norm}; the fit diverged")
    if norm <= 0:
        return 1, 1
    return min(
        ((m, max(1, math.ceil(norm / theta))) for m, theta in _THETAS.items()),
        key=lambda plan: (plan[0] * plan[1], plan[1]),
    )


@functools.lru_cache(maxsize=8)
def _probe_vectors(d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The power iteration's fixed start, drawn on the CPU once per (d, dtype, device): copied
    to a GPU at every step it made the host wait for the device (a copy from pageable memory)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(d, _PROBES, generator=generator).to(device=device, dtype=dtype)


@torch.no_grad()
def spectral_norm_estimate(a: torch.Tensor) -> float:
    """``||a||_2`` by power iteration on ``a^T a`` from fixed probe vectors (a lower bound that
    is close for the dense matrices a fit produces; callers add a margin)."""
    x = _probe_vectors(a.shape[-1], a.dtype, a.device)
    for _ in range(_POWER_ITERATIONS):
        x = x / x.norm(dim=0).clamp_min(torch.finfo(a.dtype).tiny)
        x = a.mT @ (a @ x)
    return float(x.norm(dim=0).max()) ** 0.5


class _ExpAction(torch.autograd.Function):
    """``exp(a) @ v`` as ``T(a / steps)`` applied ``steps`` times, ``T`` the Taylor polynomial of
    degree ``degree``. The forward keeps the vector each product is applied to (a few MiB; no
    d x d matrix but ``a`` itself); the backward runs the products' adjoints in reverse and forms
    the gradient of ``a`` in one matrix product."""

    @staticmethod
    def forward(
        ctx: Any, a: torch.Tensor, v: torch.Tensor, degree: int, steps: int
    ) -> torch.Tensor:
        k = v.shape[1]
        inputs = v.new_empty(v.shape[0], steps * degree * k)  # column block i: product i's input
        block = 0
        for _ in range(steps):
            term = total = v
            for j in range(1, degree + 1):
                inputs[:, block * k : (block + 1) * k] = term
                block += 1
                term = (a @ term) / (steps * j)  # scaling the d x k result, not a d x d copy
                total = total + term
            v = total
        ctx.save_for_backward(a, inputs)
        ctx.plan = degree, steps
        return v

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        a, inputs = ctx.saved_tensors
        degree, steps = ctx.plan
        k = grad.shape[1]
        # Column block i: the gradient of product i's output, times its factor 1/(steps j).
        outputs = torch.empty_like(inputs)
        block = steps * degree
        for _ in range(steps):
            # total = sum_j term_j, term_j = a @ term_(j-1) / (steps j): adjoints from the top.
            term = grad
            for j in range(degree, 0, -1):
                block -= 1
                outputs[:, block * k : (block + 1) * k] = term / (steps * j)
                term = grad + (a.mT @ term) / (steps * j)
            grad = term
        return outputs @ inputs.mT, grad, None, None


def expm_action(a: torch.Tensor, v: torch.Tensor, *, degree: int, steps: int) -> torch.Tensor:
    """``exp(a) @ v`` for ``a`` (d, d) and ``v`` (d, k), differentiable in both, without forming
    ``exp(a)``; ``(degree, steps)`` from ``taylor_plan`` of a bound of ``||a||``."""
    return _ExpAction.apply(a, v, degree, steps)


class RowRotation:
    """A learned rotation ``Q = base @ exp(A)`` applied to rows, ``Q`` never formed: ``z Q`` and
    ``z Q^T`` for ``z`` (rows, d), with gradients to the module's parameter."""

    def __init__(self, module: nn.Module) -> None:
        parametrization = _weight_maps(module)
        exp_map = parametrization[0]
        if not isinstance(exp_map, _ExpOrthogonal):
            raise TypeError("RowRotation needs a rotation made by the exponential map")
        self.base = exp_map.base
        self.generator = skew_generator(parametrization.original, exp_map.d)
        norm = _NORM_MARGIN * spectral_norm_estimate(self.generator)
        self.degree, self.steps = taylor_plan(norm)

    @property
    def products(self) -> int:
        """d x d by d x rows products in one action."""
        return self.degree * self.steps

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ Q``: ``(z base) exp(A) = (exp(A^T) (z base)^T)^T``."""
        moved = (rows @ self.base).mT
        return self._exp(self.generator.mT, moved).mT

    def transposed(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ Q^T = (exp(A) z^T)^T base^T``."""
        return self._exp(self.generator, rows.mT).mT @ self.base.mT

    def _exp(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return expm_action(a, v, degree=self.degree, steps=self.steps)


_MATRIX_PATH_PRODUCTS = 90  # matrix_exp and its Frechet derivative at a trained norm, in d^3


def row_rotation(module: nn.Module, rows: int) -> RowRotation | None:
    """The learned rotation as a ``RowRotation`` where that costs less than forming ``Q`` and its
    gradient (a step on ``rows`` rows, gradients on), else None: use ``module.weight``."""
    exp_map = _weight_maps(module)[0] if parametrize.is_parametrized(module) else None
    if not isinstance(exp_map, _ExpOrthogonal) or not torch.is_grad_enabled():
        return None
    d = exp_map.d
    if d < ACTION_MIN_D:
        return None
    action = RowRotation(module)
    # Each action: products forward and backward, plus one (d x products*rows) gradient product.
    if 12 * action.products * rows >= _MATRIX_PATH_PRODUCTS * d:
        return None
    return action
