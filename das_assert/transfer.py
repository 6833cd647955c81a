"""Small host tensors copied to the device without making the host wait for the device."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["cuda_devices", "seed_generators", "to_device"]


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
