"""The one module that registers torch hooks. It removes exactly the handles it added.

Three kinds of hook cover every use:

- ``capture``: record the hidden state at one token per example, and optionally stop the forward
  pass right there (nothing after the site is needed to read a source activation);
  ``capture_many`` does the same at several sites in one pass, stopping after the last of them,
  and ``capture_at`` at several (site, positions) targets;
- ``intervene``: replace the hidden state at one token per example by ``mix(base, source)``;
- ``stop_after``: end a forward pass once a module has run (a pass that only fills a KV cache
  needs nothing after the last block's attention).

With them, ``record_tails`` keeps what blocks output from a token on, and ``skip_blocks``, no hook
but the one other change to a module, lets a later pass take those outputs instead of running the
blocks (it replaces their ``forward`` for the pass and puts back exactly what was there, hooks
untouched). Whatever fails part-way, each undoes just what it did.

They work on a block's output (tuple or bare tensor) or, for ``block_input``, on its first input.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch.nn.modules import module as module_hooks

from das_assert.sites import ResolvedSite
from das_assert.transfer import to_device

__all__ = [
    "StopForward",
    "Tail",
    "UnreplayableBlockOutput",
    "capture",
    "capture_at",
    "capture_many",
    "intervene",
    "record_tails",
    "skip_blocks",
    "stop_after",
]

K = TypeVar("K", bound=Hashable)  # a key of the targets a pass records

Mix = Callable[[torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Raised by a capturing hook to end a forward pass early; caught by the context that
    registered that hook and by no other (``StopForward(owner)``: nested captures stay apart)."""

    def __init__(self, owner: object) -> None:
        super().__init__(owner)
        self.owner = owner


@contextmanager
def _stops(owner: object) -> Iterator[None]:
    """Swallow the ``StopForward`` raised for ``owner``; let any other pass on."""
    try:
        yield
    except StopForward as stopped:
        if stopped.owner is not owner:
            raise


def _hidden_of(args: tuple, kwargs: dict, output: Any, kind: str) -> torch.Tensor:
    if kind == "output":
        return output[0] if isinstance(output, tuple) else output
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def _registered(site: ResolvedSite, hook: Callable[..., Any]) -> Iterator[None]:
    module = site.module
    if site.kind == "output":
        handle = module.register_forward_hook(hook, with_kwargs=True)
    else:
        handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def capture(
    site: ResolvedSite, positions: torch.Tensor, *, stop: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``hidden[b, positions[b]]`` at ``site`` into ``captured["hidden"]`` (batch, d).

    With ``stop=True`` the forward pass is cut short after the site: run the model inside
    ``with capture(...)`` and the ``StopForward`` it raises is swallowed here.
    """
    captured: dict[str, torch.Tensor] = {}
    with _stops(captured):
        with _registered(site, _recorder(site, positions, captured, "hidden", stop, {"hidden"})):
            yield captured


def site_key(site: ResolvedSite) -> tuple[str, str]:
    """How ``capture_many`` names a site's vectors: ``(module_path, kind)``."""
    return site.module_path, site.kind


@contextmanager
def capture_many(
    sites: Sequence[ResolvedSite], positions: torch.Tensor, *, stop: bool = False
) -> Iterator[dict[tuple[str, str], torch.Tensor]]:
    """``capture`` at several sites in one forward pass, keyed by ``site_key``.

    With ``stop=True`` the pass ends as soon as every site has been recorded, wherever in the
    model the last of them lies.
    """
    targets = {site_key(site): (site, positions) for site in sites}
    with capture_at(targets, stop=stop) as captured:
        yield captured


@contextmanager
def capture_at(
    targets: Mapping[K, tuple[ResolvedSite, torch.Tensor]], *, stop: bool = False
) -> Iterator[dict[K, torch.Tensor]]:
    """``capture_many`` with each target's own positions: ``targets[key] = (site, positions)``
    records ``hidden[b, positions[b]]`` at ``site`` as ``captured[key]`` (several positions of
    one site in one pass: a search's positions read from one source run)."""
    captured: dict[K, torch.Tensor] = {}
    wanted = set(targets)
    with _stops(captured), ExitStack() as stack:
        for key, (site, positions) in targets.items():
            hook = _recorder(site, positions, captured, key, stop, wanted)
            stack.enter_context(_registered(site, hook))
        yield captured


def _recorder(
    site: ResolvedSite,
    positions: torch.Tensor,
    captured: dict[Any, torch.Tensor],
    key: Any,
    stop: bool,
    wanted: set[Any],
) -> Callable[..., None]:
    """A hook that records ``hidden[b, positions[b]]`` as ``captured[key]`` and, with ``stop``,
    ends the pass once every key in ``wanted`` is recorded."""

    def hook(_module: Any, args: tuple, kwargs: dict, output: Any = None) -> None:
        hidden = _hidden_of(args, kwargs, output, site.kind)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        captured[key] = hidden[rows, to_device(positions, hidden.device)].detach()
        if stop and wanted <= captured.keys():
            raise StopForward(captured)

    return hook


@contextmanager
def intervene(
    site: ResolvedSite, positions: torch.Tensor, mix: Mix, *, rows: slice | None = None
) -> Iterator[None]:
    """Replace ``hidden[b, positions[b]]`` by ``mix(hidden[b, positions[b]], ...)`` at ``site``.

    ``mix`` gets the base vectors (batch, d) and returns the new ones; it closes over the source.
    With ``rows`` only that slice of the batch is intervened (``positions`` and ``mix`` cover just
    those rows): several interventions, each on its own rows, can share one forward pass.
    """

    def replace(hidden: torch.Tensor) -> torch.Tensor:
        every = torch.arange(hidden.shape[0], device=hidden.device)
        index = every if rows is None else every[rows]
        where = to_device(positions, hidden.device)
        mixed = mix(hidden[index, where]).to(hidden.dtype)
        return hidden.index_put((index, where), mixed)

    def output_hook(_module: Any, _args: tuple, _kwargs: dict, output: Any) -> Any:
        if isinstance(output, tuple):
            return (replace(output[0]), *output[1:])
        return replace(output)

    def input_hook(_module: Any, args: tuple, kwargs: dict) -> Any:
        if args:
            return (replace(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": replace(kwargs["hidden_states"])}

    with _registered(site, output_hook if site.kind == "output" else input_hook):
        yield


@contextmanager
def stop_after(module: Any) -> Iterator[None]:
    """End any forward pass run inside the block as soon as ``module`` has returned.

    What the pass wrote on its way (a KV cache it was given) stays; the ``StopForward`` that cuts
    it short is swallowed here, so the model call simply returns nothing.
    """

    owner = object()

    def hook(_module: Any, _args: tuple, _output: Any) -> None:
        raise StopForward(owner)

    handle = module.register_forward_hook(hook)
    try:
        with _stops(owner):
            yield
    finally:
        handle.remove()


@dataclass(frozen=True)
class Tail:
    """A block's output from some token on, (batch, tokens, d), and how the block returns it:
    bare (``tuple_length`` 0) or first in a tuple of ``tuple_length`` (transformers 4.x's GPT-2
    and GPT-NeoX blocks return a 1-tuple; Bloom, Falcon and GPT-Neo blocks a 2-tuple with their
    attention weights)."""

    hidden: torch.Tensor
    tuple_length: int

    def as_output(self, *, copy: bool = True) -> Any:
        """What the block returned (``copy``: a copy of its own, for a hook that may edit it in
        place while the recorded tail is replayed again), the tuple's other entries as None:
        they are attention weights, which the model collects only under
        ``output_attentions=True``, never asked for by das_assert (and its engine check sets
        the result against a pass that runs the block)."""
        hidden = self.hidden.clone() if copy else self.hidden
        if not self.tuple_length:
            return hidden
        return (hidden, *(None,) * (self.tuple_length - 1))


class UnreplayableBlockOutput(RuntimeError):
    """A block returns something other than a tensor or a tuple that starts with one: a later
    pass cannot stand in for it."""


@contextmanager
def record_tails(blocks: dict[int, Any], start: int) -> Iterator[dict[int, Tail]]:
    """Record ``hidden[:, start:]`` of each block's output, keyed as ``blocks``.

    Raises:
        UnreplayableBlockOutput: a block's output is neither a tensor nor a tuple that starts with
            one (the engine check then runs the model's passes over whole prompts).
    """
    recorded: dict[int, Tail] = {}

    def recorder(index: int) -> Callable[..., None]:
        def hook(module: Any, _args: tuple, output: Any) -> None:
            # Copies: a user's hook after this one may edit the output in place.
            if isinstance(output, torch.Tensor):
                recorded[index] = Tail(output[:, start:].detach().clone(), 0)
            elif isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                recorded[index] = Tail(output[0][:, start:].detach().clone(), len(output))
            else:
                raise UnreplayableBlockOutput(
                    f"das_assert: block {index} ({type(module).__name__}) returns a "
                    f"{type(output).__name__}, not a tensor or a tuple that starts with one: its "
                    "cached passes cannot skip it. Pass prefix_cache=False, and please report the "
                    "model's type"
                )

        return hook

    handles = []
    try:  # registered inside: a registration that fails removes those before it
        for i, block in blocks.items():
            # First: the block's own output, before any hook of the user's changes it, since
            # the passes that skip the block return this and run those hooks on it again.
            handles.append(block.register_forward_hook(recorder(i), prepend=True))
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def skip_blocks(blocks: Sequence[Any], tail: Tail) -> Iterator[None]:
    """Within the block, ``blocks`` (the first blocks of a model, in order) do not run: each
    returns ``tail``, the last one's output recorded from an earlier pass over the same tokens.
    Hooks on them still run around that (an intervention on the last one's output applies to it).
    Each block's ``forward`` is put back as it was, an instance attribute included (accelerate
    keeps its device hooks there)."""
    missing = object()
    saved = [block.__dict__.get("forward", missing) for block in blocks]

    def replaying(block: Any) -> Callable[..., Any]:
        def recorded(*_args: Any, **_kwargs: Any) -> Any:
            # A copy where a hook will see it (and may edit it in place); a block without one
            # hands the tail on unseen, to the next skipped block, which ignores it, or to the
            # model's later layers, which do not write into their input.
            hooked = bool(block._forward_hooks or module_hooks._global_forward_hooks)
            return tail.as_output(copy=hooked)

        return recorded

    patched = 0  # blocks whose forward was replaced: a failure part-way restores just those
    try:
        for block in blocks:
            block.forward = replaying(block)
            patched += 1
        yield
    finally:
        for block, previous in zip(blocks[:patched], saved[:patched], strict=True):
            if previous is missing:
                del block.forward
            else:
                block.forward = previous
