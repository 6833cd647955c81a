"""config.json and tokenizer_config.json as bytes that change with what they set.

A model's fingerprint (the alignment cache's key) hashes these files. ``save_pretrained``
rewrites them with what it records about the save (its version, the load flags), defaults spelt
out, and, between transformers 4.57 and 5, other spellings of the same settings. Those are
dropped or rewritten to one spelling here. Anything else counts, so an unknown key or another
value gives another fingerprint, never a false match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["FINGERPRINT_SCHEME", "canonical_config", "canonical_tokenizer_config"]

#: Which way of digesting these files an alignment file's ``model`` fingerprint was made by;
#: bump it where a change here gives the same files other digests. Files saved before it was
#: recorded (2026-12-07) may hold digests of an earlier way (changed 2026-12-03 and 12-06).
FINGERPRINT_SCHEME = 1

# What save_pretrained writes about the save itself: the version that wrote the file, and where
# and how it was loaded from. None of it changes what the model or its tokenizer compute.
_BOOKKEEPING_KEYS = ("transformers_version", "_name_or_path", "name_or_path", "_commit_hash")
_TOKENIZER_LOADER_KEYS = ("is_local", "local_files_only")
# Tokenizer settings written out at their defaults (by 5.x, or by 4.57 on a re-save); absent,
# they are the same.
_TOKENIZER_DEFAULTS: dict[str, Any] = {
    "max_length": None,
    "pad_to_multiple_of": None,
    "pad_token_type_id": 0,
    "clean_up_tokenization_spaces": False,
    "extra_special_tokens": {},
}
# transformers 5 saves its generic fast tokenizer under its new name; in 5.x both are one class.
_TOKENIZER_CLASS_ALIASES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def canonical_config(settings: dict[str, Any]) -> bytes:
    """config.json without the save's bookkeeping, its RoPE settings and dtype in the 5.x
    spelling."""
    kept = {key: value for key, value in settings.items() if key not in _BOOKKEEPING_KEYS}
    return _dumps(_rope_parameters(_dtype(kept)))


def _dtype(settings: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints of transformers up to 4.55 (Llama-2, Alpaca) say ``torch_dtype``; 5.x
    re-saves it as ``dtype``. One key where they agree; where they disagree, both count."""
    if "torch_dtype" not in settings:
        return settings
    older = settings["torch_dtype"]
    if settings.get("dtype", older) != older:
        return settings
    rest = {key: value for key, value in settings.items() if key != "torch_dtype"}
    return {**rest, "dtype": older}


def canonical_tokenizer_config(settings: dict[str, Any], directory: Path | None = None) -> bytes:
    """tokenizer_config.json without the save's bookkeeping, the load flags, defaults spelt out
    and the class's 5.x name; ``added_tokens_decoder`` (4.57) counts only where it differs from
    the added tokens of ``directory``'s tokenizer.json, which the fingerprint hashes anyway."""
    kept = {
        key: value
        for key, value in settings.items()
        if key not in _BOOKKEEPING_KEYS
        and key not in _TOKENIZER_LOADER_KEYS
        and not (key in _TOKENIZER_DEFAULTS and value == _TOKENIZER_DEFAULTS[key])
    }
    name = kept.get("tokenizer_class")
    if isinstance(name, str):
        kept["tokenizer_class"] = _TOKENIZER_CLASS_ALIASES.get(name, name)
    if "added_tokens_decoder" in kept and directory is not None:
        if kept["added_tokens_decoder"] == _added_tokens_of(directory / "tokenizer.json"):
            del kept["added_tokens_decoder"]
    return _dumps(kept)


def _rope_parameters(settings: dict[str, Any]) -> dict[str, Any]:
    """4.57 writes ``rope_theta`` and ``rope_scaling`` (on a re-save of a 5.x config, beside
    5.x's ``rope_parameters``); 5.x folds them into ``rope_parameters``. Written as 5.x would,
    where the two spellings agree; where they disagree, both count."""
    if "rope_theta" not in settings and "rope_scaling" not in settings:
        return settings
    scaling = settings.get("rope_scaling") or {}
    if not isinstance(scaling, dict):
        return settings
    implied = {"rope_type": "default"}
    implied |= {("rope_type" if key == "type" else key): value for key, value in scaling.items()}
    if "rope_theta" in settings:
        implied["rope_theta"] = settings["rope_theta"]
    given = settings.get("rope_parameters")
    if given is not None and given != implied:
        return settings
    rest = {
        key: value for key, value in settings.items() if key not in ("rope_theta", "rope_scaling")
    }
    return {**rest, "rope_parameters": given if given is not None else implied}


def _added_tokens_of(tokenizer_json: Path) -> dict[str, Any] | None:
    """tokenizer.json's added tokens in tokenizer_config.json's ``added_tokens_decoder`` form."""
    try:
        tokens = json.loads(tokenizer_json.read_bytes())["added_tokens"]
        return {
            str(token["id"]): {key: value for key, value in token.items() if key != "id"}
            for token in tokens
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _dumps(settings: dict[str, Any]) -> bytes:
    return json.dumps(settings, sort_keys=True).encode()
