"""What a forward pass of a model depends on beyond its weight files, and what changed of it.

Every memo of a model's passes (the template's preamble, base answers, prefix stores, source
vectors) is keyed by ``model_version``; the pytest session compares the model with its state at
the session's start (``model_snapshot``, ``model_changes``), since its alignments and their cache
are keyed by the weight files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from das_assert.errors import InvalidArgument, ModelChanged

__all__ = [
    "check_cacheable",
    "check_unchanged",
    "gradients_on",
    "measured_as_frozen",
    "model_changes",
    "model_snapshot",
    "model_version",
]


@contextlib.contextmanager
def measured_as_frozen(model: nn.Module) -> Iterator[None]:
    """``model`` as das_assert measures it, for the duration: in eval mode (a model left in
    training mode drops out units at random, and each evaluation gave another IIA) and with no
    parameter asking for a gradient (a fit trains its rotation alone; it filled the ``.grad``
    of every weight, a copy of the model at 7B, for the caller's next optimizer step to apply).
    What it changed is put back after: ``load_model`` gives a model that needs neither."""
    training = [module for module in model.modules() if module.training]
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for module in training:
        module.training = False
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for module in training:
            module.training = True
        for parameter in trainable:
            parameter.requires_grad_(True)


def gradients_on() -> contextlib.AbstractContextManager[Any]:
    """Gradients for a fit's rotation, even under the caller's ``torch.no_grad()`` (a notebook's
    evaluation cell). Under ``torch.inference_mode()`` no tensor can take part in autograd:
    refused, with the fix.

    Raises:
        InvalidArgument: inference mode is on.
    """
    if torch.is_inference_mode_enabled():
        raise InvalidArgument(
            "a fit trains a rotation, which needs gradients: call it outside "
            "torch.inference_mode() (torch.no_grad() is fine)"
        )
    return torch.enable_grad()


def model_version(model: Any) -> tuple[Any, ...]:
    """What every memo of a model's passes is keyed by (``model_snapshot`` as a tuple): it
    changes whenever what a forward pass computes may have changed.

    - A parameter or buffer replaced, modified in place, or converted: ``model.to`` (a dtype, a
      device) and ``model.half()`` swap each tensor's data under the same object without
      bumping its version counter, so the storage, dtype and device are part of it.
    - A forward hook added or removed on any module, or torch's global ones (an ablation
      usually is one), and a module whose ``forward`` was replaced on the instance. das_assert's
      own hooks exist only inside a pass, after its memos are consulted.

    An edit through ``.data`` (``w.data.mul_(0)``) bumps no version and cannot be seen without
    reading the weights: edit the parameter itself under ``torch.no_grad()``."""
    return (id(model), *model_snapshot(model).items())


def _forward_hooks(module: Any) -> tuple[dict[int, Any], dict[int, Any]]:
    """A module's forward pre-hooks and forward hooks (keyed by their handles' ids), less
    transformers' own output-capturing hooks: it installs them on every layer the first time a
    pass asks for hidden states or attentions, never removes them, and they change no output."""
    return (
        {k: h for k, h in module._forward_pre_hooks.items() if not _capturing(h)},
        {k: h for k, h in module._forward_hooks.items() if not _capturing(h)},
    )


def _capturing(hook: Any) -> bool:
    return getattr(hook, "__module__", None) == "transformers.utils.output_capturing"


def _own_forward(module: nn.Module, forward: Any) -> bool:
    """Whether an instance's ``forward`` is its class's own, bound to it: what transformers 4.x
    leaves behind after a pass asked for hidden states or attentions (it wraps each layer's
    ``forward`` and sets the original back on the instance), which changes nothing."""
    return (
        getattr(forward, "__self__", None) is module
        and getattr(forward, "__func__", None) is type(module).forward
    )


def model_snapshot(model: nn.Module) -> dict[str, Any]:
    """Each parameter's and buffer's identity, version, storage, dtype and device, each module's
    forward hooks or replaced ``forward``, and torch's global hooks, by name: ``model_changes``
    says what differs."""
    snapshot: dict[str, Any] = {
        f"{kind} {name}": (id(t), t._version, t.data_ptr(), t.dtype, t.device)
        for kind, named in (("parameter", model.named_parameters), ("buffer", model.named_buffers))
        for name, t in named()
    }
    for name, m in model.named_modules():
        pre, post = _forward_hooks(m)
        if pre or post:
            snapshot[f"forward hooks on {name or 'the model'}"] = (tuple(pre), tuple(post))
        if "forward" in m.__dict__ and not _own_forward(m, m.__dict__["forward"]):
            snapshot[f"the replaced forward of {name or 'the model'}"] = id(m.__dict__["forward"])
    pre, post = torch_module._global_forward_pre_hooks, torch_module._global_forward_hooks
    if pre or post:
        snapshot["torch's global forward hooks"] = (tuple(pre), tuple(post))
    return snapshot


def model_changes(model: nn.Module, before: dict[str, Any], *, most: int = 3) -> list[str]:
    """What differs between ``before`` (a ``model_snapshot``) and the model now: up to ``most``
    items, then how many more."""
    now = model_snapshot(model)
    changed = [
        _describe(name, name in before, name in now)
        for name in dict.fromkeys([*before, *now])
        if before.get(name) != now.get(name)
    ]
    if len(changed) > most:
        changed = [*changed[:most], f"{len(changed) - most} more"]
    return changed


def _describe(name: str, was: bool, is_now: bool) -> str:
    if not was:
        return f"{name} added"
    if not is_now:
        return f"{name} removed"
    return f"{name} changed"


def check_unchanged(model: nn.Module, at_start: dict[str, Any], what: str) -> None:
    """Raise ``ModelChanged`` if ``model`` differs from ``at_start`` (its ``model_snapshot``
    when a pytest session began): a hook, a replaced ``forward``, a parameter edited or
    replaced. ``what`` would otherwise reuse, or cache under the unchanged model's name, a
    measurement of another model."""
    changes = "; ".join(model_changes(model, at_start))
    if not changes:
        return
    raise ModelChanged(
        f"{what}: the model under test changed since the session began ({changes}). "
        "das_session keys its alignments and the alignment cache by the model's weight files, "
        "so it would reuse the unchanged model's alignments, or cache this one under its name. "
        "Undo the change first (remove the hook, restore the weights), or measure the changed "
        "model with das_assert.run_experiment(model, experiment, config), which caches nothing"
    )


def check_cacheable(model: nn.Module, at_load: dict[str, Any] | None) -> None:
    """Raise ``ModelChanged`` if ``model`` differs from ``at_load`` (its ``model_snapshot`` when
    it was loaded): the alignment cache keys by the weight files and the dtype given at load, so
    an ablated, edited or converted model would be served the unchanged one's alignment, or
    store its own under that one's key."""
    changes = "; ".join(model_changes(model, at_load)) if at_load is not None else ""
    if not changes:
        return
    raise ModelChanged(
        f"run_experiment(cache=...): the model changed since it was loaded ({changes}). The "
        "alignment cache keys alignments by the model's weight files, so it would serve the "
        "unchanged model's alignment, or store this one under its name. Undo the change first "
        "(remove the hook, put back the original tensor objects: one edited in place stays "
        "changed, so load the model again), or measure the changed model without a cache "
        "(cache=None; under pytest, --das-cache=off)"
    )
