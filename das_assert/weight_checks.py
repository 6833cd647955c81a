"""The checks of a model directory's weight files against its config.json: pickles refused,
tensors missing, left over or of another shape named. Each names a few of the tensors. And a
load that ran out of memory, said as such (not as damaged files)."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from das_assert.errors import ModelLoadError

__all__ = [
    "loaded_weight_files",
    "loading_out_of_memory",
    "mismatched_shapes_error",
    "refuse_partial_weights",
    "refuse_pickled_weights",
]


# Buffers that older checkpoints saved and current transformers recompute: harmless if unused.
_STALE_BUFFERS = re.compile(r"(rotary_emb\.inv_freq|\.attn\.(attention\.)?(masked_)?bias)$")


def loaded_weight_files(directory: Path) -> list[Path]:
    """The safetensors files ``from_pretrained(directory)`` reads: model.safetensors, else the
    shards model.safetensors.index.json lists. Another one beside them (an adapter, Mistral's
    consolidated.safetensors, a cache entry) is not the model. Every ``*.safetensors`` where
    the folder has neither, or its index cannot be read (the load says what is wrong)."""
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    try:
        weight_map = json.loads((directory / _INDEX).read_bytes())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return sorted(directory.glob("*.safetensors"))


_INDEX = "model.safetensors.index.json"


def refuse_pickled_weights(directory: Path) -> None:
    """Weights in pickle files (``*.bin``, ``*.pt``) could run code on load: refuse them."""
    if (directory / "model.safetensors").is_file() or (directory / _INDEX).is_file():
        return
    pickled = sorted(
        p.name for pattern in ("*.bin", "*.pt", "*.pth") for p in directory.glob(pattern)
    )
    if pickled:
        raise ModelLoadError(
            f"{str(directory)!r} holds its weights only as pickle files ({', '.join(pickled)}), "
            "which das_assert does not load (unpickling can run code); convert them once, where "
            "you trust the files: AutoModelForCausalLM.from_pretrained(dir)"
            ".save_pretrained(dir, safe_serialization=True)"
        )


def mismatched_shapes_error(directory: Path, config: Any) -> ModelLoadError | None:
    """The error that names the tensors whose shape is not config.json's, if any is not: a
    config edited after the save fails the load with a message of transformers' pointing at a
    report that das_assert keeps quiet."""
    shapes = _mismatched_shapes(directory, config)
    return ModelLoadError(_mismatch_message(directory, config, shapes)) if shapes else None


def _mismatched_shapes(directory: Path, config: Any) -> list[str]:
    """The tensors whose shape in the weight files is not the one config.json gives, as
    ``name: file [..], config [..]`` (the model built on the meta device: no memory used)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            expected = {
                name: list(tensor.shape)
                for name, tensor in AutoModelForCausalLM.from_config(config).state_dict().items()
            }
        found = []
        for file in loaded_weight_files(directory):
            with safe_open(str(file), framework="pt") as weights:
                for name in weights.keys():
                    shape = list(weights.get_slice(name).get_shape())
                    if name in expected and expected[name] != shape:
                        found.append(f"{name}: file {shape}, config {expected[name]}")
    except Exception:  # a diagnosis only: the load's own error is reported then
        return []
    return found


def _mismatch_message(directory: Path, config: Any, shapes: list[str]) -> str:
    listed = "; ".join(shapes[:3]) + (f"; and {len(shapes) - 3} more" if len(shapes) > 3 else "")
    layers = getattr(config.get_text_config(), "num_hidden_layers", None)
    return (
        f"the weights in {str(directory)!r} do not match its config.json ({config.model_type}, "
        f"{layers} layers): {len(shapes)} tensor(s) have another shape than the config gives "
        f"({listed}). Restore config.json or the weight files as save_pretrained(dir) wrote them"
    )


def refuse_partial_weights(
    directory: Path, config: Any, model: Any, loading: Mapping[str, Any]
) -> None:
    """A weight the checkpoint lacks is initialised at random, and a tensor the model has no
    place for is dropped (a layer count edited down): either way the model is not the one
    saved, and every IIA measured on it would be about another model. Refuse both, naming a
    few of the tensors. Buffers older versions saved and current ones recompute (GPT-2's and
    GPT-Neo's causal masks, rotary frequencies) are not weights, and pass."""
    buffers = {name for name, _ in model.named_buffers()}
    missing = sorted(loading.get("missing_keys") or ())
    unused = sorted(
        k
        for k in loading.get("unexpected_keys") or ()
        if k not in buffers and not _STALE_BUFFERS.search(k)
    )
    if not (missing or unused):
        return

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    problems = []
    if missing:
        problems.append(
            f"{len(missing)} weight(s) the model needs are not in the files ({some(missing)}), "
            "so they would be random"
        )
    if unused:
        problems.append(
            f"{len(unused)} tensor(s) in the files fit nowhere in the model ({some(unused)}), "
            "so the model would run without them"
        )
    layers = getattr(config.get_text_config(), "num_hidden_layers", None)
    raise ModelLoadError(
        f"the weights in {str(directory)!r} do not match its config.json "
        f"({config.model_type}, {layers} layers): {'; '.join(problems)}. That is not the model "
        "that was saved, and no alignment on it would mean anything: restore config.json or the "
        "weight files as save_pretrained(dir) wrote them"
    )


def loading_out_of_memory(
    exc: BaseException, directory: Path, config: Any, dtype: str
) -> ModelLoadError | None:
    """``exc`` as one error that says the weights did not fit in memory (the files are not
    damaged), where it is an allocator's failure; else None."""
    import torch

    from das_assert.kv_cache import allocation_failed

    if not allocation_failed(exc):
        return None
    stored = str(getattr(config, "dtype", None) or "").removeprefix("torch.")
    widened = (
        f"; its weights are stored in {stored}, at half that size: load them as stored "
        f"(--dtype {stored} on the command line, --das-dtype {stored} under pytest, "
        f"load_model(..., dtype={stored!r}) from Python)"
        if stored in ("bfloat16", "float16") and dtype == "float32"
        else ""
    )
    more = (
        "spread the model over several GPUs (device_map='auto': --device-map auto, "
        "--das-device-map auto)"
        if isinstance(exc, torch.OutOfMemoryError)
        else "give the process more memory, or load the model on a GPU"
    )
    return ModelLoadError(
        f"out of memory loading the weights in {str(directory)!r} as {dtype} "
        f"({textwrap.shorten(str(exc), 200)}){widened}; or {more}"
    )
