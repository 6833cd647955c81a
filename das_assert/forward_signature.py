"""What a model's forward takes: the name it takes a KV cache by, and whether the cache it
takes is a transformers ``Cache`` at all (RWKV and xLSTM keep states of their own). Read once
per model class, from its signature."""

from __future__ import annotations

import inspect
import typing
from typing import Any

__all__ = ["cache_keyword", "takes_a_kv_cache"]


_CACHE_KEYWORDS: dict[type[Any], str] = {}  # model class -> its forward's name for the cache


def cache_keyword(model_class: type[Any]) -> str:
    """The name ``model_class.forward`` takes a KV cache by: ``cache`` from transformers 5.24 on
    (where ``past_key_values`` is deprecated), ``past_key_values`` before. Read once per class,
    from the class as it was then: a wrapper put on its ``forward`` later (``*args, **kwargs``)
    does not change what the model takes."""
    found = _CACHE_KEYWORDS.get(model_class)
    if found is None:
        parameters = inspect.signature(model_class.forward).parameters
        found = _CACHE_KEYWORDS[model_class] = (
            "cache" if "cache" in parameters else "past_key_values"
        )
    return found


def takes_a_kv_cache(model: Any) -> bool:
    """Whether ``model``'s base forward takes a transformers KV cache (``cache`` or
    ``past_key_values``): RWKV keeps a ``state`` of its own and xLSTM an ``xLSTMCache``, which
    is no ``Cache``, and a ``DynamicCache`` passed to either breaks its forward."""
    from transformers.cache_utils import Cache

    model_class = type(getattr(model, "base_model", model))
    if model_class not in _TAKES_A_KV_CACHE:
        _TAKES_A_KV_CACHE[model_class] = _cache_parameter_takes(model_class, Cache)
    return _TAKES_A_KV_CACHE[model_class]


def _cache_parameter_takes(model_class: type[Any], cache_class: type[Any]) -> bool:
    """Whether ``model_class.forward`` has a ``cache`` (or ``past_key_values``) parameter whose
    annotation, where it names classes, names a subclass of ``cache_class``."""
    try:
        parameters = inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get("cache", parameters.get("past_key_values"))
    if parameter is None:
        return False
    kinds = typing.get_args(parameter.annotation) or (parameter.annotation,)
    named = [kind for kind in kinds if isinstance(kind, type) and kind is not type(None)]
    return not named or any(issubclass(kind, cache_class) for kind in named)


_TAKES_A_KV_CACHE: dict[type[Any], bool] = {}  # read once per class
