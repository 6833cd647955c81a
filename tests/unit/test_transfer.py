"""``transfer.to_device``: CPU tensors bound for a GPU go through pinned memory, asynchronously;
everything else is a plain ``Tensor.to``. The GPU branch is checked by the calls it makes (this
machine has no GPU; ``gpu_7b.py --stages syncs`` counts what it saves on one)."""

from __future__ import annotations

from unittest import mock

import torch

from das_assert.transfer import to_device


def test_a_cpu_tensor_for_the_cpu_is_returned_as_it_is() -> None:
    tensor = torch.arange(4)
    assert to_device(tensor, "cpu") is tensor
    assert to_device(tensor, torch.device("cpu")) is tensor


def test_a_cpu_tensor_for_a_gpu_is_made_contiguous_pinned_then_copied_without_waiting() -> None:
    tensor = mock.MagicMock(spec=torch.Tensor)
    tensor.device = torch.device("cpu")
    dense = tensor.contiguous.return_value  # a slice's view would be copied through pageable
    pinned = dense.pin_memory.return_value
    result = to_device(tensor, "cuda:1")
    tensor.contiguous.assert_called_once_with()
    dense.pin_memory.assert_called_once_with()
    pinned.to.assert_called_once_with(torch.device("cuda:1"), non_blocking=True)
    assert result is pinned.to.return_value
    tensor.to.assert_not_called()


def test_a_tensor_already_on_a_gpu_moves_by_a_plain_copy() -> None:
    tensor = mock.MagicMock(spec=torch.Tensor)
    tensor.device = torch.device("cuda:0")
    to_device(tensor, "cuda:1")  # a model spread over GPUs: device to device, nothing pinned
    tensor.pin_memory.assert_not_called()
    tensor.to.assert_called_once_with(torch.device("cuda:1"))
