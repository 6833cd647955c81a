"""A learned rotation applied to rows (``RowRotation``) instead of formed as a matrix.

References are float64 products with ``torch.matrix_exp``; the float32 paths are judged by their
relative error against them, and the action's against torch's own float32 ``matrix_exp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils import parametrize

from das_assert import rotation
from das_assert.data import encode
from das_assert.evaluate import evaluate
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, fit_alignment
from das_assert.positions import parse_position
from das_assert.rotation import expm_action, row_rotation, spectral_norm_estimate, taylor_plan
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs


def _skew(d: int, scale: float, seed: int) -> torch.Tensor:
    x = torch.randn(d, d, generator=torch.Generator().manual_seed(seed)) * scale
    return x.tril() - x.tril().T


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm())


def _planned(a: torch.Tensor) -> dict[str, int]:
    degree, steps = taylor_plan(1.25 * spectral_norm_estimate(a))
    return {"degree": degree, "steps": steps}


# Scales 0.003-0.3 give ||A|| from 0.06 to 13 at d = 96: from a fit's first steps to past its end.
SCALES = [0.0, 0.003, 0.03, 0.1, 0.3]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("d", [16, 96])
def test_the_action_is_exp_times_the_vectors(d: int, scale: float) -> None:
    a = _skew(d, scale, seed=d)
    v = torch.randn(d, 8, generator=torch.Generator().manual_seed(1))
    want = torch.matrix_exp(a.double()) @ v.double()
    ours = _relative_error(expm_action(a, v, **_planned(a)), want)
    torchs = _relative_error(torch.matrix_exp(a) @ v, want)
    assert ours < 2e-6
    assert ours <= 2 * torchs + 1e-7


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("d", [16, 96])
def test_the_actions_gradients_are_those_of_exp_times_the_vectors(d: int, scale: float) -> None:
    a = _skew(d, scale, seed=d)
    generator = torch.Generator().manual_seed(2)
    v, grad = torch.randn(d, 8, generator=generator), torch.randn(d, 8, generator=generator)
    a64, v64 = a.double().requires_grad_(), v.double().requires_grad_()
    want = torch.autograd.grad(torch.matrix_exp(a64) @ v64, (a64, v64), grad.double())
    a32, v32 = a.clone().requires_grad_(), v.clone().requires_grad_()
    ours = torch.autograd.grad(expm_action(a32, v32, **_planned(a)), (a32, v32), grad)
    a32, v32 = a.clone().requires_grad_(), v.clone().requires_grad_()
    torchs = torch.autograd.grad(torch.matrix_exp(a32) @ v32, (a32, v32), grad)
    for mine, theirs, reference in zip(ours, torchs, want, strict=True):
        assert _relative_error(mine, reference) < 2e-6
        assert _relative_error(mine, reference) <= 2 * _relative_error(theirs, reference) + 1e-7


def test_the_backward_is_the_adjoint_of_the_forward() -> None:
    """Finite differences in float64, through a plan of several steps, for a matrix that is not
    skew-symmetric: the backward is exact for the polynomial the forward evaluates."""
    generator = torch.Generator().manual_seed(3)
    a = (torch.randn(6, 6, generator=generator, dtype=torch.float64) * 0.4).requires_grad_()
    v = torch.randn(6, 3, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, v: expm_action(a, v, degree=5, steps=3), (a, v), eps=1e-6, atol=1e-8
    )


def test_a_matrix_that_is_not_skew_gets_exp_too() -> None:
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(24, 24, generator=generator) * 0.2
    v = torch.randn(24, 5, generator=generator)
    norm = float(torch.linalg.matrix_norm(a, 2))
    degree, steps = taylor_plan(norm)
    want = torch.matrix_exp(a.double()) @ v.double()
    assert _relative_error(expm_action(a, v, degree=degree, steps=steps), want) < 2e-6


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.0, max_value=500.0))
def test_every_plan_keeps_each_step_within_its_degrees_bound(norm: float) -> None:
    degree, steps = taylor_plan(norm)
    theta = rotation._THETAS[degree]
    assert norm / steps <= theta
    # The remainder bound at that step size is below float32's roundoff.
    if norm > 0:
        t = norm / steps
        log_bound = (degree + 1) * math.log(t) - math.lgamma(degree + 2) + t
        assert log_bound <= math.log(2.0**-24) + 1e-9


def test_plans_grow_with_the_norm_and_refuse_a_diverged_one() -> None:
    products = [math.prod(taylor_plan(n)) for n in (0.0, 0.1, 1.0, 4.0, 13.0, 40.0)]
    assert products == sorted(products)
    assert taylor_plan(0.0) == (1, 1)
    with pytest.raises(ValueError, match="diverged"):
        taylor_plan(float("nan"))


@pytest.mark.parametrize("scale", [0.003, 0.1, 0.3])
def test_the_norm_estimate_is_close_from_below(scale: float) -> None:
    a = _skew(256, scale, seed=5)
    # A fit's generator: dense noise plus the few directions it learned.
    directions = torch.randn(256, 3, generator=torch.Generator().manual_seed(6))
    a = a + (directions @ directions.T.roll(1, 0)) * scale
    a = (a - a.T) / 2
    true = float(torch.linalg.matrix_norm(a.double(), 2))
    estimate = spectral_norm_estimate(a)
    assert 0.8 * true <= estimate <= true * (1 + 1e-5)
    assert spectral_norm_estimate(torch.zeros(8, 8)) == 0.0


# -- the rotation in an interchange ----------------------------------------------------------


@pytest.fixture
def action_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "FRECHET_MIN_D", 0)
    monkeypatch.setattr(rotation, "ACTION_MIN_D", 0)


def _moved_interchange(d: int, seed: int) -> Interchange:
    torch.manual_seed(seed)
    interchange = Interchange.boundless(d)
    rotation.move_generator_(interchange.rotate, torch.randn(d, d) * 0.05)
    return interchange


def _never_formed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("the rotation matrix was formed")

    monkeypatch.setattr(rotation._SkewExp, "apply", refuse)


def _reference_step(
    interchange: Interchange, base: torch.Tensor, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The soft mix and the gradient of its squared sum by the parameter, in float64."""
    parametrization = interchange.rotate.parametrizations.weight
    x = parametrization.original.detach().double().requires_grad_()
    d = interchange.d
    q = parametrization[0].base.double() @ torch.matrix_exp(rotation.skew_generator(x, d))
    mask = interchange.masks(hard=False)[0].detach().double()
    h, s = base.double(), source.double()
    mixed = h + (mask * ((s - h) @ q)) @ q.T
    (grad,) = torch.autograd.grad(mixed.pow(2).sum(), x)
    return mixed.detach(), grad


def test_a_training_step_never_forms_the_rotation_and_is_closer_to_float64(
    action_everywhere: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    interchange = _moved_interchange(64, seed=7)
    generator = torch.Generator().manual_seed(8)
    base, source = torch.randn(8, 64, generator=generator), torch.randn(8, 64, generator=generator)
    variables = torch.zeros(8, dtype=torch.long)
    original = interchange.rotate.parametrizations.weight.original
    errors = {}
    for path in ("matrix", "action"):
        with monkeypatch.context() as patch:
            if path == "matrix":
                patch.setattr(rotation, "ACTION_MIN_D", 10**9)
            else:
                _never_formed(patch)
            original.grad = None
            mixed = interchange(base, source, variables, hard=False)
            mixed.pow(2).sum().backward()
        want_mixed, want_grad = _reference_step(interchange, base, source)
        errors[path] = (
            _relative_error(mixed.detach(), want_mixed),
            _relative_error(original.grad, want_grad),
        )
    for matrix, action in zip(errors["matrix"], errors["action"], strict=True):
        assert action < 1e-5  # float32 rounding of the whole step (the mix alone is 2e-7)
        assert action <= 2 * matrix + 1e-7


def test_an_empty_box_is_still_an_exact_no_op(action_everywhere: None) -> None:
    interchange = _moved_interchange(64, seed=9)
    with torch.no_grad():
        interchange.widths.zero_()
    base, source = torch.randn(4, 64), torch.randn(4, 64)
    variables = torch.zeros(4, dtype=torch.long)
    interchange.temperature = 1e-6  # the soft mask is exactly zero around an empty box
    assert row_rotation(interchange.rotate, 4) is not None
    assert torch.equal(interchange(base, source, variables, hard=True), base)


def test_the_matrix_is_used_where_it_is_cheaper_or_nothing_is_trained(
    action_everywhere: None,
) -> None:
    module = _moved_interchange(64, seed=10).rotate
    assert row_rotation(module, 1) is not None
    assert row_rotation(module, 64) is None  # as many rows as coordinates: form the matrix
    with torch.no_grad():
        assert row_rotation(module, 1) is None  # evaluation forms Q once
    rotation.FRECHET_MIN_D = 10**9
    assert row_rotation(rotation.orthogonal_rotation(64), 1) is None  # torch's own map


@pytest.mark.parametrize("path", ["frechet", "action"])
def test_fit_alignment_learns_torchs_alignment_by_every_faster_path(
    tiny_models: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    assert_same_alignment: Callable[..., None],
    path: str,
) -> None:
    """Torch's own parametrization against das_assert's map with the Frechet backward (Q formed)
    and against the action (Q never formed in training)."""
    loaded = tiny_models["llama"]
    train = encode(loaded, prompt_pairs("left_boundary", 24, seed=0), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    config = FitConfig(epochs=2, batch_size=8, lr_rotation=1e-2)
    plain = fit_alignment(loaded.model, site, train, config)
    monkeypatch.setattr(rotation, "FRECHET_MIN_D", 0)
    monkeypatch.setattr(rotation, "ACTION_MIN_D", 0 if path == "action" else 10**9)
    if path == "action":
        _never_formed(monkeypatch)  # not once in training
    faster = fit_alignment(loaded.model, site, train, config)
    monkeypatch.undo()
    assert type(faster.interchange.rotate.parametrizations.weight[0]).__name__ == "_ExpOrthogonal"
    assert_same_alignment(faster, plain)
    assert faster.interchange.orthogonality_error() < 1e-4


def test_an_evaluation_forms_the_rotation_once(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models["llama"]
    monkeypatch.setattr(rotation, "FRECHET_MIN_D", 0)
    test = encode(loaded, prompt_pairs("left_boundary", 24, seed=1), parse_position("last"))
    site = Site(1, "last").resolve(loaded.model)
    alignment = fit_alignment(
        loaded.model, site, test, FitConfig(epochs=1, batch_size=8, lr_rotation=1e-2)
    )
    calls = []
    formed = rotation._SkewExp.apply
    monkeypatch.setattr(rotation._SkewExp, "apply", lambda a: calls.append(1) or formed(a))
    evaluate(loaded.model, alignment, test, batch_size=8)  # three batches
    assert calls == [1]
    with parametrize.cached():  # a caller's own cache is left alone
        evaluate(loaded.model, alignment, test, batch_size=8)
    assert len(calls) == 2
