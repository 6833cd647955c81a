"""Shared helpers of the bad-input tests (test_bad_*.py): Ctx, prompts, model-dir builders.

Hardening: every bad input a user can give gets one clear das_assert error. Each case is a bad
call, written as its test id. The call must raise exactly one exception of a ``DasError``
subclass, raised from das_assert's own code (never a RuntimeError, KeyError or IndexError from
deep inside torch or transformers), whose message names the problem and the fix. Command-line
cases run ``das_assert.cli.main`` and expect exit code 2 and a message on stderr.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

import das_assert
from das_assert.data import encode
from das_assert.errors import DasError
from das_assert.models import TOKENIZER_FILES, LoadedModel, load_model
from das_assert.positions import parse_position
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

PACKAGE_DIR = Path(das_assert.__file__).resolve().parent
EXAMPLE = {"lo": 130, "hi": 855, "x": 789}
PROMPT = PriceFormat().render(EXAMPLE)
SITE = "block_output[layer=1, pos=last]"
#: A baseline entry, as the bad-baseline tests edit it.
RECORD = {
    "test_id": "hypotheses/test_price_tagging.py::test_left_boundary",
    "claim": "left_boundary",
    "iia": 0.91,
    "iia_ci": [0.88, 0.93],
    "site": {"canonical": SITE},
}


@dataclass
class Ctx:
    """What a bad call may need: a scratch directory, monkeypatch, and the tiny models."""

    request: pytest.FixtureRequest
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    def model_dir(self, arch: str = "llama") -> Path:
        return self.request.getfixturevalue("tiny_model_dirs")[arch]

    @property
    def llama(self) -> LoadedModel:
        return self.request.getfixturevalue("tiny_llama")


Call = Callable[[Ctx], object]


@cache
def tokenizer() -> Any:
    from das_assert.embedded.recipe import build_tokenizer

    return build_tokenizer()


def resolve_on_prompt(name: str) -> int:
    """Resolve position ``name`` on the default prompt, tokenized by the embedded tokenizer."""
    encoded = tokenizer()(PROMPT.text, return_offsets_mapping=True)
    offsets = [tuple(pair) for pair in encoded["offset_mapping"]]
    return parse_position(name).resolve(offsets, PROMPT.spans, PROMPT.text)


# -- bad model directories ----------------------------------------------------------------------


def copy_of_tiny_model(ctx: Ctx) -> Path:
    target = ctx.tmp_path / "model"
    shutil.copytree(ctx.model_dir(), target)
    return target


def dir_without(ctx: Ctx, *names: str) -> Path:
    target = copy_of_tiny_model(ctx)
    for name in names:
        (target / name).unlink(missing_ok=True)
    return target


def dir_with_garbage_config(ctx: Ctx) -> Path:
    target = copy_of_tiny_model(ctx)
    (target / "config.json").write_text("garbage")
    return target


def dir_with_deeply_nested(ctx: Ctx, name: str) -> Path:
    """The tiny model with ``name`` (a JSON file) nested past json's recursion limit."""
    target = copy_of_tiny_model(ctx)
    (target / name).write_text("[" * 200_000 + "]" * 200_000)
    return target


def dir_with_unknown_architecture(ctx: Ctx) -> Path:
    target = ctx.tmp_path / "strange"
    target.mkdir()
    (target / "config.json").write_text(json.dumps({"model_type": "nonexistent_arch"}))
    for name in TOKENIZER_FILES:
        if (ctx.model_dir() / name).is_file():
            shutil.copy(ctx.model_dir() / name, target / name)
    return target


def dir_with_truncated_weights(ctx: Ctx) -> Path:
    target = copy_of_tiny_model(ctx)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return target


def dir_with_a_tensor_deleted(ctx: Ctx) -> Path:
    from safetensors.torch import load_file, save_file

    target = copy_of_tiny_model(ctx)
    weights = load_file(target / "model.safetensors")
    del weights["model.layers.0.mlp.down_proj.weight"]
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


def dir_with_layer_count(ctx: Ctx, change: int) -> Path:
    target = copy_of_tiny_model(ctx)
    config = json.loads((target / "config.json").read_text())
    config["num_hidden_layers"] += change
    (target / "config.json").write_text(json.dumps(config))
    return target


def dir_with_config_change(ctx: Ctx, **changes: Any) -> Path:
    """The tiny model with config.json edited after the save."""
    target = copy_of_tiny_model(ctx)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    return target


def dir_with_tokenizer_code(ctx: Ctx) -> Path:
    """The tiny model whose tokenizer_config.json asks for a tokenizer class of its own code."""
    target = copy_of_tiny_model(ctx)
    (target / "tokenizer.json").unlink()
    settings = json.loads((target / "tokenizer_config.json").read_text())
    settings.update(
        tokenizer_class="OwnTokenizer",
        auto_map={"AutoTokenizer": [None, "tokenization_own.OwnTokenizer"]},
    )
    (target / "tokenizer_config.json").write_text(json.dumps(settings))
    (target / "tokenization_own.py").write_text("raise SystemExit('remote code ran')\n")
    return target


def dir_with_tokenizer_code_beside_a_builtin(ctx: Ctx) -> Path:
    """The tiny model whose tokenizer_config.json names its own code beside a built-in class:
    transformers loads the built-in one without a word, another tokenizer than intended."""
    target = copy_of_tiny_model(ctx)
    settings = json.loads((target / "tokenizer_config.json").read_text())
    settings.update(auto_map={"AutoTokenizer": [None, "tokenization_own.OwnTokenizer"]})
    (target / "tokenizer_config.json").write_text(json.dumps(settings))
    (target / "tokenization_own.py").write_text("raise SystemExit('remote code ran')\n")
    return target


def dir_with_tokenizer_code_in_a_list(ctx: Ctx) -> Path:
    """As ``dir_with_tokenizer_code_beside_a_builtin``, in the older form of ``auto_map``: a
    list of the slow and the fast class, which transformers still reads as ``AutoTokenizer``."""
    target = copy_of_tiny_model(ctx)
    settings = json.loads((target / "tokenizer_config.json").read_text())
    settings.update(auto_map=[None, "tokenization_own.OwnTokenizer"])
    (target / "tokenizer_config.json").write_text(json.dumps(settings))
    (target / "tokenization_own.py").write_text("raise SystemExit('remote code ran')\n")
    return target


def dir_with_pickled_weights_only(ctx: Ctx) -> Path:
    from safetensors.torch import load_file

    target = copy_of_tiny_model(ctx)
    torch.save(load_file(target / "model.safetensors"), target / "pytorch_model.bin")
    (target / "model.safetensors").unlink()
    return target


def dir_with_corrupt_tokenizer(ctx: Ctx) -> Path:
    target = copy_of_tiny_model(ctx)
    (target / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Wor')
    return target


def dir_without_tokenizer_files(ctx: Ctx) -> Path:
    """The model's folder with tokenizer.json removed: tokenizer_config.json is still there."""
    target = copy_of_tiny_model(ctx)
    (target / "tokenizer.json").unlink()
    return target


def dir_with_unknown_tokenizer_model(ctx: Ctx) -> Path:
    target = copy_of_tiny_model(ctx)
    spec = json.loads((target / "tokenizer.json").read_text())
    spec["model"]["type"] = "NoSuchModel"  # valid JSON, but no tokenizer the library knows
    (target / "tokenizer.json").write_text(json.dumps(spec))
    return target


def dir_with(ctx: Ctx, config: Any, tokenizer_change: Callable[[Any], None] | None = None) -> Path:
    """A tiny random model of ``config`` with the embedded tokenizer (changed as asked)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    target = ctx.tmp_path / "custom"
    torch.manual_seed(0)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    auto.from_config(config).save_pretrained(target)
    words = tokenizer()
    if tokenizer_change is not None:
        words = copy.deepcopy(words)
        tokenizer_change(words)
    words.save_pretrained(target)
    return target


def small_llama(**changes: Any) -> Any:
    from transformers import LlamaConfig

    fields = {"vocab_size": len(tokenizer()), "hidden_size": 32, "intermediate_size": 64}
    fields.update(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    return LlamaConfig(**{**fields, **changes})


def append_an_end_token(words: Any) -> None:
    from tokenizers import processors

    words._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{words.bos_token} $A {words.pad_token}",
        special_tokens=[
            (words.bos_token, words.bos_token_id),
            (words.pad_token, words.pad_token_id),
        ],
    )


def tiny_t5() -> Any:
    from transformers import T5Config

    return T5Config(vocab_size=len(tokenizer()), d_model=32, d_ff=64, num_layers=1, num_heads=2)


def encode_on(directory: Path) -> object:
    pairs = prompt_pairs("left_boundary", 4, seed=0)
    return encode(load_model(directory), pairs, parse_position("last"))


def a_file(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    return path


def an_empty_dir(ctx: Ctx) -> Path:
    target = ctx.tmp_path / "empty"
    target.mkdir()
    return target


def assert_raised_by_das_assert(info: pytest.ExceptionInfo[BaseException]) -> None:
    """The error is ours, raised by das_assert's code, with no foreign exception chained to it."""
    error = info.value
    assert type(error).__module__.startswith("das_assert."), type(error)
    raised_in = Path(str(info.traceback[-1].path)).resolve()
    assert PACKAGE_DIR in raised_in.parents, f"raised from {raised_in}, not from das_assert"
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert chained is None, f"{type(error).__name__} carries a chained {chained!r}"


def assert_one_clear_das_error(call: Call, error: type[DasError], match: str, ctx: Ctx) -> None:
    """``call`` raises one ``error`` of das_assert's own whose message matches ``match``."""
    with pytest.raises(DasError, match=match) as info:
        call(ctx)
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value)!r}"
    assert_raised_by_das_assert(info)
