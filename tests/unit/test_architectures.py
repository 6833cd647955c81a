"""The architecture matrix: das_assert's engine on tiny random models of many Hugging Face types.

The oracle tests pin the engine down on Llama, GPT-2 and GPT-NeoX. A user's model may be any
causal LM, and the engine's fast paths (a cached prefix, a shared preamble, blocks before the
site skipped) lean on how a type's blocks and cache behave. For each type here, loaded through
``load_model`` like any model directory:

- the engine check passes on the fast path, with no fallback (or, for a type whose cache keeps a
  recurrent state, the engine runs whole prompts from the start, without a warning);
- a whole-vector interchange through das_assert equals patching written by hand, on the fast
  path and on whole prompts, at a token before the last, and so does a second pass on one run
  (its cache cut back to the prefix);
- a training step's logits and gradients through a prefix store whose suffix passes skip the
  blocks up to the site equal those of whole prompts;
- a fit through windows of the store then evaluates to the same predictions on both paths.

The hand-written side finds the decoder blocks as the model's list of one module per layer, not
by das_assert's names. A type the installed transformers lacks is skipped.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from intervention_support import mixer
from test_oracles import das_logits, hand_interchange

from das_assert import kv_cache
from das_assert.data import encode
from das_assert.engine_check import FastPathWarning, check_engine
from das_assert.evaluate import evaluate
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, fit_alignment
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore, first_layer_needed, tail_blocks
from das_assert.runner import BaseRun, source_vectors
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs

# Types whose blocks or caches differ in something the engine depends on: tuple outputs with
# attention weights (Bloom, GPT-Neo, Falcon), ALiBi (Bloom), learned or sinusoidal positions
# (OPT, XGLM), parallel blocks (GPT-J, CodeGen, Phi, Cohere), multi-query attention
# (GPTBigCode), sliding windows longer than a prompt (Mistral, Gemma 2, GPT-OSS), query-key
# norms (Qwen3, OLMo 2), layers without positions (SmolLM3, Llama 4), mixtures of experts.
FAST_PATH = (
    "bloom",
    "falcon",
    "gpt_neo",
    "opt",
    "xglm",
    "gptj",
    "codegen",
    "phi",
    "phi3",
    "cohere",
    "gpt_bigcode",
    "mistral",
    "gemma2",
    "gemma3_text",
    "gpt_oss",
    "qwen3",
    "olmo2",
    "smollm3",
    "llama4_text",
    "mixtral",
    "qwen2_moe",
)
# Of those, the types whose cache has sliding-window layers (each longer than the prompts).
WINDOWED = ("mistral", "gemma2", "gemma3_text", "gpt_oss", "llama4_text")
# Types whose cache keeps a recurrent state (linear attention, state-space layers).
WHOLE_PROMPTS = ("falcon_h1", "qwen3_next", "recurrent_gemma", "mamba")
# Types whose forward takes no transformers KV cache: RWKV's state, xLSTM's own cache class.
OWN_STATE = ("rwkv", "xlstm")

_SMALL = {
    "hidden_size": 32,
    "n_embd": 32,
    "d_model": 32,
    "word_embed_proj_dim": 32,
    "intermediate_size": 64,
    "ffn_dim": 64,
    "n_inner": 64,
    "num_hidden_layers": 3,
    "n_layer": 3,
    "num_layers": 3,
    "num_attention_heads": 4,
    "n_head": 4,
    "num_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "rotary_dim": 4,
    "max_position_embeddings": 256,
    "n_positions": 256,
    "num_experts": 4,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 16,
    "shared_expert_intermediate_size": 16,
    "attention_hidden_size": 32,  # rwkv
}
_PER_TYPE: dict[str, dict[str, Any]] = {
    "gpt_neo": {"attention_types": [[["global", "local"], 1], [["global"], 1]], "window_size": 64},
    "falcon": {"head_dim": None},  # derived from the width and heads
    "falcon_h1": {
        "mamba_d_ssm": 32,
        "mamba_n_heads": 4,
        "mamba_d_head": 8,
        "mamba_d_state": 8,
        "mamba_chunk_size": 16,
    },
    "qwen3_next": {
        "linear_key_head_dim": 8,
        "linear_value_head_dim": 8,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
    },
    "recurrent_gemma": {"lru_width": 32},
}


def _config(model_type: str, tokenizer: Any) -> Any:
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        pytest.skip(f"transformers has no {model_type} here")
    config_class = CONFIG_MAPPING[model_type]
    known = config_class()
    wanted = {**_SMALL, **_PER_TYPE.get(model_type, {})}
    kwargs = {k: v for k, v in wanted.items() if v is not None and hasattr(known, k)}
    return config_class(
        **kwargs,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.bos_token_id,
    )


@pytest.fixture(scope="module")
def model_of(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``model_type -> LoadedModel``: a tiny random model saved and loaded as a directory."""
    from transformers import AutoModelForCausalLM

    from das_assert.embedded.recipe import build_tokenizer
    from das_assert.models import load_model

    root = tmp_path_factory.mktemp("architectures")

    def make(model_type: str) -> Any:
        tokenizer = build_tokenizer()
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(model_type, tokenizer))
        directory = Path(root) / model_type
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return load_model(directory)

    return make


def hand_blocks(model: Any) -> torch.nn.ModuleList:
    """The decoder blocks, found without das_assert: the outermost ``ModuleList`` with one entry
    per layer of the config (a list of experts inside a block may be longer)."""
    config = model.config
    layers = next(
        n
        for n in (getattr(config, k, None) for k in ("num_hidden_layers", "n_layer", "num_layers"))
        if n
    )
    return next(
        m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == layers
    )


def _check_and_compare(loaded: Any, *, fast: bool) -> None:
    position = "amount.last"  # the prefix cache then holds fewer tokens than the prompt
    pairs = prompt_pairs("left_boundary", 8, seed=1)
    encoded = encode(loaded, pairs, parse_position(position))
    site = Site(1, position).resolve(loaded.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastPathWarning)
        checked = check_engine(loaded.model, site, encoded)
    assert checked.whole_prompts is not fast
    if not fast:  # whole prompts from the start, and the record says why
        assert "recurrent state" in checked.why or "a state of its own" in checked.why
        assert kv_cache.whole_prompts_only(loaded.model) is None  # no fallback
    assert kv_cache.prefix_caching_works(loaded.model, encoded.base_ids.shape[1]) is fast
    assert checked.cached_vs_plain <= checked.tolerance
    want = hand_interchange(loaded, hand_blocks(loaded.model)[1], pairs, position)
    full = Interchange.full(loaded.config.hidden_size)
    for prefix_cache in (True, False):
        with torch.no_grad():
            got = das_logits(loaded, site, encoded, full, prefix_cache=prefix_cache)
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # A second pass on one run: its cache is cut back to the prefix in between.
    run = BaseRun(loaded.model, site, encoded, torch.arange(len(encoded)))
    sources, variables = source_vectors(loaded.model, site, encoded), encoded.variable_index
    with torch.no_grad():
        run.logits(lambda base: base)
        again = run.logits(lambda base: full(base, sources, variables, hard=True))
    torch.testing.assert_close(again, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", FAST_PATH)
def test_the_engine_runs_its_fast_path_on_the_type_and_swaps_as_hand_patching_does(
    model_of: Any, model_type: str
) -> None:
    loaded = model_of(model_type)
    _check_and_compare(loaded, fast=True)
    # A training step's logits and gradients: from a prefix store that holds block 1's output
    # at the suffix (the suffix pass skips blocks 0 and 1), and from whole prompts. A cache of
    # sliding windows longer than the prompt is held as whole layers.
    encoded = encode(loaded, prompt_pairs("left_boundary", 8, seed=2), parse_position("last-1"))
    site = Site(1, "last-1").resolve(loaded.model)
    window = kv_cache.cache_window(loaded.model)
    assert (window is not None) is (model_type in WINDOWED)
    assert window is None or window > encoded.base_ids.shape[1]
    assert kv_cache.plain_cache(loaded.model)
    blocks = tail_blocks(loaded.model, [site])
    first_layer = first_layer_needed(loaded.model, [site])
    store = PrefixStore.build(
        loaded.model, encoded, batch_size=4, max_bytes=2**26, blocks=blocks, first_layer=first_layer
    )
    assert store is not None
    assert set(store.tails) == set(blocks) == {1}
    assert store.first_layer == 2
    index = torch.arange(1, 7)
    interchange, mix = mixer(loaded, site, encoded, index)
    parameters = [interchange.widths, *interchange.rotate.parameters()]
    stored = BaseRun(loaded.model, site, encoded, index, prefix_store=store).logits(mix)
    stored_grads = torch.autograd.grad(stored.logsumexp(-1).sum(), parameters)
    whole = BaseRun(loaded.model, site, encoded, index, prefix_cache=False).logits(mix)
    whole_grads = torch.autograd.grad(whole.logsumexp(-1).sum(), parameters)
    torch.testing.assert_close(stored, whole, atol=1e-5, rtol=0)
    for got, want in zip(stored_grads, whole_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", FAST_PATH)
def test_a_fit_on_the_fast_path_evaluates_as_whole_prompts_do(
    model_of: Any, model_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a fit through windows of a prefix store (the whole fit's store refused, as
    if it did not fit its budget) and the skipped blocks, then its hard-mask evaluation with
    the baselines, by the fast path and over whole prompts: the same predictions, pair for
    pair."""
    loaded = model_of(model_type)
    position = parse_position("last-1")
    train = encode(loaded, prompt_pairs("left_boundary", 24, seed=0), position)
    test = encode(loaded, prompt_pairs("left_boundary", 24, seed=1), position)
    site = Site(1, "last-1").resolve(loaded.model)
    windows: list[int] = []
    build = PrefixStore.build.__func__

    def windows_only(cls: type, *args: Any, rows: Any = None, **kwargs: Any) -> Any:
        if rows is None:
            return None
        windows.append(len(rows))
        return build(cls, *args, rows=rows, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(PrefixStore, "build", classmethod(windows_only))
        fitted = fit_alignment(loaded.model, site, train, FitConfig(epochs=1, batch_size=4))
    assert windows
    assert sum(windows) == len(train)
    fast = evaluate(loaded.model, fitted, test, batch_size=8)
    whole = evaluate(loaded.model, fitted, test, batch_size=8, prefix_cache=False)
    for field in ("predicted", "base_predicted", "random_predicted"):
        assert torch.equal(getattr(fast, field), getattr(whole, field)), field


@pytest.mark.parametrize("model_type", OWN_STATE)
def test_a_type_that_keeps_a_state_of_its_own_runs_whole_prompts_from_the_start(
    model_of: Any, model_type: str
) -> None:
    # `das_assert check` and `fit` stopped with a traceback (exit 3) in the shared preamble's
    # pass: a DynamicCache built from their config looked plain, and their forward took none
    import transformers

    if model_type == "xlstm" and int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("4.57's xLSTM fails its own chunked forward (it calls a tensor)")
    loaded = model_of(model_type)
    why = kv_cache.why_prompts_run_whole(loaded.model, 79)
    assert why == "its forward takes no KV cache: it keeps a state of its own (RWKV, xLSTM)"
    _check_and_compare(loaded, fast=False)


@pytest.mark.parametrize("model_type", WHOLE_PROMPTS)
def test_a_type_with_a_recurrent_state_runs_whole_prompts_from_the_start(
    model_of: Any, model_type: str
) -> None:
    from transformers import cache_utils

    if not hasattr(cache_utils, "LinearAttentionLayer"):
        pytest.skip("this transformers' caches do not name recurrent layers (4.57 does not)")
    loaded = model_of(model_type)
    assert not kv_cache.keeps_only_attention(loaded.model)
    _check_and_compare(loaded, fast=False)
