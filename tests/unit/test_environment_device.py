"""A report's ``device_name`` names the processor its model ran on, and a comparison notes a
change of device that rounds otherwise, not another index of one kind of GPU. On a machine with
a GPU a model on the CPU was recorded under the GPU's name, and a baseline fitted on cuda:1,
gated on cuda:0, was said to round otherwise. This machine has no GPU: torch's answers are
stubbed."""

from __future__ import annotations

import pytest
import torch

from das_assert import report
from das_assert.report import build_report, environment
from das_assert.rounding import rounding_differences


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"GPU {index}")


def _cpu_name() -> str:
    import platform

    return report._cpu_model() or platform.processor() or platform.machine()


@pytest.mark.parametrize(
    ("model_device", "named"),
    [
        ("cpu", None),  # the CPU's name
        ("cuda:1", "GPU 1"),
        ("cuda", "GPU 0"),
        ("device_map=auto", "GPU 0"),
        ("device_map=1", "GPU 1"),
        ("device_map=cpu", None),
        ("device_map={'': 'cpu'}", None),  # a map as a dict: the devices it names
        ("device_map={'': 1}", "GPU 1"),
        ("device_map={'a': 'cpu', 'b': 'cuda:1'}", "GPU 1"),
        (None, "GPU 0"),  # no model: the machine's first GPU
    ],
)
def test_the_device_named_is_the_one_the_model_ran_on(
    two_gpus: None, model_device: str | None, named: str | None
) -> None:
    found = environment(model_device=model_device)
    assert found["device_name"] == (named or _cpu_name())


def test_a_report_names_its_models_device(two_gpus: None) -> None:
    built = build_report({"device": "cpu"}, [])
    assert built["environment"]["device_name"] == _cpu_name()
    assert build_report({"device": "cuda:1"}, [])["environment"]["device_name"] == "GPU 1"


def test_check_json_names_its_models_device(two_gpus: None) -> None:
    from das_assert.preflight import check_report

    found = check_report({"model": {"device": "cpu"}})
    assert found["environment"]["device_name"] == _cpu_name()
    assert check_report({"model": {"device": "cuda:1"}})["environment"]["device_name"] == "GPU 1"


def test_without_a_gpu_every_placement_names_the_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert environment(model_device="cuda:1")["device_name"] == _cpu_name()


def _run(device: str) -> dict:
    return {"environment": {"device_name": "GPU"}, "model": {"dtype": "float32", "device": device}}


def test_another_index_of_one_kind_of_gpu_is_no_rounding_difference() -> None:
    assert rounding_differences(_run("cuda:1"), _run("cuda:0")) is None
    assert rounding_differences(_run("cuda"), _run("cuda:0")) is None


def test_the_cpu_against_a_gpu_is_a_rounding_difference() -> None:
    assert rounding_differences(_run("cpu"), _run("cuda:0")) == "device 'cpu' (here 'cuda:0')"
