"""Where the model goes: one GPU per pytest-xdist worker, and contradictory device options."""

from __future__ import annotations

import pytest

from das_assert.errors import InvalidArgument
from das_assert.models import worker_device, worker_threads

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("worker", "gpus", "expected"),
    [
        ("gw0", 4, "cuda:0"),
        ("gw3", 4, "cuda:3"),
        ("gw5", 4, "cuda:1"),  # more workers than GPUs: they take turns
        (None, 2, "cuda:0"),  # not under xdist
        ("gw1", 1, "cuda:0"),
    ],
)
def test_cuda_worker_puts_each_xdist_worker_on_its_own_gpu(
    worker: str | None, gpus: int, expected: str
) -> None:
    assert worker_device("cuda:worker", worker=worker, gpus=gpus) == expected


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_other_devices_are_left_as_given(device: str) -> None:
    assert worker_device(device, worker="gw2", gpus=4) == device


def test_cuda_worker_without_gpus_says_so() -> None:
    with pytest.raises(InvalidArgument, match="needs CUDA GPUs and this machine has none"):
        worker_device("cuda:worker", worker="gw0", gpus=0)


def test_device_and_device_map_together_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--das-device=cuda:0", "--das-device-map=auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--das-device and --das-device-map contradict each other*"])


@pytest.mark.parametrize(
    ("environ", "cpus", "expected"),
    [
        ({"PYTEST_XDIST_WORKER_COUNT": "2"}, 2, 1),
        ({"PYTEST_XDIST_WORKER_COUNT": "4"}, 16, 4),
        ({"PYTEST_XDIST_WORKER_COUNT": "3"}, 16, 5),
        ({"PYTEST_XDIST_WORKER_COUNT": "8"}, 2, 1),  # never below one thread
        ({}, 2, None),  # one process: torch's own default
        ({"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "2"}, 2, None),  # the user's
        ({"PYTEST_XDIST_WORKER_COUNT": "many"}, 2, None),
    ],
)
def test_each_xdist_worker_gets_its_share_of_the_cpus(
    environ: dict[str, str], cpus: int, expected: int | None
) -> None:
    assert worker_threads(environ, cpus) == expected
