"""Bad model directories, load_model/encode arguments, sites, positions, prompts: one DasError."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from bad_inputs_support import (
    PROMPT,
    Call,
    Ctx,
    a_file,
    an_empty_dir,
    append_an_end_token,
    assert_one_clear_das_error,
    dir_with,
    dir_with_a_tensor_deleted,
    dir_with_config_change,
    dir_with_corrupt_tokenizer,
    dir_with_deeply_nested,
    dir_with_garbage_config,
    dir_with_layer_count,
    dir_with_pickled_weights_only,
    dir_with_tokenizer_code,
    dir_with_tokenizer_code_beside_a_builtin,
    dir_with_tokenizer_code_in_a_list,
    dir_with_truncated_weights,
    dir_with_unknown_architecture,
    dir_with_unknown_tokenizer_model,
    dir_without,
    dir_without_tokenizer_files,
    encode_on,
    resolve_on_prompt,
    small_llama,
    tiny_t5,
    tokenizer,
)

from das_assert.data import encode
from das_assert.errors import DasError, InvalidArgument, ModelLoadError, SiteError
from das_assert.models import TOKENIZER_FILES, answer_token_id, load_model
from das_assert.positions import parse_position
from das_assert.sites import Site, parse_site
from das_assert.strategies import PromptVariant
from das_assert.tasks.price_tagging import PriceFormat, make_pairs, prompt_pairs


def encode_variant_without_prefix(ctx: Ctx) -> object:
    variant = PromptVariant(suffix="Thank you.")
    pairs = prompt_pairs("left_boundary", 4, seed=0, fmt=variant.format(), edit=variant.edit)
    return encode(ctx.llama, pairs, parse_position("prefix.last"))


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


class _TwoBlockLists(torch.nn.Module):
    """A model of an unlisted type with two module lists as long as its layer count."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type="twin", num_hidden_layers=2)
        self.first = torch.nn.ModuleList([torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)])
        self.second = torch.nn.ModuleList([torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)])


def load_out_of_memory(ctx: Ctx) -> object:
    """torch's CPU allocator fails while bfloat16 weights load as float32: the files are whole,
    but the error said they were missing or damaged."""
    from transformers import AutoModelForCausalLM

    def from_pretrained(*args: object, **kwargs: object) -> object:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 16777216 bytes. Error code 12"
        )

    directory = dir_with_config_change(ctx, dtype="bfloat16")
    ctx.monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    return load_model(directory)


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
        load_out_of_memory,
        ModelLoadError,
        r"out of memory loading the weights in .* as float32 \(.*can't allocate memory.*\); its "
        r"weights are stored in bfloat16, at half that size: load them as stored \(--dtype "
        r"bfloat16 .*; or give the process more memory",
        id="load_model(<bfloat16 weights that do not fit in memory as float32>)",
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
    pytest.param(  # a RecursionError traceback, exit 3 on the command line
        lambda c: load_model(dir_with_deeply_nested(c, "config.json")),
        ModelLoadError,
        r"cannot read the model config in .*maximum recursion depth.*config\.json is damaged",
        id="load_model(<config.json nested 200,000 deep>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_deeply_nested(c, "tokenizer_config.json")),
        ModelLoadError,
        r"cannot load the tokenizer in .*maximum recursion depth.*tokenizer\.save_pretrained",
        id="load_model(<tokenizer_config.json nested 200,000 deep>)",
    ),
    pytest.param(
        lambda c: load_model(c.model_dir(), device_map="bogus"),
        InvalidArgument,
        r"device_map='bogus' is not a device map; use one of auto, balanced",
        id="load_model(device_map='bogus')",
    ),
    pytest.param(  # torch's "not compiled with CUDA" assertion, once per test
        lambda c: load_model(c.model_dir(), device_map="cuda:0"),
        InvalidArgument,
        r"device_map='cuda:0' but no CUDA device is available here; leave the device map out "
        r"to load on the CPU \(--das-device-map under pytest, --device-map on the command line\)$",
        id="load_model(device_map='cuda:0') without CUDA",
        marks=NO_CUDA,
    ),
    pytest.param(  # read as no device at all, and blamed on the weight files
        lambda c: load_model(c.model_dir(), device_map="0"),
        InvalidArgument,
        r"device_map='0' but no CUDA device is available here; leave the device map out",
        id="load_model(device_map='0') without CUDA",
        marks=NO_CUDA,
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
        # transformers' message pointed at a report above it, which das_assert keeps quiet, and
        # the fix named the weight files, not the config edited after the save
        lambda c: load_model(dir_with_config_change(c, intermediate_size=40)),
        ModelLoadError,
        r"(?s)do not match its config\.json \(llama, 3 layers\): \d+ tensor\(s\) have another "
        r"shape than the config gives \(model\.layers\.0\.mlp\.down_proj\.weight: file "
        r"\[\d+, \d+\], config \[\d+, 40\].*Restore config\.json",
        id="load_model(<config.json with another intermediate_size>)",
    ),
    pytest.param(
        # a known model_type was loaded with transformers' built-in class, the code ignored
        lambda c: load_model(
            dir_with_config_change(
                c, auto_map={"AutoModelForCausalLM": "modeling_own.OwnForCausalLM"}
            )
        ),
        ModelLoadError,
        r"names its own model code \(AutoModelForCausalLM: modeling_own\.OwnForCausalLM\), which "
        r"das_assert runs only when asked; .*built-in llama class.*--trust-remote-code.*remove "
        r"auto_map",
        id="load_model(<config.json with auto_map, no trust_remote_code>)",
    ),
    pytest.param(  # loaded as the built-in LlamaConfig, the config's own class never read
        lambda c: load_model(
            dir_with_config_change(c, auto_map={"AutoConfig": "configuration_own.OwnConfig"})
        ),
        ModelLoadError,
        r"names its own model code \(AutoConfig: configuration_own\.OwnConfig\)",
        id="load_model(<config.json whose auto_map names only its AutoConfig>)",
    ),
    pytest.param(  # the older list form of a tokenizer's auto_map loaded the built-in class
        lambda c: load_model(dir_with_tokenizer_code_in_a_list(c)),
        ModelLoadError,
        r"the tokenizer in .* names its own code \(tokenizer_config\.json: "
        r"tokenization_own\.OwnTokenizer\)",
        id="load_model(<tokenizer_config.json auto_map as a list>)",
    ),
    pytest.param(
        lambda c: load_model(
            dir_with_config_change(
                c, auto_map={"AutoModelForCausalLM": "modeling_own.OwnForCausalLM"}
            ),
            trust_remote_code=True,
        ),
        ModelLoadError,
        r"(?s)cannot load the model's own code in .*modeling_own\.py.*auto_map names a Python "
        r"file that must lie in the directory",
        id="load_model(<auto_map naming a missing modeling file>, trust_remote_code=True)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_tokenizer_code(c)),
        ModelLoadError,
        r"the tokenizer in .* names its own code \(tokenizer_config\.json: "
        r"tokenization_own\.OwnTokenizer\).*Pass --trust-remote-code",
        id="load_model(<tokenizer_config.json naming its own tokenizer code>)",
    ),
    pytest.param(  # loaded the built-in class without a word
        lambda c: load_model(dir_with_tokenizer_code_beside_a_builtin(c)),
        ModelLoadError,
        r"the tokenizer in .* names its own code .*without it transformers would load a "
        r"built-in tokenizer class",
        id="load_model(<tokenizer_config.json naming its own code beside a built-in class>)",
    ),
    pytest.param(  # a traceback and exit 3: transformers 5 raises the hub's validation error
        lambda c: load_model(dir_with_config_change(c, hidden_size=30)),
        ModelLoadError,
        # transformers 4.x accepts the config, and the weights' shapes then differ from it
        r"the config\.json in .* holds a value transformers rejects: .*30.*; restore the model's "
        r"own config\.json|the weights .* do not match its config\.json",
        id="load_model(<config.json hidden_size not a multiple of the heads>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_config_change(c, num_hidden_layers="3")),
        ModelLoadError,
        r"the config\.json in .* holds a value transformers rejects: ",
        id="load_model(<config.json num_hidden_layers a string>)",
    ),
    pytest.param(
        lambda c: load_model(dir_with_config_change(c, num_attention_heads=0)),
        ModelLoadError,
        r"the config\.json in .* holds a value transformers rejects: ",
        id="load_model(<config.json num_attention_heads 0>)",
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
    pytest.param(  # it passed on transformers' "install sentencepiece or tiktoken"
        lambda c: load_model(dir_without_tokenizer_files(c)),
        ModelLoadError,
        r"no tokenizer in .*: it has none of tokenizer\.json, \*\.model, .*; copy the "
        r"tokenizer's files beside the model's",
        id="load_model(<dir without tokenizer.json>)",
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
    *(
        pytest.param(
            lambda c, device=device: load_model(c.model_dir(), device=device),
            InvalidArgument,
            rf"device='{device}' is not one of cpu, cuda, cuda:N",
            id=f"load_model(tiny_llama, device='{device}')",  # not 'no CUDA device here'
        )
        for device in ("cuda:", "cuda0", "cudax", "cuda:-1")
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
        r"does not know where the decoder blocks of model_type 'bert' are.*conftest\.py under "
        r"pytest, or on the command line in a file given with --causal-models FILE: "
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
    pytest.param(  # spans kept the last copy: low.first named the second "1.30", silently
        lambda c: PriceFormat(
            instruction="Say {yes} if it costs between {low} and {high}, else {no}. "
            "The bracket is {low} to {high}."
        ),
        InvalidArgument,
        r"writes \{low\} 2 times; a position such as low\.first names one token of the prompt",
        id="PriceFormat(instruction=<{low} twice>)",
    ),
    pytest.param(
        lambda c: PriceFormat(template="### Instruction:\n{instruction}\n### Response:\n"),
        InvalidArgument,
        r"template needs \{instruction\} and \{amount\} once each \(found: \{instruction\} once, "
        r"\{amount\} not at all\)",
        id="PriceFormat(template=<no {amount}>)",
    ),
    pytest.param(
        lambda c: PriceFormat(
            instruction="Say {yes} if it costs between {low} and {high} {price}, else {no}."
        ),
        InvalidArgument,
        r"has an unknown slot \{price\}; allowed: \{low\}, \{high\}, \{yes\}, \{no\}",
        id="PriceFormat(instruction=<with {price}>)",
    ),
    pytest.param(  # --template (the instruction's alias) given the wrapper said nothing of it
        lambda c: PriceFormat(instruction="Q: {instruction}\nInput: {amount}\nA:"),
        InvalidArgument,
        r"has an unknown slot \{instruction\}; allowed: .*; a template around the whole "
        r"prompt, with \{instruction\} and \{amount\}, is a prompt template "
        r"\(--prompt-template, das\.yaml's prompt_template\)",
        id="PriceFormat(instruction=<a wrapper>)",
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
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_a_bad_input_raises_one_clear_das_error(
    call: Call, error: type[DasError], match: str, ctx: Ctx
) -> None:
    assert_one_clear_das_error(call, error, match, ctx)
