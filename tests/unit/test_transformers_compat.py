"""The engine passes and reads a KV cache under whichever name the installed transformers uses:
``cache`` from 5.24 on, ``past_key_values`` before (deprecated in 5.24, removed in 5.40)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from das_assert import kv_cache


class _NewModel(torch.nn.Module):
    def forward(self, input_ids: Any = None, attention_mask: Any = None, cache: Any = None,
                use_cache: Any = None) -> Any:  # fmt: skip
        return SimpleNamespace(received={"cache": cache})


class _OldModel(torch.nn.Module):
    def forward(self, input_ids: Any = None, attention_mask: Any = None,
                past_key_values: Any = None, use_cache: Any = None) -> Any:  # fmt: skip
        return SimpleNamespace(received={"past_key_values": past_key_values})


@pytest.mark.parametrize(
    ("model_class", "keyword"), [(_NewModel, "cache"), (_OldModel, "past_key_values")]
)
def test_the_cache_goes_under_the_name_the_models_forward_takes(
    model_class: type, keyword: str
) -> None:
    model = model_class()
    model.get_input_embeddings = lambda: torch.nn.Embedding(4, 2)
    sentinel = object()
    ids = torch.zeros(1, 3, dtype=torch.long)
    output = kv_cache.run_model(model, ids, torch.ones_like(ids), use_cache=True, cache=sentinel)
    assert output.received == {keyword: sentinel}


def test_the_returned_cache_is_read_under_either_name() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPast

    cache = object()
    fields = BaseModelOutputWithPast.__dataclass_fields__
    name = "cache" if "cache" in fields else "past_key_values"
    assert kv_cache.returned_cache(BaseModelOutputWithPast(**{name: cache})) is cache
    assert kv_cache.returned_cache(SimpleNamespace(past_key_values=cache)) is cache


def test_the_installed_llama_takes_the_cache_without_a_deprecation_warning(
    tiny_llama: Any,
) -> None:
    ids = torch.tensor([[1, 5, 6, 7]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' FutureWarning included
        cache = kv_cache.prefix_cache(tiny_llama.model, ids, torch.ones_like(ids))
    assert cache.get_seq_length() == 4


def test_a_tokenizer_saved_by_transformers_5_loads_under_either_version(tmp_path: Any) -> None:
    # transformers 5 saves its fast tokenizer as TokenizersBackend, a class 4.x lacks: under 4.57
    # every model folder saved by 5.x failed, advising a re-save that writes the same name again
    import json
    import shutil

    from das_assert.models import EMBEDDED_MODEL_DIR, load_model

    folder = tmp_path / "saved_by_5"
    shutil.copytree(EMBEDDED_MODEL_DIR, folder)
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "tokenizer_class": "TokenizersBackend"}))
    text = "Please say yes only if it costs between 1.30 and 8.55 dollars, otherwise no."
    loaded, embedded = load_model(folder), load_model("embedded")
    assert loaded.tokenizer(text).input_ids == embedded.tokenizer(text).input_ids
    assert loaded.tokenizer.bos_token_id == embedded.tokenizer.bos_token_id
    assert loaded.tokenizer.pad_token_id == embedded.tokenizer.pad_token_id
    assert loaded.fingerprint == embedded.fingerprint


def test_a_transformers_5_list_of_extra_special_tokens_loads_under_either_version(
    tmp_path: Any,
) -> None:
    # 5.x writes additional special tokens as a list under extra_special_tokens, where 4.57
    # reads a dict: loading failed there, blaming a missing protobuf
    import json

    from das_assert.embedded.recipe import build_tokenizer
    from das_assert.model_files import load_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<sp1>"]})
    tokenizer.save_pretrained(tmp_path)
    config = tmp_path / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    settings.pop("additional_special_tokens", None)
    settings.update(tokenizer_class="TokenizersBackend", extra_special_tokens=["<sp1>"])
    config.write_text(json.dumps(settings))
    loaded = load_tokenizer(tmp_path, trust_remote_code=False)
    text = "<sp1> it costs 1.30 dollars"
    assert loaded(text).input_ids == tokenizer(text).input_ids
    assert "<sp1>" in loaded.all_special_tokens
    assert loaded.convert_tokens_to_ids("<sp1>") == tokenizer.convert_tokens_to_ids("<sp1>")
