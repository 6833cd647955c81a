"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the tiny models on one CPU thread.

    Their matrices are a few dozen wide, so a second thread only adds synchronisation; on a
    machine whose other core is busy, two threads make a forward pass about 100 times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
