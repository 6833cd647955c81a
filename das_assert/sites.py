"""Sites: where in the model an intervention happens (component, layer, token position).

A site is written canonically as ``block_output[layer=1, pos=last]``. Components:

- ``block_output``: the residual stream after decoder block ``layer`` (pyvene's ``block_output``,
  the paper's site);
- ``block_input``: the residual stream before decoder block ``layer``; ``block_input`` of layer 0
  is the embedding output, "before block 0".

Decoder blocks are found by ``config.model_type`` (``BLOCK_PATHS``); for another model type, as
the one list of modules as long as the config's layer count. Negative layers count from the end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from das_assert.errors import DasError, InvalidArgument, KeywordsChecked, SiteError, did_you_mean
from das_assert.positions import Position, parse_position, whole_number
from das_assert.values import is_integer

__all__ = [
    "ATTENTION_NAMES",
    "BLOCK_PATHS",
    "COMPONENTS",
    "ResolvedSite",
    "Site",
    "decoder_blocks",
    "existing_sites",
    "last_attention",
    "last_unchanged_block",
    "parse_site",
]

COMPONENTS = ("block_output", "block_input")
#: pyvene's other components: inside a block, not on the residual stream das_assert intervenes on.
_INNER_COMPONENTS = frozenset(
    f"{part}_{end}"
    for part in (
        "mlp",
        "attention",
        "query",
        "key",
        "value",
        "head_query",
        "head_key",
        "head_value",
    )
    for end in ("input", "output")
) | {"mlp_activation", "attention_value_output", "head_attention_value_output", "attention_weight"}

#: Attribute path from the CausalLM to its list of decoder blocks, by ``config.model_type``.
BLOCK_PATHS = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "mixtral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "olmo": "model.layers",
    "olmo2": "model.layers",
    "phi3": "model.layers",
    "gpt2": "transformer.h",
    "gptj": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
}

#: Name of the self-attention module inside a decoder block, by ``config.model_type``: the module
#: that writes the block's keys and values into the KV cache.
ATTENTION_NAMES = {
    **{
        model_type: "self_attn"
        for model_type, path in BLOCK_PATHS.items()
        if path.endswith("layers")
    },
    "gpt2": "attn",
    "gptj": "attn",
    "gpt_neox": "attention",
}

_CANONICAL = re.compile(r"^(\w+)\[layer=(-?\d+),\s*pos=([^\]]+)\]$")


@dataclass(frozen=True)
class ResolvedSite:
    """A site bound to one model: the block module and the hook kind to use on it."""

    site: Site
    layer: int  # non-negative
    module: Any = field(repr=False)  # the block: its repr is the whole layer's
    module_path: str
    kind: str  # "output" or "input"


@dataclass(frozen=True)
class Site(KeywordsChecked):
    """Where to intervene: ``Site(layer, position, component="block_output")``."""

    layer: int
    position: str = "last"
    component: str = "block_output"

    def __post_init__(self) -> None:
        if not is_integer(self.layer):
            raise InvalidArgument(f"layer must be an integer, not {self.layer!r}")
        object.__setattr__(self, "layer", int(self.layer))  # a NumPy integer, e.g. from a grid
        if isinstance(self.component, str) and self.component in _INNER_COMPONENTS:
            raise InvalidArgument(
                f"component {self.component!r} is not supported: das_assert intervenes on the "
                f"residual stream only, a block's output or input ({', '.join(COMPONENTS)}); "
                "an MLP's or attention's own output is not a site"
            )
        if self.component not in COMPONENTS:
            raise InvalidArgument(
                f"unknown component {self.component!r}; known: {', '.join(COMPONENTS)}."
                + did_you_mean(str(self.component), COMPONENTS)
            )
        object.__setattr__(self, "position", parse_position(self.position).name)

    @property
    def parsed_position(self) -> Position:
        return parse_position(self.position)

    def at(self, **changes: Any) -> Site:
        """A copy with ``layer``, ``position`` or ``component`` changed."""
        return replace(self, **changes)

    def __str__(self) -> str:
        return f"{self.component}[layer={self.layer}, pos={self.position}]"

    def in_blocks_of(self, model: Any) -> Site:
        """This site with its block's own number (``layer=-1``: the last block's index), so
        that one block written two ways is one site to the cache, a gate and a frozen run."""
        return self if self.layer >= 0 else self.at(layer=self.resolve(model).layer)

    def resolve(self, model: Any) -> ResolvedSite:
        """Bind to ``model`` (a transformers CausalLM).

        Raises:
            InvalidArgument: an architecture without a known block path, or a layer out of range.
        """
        model_type = getattr(model.config, "model_type", "?")
        path, blocks = _blocks_of(model)
        n_layers = len(blocks)
        layer = self.layer + n_layers if self.layer < 0 else self.layer
        if not 0 <= layer < n_layers:
            raise SiteError(
                f"layer={self.layer} is out of range for {model_type} ({n_layers} layers: "
                f"0..{n_layers - 1}; negative indices count from the end)"
            )
        kind = "output" if self.component == "block_output" else "input"
        return ResolvedSite(self, layer, blocks[layer], f"{path}.{layer}", kind)


def _blocks_of(model: Any) -> tuple[str, Any]:
    """``(attribute path, list of decoder blocks)`` of a transformers CausalLM."""
    model_type = getattr(model.config, "model_type", "?")
    path = BLOCK_PATHS.get(model_type) or _discovered_block_path(model, model_type)
    blocks = model
    try:
        for attribute in path.split("."):
            blocks = getattr(blocks, attribute)
    except AttributeError:
        raise InvalidArgument(
            f"{type(model).__name__} has no decoder blocks at {path!r} (model_type "
            f"{model_type!r}); pass the transformers CausalLM itself, e.g. loaded.model "
            "for the LoadedModel that load_model() returns"
        ) from None
    return path, blocks


def _discovered_block_path(model: Any, model_type: str) -> str:
    """The path of the one ``ModuleList`` in ``model`` as long as its config's layer count: the
    decoder blocks of a model type ``BLOCK_PATHS`` does not list."""
    config = model.config
    config = getattr(config, "get_text_config", lambda: config)()
    n_layers = next(
        (
            value
            for name in ("num_hidden_layers", "n_layer", "num_layers")
            if isinstance(value := getattr(config, name, None), int)
        ),
        None,
    )
    found = []
    if n_layers and hasattr(model, "named_modules"):
        import torch

        found = [
            name
            for name, module in model.named_modules()
            if name and isinstance(module, torch.nn.ModuleList) and len(module) == n_layers
        ]
    if len(found) == 1:
        return found[0]
    why = (
        f"it has {len(found)} lists of {n_layers} modules ({', '.join(found)})"
        if found
        else f"it has no list of {n_layers} modules"
        if n_layers
        else "its config has no num_hidden_layers"
    )
    raise InvalidArgument(
        f"das_assert does not know where the decoder blocks of model_type {model_type!r} "
        f"are: {why}. Known model types: {', '.join(sorted(BLOCK_PATHS))}. Register yours "
        "before the run, in conftest.py under pytest, or on the command line in a file given "
        "with --causal-models FILE: `from das_assert.sites import BLOCK_PATHS; "
        f"BLOCK_PATHS[{model_type!r}] = 'model.layers'` (the attribute path of the list of "
        "decoder blocks; optionally ATTENTION_NAMES, the attention module's name in a block, "
        "lets prefix passes stop early)"
    )


def decoder_blocks(model: Any) -> Any | None:
    """The list of ``model``'s decoder blocks, or None where das_assert does not know it."""
    try:
        return _blocks_of(model)[1]
    except InvalidArgument:
        return None


def last_unchanged_block(site: ResolvedSite) -> int | None:
    """The last block whose output an intervention at ``site`` cannot change: its own for a
    block's output, the one before for a block's input (None before block 0)."""
    block = site.layer if site.kind == "output" else site.layer - 1
    return block if block >= 0 else None


def existing_sites(model: Any, sites: Sequence[Site]) -> list[ResolvedSite]:
    """``sites`` resolved in ``model``, leaving out those it does not have (a search's planned
    sites: a bad one fails in its own alignment, with its own error)."""
    resolved = []
    for site in sites:
        try:
            resolved.append(site.resolve(model))
        except DasError:
            continue
    return resolved


def parse_site(text: str) -> Site:
    """Parse the canonical form ``block_output[layer=1, pos=last]``."""
    if not isinstance(text, str):
        raise InvalidArgument(
            f"parse_site takes text, not {type(text).__name__} {text!r}; write the site as "
            "COMPONENT[layer=L, pos=NAME], e.g. block_output[layer=1, pos=last]"
        )
    match = _CANONICAL.match(text.strip())
    if not match:
        raise InvalidArgument(
            f"cannot parse site {text!r}; write it as COMPONENT[layer=L, pos=NAME], "
            "e.g. block_output[layer=1, pos=last]"
        )
    component, layer, position = match.groups()
    return Site(whole_number(layer, text), position.strip(), component)


def last_attention(model: Any) -> Any | None:
    """The self-attention module of ``model``'s last decoder block, or None where unknown.

    Once it has run, the KV cache holds every layer's keys and values: a pass that only fills a
    cache can stop there and skip the last block's MLP and everything after it.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    name = ATTENTION_NAMES.get(model_type) if isinstance(model_type, str) else None
    if name is None:
        return None
    try:
        block = Site(-1, "last").resolve(model).module
    except InvalidArgument:
        return None
    return getattr(block, name, None)
