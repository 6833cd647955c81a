"""Hardening: every bad input a user can give gets one clear das_assert error.

Each case is a bad call, written as its test id. The call must raise exactly one exception of a
``DasError`` subclass, raised from das_assert's own code (never a RuntimeError, KeyError or
IndexError from deep inside torch or transformers), whose message names the problem and the fix.
Command-line cases run ``das_assert.cli.main`` and expect exit code 2 and a message on stderr.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import das_assert
from das_assert.baseline import find_baseline, load_baseline, save_baseline
from das_assert.cache import AlignmentCache
from das_assert.causal import CausalModel
from das_assert.cli import main
from das_assert.compare import parse_compare_fail
from das_assert.data import encode
from das_assert.errors import (
    AlignmentFileError,
    ConfigError,
    DasError,
    InvalidArgument,
    ModelLoadError,
    OutOfDeviceMemory,
    PreconditionFailed,
    SiteError,
    TrainingDiverged,
)
from das_assert.evaluate import evaluate
from das_assert.experiment import Experiment, run_experiment
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment, make_interchange
from das_assert.metrics import required_n, verdict, wilson_interval
from das_assert.models import (
    EMBEDDED_MODEL_DIR,
    TOKENIZER_FILES,
    LoadedModel,
    answer_token_id,
    load_model,
)
from das_assert.positions import parse_position
from das_assert.settings import find_model_settings, load_settings
from das_assert.sites import Site, parse_site
from das_assert.store import atomic_write_json, load_alignment, save_alignment
from das_assert.strategies import PromptVariant
from das_assert.tasks.price_tagging import (
    CAUSAL_MODELS,
    PriceFormat,
    causal_model,
    make_pairs,
    prompt_pairs,
)

PACKAGE_DIR = Path(das_assert.__file__).resolve().parent
EXAMPLE = {"lo": 130, "hi": 855, "x": 789}
PROMPT = PriceFormat().render(EXAMPLE)
SITE = "block_output[layer=1, pos=last]"
GOOD_YAML = """\
models:
  embedded:
    path: embedded
    sites:
      boundary: block_output[layer=1, pos=last]
    thresholds:
      left_boundary: 0.85
"""
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


@pytest.fixture
def ctx(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    return Ctx(request, tmp_path, monkeypatch)


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


# -- bad sites, positions, prompts, causal models -------------------------------------------------


def encode_variant_without_prefix(ctx: Ctx) -> object:
    variant = PromptVariant(suffix="Thank you.")
    pairs = prompt_pairs("left_boundary", 4, seed=0, fmt=variant.format(), edit=variant.edit)
    return encode(ctx.llama, pairs, parse_position("prefix.last"))


def model_with_an_unused_variable() -> CausalModel:
    return CausalModel(
        inputs=("x", "y"),
        mechanisms={"s": lambda x: x + 1, "unused": lambda y: -y, "out": lambda s: s > 3},
        output="out",
        name="with_unused",
    )


def mechanism_with_star_args(*values: int) -> int:
    return sum(values)


# -- bad artifacts --------------------------------------------------------------------------------


def saved_alignment(ctx: Ctx) -> Path:
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    path = ctx.tmp_path / "alignment.safetensors"
    save_alignment(path, interchange, {"site": SITE, "hypothesis": "left_boundary"})
    return path


def truncated_alignment(ctx: Ctx) -> Path:
    path = saved_alignment(ctx)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def tampered_alignment(ctx: Ctx) -> Path:
    path = saved_alignment(ctx)
    raw = bytearray(path.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    raw[8 + header_len + 5] ^= 0xFF  # a byte of tensor data; the header is untouched
    path.write_bytes(bytes(raw))
    return path


def random_bytes_file(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "random.safetensors"
    path.write_bytes(bytes(range(7, 256, 3)) * 4)
    return path


def pickled_tensors(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "pickled.safetensors"
    torch.save({"rotation": torch.eye(4)}, path)
    return path


def safetensors_without_manifest(ctx: Ctx) -> Path:
    from safetensors.torch import save_file

    path = ctx.tmp_path / "plain.safetensors"
    save_file({"rotation": torch.eye(4), "widths": torch.ones(1)}, path)
    return path


def saved_baseline(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "baselines" / "0001_first.json"
    save_baseline(path, model={"path": "embedded"}, environment={"torch": "2"}, records=[RECORD])
    return path


def baseline_of(ctx: Ctx, **changes: Any) -> Path:
    """A baseline with a valid checksum whose one entry has ``changes``: well-signed nonsense."""
    path = ctx.tmp_path / "baselines" / "0001_edited.json"
    record = {**RECORD, **changes}
    save_baseline(path, model={"path": "embedded"}, environment={"torch": "2"}, records=[record])
    return path


def baseline_without(ctx: Ctx, key: str) -> Path:
    path = ctx.tmp_path / "baselines" / "0001_edited.json"
    record = {k: v for k, v in RECORD.items() if k != key}
    save_baseline(path, model={"path": "embedded"}, environment={"torch": "2"}, records=[record])
    return path


def baseline_with_schema(ctx: Ctx, version: int) -> Path:
    from das_assert.store import atomic_write_json

    path = saved_baseline(ctx)
    payload = json.loads(path.read_text())
    payload["schema_version"] = version
    atomic_write_json(path, payload, checksum=True)
    return path


def alignment_with_list_manifest(ctx: Ctx) -> Path:
    from safetensors.torch import save_file

    path = ctx.tmp_path / "list.safetensors"
    tensors = {"rotation": torch.eye(4), "widths": torch.ones(1)}
    save_file(tensors, path, metadata={"manifest": "[1, 2]"})
    return path


def truncated_baseline(ctx: Ctx) -> Path:
    path = saved_baseline(ctx)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return path


def tampered_baseline(ctx: Ctx) -> Path:
    path = saved_baseline(ctx)
    payload = json.loads(path.read_text())
    next(iter(payload["entries"].values()))["iia"] = 0.99  # checksum left as it was
    path.write_text(json.dumps(payload, indent=2))
    return path


def future_baseline(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "0001_future.json"
    atomic_write_json(path, {"schema_version": 99, "entries": {}}, checksum=True)
    return path


def yaml_file(ctx: Ctx, text: str) -> Path:
    path = ctx.tmp_path / "das.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def yaml_bytes(ctx: Ctx, data: bytes) -> Path:
    path = ctx.tmp_path / "das.yaml"
    path.write_bytes(data)
    return path


# -- training that cannot go on ---------------------------------------------------------------


def fit_tiny_llama(loaded: LoadedModel) -> object:
    site = Site(1).resolve(loaded.model)
    train = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    return fit_alignment(loaded.model, site, train, FitConfig(epochs=1, batch_size=8))


def fit_with_nan_weights(ctx: Ctx) -> object:
    loaded = load_model(ctx.model_dir())  # a fresh copy: the shared tiny_llama stays intact
    loaded.model.get_input_embeddings().weight.data.fill_(float("nan"))
    return fit_tiny_llama(loaded)


def fit_out_of_gpu_memory(ctx: Ctx) -> object:
    loaded = ctx.llama

    def forward(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    ctx.monkeypatch.setattr(type(loaded.model), "forward", forward)
    return fit_tiny_llama(loaded)


def evaluate_out_of_gpu_memory(ctx: Ctx) -> object:
    """Every forward pass runs out of memory, even for one pair: the back-off ends in an error."""
    loaded = ctx.llama

    def forward(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    for module in (type(loaded.model), type(loaded.model.base_model)):
        ctx.monkeypatch.setattr(module, "forward", forward)
    site = Site(1, "last").resolve(loaded.model)
    alignment = FittedAlignment(
        Interchange.boundless(loaded.config.hidden_size), site, FitConfig(), 0, 0.0
    )
    test = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    return evaluate(loaded.model, alignment, test)


def tiny_experiment(**changes: Any) -> Experiment:
    fields: dict[str, Any] = {"hypothesis": "left_boundary", "site": Site(1)}
    return Experiment(**{**fields, **changes})


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


class _TwoBlockLists(torch.nn.Module):
    """A model of an unlisted type with two module lists as long as its layer count."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type="twin", num_hidden_layers=2)
        self.first = torch.nn.ModuleList([torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)])
        self.second = torch.nn.ModuleList([torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)])


CASES = [
    # -- models and tokenizers that do not fit each other, or the task
    pytest.param(
        lambda c: encode_on(dir_with(c, small_llama(), append_an_end_token)),
        InvalidArgument,
        r"appends '<pad>' after the text, so the prompt's last token is not the text's",
        id="encode(<a tokenizer that appends an end token>)",
    ),
    pytest.param(
        lambda c: encode_on(dir_with(c, small_llama(vocab_size=50))),
        InvalidArgument,
        r"gives token id \d+, but the model embeds only 50 ids: the tokenizer is not this model's",
        id="encode(<a tokenizer larger than the model's vocabulary>)",
    ),
    pytest.param(
        lambda c: encode_on(dir_with(c, small_llama(max_position_embeddings=64))),
        InvalidArgument,
        r"a prompt of \d+ tokens is longer than the 64 positions",
        id="encode(<prompts longer than the model's positions>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with(c, tiny_t5())),
        ModelLoadError,
        r"holds an encoder-decoder model \(t5\); das_assert needs a decoder-only causal LM",
        id="load_model(<a T5 model>)",
    ),
    # -- model directories
    pytest.param(
        lambda c: load_model("/no/such/dir"),
        ModelLoadError,
        r"'/no/such/dir' does not exist; pass a local Hugging Face model directory",
        id="load_model('/no/such/dir')",
    ),
    pytest.param(
        lambda c: load_model(a_file(c)),
        ModelLoadError,
        r"is a file, not a model directory; pass the folder that holds config\.json",
        id="load_model(<a file, not a directory>)",
    ),
    pytest.param(
        lambda c: load_model(an_empty_dir(c)),
        ModelLoadError,
        r"has no config\.json.*save the model with save_pretrained\(\)",
        id="load_model(<dir without config.json>)",
    ),
    pytest.param(
        lambda c: load_model(dir_without(c, *TOKENIZER_FILES)),
        ModelLoadError,
        r"has no tokenizer files .*tokenizer\.save_pretrained\(dir\)",
        id="load_model(<dir without tokenizer files>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_unknown_architecture(c)),
        ModelLoadError,
        r"(?s)cannot read the model config.*nonexistent_arch.*architecture must be one that "
        r"transformers knows",
        id="load_model(<config.json with model_type='nonexistent_arch'>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_garbage_config(c)),
        ModelLoadError,
        r"cannot read the model config in .*valid JSON file; config\.json is damaged: re-save",
        id="load_model(<config.json that is not JSON>)",
    ),
    pytest.param(
        lambda c: load_model(c.model_dir(), device_map="bogus"),
        InvalidArgument,
        r"device_map='bogus' is not a device map; use one of auto, balanced",
        id="load_model(device_map='bogus')",
    ),
    pytest.param(
        lambda c: load_model(dir_without(c, "model.safetensors")),
        ModelLoadError,
        r"(?s)cannot load the weights in .*re-save the model with save_pretrained\(dir\)",
        id="load_model(<dir without weight files>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_truncated_weights(c)),
        ModelLoadError,
        r"(?s)cannot load the weights in .*re-save the model with save_pretrained\(dir\)",
        id="load_model(<dir with a truncated model.safetensors>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_a_tensor_deleted(c)),
        ModelLoadError,
        r"(?s)do not match its config\.json \(llama, 3 layers\): 1 weight\(s\) the model needs are "
        r"not in the files \(model\.layers\.0\.mlp\.down_proj\.weight\).*would be random",
        id="load_model(<model.safetensors without one tensor>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_layer_count(c, -1)),
        ModelLoadError,
        r"(?s)\(llama, 2 layers\): \d+ tensor\(s\) in the files fit nowhere in the model "
        r"\(model\.layers\.2\.",
        id="load_model(<config.json with fewer layers than the weights>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_layer_count(c, +1)),
        ModelLoadError,
        r"(?s)\(llama, 4 layers\): \d+ weight\(s\) the model needs are not in the files "
        r"\(model\.layers\.3\..* and \d+ more\)",
        id="load_model(<config.json with more layers than the weights>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_pickled_weights_only(c)),
        ModelLoadError,
        r"holds its weights only as pickle files \(pytorch_model\.bin\), which das_assert does "
        r"not load \(unpickling can run code\); convert them once",
        id="load_model(<weights only in pytorch_model.bin>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_corrupt_tokenizer(c)),
        ModelLoadError,
        r"(?s)cannot load the tokenizer in .*tokenizer\.save_pretrained\(dir\)",
        id="load_model(<dir with a corrupt tokenizer.json>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_unknown_tokenizer_model(c)),
        ModelLoadError,
        r"(?s)cannot load the tokenizer in .*tokenizer\.save_pretrained\(dir\)",
        id="load_model(<tokenizer.json with model type 'NoSuchModel'>)",
    ),
    pytest.param(
        lambda c: load_model(c.model_dir(), dtype="float64"),
        InvalidArgument,
        r"dtype='float64' is not supported; choose one of float32, bfloat16, float16",
        id="load_model(tiny_llama, dtype='float64')",
    ),
    pytest.param(
        lambda c: load_model(c.model_dir(), dtype="bfloat"),
        InvalidArgument,
        r"dtype='bfloat' is not supported.*Did you mean 'bfloat16'\?",
        id="load_model(tiny_llama, dtype='bfloat')",
    ),
    pytest.param(
        lambda c: load_model(c.model_dir(), device="cuda"),
        InvalidArgument,
        r"device='cuda' but no CUDA device is available here; use the CPU \(--das-device cpu",
        id="load_model(tiny_llama, device='cuda') on a CPU-only machine",
        marks=NO_CUDA,
    ),
    pytest.param(
        lambda c: load_model(c.model_dir(), device="tpu"),
        InvalidArgument,
        r"device='tpu' is not one of cpu, cuda, cuda:N",
        id="load_model(tiny_llama, device='tpu')",
    ),
    # -- sites
    pytest.param(
        lambda c: Site(99).resolve(c.llama.model),
        SiteError,
        r"layer=99 is out of range for llama \(3 layers: 0\.\.2; negative indices count",
        id="Site(99).resolve(tiny_llama.model)",
    ),
    pytest.param(
        lambda c: Site(-4).resolve(c.llama.model),
        SiteError,
        r"layer=-4 is out of range for llama \(3 layers: 0\.\.2",
        id="Site(-4).resolve(tiny_llama.model)",
    ),
    pytest.param(
        lambda c: Site(1, component="block_outptu"),
        InvalidArgument,
        r"unknown component 'block_outptu'; known: .*Did you mean 'block_output'\?",
        id="Site(1, component='block_outptu')",
    ),
    pytest.param(
        lambda c: Site("1"),  # type: ignore[arg-type]
        InvalidArgument,
        r"layer must be an integer, not '1'",
        id="Site('1')",
    ),
    pytest.param(
        lambda c: Site(1).resolve(SimpleNamespace(config=SimpleNamespace(model_type="bert"))),
        InvalidArgument,
        r"does not know where the decoder blocks of model_type 'bert' are.*conftest\.py: "
        r"`from das_assert\.sites import BLOCK_PATHS; BLOCK_PATHS\['bert'\] = 'model\.layers'`",
        id="Site(1).resolve(<a model with model_type='bert'>)",
    ),
    pytest.param(
        lambda c: Site(1).resolve(_TwoBlockLists()),
        InvalidArgument,
        r"decoder blocks of model_type 'twin' are: it has 2 lists of 2 modules \(first, second\)"
        r"\. Known model types: .*BLOCK_PATHS\['twin'\] = 'model\.layers'",
        id="Site(1).resolve(<an unlisted model type with two lists as long as its layers>)",
    ),
    pytest.param(
        lambda c: Site(1).resolve(c.llama),
        InvalidArgument,
        r"LoadedModel has no decoder blocks at 'model\.layers'.*pass the transformers CausalLM "
        r"itself, e\.g\. loaded\.model",
        id="Site(1).resolve(<the LoadedModel, not its .model>)",
    ),
    pytest.param(
        lambda c: parse_site("layer 1, last"),
        InvalidArgument,
        r"cannot parse site 'layer 1, last'; write it as COMPONENT\[layer=L, pos=NAME\]",
        id="parse_site('layer 1, last')",
    ),
    # -- positions
    pytest.param(
        lambda c: parse_position("middle"),
        InvalidArgument,
        r"cannot parse position 'middle'; use one of: last, last-K, SLOT\.first",
        id="parse_position('middle')",
    ),
    pytest.param(
        lambda c: Site(1, position="amount.middle"),
        InvalidArgument,
        r"cannot parse position 'amount\.middle'; use one of:",
        id="Site(1, position='amount.middle')",
    ),
    pytest.param(
        lambda c: resolve_on_prompt("fee.last"),
        SiteError,
        r"position 'fee\.last' refers to slot 'fee', which this prompt does not have "
        r"\(slots: amount, high, instruction, low\)",
        id="parse_position('fee.last').resolve(<the default prompt>)",
    ),
    pytest.param(
        lambda c: resolve_on_prompt("last-500"),
        SiteError,
        r"position 'last-500' resolves to token -\d+, outside this prompt of \d+ tokens; "
        r"choose a position inside",
        id="parse_position('last-500').resolve(<the default prompt>)",
    ),
    pytest.param(
        encode_variant_without_prefix,
        SiteError,
        r"position 'prefix\.last' refers to slot 'prefix', which this prompt does not have",
        id="encode(<PromptVariant(suffix=...) prompts, no prefix>, 'prefix.last')",
    ),
    # -- prompt formats and answer words
    pytest.param(
        lambda c: PriceFormat(instruction="Say {yes} if it costs under {high}, else {no}."),
        InvalidArgument,
        r"has no \{low\} slot; the bracket must appear in the prompt",
        id="PriceFormat(instruction=<no {low}>)",
    ),
    pytest.param(
        lambda c: PriceFormat(template="### Instruction:\n{instruction}\n### Response:\n"),
        InvalidArgument,
        r"template has no \{amount\} slot",
        id="PriceFormat(template=<no {amount}>)",
    ),
    pytest.param(
        lambda c: PriceFormat(
            instruction="Say {yes} if it costs between {low} and {high} {price}, else {no}."
        ).render(EXAMPLE),
        InvalidArgument,
        r"has an unknown slot \{price\}; allowed: \{low\}, \{high\}, \{yes\}, \{no\}",
        id="PriceFormat(instruction=<with {price}>).render(...)",
    ),
    pytest.param(
        lambda c: PriceFormat(numbers="dolar"),
        InvalidArgument,
        r"numbers='dolar' is not one of .*Did you mean 'dollar'\?",
        id="PriceFormat(numbers='dolar')",
    ),
    pytest.param(
        lambda c: PriceFormat(answers=("Yes", "Yes")),
        InvalidArgument,
        r"answers must be two different words, got \('Yes', 'Yes'\)",
        id="PriceFormat(answers=('Yes', 'Yes'))",
    ),
    pytest.param(
        lambda c: answer_token_id(tokenizer(), PROMPT.text, "1.30"),
        InvalidArgument,
        r"the answer '1\.30' is not a single token .*choose answer words that are one token each",
        id="answer_token_id(tokenizer, prompt, '1.30')",
    ),
    pytest.param(
        lambda c: answer_token_id(tokenizer(), PROMPT.text, "Zyzzyva"),
        InvalidArgument,
        r"the answer 'Zyzzyva' is unknown to the tokenizer .*choose answer words in the "
        r"tokenizer's vocabulary",
        id="answer_token_id(tokenizer, prompt, 'Zyzzyva')",
    ),
    pytest.param(
        lambda c: make_pairs("left_boundary", 1, seed=0),
        InvalidArgument,
        r"n=1 pairs is too few; ask for at least 2",
        id="make_pairs('left_boundary', 1)",
    ),
    # -- causal models
    pytest.param(
        lambda c: CausalModel(
            inputs=("x",), mechanisms={"a": lambda b: b, "b": lambda a: a}, output="a"
        ),
        InvalidArgument,
        r"mechanisms form a cycle: a -> b -> a",
        id="CausalModel(<a(b), b(a): a cycle>)",
    ),
    pytest.param(
        lambda c: CausalModel(inputs=("x",), mechanisms={"a": lambda y: y}, output="a"),
        InvalidArgument,
        r"mechanism 'a' takes parameter 'y', but no variable 'y' is declared \(declared: a, x\)",
        id="CausalModel(<a(y) with y undeclared>)",
    ),
    pytest.param(
        lambda c: CausalModel(inputs=("x",), mechanisms={"a": lambda x: x}, output="answer"),
        InvalidArgument,
        r"output 'answer' is not a declared variable \(declared: a, x\)",
        id="CausalModel(output='answer' undeclared)",
    ),
    pytest.param(
        lambda c: CausalModel(
            inputs=("x",), mechanisms={"a": mechanism_with_star_args}, output="a"
        ),
        InvalidArgument,
        r"mechanism 'a' takes \*args/\*\*kwargs; name each parent as a parameter",
        id="CausalModel(mechanisms={'a': f(*values)})",
    ),
    pytest.param(
        lambda c: model_with_an_unused_variable().counterfactual(
            {"x": 1, "y": 1}, {"x": 5, "y": 5}, intervene=["unused"]
        ),
        InvalidArgument,
        r"intervening on 'unused' cannot change the output 'out' of with_unused: it is not among "
        r"its ancestors",
        id="counterfactual(intervene=['unused'] that cannot reach the output)",
    ),
    pytest.param(
        lambda c: CAUSAL_MODELS["left_boundary"].counterfactual(
            EXAMPLE, EXAMPLE, intervene=["lfet"]
        ),
        InvalidArgument,
        r"cannot intervene on 'lfet': left_boundary declares .*Did you mean 'left'\?",
        id="counterfactual(intervene=['lfet'])",
    ),
    pytest.param(
        lambda c: CAUSAL_MODELS["left_boundary"].counterfactual(EXAMPLE, EXAMPLE, intervene="left"),
        InvalidArgument,
        r"intervene must be a list of names, not the string 'left'",
        id="counterfactual(intervene='left')",
    ),
    pytest.param(
        lambda c: causal_model("left_boundry"),
        InvalidArgument,
        r"unknown causal model 'left_boundry'; choose one of .*Did you mean 'left_boundary'\?",
        id="causal_model('left_boundry')",
    ),
    pytest.param(
        lambda c: tiny_experiment(variables=("right",)),
        InvalidArgument,
        r"cannot intervene on 'right': left_boundary declares lo, hi, x, left, answer",
        id="Experiment('left_boundary', variables=('right',))",
    ),
    pytest.param(
        lambda c: tiny_experiment(variables=("lo",)),
        InvalidArgument,
        r"variables \['lo'\] have no box in left_boundary's alignment, which has one for each "
        r"of \['left'\]",
        id="Experiment('left_boundary', variables=('lo',))",
    ),
    pytest.param(
        lambda c: tiny_experiment(hypothesis="left_and_right_boundary", variables=("left", "left")),
        InvalidArgument,
        r"variables=\('left', 'left'\) must name each variable once",
        id="Experiment('left_and_right_boundary', variables=('left', 'left'))",
    ),
    # -- experiments and statistics
    pytest.param(
        lambda c: tiny_experiment(threshold=1.5),
        InvalidArgument,
        r"threshold=1\.5 must lie in \[0, 1\]",
        id="Experiment(threshold=1.5)",
    ),
    pytest.param(
        lambda c: verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=-0.1, baselines={}),
        InvalidArgument,
        r"threshold=-0\.1 must lie in \[0, 1\]",
        id="verdict(threshold=-0.1)",
    ),
    pytest.param(
        lambda c: tiny_experiment(n_test=1),
        InvalidArgument,
        r"n_test=1: need at least 2 pairs",
        id="Experiment(n_test=1)",
    ),
    pytest.param(
        lambda c: tiny_experiment(bracket=(849, 549)),
        InvalidArgument,
        r"bracket=\(849, 549\) must be \(low, high\) in cents with 0 <= low <= high <= 999",
        id="Experiment(bracket=(849, 549))",
    ),
    pytest.param(
        lambda c: required_n(0),
        InvalidArgument,
        r"half_width=0 must be in \(0, 0\.5\)",
        id="required_n(half_width=0)",
    ),
    pytest.param(
        lambda c: wilson_interval(0, 0),
        InvalidArgument,
        r"cannot compute an interval from n=0 pairs; evaluate on n >= 1",
        id="wilson_interval(0, n=0)",
    ),
    pytest.param(
        lambda c: run_experiment(
            c.llama, tiny_experiment(n_train=8, n_test=16, min_task_accuracy=0.9)
        ),
        PreconditionFailed,
        r"answers only [\d.]+ of the 16 test prompts correctly \(gate: 0\.9\).*lower the gate "
        r"\(--das-min-task-accuracy under pytest, --min-task-accuracy on the command line",
        id="run_experiment(<random tiny llama>, min_task_accuracy=0.9)",
    ),
    # -- das.yaml
    pytest.param(
        lambda c: load_settings(yaml_file(c, "models: [embedded\n")),
        ConfigError,
        r"das\.yaml is not valid YAML",
        id="load_settings(<das.yaml: invalid YAML>)",
    ),
    pytest.param(
        lambda c: load_settings(c.tmp_path / "missing.yaml"),
        ConfigError,
        r"missing\.yaml does not exist",
        id="load_settings('missing.yaml')",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_of(c, iia=float("nan"))),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks a finite iia \(or a two-number iia_ci\)",
        id="load_baseline(<an entry with iia NaN>)",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_of(c, iia_ci="x")),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks a finite iia \(or a two-number iia_ci\)",
        id="load_baseline(<an entry with iia_ci 'x'>)",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_without(c, "iia_ci")),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks a finite iia \(or a two-number iia_ci\)",
        id="load_baseline(<an entry without iia_ci>)",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_with_schema(c, 0)),
        AlignmentFileError,
        r"has schema_version 0, which no das_assert wrote \(1 to \d+\): it was edited by hand",
        id="load_baseline(<schema_version 0>)",
    ),
    pytest.param(
        lambda c: load_baseline(c.tmp_path),
        AlignmentFileError,
        r"baseline '.*' is a directory; name a \.json file in it",
        id="load_baseline(<a directory>)",
    ),
    pytest.param(
        lambda c: load_alignment(alignment_with_list_manifest(c)),
        AlignmentFileError,
        r"has a manifest that is not a JSON object: it was not written by das_assert",
        id="load_alignment(<manifest a JSON list>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML + "    thresholds: {left_boundary: 0.5}\n")),
        ConfigError,
        r"(?s)das\.yaml is not valid YAML: the key 'thresholds' is given twice.*line 8",
        id="load_settings(<das.yaml: thresholds given twice>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, "models:\n  ? [a, b]\n  : {path: embedded}\n")),
        ConfigError,
        r"das\.yaml is not valid YAML: a list or mapping as a key is not a name",
        id="load_settings(<das.yaml: a list as a key>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, "")),
        ConfigError,
        r"das\.yaml is empty; it needs a `models:` mapping",
        id="load_settings(<an empty das.yaml>)",
    ),
    pytest.param(
        lambda c: load_settings(c.tmp_path),
        ConfigError,
        r"is a directory; name the das\.yaml file inside it",
        id="load_settings(<a directory>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_bytes(c, b"models:\n  embedded: {path: \xff}\n")),
        ConfigError,
        r"das\.yaml is not UTF-8 text \(invalid start byte at byte 27\)",
        id="load_settings(<das.yaml in Latin-1>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML.replace("path: embedded", "path: 5"))),
        ConfigError,
        r"models\.embedded\.path must be a directory path or 'embedded', got 5; quote it",
        id="load_settings(<das.yaml: path: 5>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, "model:\n  embedded: {path: embedded}\n")),
        ConfigError,
        r"the top level must hold only `models:`, found \['model'\]",
        id="load_settings(<das.yaml: top-level key 'model'>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML + "    thresold: {midpoint: 0.5}\n")),
        ConfigError,
        r"models\.embedded has an unknown key 'thresold'; allowed: .*Did you mean 'thresholds'\?",
        id="load_settings(<das.yaml: models.embedded.thresold>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML.replace("0.85", "1.7"))),
        ConfigError,
        r"thresholds\.left_boundary = 1\.7: a threshold is a number in \[0, 1\]",
        id="load_settings(<das.yaml: threshold 1.7>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML.replace("0.85", "'0.85'"))),
        ConfigError,
        r"thresholds\.left_boundary = '0\.85': a threshold is a number in \[0, 1\]",
        id="load_settings(<das.yaml: threshold '0.85' as a string>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML.replace(SITE, "layer 1 last"))),
        ConfigError,
        r"models\.embedded\.sites\.boundary: cannot parse site 'layer 1 last'; write it as",
        id="load_settings(<das.yaml: site 'layer 1 last'>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML + "    batch_size: 0\n")),
        ConfigError,
        r"models\.embedded\.batch_size = 0 must be an integer >= 1",
        id="load_settings(<das.yaml: batch_size 0>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML + "    n_train: 1\n")),
        ConfigError,
        r"models\.embedded\.n_train = 1 must be an integer >= 2",
        id="load_settings(<das.yaml: n_train 1>)",
    ),
    pytest.param(
        lambda c: load_settings(
            yaml_file(c, GOOD_YAML + "    search: {layers: [0, 1], positions: [middle]}\n")
        ),
        ConfigError,
        r"models\.embedded\.search\.positions: cannot parse position 'middle'; use one of",
        id="load_settings(<das.yaml: search.positions [middle]>)",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML + "    search: {layers: [0, 1]}\n")),
        ConfigError,
        r"models\.embedded\.search has no positions; a search needs both layers: \[\.\.\.\] and",
        id="load_settings(<das.yaml: search without positions>)",
    ),
    pytest.param(
        lambda c: find_model_settings(
            load_settings(yaml_file(c, GOOD_YAML)), Path("/models/alpaca-7b"), embedded=False
        ),
        ConfigError,
        r"has no settings for the model '/models/alpaca-7b': add an entry `models: alpaca-7b:",
        id="find_model_settings(<das.yaml>, '/models/alpaca-7b')",
    ),
    pytest.param(
        lambda c: load_settings(yaml_file(c, GOOD_YAML))["embedded"].threshold("midpoint_distance"),
        ConfigError,
        r"no thresholds entry for claim 'midpoint_distance'; add `midpoint_distance: <number in "
        r"\[0, 1\]>` under models\.embedded\.thresholds",
        id="ModelSettings.threshold('midpoint_distance') without an entry",
    ),
    # -- alignment files, the cache, baselines
    pytest.param(
        lambda c: load_alignment(saved_alignment(c), hidden_size=64),
        AlignmentFileError,
        r"was learned on a hidden size of 32, but this model's hidden size is 64.*fit a new "
        r"alignment on this model",
        id="load_alignment(<d=32 alignment>, hidden_size=64)",
    ),
    pytest.param(
        lambda c: load_alignment(truncated_alignment(c)),
        AlignmentFileError,
        r"(?s)is not a readable das_assert safetensors file .*truncated or corrupted: "
        r"delete it and fit again",
        id="load_alignment(<truncated file>)",
    ),
    pytest.param(
        lambda c: load_alignment(tampered_alignment(c)),
        AlignmentFileError,
        r"fails its checksum: its tensors were modified after it was saved; delete it",
        id="load_alignment(<tensor bytes flipped>)",
    ),
    pytest.param(
        lambda c: load_alignment(random_bytes_file(c)),
        AlignmentFileError,
        r"is not a readable das_assert safetensors file",
        id="load_alignment(<random bytes>)",
    ),
    pytest.param(
        lambda c: load_alignment(pickled_tensors(c)),
        AlignmentFileError,
        r"is not a readable das_assert safetensors file",
        id="load_alignment(<a torch.save pickle>)",
    ),
    pytest.param(
        lambda c: load_alignment(safetensors_without_manifest(c)),
        AlignmentFileError,
        r"is not a readable das_assert safetensors file \('manifest'\)",
        id="load_alignment(<safetensors without a manifest>)",
    ),
    pytest.param(
        lambda c: load_alignment(c.tmp_path / "missing.safetensors"),
        AlignmentFileError,
        r"missing\.safetensors' does not exist; check the path, or save an alignment with",
        id="load_alignment('missing.safetensors')",
    ),
    pytest.param(
        lambda c: AlignmentCache(c.tmp_path, mode="sometimes"),
        ConfigError,
        r"cache mode 'sometimes' is not one of off, read, write, readwrite",
        id="AlignmentCache(mode='sometimes')",
    ),
    pytest.param(
        lambda c: load_baseline(truncated_baseline(c)),
        AlignmentFileError,
        r"is not valid JSON .*truncated or was edited by hand\. Restore it from version control",
        id="load_baseline(<truncated JSON>)",
    ),
    pytest.param(
        lambda c: load_baseline(tampered_baseline(c)),
        AlignmentFileError,
        r"fails its checksum: it was modified after it was written\. Re-create it",
        id="load_baseline(<iia edited by hand>)",
    ),
    pytest.param(
        lambda c: load_baseline(future_baseline(c)),
        AlignmentFileError,
        r"has schema_version 99, newer than this das_assert understands \(1\); upgrade",
        id="load_baseline(<schema_version 99>)",
    ),
    pytest.param(
        lambda c: load_baseline(c.tmp_path / "0001_missing.json"),
        AlignmentFileError,
        r"0001_missing\.json' does not exist; check the path",
        id="load_baseline('0001_missing.json')",
    ),
    pytest.param(
        lambda c: find_baseline(c.tmp_path, "latest"),
        AlignmentFileError,
        r"no baselines in .*; save one first with --das-save-baseline",
        id="find_baseline(<empty dir>, 'latest')",
    ),
    pytest.param(
        lambda c: find_baseline(saved_baseline(c).parent, "0007"),
        AlignmentFileError,
        r"no baseline '0007' in .*; present: 0001_first",
        id="find_baseline(<dir with 0001_first>, '0007')",
    ),
    # -- regression checks
    pytest.param(
        lambda c: parse_compare_fail("iia:five"),
        ConfigError,
        r"could not parse the compare-fail expression 'iia:five': expected FIELD:NUMBER",
        id="parse_compare_fail('iia:five')",
    ),
    pytest.param(
        lambda c: parse_compare_fail("accuracy:0.1"),
        ConfigError,
        r"'accuracy:0\.1'.*FIELD one of iia, .*task_accuracy, normalized_iia",
        id="parse_compare_fail('accuracy:0.1')",
    ),
    pytest.param(
        lambda c: parse_compare_fail("iia:2"),
        ConfigError,
        r"'iia:2': an absolute drop of 2\.0 is more than IIA can drop; write .*iia:5%",
        id="parse_compare_fail('iia:2')",
    ),
    # -- fit settings and training
    pytest.param(
        lambda c: FitConfig(epochs=0),
        InvalidArgument,
        r"epochs=0; train for at least 1 epoch",
        id="FitConfig(epochs=0)",
    ),
    pytest.param(
        lambda c: FitConfig(lr_rotation=-1e-3),
        InvalidArgument,
        r"lr_rotation=-0\.001 must be a finite number >= 0",
        id="FitConfig(lr_rotation=-1e-3)",
    ),
    pytest.param(
        lambda c: FitConfig(lr_boundary=float("nan")),
        InvalidArgument,
        r"lr_boundary=nan must be a finite number >= 0",
        id="FitConfig(lr_boundary=nan)",
    ),
    pytest.param(
        lambda c: FitConfig(temperature=(0.1, 50.0)),
        InvalidArgument,
        r"temperature=\(0\.1, 50\.0\) must go down: 0 < end <= start",
        id="FitConfig(temperature=(0.1, 50.0))",
    ),
    pytest.param(
        lambda c: FitConfig(method="bondless"),
        InvalidArgument,
        r"unknown method 'bondless'; choose one of: boundless, das:K",
        id="FitConfig(method='bondless')",
    ),
    pytest.param(
        lambda c: FitConfig(method="das:0"),
        InvalidArgument,
        r"unknown method 'das:0'; choose one of: boundless, das:K",
        id="FitConfig(method='das:0')",
    ),
    pytest.param(
        lambda c: FitConfig(batch_size=0),
        InvalidArgument,
        r"batch_size=0; use a positive batch size",
        id="FitConfig(batch_size=0)",
    ),
    pytest.param(
        lambda c: make_interchange("das:40", 32, 1),
        InvalidArgument,
        r"das:40 with 1 variables needs more than d=32 coordinates; choose K <= 32",
        id="make_interchange('das:40', d=32)",
    ),
    pytest.param(
        fit_with_nan_weights,
        TrainingDiverged,
        r"the alignment loss became nan at step 0 .*lower the learning rates",
        id="fit_alignment(<tiny llama with NaN embeddings>)",
    ),
    pytest.param(
        fit_out_of_gpu_memory,
        OutOfDeviceMemory,
        r"out of GPU memory with a batch of \d+ pairs .*lower the batch size .*"
        r"device_map='auto'",
        id="fit_alignment(<forward raises torch.cuda.OutOfMemoryError>)",
    ),
    pytest.param(
        evaluate_out_of_gpu_memory,
        OutOfDeviceMemory,
        r"out of GPU memory evaluating one pair at a time at block_output\[layer=1, pos=last\] "
        r".*device_map='auto'",
        id="evaluate(<every forward raises torch.cuda.OutOfMemoryError>)",
    ),
]


def assert_raised_by_das_assert(info: pytest.ExceptionInfo[BaseException]) -> None:
    """The error is ours, raised by das_assert's code, with no foreign exception chained to it."""
    error = info.value
    assert type(error).__module__.startswith("das_assert."), type(error)
    raised_in = Path(str(info.traceback[-1].path)).resolve()
    assert PACKAGE_DIR in raised_in.parents, f"raised from {raised_in}, not from das_assert"
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert chained is None, f"{type(error).__name__} carries a chained {chained!r}"


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_a_bad_input_raises_one_clear_das_error(
    call: Call, error: type[DasError], match: str, ctx: Ctx
) -> None:
    with pytest.raises(DasError, match=match) as info:
        call(ctx)
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value)!r}"
    assert_raised_by_das_assert(info)


# -- the command line -----------------------------------------------------------------------------

LLAMA = "<tiny llama>"
FIT = ("fit", "--hypothesis", "left_boundary", "--layer", "1")
SEARCH = ("search", "--hypothesis", "left_boundary", "--n-test", "20", "--layers")


def cli(*argv: str, match: str) -> Any:
    shown = ", ".join(repr(a) if a != LLAMA else a for a in argv)
    return pytest.param(list(argv), match, id=f"main([{shown}])")


CLI_CASES = [
    cli(
        "fit",
        "--model",
        LLAMA,
        "--layer",
        "1",
        match=r"the following arguments are required: --hypothesis",
    ),
    cli(
        "fit",
        "--model",
        LLAMA,
        "--hypothesis",
        "left_boundary",
        "--layer",
        "99",
        match=r"error: layer=99 is out of range for llama \(3 layers: 0\.\.2",
    ),
    cli(*FIT, "--bracket", "12", "3", match=r"argument --bracket: '12' is outside 0\.00\.\.9\.99"),
    cli(
        *FIT,
        "--bracket",
        "8.49",
        "5.49",
        match=r"error: bracket=\(849, 549\) must be \(low, high\) in cents",
    ),
    cli(
        "evaluate",
        "--model",
        LLAMA,
        "--alignment",
        "/nonexistent/alignment.safetensors",
        match=r"error: alignment file '/nonexistent/alignment\.safetensors' does not exist; "
        r"check the path",
    ),
    cli(
        "compare",
        "/nonexistent/0001_old.json",
        "/nonexistent/0002_new.json",
        match=r"error: baseline '/nonexistent/0001_old\.json' does not exist; check the path",
    ),
    cli(
        "compare",
        "old.json",
        "new.json",
        "--fail",
        "iia:five",
        match=r"error: could not parse the compare-fail expression 'iia:five'",
    ),
    cli(*FIT, "--method", "bondless", match=r"error: unknown method 'bondless'; choose one of"),
    cli(*FIT, "--bracket", "inf", "3", match=r"argument --bracket: 'inf' is not an amount"),
    cli(
        "evaluate",
        "--model",
        LLAMA,
        "--alignment",
        "/",
        match=r"error: alignment file '/' is a directory; name the \.safetensors file in it",
    ),
    cli(*FIT, "--bracket", "1.005", "3", match=r"'1\.005' has more than two decimals"),
    cli(*FIT, "--n-test", "1", match=r"--n-test: '1' must be a number of pairs from 2 to"),
    cli(*FIT, "--n-test", "10000000000", match=r"'10000000000' must be a number of pairs from 2"),
    cli(*FIT, "--seed", str(2**70), match=r"--seed: '\d+' is not a seed: use an integer 0 to"),
    cli(*FIT, "--seed", "-1", match=r"--seed: '-1' is not a seed: use an integer 0 to 4294967295"),
    cli(*FIT, "--position", "middle", match=r"error: cannot parse position 'middle'"),
    cli(*FIT, "--threshold", "1.5", match=r"argument --threshold: '1\.5' must lie in \[0, 1\]"),
    cli(
        "fit",
        "--hypothesis",
        "left_boundry",
        "--layer",
        "1",
        match=r"argument --hypothesis: invalid choice: 'left_boundry'",
    ),
    cli(*FIT, "--model", "/no/such/dir", match=r"error: model directory '/no/such/dir' does not"),
    cli(*FIT, "--model", LLAMA, "--device", "tpu", match=r"error: device='tpu' is not one of"),
    cli(*SEARCH, "0", "1", "0", match=r"--layers: layer 0 given twice; list each once"),
    cli(
        *SEARCH,
        "0",
        "--positions",
        "last",
        "after:amount",
        "last",
        match=r"--positions: position last given twice; list each once",
    ),
    cli(
        *SEARCH,
        "0",
        "-3",
        "--model",
        LLAMA,
        match=r"error: --layers 0 and -3 are the same block of this model \(0\)",
    ),
    cli(
        *SEARCH,
        "0",
        "7",
        "--model",
        LLAMA,
        match=r"error: layer=7 is out of range for llama \(3 layers",
    ),
    cli(*SEARCH, "0", "--positions", "middle", match=r"error: cannot parse position 'middle'"),
    cli("search", "--hypothesis", "left_boundary", match=r"required: --layers"),
]


@pytest.mark.parametrize(("argv", "match"), CLI_CASES)
def test_a_bad_command_line_exits_2_with_a_message(
    argv: list[str], match: str, ctx: Ctx, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(ctx.model_dir()) if arg == LLAMA else arg for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses the option itself
        code = exit_.code
    assert code == 2
    stderr = capsys.readouterr().err
    assert re.search(match, stderr), stderr
    assert "Traceback" not in stderr


def test_an_unexpected_error_exits_3_not_1_which_means_a_failed_claim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from das_assert import cli as cli_module

    def crash(args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli_module.COMMANDS, "fit", crash)
    assert main([*FIT, "--n-train", "8"]) == 3
    stderr = capsys.readouterr().err
    assert "RuntimeError: a bug" in stderr
    assert "unexpected error" in stderr


def test_there_are_at_least_45_distinct_cases() -> None:
    ids = [case.id for case in CASES + CLI_CASES]
    assert len(ids) == len(set(ids)) >= 45


def test_a_cli_search_asking_for_a_heatmap_without_matplotlib_is_refused_before_training(
    ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from das_assert import experiment

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    trained = []
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: trained.append(a))
    argv = [*SEARCH, "0", "--model", str(ctx.model_dir()), f"--png={tmp_path / 'grid.png'}"]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert "error: --png needs matplotlib: pip install 'das_assert[plots]'" in stderr
    assert trained == []
    assert list(tmp_path.iterdir()) == []


def test_a_cli_search_with_a_misspelt_slot_is_refused_before_any_cell_trains(
    ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from das_assert import experiment

    trained = []
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: trained.append(a))
    argv = [*SEARCH, "0", "1", "--positions", "last", "after:amout"]
    assert main([*argv, "--model", str(ctx.model_dir())]) == 2
    stderr = capsys.readouterr().err
    assert "position 'after:amout' refers to slot 'amout', which this prompt does not" in stderr
    assert trained == []


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([*FIT, "--json", "{dir}"], r"--json .*dir is a directory; name a file inside it"),
        ([*FIT, "--save", "{file}/a.safetensors"], r"--save .*: .*file is a file, not a dir"),
        ([*SEARCH, "0", "--png", "{dir}"], r"--png .*dir is a directory"),
        (["compare", "a.json", "b.json", "--markdown", "{dir}"], r"--markdown .*dir is a dir"),
        (["train-embedded", "--out", "{file}"], r"--out .*file is a file; name a directory"),
        ([*FIT, "--json", "/proc/das_report.json"], r"--json .*: cannot write in /proc \("),
        (
            ["evaluate", "--alignment", "{file}", "--json", "{file}"],
            r"--json .*file is also --alignment, which this command reads: writing it would",
        ),
        ([*FIT, "--save", "{dir}/x", "--json", "{dir}/x"], r"--save and --json both name .*x"),
        (["compare", "{file}", "b.json", "--markdown", "{file}"], r"--markdown .*file is also OLD"),
        (["train-embedded", "--out", "{shipped}"], r"--out .* is the shipped embedded model"),
        (["train-embedded", "--out", "{full}"], r"--out .*full already holds files; name a new"),
    ],
    ids=[
        *("json-dir", "save-under-file", "png-dir", "markdown-dir", "out-file", "read-only"),
        *("json-over-alignment", "json-and-save", "markdown-over-old", "shipped", "out-full"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
    argv: list[str],
    match: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from das_assert import cli

    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    from das_assert.embedded import train

    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("the model was loaded"))
    monkeypatch.setattr(train, "train_embedded", lambda *a: pytest.fail("training started"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    paths = {"dir": tmp_path / "dir", "file": tmp_path / "file", "full": tmp_path / "full"}
    paths["shipped"] = EMBEDDED_MODEL_DIR
    assert main([arg.format(**paths) for arg in argv]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert (tmp_path / "file").read_text() == ""  # no input was touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file", "full"]
