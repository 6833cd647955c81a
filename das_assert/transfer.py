"""Small host tensors copied to the device without making the host wait for the device."""

from __future__ import annotations

import ast
import re
from typing import Any

import torch

__all__ = [
    "cuda_devices",
    "gpu_index",
    "gpu_names",
    "placement_gpus",
    "seed_generators",
    "to_device",
]


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


def placement_gpus(model_device: str | None) -> list[int] | None:
    """The CUDA devices a model's ``device`` names (``cpu``, ``cuda:N``, ``device_map=...``,
    a map's dict among them): [] for the CPU; None for every visible one (no model, or a
    strategy such as auto or balanced, which spreads the layers over them)."""
    if model_device is None:
        return None
    placement = model_device.removeprefix("device_map=")
    if placement.startswith("{"):  # a {module: device} map: the GPUs among its devices
        try:
            devices = [str(device) for device in ast.literal_eval(placement).values()]
        except (ValueError, SyntaxError, AttributeError, TypeError, MemoryError):
            return None  # written otherwise (a torch.device's repr): unknown, so every GPU
        return sorted({index for device in devices if (index := _gpu_of(device)) is not None})
    if (index := _gpu_of(placement)) is not None:
        return [index]
    mapped = placement != model_device
    on_cpu = placement in ("cpu", "disk") or placement.startswith("xpu")
    return None if mapped and not on_cpu else []


def _gpu_of(device: str) -> int | None:
    """The CUDA device ``device`` names (``cuda``, ``cuda:N``, or a map's bare ``N``)."""
    if device.isdigit():
        return int(device)
    if re.fullmatch(r"cuda(:\d+)?", device):
        return int(device.partition(":")[2] or 0)
    return None


def gpu_index(model_device: str | None) -> int | None:
    """The CUDA device a model's ``device`` computes on first, None for the CPU."""
    gpus = placement_gpus(model_device)
    if gpus is None:
        return 0
    return gpus[0] if gpus else None


def gpu_names(model_device: str) -> list[str]:
    """The names of the GPUs a model's ``device`` computes on; for a map strategy (auto,
    balanced), every visible GPU's, as their number and kinds decide where it puts each layer.
    Empty on the CPU or without CUDA."""
    if not torch.cuda.is_available():
        return []
    gpus = placement_gpus(model_device)
    if gpus is None:
        gpus = list(range(torch.cuda.device_count()))
    return [torch.cuda.get_device_name(index) for index in gpus]
