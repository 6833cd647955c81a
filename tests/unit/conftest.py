"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

# transformers' logging, imported before the first in-process pytester run of a unit test
# (test_termination, test_stability, test_devices): first imported inside one, it gave its loggers
# a handler on that run's captured stderr, and a second one when imported again after the run's
# snapshot dropped it (every warning printed twice after, once to a closed file).
import transformers.utils.logging  # noqa: F401

if TYPE_CHECKING:
    from bad_inputs_support import Ctx


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the tiny models on one CPU thread.

    Their matrices are a few dozen wide, so a second thread only adds synchronisation; on a
    machine whose other core is busy, two threads make a forward pass about 100 times slower.
    Each test's own: session-wide, it left every plugin and integration test after a unit
    test (``pytest tests/unit tests/plugin``, xdist's worksteal) on one thread, and a gate
    compared with a baseline fitted on two saw the rounding as a regression.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def assert_same_alignment() -> Callable[[Any, Any], None]:
    """Two fits of one recipe, by paths that differ only in float rounding, learned the same
    alignment: rotations within 1e-4 of each other and the same boxes."""

    def check(got: Any, want: Any) -> None:
        torch.testing.assert_close(
            got.interchange.rotation_matrix().detach(),
            want.interchange.rotation_matrix().detach(),
            atol=1e-4,
            rtol=0,
        )
        assert got.boundary_dims == want.boundary_dims

    return check


# The bad-input tests (test_bad_*.py) share their helpers through bad_inputs_support; its asserts
# get pytest's rewriting like a test module's.
pytest.register_assert_rewrite("bad_inputs_support")


@pytest.fixture
def ctx(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    """What a bad call of the bad-input tests may need (see bad_inputs_support.Ctx)."""
    from bad_inputs_support import Ctx

    return Ctx(request, tmp_path, monkeypatch)
