"""The learned rotation's faster backward gives the gradient of torch's ``matrix_exp`` backward.

References are float64 gradients through ``torch.matrix_exp``; the float32 paths are judged by
their relative error against them.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn.utils import parametrizations, parametrize

from das_assert import featurizers, rotation
from das_assert.data import encode
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, fit_alignment
from das_assert.positions import parse_position
from das_assert.rotation import expm_frechet, orthogonal_rotation
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs


def _skew(d: int, scale: float, seed: int) -> torch.Tensor:
    x = torch.randn(d, d, generator=torch.Generator().manual_seed(seed)) * scale
    return x.tril() - x.tril().T


def _reference_gradient(a: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    a64 = a.double().requires_grad_()
    (result,) = torch.autograd.grad(torch.matrix_exp(a64), a64, grad.double())
    return result


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm())


@pytest.mark.parametrize("scale", [0.0, 0.003, 0.03, 0.3])
@pytest.mark.parametrize("d", [16, 96])
def test_the_frechet_derivative_is_the_gradient_of_matrix_exp(d: int, scale: float) -> None:
    a = _skew(d, scale, seed=d)
    # A training step's gradient: low rank (a batch of 8 rows) plus a little of everything.
    generator = torch.Generator().manual_seed(1)
    grad = torch.randn(d, 8, generator=generator) @ torch.randn(8, d, generator=generator)
    grad += 0.01 * torch.randn(d, d, generator=generator)
    want = _reference_gradient(a, grad)
    a32 = a.clone().requires_grad_()
    (torch_grad,) = torch.autograd.grad(torch.matrix_exp(a32), a32, grad)
    ours = expm_frechet(a.T.contiguous(), grad)
    assert _relative_error(ours, want) < 2e-5
    # At least as close to float64 as torch's own float32 backward (plus rounding).
    assert _relative_error(ours, want) <= 2 * _relative_error(torch_grad, want) + 1e-6


def test_the_frechet_derivative_holds_for_a_matrix_that_is_not_skew() -> None:
    generator = torch.Generator().manual_seed(2)
    m = torch.randn(24, 24, generator=generator) * 0.2
    e = torch.randn(24, 24, generator=generator)
    m64 = m.double().T.contiguous().requires_grad_()
    (want,) = torch.autograd.grad(torch.matrix_exp(m64), m64, e.double())
    assert _relative_error(expm_frechet(m, e), want) < 2e-5


@pytest.fixture
def frechet_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "FRECHET_MIN_D", 0)


def test_small_rotations_keep_torchs_own_parametrization() -> None:
    module = orthogonal_rotation(rotation.FRECHET_MIN_D - 1)
    torch.manual_seed(0)
    reference = parametrizations.orthogonal(torch.nn.Linear(8, 8, bias=False))
    assert type(module.parametrizations.weight[0]) is type(reference.parametrizations.weight[0])


def test_the_faster_rotation_is_torchs_rotation_bit_for_bit_from_the_same_generator(
    frechet_everywhere: None,
) -> None:
    torch.manual_seed(3)
    ours = orthogonal_rotation(48)
    torch.manual_seed(3)
    plain = torch.nn.Module()
    plain.weight = torch.nn.Parameter(torch.empty(48, 48))
    torch.nn.init.orthogonal_(plain.weight)
    parametrizations.orthogonal(plain)
    assert set(ours.state_dict()) == set(plain.state_dict())
    noise = torch.randn(48, 48) * 0.05
    for module in (ours, plain):
        rotation.move_generator_(module, noise)
    assert type(ours.parametrizations.weight[0]).__name__ == "_ExpOrthogonal"
    assert torch.equal(ours.weight, plain.weight)


def test_a_rotation_step_gets_the_same_gradient_from_both_backwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gradients = []
    for threshold in (10**9, 0):
        monkeypatch.setattr(rotation, "FRECHET_MIN_D", threshold)
        torch.manual_seed(4)
        interchange = Interchange.boundless(64)
        rotation.move_generator_(interchange.rotate, torch.randn(64, 64) * 0.05)
        base, source = torch.randn(8, 64), torch.randn(8, 64)
        variables = torch.zeros(8, dtype=torch.long)
        with parametrize.cached():
            interchange(base, source, variables, hard=False).pow(2).sum().backward()
        gradients.append(interchange.rotate.parametrizations.weight.original.grad.clone())
    plain, faster = gradients
    plain = rotation.packed_generator(plain)  # torch's map keeps the triangle unpacked
    torch.testing.assert_close(faster, plain, rtol=0, atol=1e-4 * float(plain.abs().max()))


@pytest.mark.parametrize("d", [2, 7, 48, 301])
def test_the_packed_generator_is_torchs_triangle_and_gets_torchs_gradient_entry_by_entry(
    d: int,
) -> None:
    generator = torch.Generator().manual_seed(d)
    x, upstream = torch.randn(d, d, generator=generator), torch.randn(d, d, generator=generator)
    packed = rotation.packed_generator(x).requires_grad_()
    unpacked = x.clone().requires_grad_()
    lower = unpacked.tril()  # torch's orthogonal map
    skew = rotation.skew_generator(packed, d)
    assert torch.equal(skew, lower - lower.mT)
    (skew * upstream).sum().backward()
    ((lower - lower.mT) * upstream).sum().backward()
    assert torch.equal(packed.grad, rotation.packed_generator(unpacked.grad))
    used = rotation.packed_generator(torch.ones(d, d)) != 0
    assert int(used.sum()) == d * (d - 1) // 2  # each entry of the triangle held once
    assert not packed.grad[~used].any()  # the slots outside it never move


def test_the_faster_rotation_holds_half_of_torchs_parameter_and_adam_state_and_trains_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotations, sizes = [], []
    for threshold in (10**9, 0):  # torch's map, then das_assert's
        monkeypatch.setattr(rotation, "FRECHET_MIN_D", threshold)
        torch.manual_seed(6)
        module = orthogonal_rotation(40)
        original = module.parametrizations.weight.original
        optimizer = torch.optim.Adam([original], lr=1e-2)
        target = torch.randn(40, 40, generator=torch.Generator().manual_seed(7))
        for _ in range(5):
            with parametrize.cached():
                (module.weight * target).sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        state = optimizer.state[original]
        sizes.append(original.numel() + state["exp_avg"].numel() + state["exp_avg_sq"].numel())
        rotations.append(module.weight.detach())
    torch.testing.assert_close(rotations[1], rotations[0], rtol=0, atol=1e-5)
    assert sizes[1] == sizes[0] // 2


def test_a_rotation_that_starts_from_a_matrix_that_is_not_orthogonal_is_refused(
    frechet_everywhere: None,
) -> None:
    module = orthogonal_rotation(8)
    with pytest.raises(ValueError, match="orthogonal"):
        module.parametrizations.weight.right_inverse(torch.ones(8, 8))


@pytest.mark.parametrize("d", [8, 48, 300])
def test_the_initial_rotation_is_torchs_orthogonal_init_bit_for_bit_layout_included(d: int) -> None:
    torch.manual_seed(d)
    ours = rotation.random_orthogonal(d, "cpu")
    torch.manual_seed(d)
    torchs = torch.nn.init.orthogonal_(torch.empty(d, d))
    assert torch.equal(ours, torchs)
    assert ours.stride() == torchs.stride()  # randn_like(weight) follows the layout


@pytest.mark.parametrize("d", [16, 256, 1024])
def test_the_orthogonality_check_accepts_a_qr_factor_and_refuses_a_column_off_by_a_percent(
    d: int,
) -> None:
    torch.manual_seed(d)
    q = rotation.random_orthogonal(d)
    assert rotation._is_orthogonal(q)
    for column in (0, d // 2, d - 1):
        scaled = q.clone()
        scaled[:, column] *= 1.01
        assert not rotation._is_orthogonal(scaled)
    assert not rotation._is_orthogonal(q + 1e-3 * torch.randn(d, d))


def test_a_fit_draws_its_rotation_on_the_models_device(
    tiny_llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []
    original = rotation.random_orthogonal

    def recording(d: int, device: Any = None) -> torch.Tensor:
        drawn.append(device)
        return original(d, device)

    monkeypatch.setattr(rotation, "random_orthogonal", recording)
    model = tiny_llama.model
    pairs = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    fit_alignment(model, Site(1, "last").resolve(model), pairs, FitConfig(epochs=1, batch_size=8))
    assert drawn == [model.get_input_embeddings().weight.device]


# -- the random rotation control ---------------------------------------------------------------


def test_the_random_control_is_drawn_once_per_size_and_seed_and_never_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    featurizers._random_orthogonal.cache_clear()
    calls = []
    qr = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a: calls.append(a.shape) or qr(a))
    first = Interchange.random_rotation(40, [10], seed=5)
    second = Interchange.random_rotation(40, [20], seed=5)  # another cell's widths, same draw
    assert calls == [(40, 40)]
    want, _ = qr(torch.randn(40, 40, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(first.fixed_rotation, want)  # the draw the published baselines used
    with torch.no_grad():
        first.fixed_rotation.mul_(-1)
    assert torch.equal(second.fixed_rotation, want)
    assert torch.equal(Interchange.random_rotation(40, [10], seed=5).fixed_rotation, want)
    Interchange.random_rotation(40, [10], seed=6)
    assert calls == [(40, 40), (40, 40)]


def test_a_rotation_is_recognised_under_float32_matmuls_set_to_bfloat16() -> None:
    # the orthogonality check measured its own rounding under reduced-precision matmuls (4e-4
    # against 7.6e-5 at d = 4096) and refused every rotation from d = 256 on: no fit could start
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        torch.manual_seed(0)
        for d in (256, 1024):
            Interchange.boundless(d, initial_rotation=rotation.random_orthogonal(d))
        with pytest.raises(ValueError, match="orthogonal"):
            Interchange.boundless(256, initial_rotation=rotation.random_orthogonal(256) * 1.01)
    finally:
        torch.set_float32_matmul_precision(before)
