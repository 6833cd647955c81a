"""The regression gate, demonstrated on the embedded model and three kinds of model update.

- the same model again: every claim passes, deltas inside the intervals;
- a harmless update, the residual stream in another orthonormal basis (the exact same function):
  re-derivation passes, but the baseline's *frozen* alignment no longer transfers — the reason the
  report keeps transfer, re-derivation and drift apart;
- a harmful update, the digit embeddings disrupted: the boundary claim regresses and fails its own
  test with both numbers, while the negative claim still holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("what_a_fit_imports")]
# The claims' own budget (hypotheses/das.yaml): at 800 pairs x 2 epochs and 400 test pairs the
# rotated model's Left Boundary led the random rotation by +0.070 [+0.033, +0.107], an interval
# that contains the 0.05 margin, so the claim was inconclusive there, not aligned.
HARMFUL_NOISE = 1.0  # relative size of the noise added to the digit embeddings
# The noise costs task accuracy too (0.98 -> about 0.74 on 400 prompts): the gate's precondition
# is lowered to 0.7 for that run so the regression shows as a regression, not as a precondition.
pytest_plugins = ["pytester"]

# One das.yaml entry per model, the same but for its path (the claims' own budget).
MODEL_ENTRY = """
  {name}:
    path: {path}
    n_train: 1500
    n_test: 800
    epochs: 3
    sites:
      boundary: {site}
    thresholds:
      left_boundary: 0.68
      midpoint_distance: 0.72"""


def _das_yaml(paths: dict[str, str]) -> str:
    entries = [MODEL_ENTRY.format(name=k, path=v, site=_boundary_site()) for k, v in paths.items()]
    return "models:" + "".join(entries) + "\n"


CLAIMS = """
import pytest


@pytest.fixture(scope="module")
def boundary(das_session):
    return das_session.align("left_boundary", "boundary")


@pytest.fixture(scope="module")
def midpoint(das_session):
    return das_session.align("midpoint_distance", "boundary")


def test_left_boundary(das, boundary):
    das.assert_aligned(boundary, claim="left_boundary")


def test_no_midpoint(das, midpoint):
    das.assert_not_aligned(midpoint, claim="midpoint_distance")
"""


def _boundary_site() -> str:
    from das_assert.models import EMBEDDED_MODEL_DIR

    card = json.loads((EMBEDDED_MODEL_DIR / "card.json").read_text())
    best = card["search"]["grids"]["left_boundary"]["best"]
    return f"block_output[layer={best['layer']}, pos={best['position']}]"


def _save_updated(directory: Path, update: str) -> Path:
    import torch

    from das_assert.embedded.rotate import rotate_residual_basis
    from das_assert.models import load_model

    loaded = load_model("embedded")
    if update == "rotated":
        rotate_residual_basis(loaded.model, seed=3)
    else:  # harmful: the digits' embeddings pushed far from what the later layers read
        digits = loaded.tokenizer.convert_tokens_to_ids([str(i) for i in range(10)])
        with torch.no_grad():
            weight = loaded.model.get_input_embeddings().weight
            generator = torch.Generator().manual_seed(0)
            noise = torch.randn(len(digits), weight.shape[1], generator=generator)
            scale = weight[digits].norm(dim=1, keepdim=True) / weight.shape[1] ** 0.5
            weight[digits] += HARMFUL_NOISE * scale * noise
    loaded.model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def updated_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("updates")
    return {name: _save_updated(root / name, name) for name in ("rotated", "harmful")}


def _run_args(*args: str) -> list[str]:
    return [
        "--das-config=das.yaml",
        "--das-baseline-dir=baselines",
        "-p",
        "no:cacheprovider",
        "--das-json=report.json",
        *args,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, updated_models: dict[str, Path]) -> Path:
    """A project whose baseline ``embedded/reference`` was saved from a fresh fit, once for the
    three tests (pytester's folders are per test, so this runs pytest in a folder of its own)."""
    project = tmp_path_factory.mktemp("reference")
    paths = {"embedded": "embedded", **{k: str(v) for k, v in updated_models.items()}}
    (project / "das.yaml").write_text(_das_yaml(paths))
    (project / "test_claims.py").write_text(CLAIMS)
    args = _run_args("--das-cache=off", "--das-save-baseline=reference")
    # Not as an xdist worker (under `-n 2` it took one torch thread, and the runs it is compared
    # with, which pytester starts without the worker's variables, fitted with two).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    saved = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert (project / "baselines" / "embedded" / "0001_reference.json").is_file()
    return project


def _setup(pytester: pytest.Pytester, reference: Path) -> None:
    for name in ("das.yaml", "test_claims.py"):
        shutil.copy(reference / name, pytester.path / name)
    shutil.copytree(reference / "baselines", pytester.path / "baselines")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*_run_args(*args))


def _results(pytester: pytest.Pytester) -> dict[str, dict]:
    report = json.loads((pytester.path / "report.json").read_text())
    return {r["claim"]: r for r in report["results"]}


def test_the_same_model_refitted_passes_the_gate_with_every_delta_zero(pytester, reference):
    _setup(pytester, reference)
    same = _run(pytester, "--das-cache=off", "--das-compare", "--das-compare-fail=iia:0.05")
    same.assert_outcomes(passed=2)
    for record in _results(pytester).values():
        assert record["baseline"]["delta"] == 0.0
        assert record["transfer"]["iia"] == record["iia"]


def test_a_harmless_update_is_rederived_but_its_old_rotation_does_not_transfer(
    pytester, reference, updated_models
):
    """The residual stream in another orthonormal basis: the same function, new coordinates."""
    _setup(pytester, reference)
    # Judged under its own das.yaml entry, which names the embedded model's baseline.
    judged = [f"--das-model={updated_models['rotated']}", "--das-compare=embedded/reference"]
    result = _run(pytester, *judged, "--das-compare-fail=iia:0.05")
    result.assert_outcomes(passed=2)  # re-derivation finds the variable again
    assert not (pytester.path / "baselines" / "rotated").exists()
    lb = _results(pytester)["left_boundary"]
    assert lb["transfer"]["iia"] < lb["baseline"]["iia"] - 0.1, lb["transfer"]
    assert not lb["from_cache"]
    # The same fits again (from the cache the first run wrote), now gated on transfer.
    failing = _run(pytester, *judged, "--das-compare-fail=transfer:0.1")
    failing.assert_outcomes(passed=1, failed=1)
    assert "transfer dropped by" in failing.stdout.str()
    assert _results(pytester)["left_boundary"]["from_cache"]


def test_a_harmful_update_fails_the_boundary_claim_as_a_regression(
    pytester, reference, updated_models
):
    """The digit embeddings disrupted: Left Boundary regresses, the negative claim still holds."""
    _setup(pytester, reference)
    # Judged under the embedded model's entry itself, and its gate lowered (see HARMFUL_NOISE).
    judged = [f"--das-model={updated_models['harmful']}", "--das-model-entry=embedded"]
    gate = "--das-min-task-accuracy=0.7"
    result = _run(pytester, *judged, "--das-compare", "--das-compare-fail=iia:0.05", gate)
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "test_left_boundary" in output.split("short test summary info")[1]
    assert "regressed against baseline 0001_reference.json" in output
    assert "iia dropped by" in output
