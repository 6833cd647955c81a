"""Small host tensors copied to the device without making the host wait for the device."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["cuda_devices", "gpu_index", "gpu_names", "seed_generators", "to_device"]


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``.

    A CPU tensor bound for a CUDA device goes through pinned memory, asynchronously: a copy from
    pageable memory first waits for all the work queued on the device, and a training step made
    about 11 such copies (token ids, rows, positions, labels; counted on an H200), each one
    stopping the host from queueing the step ahead of the device. A pageable ``tensor`` is copied
    to pinned memory first, so the caller may change or drop it at once (torch's pinned-memory
    allocator keeps that copy until the device has read it); a ``tensor`` already pinned is read
    in place, so it must stay unchanged until then. A strided view (a slice of a row's ids) is
    made contiguous first: pinned with its strides, it went to the device through a pageable
    contiguous temporary, which waited. Any other pair of devices is a plain ``Tensor.to``.
    """
    target = torch.device(device)
    if target.type == "cuda" and tensor.device.type == "cpu":
        return tensor.contiguous().pin_memory().to(target, non_blocking=True)
    return tensor.to(target)


def cuda_devices(model: Any) -> list[int]:
    """The CUDA devices that hold ``model``'s parameters (several under device_map)."""
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def seed_generators(seed: int, devices: list[int]) -> None:
    """Seed torch's CPU generator and those of the CUDA ``devices`` (a model's, which a fit's
    ``fork_rng`` restores), not every device's as ``torch.manual_seed`` does: a model on the
    CPU left each GPU's generator at the fit's seed after every fit."""
    torch.default_generator.manual_seed(seed)
    if devices:
        torch.cuda.init()  # the generators exist once CUDA is (a model there has it already)
    for index in devices:
        torch.cuda.default_generators[index].manual_seed(seed)


def gpu_index(model_device: str | None) -> int | None:
    """The CUDA device a model's ``device`` (``cpu``, ``cuda:N``, ``device_map=...``) names,
    None for the CPU; the first GPU for no model or a map over several."""
    if model_device is None:
        return 0
    placement = model_device.removeprefix("device_map=")
    if placement.isdigit():  # device_map=1: that GPU
        return int(placement)
    if placement.startswith("cuda"):
        index = placement.partition(":")[2]
        return int(index) if index.isdigit() else 0
    if placement in ("cpu", "xpu") or placement.startswith("xpu:"):
        return None
    return 0 if model_device.startswith("device_map=") else None  # auto, balanced, ...


def gpu_names(model_device: str) -> list[str]:
    """The names of the GPUs a model's ``device`` computes on (``cpu``, ``cuda:N``,
    ``device_map=...``); for a map over several (auto, balanced), every visible GPU's, as their
    number and kinds decide where it puts each layer. Empty without CUDA."""
    index = gpu_index(model_device)
    if index is None or not torch.cuda.is_available():
        return []
    placement = model_device.removeprefix("device_map=")
    if placement != model_device and not placement.isdigit() and not placement.startswith("cuda"):
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [torch.cuda.get_device_name(index)]
