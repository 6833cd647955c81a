"""Bad arguments to the public API (``das_assert.__all__``): one clear DasError at the call.

Each case was a deep AttributeError, TypeError or ZeroDivisionError, or was silently accepted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from bad_inputs_support import Call, Ctx, assert_one_clear_das_error

import das_assert
from das_assert.causal import CausalModel
from das_assert.errors import DasError, InvalidArgument
from das_assert.experiment import Experiment, run_experiment
from das_assert.featurizers import Interchange
from das_assert.fit_config import FitConfig
from das_assert.models import load_model
from das_assert.sites import Site, parse_site
from das_assert.strategies import PromptVariant
from das_assert.tasks.price_tagging import CAUSAL_MODELS, PriceFormat, prompt_pairs
from das_assert.tasks.registry import register_causal_model


def unregistered_model() -> CausalModel:
    return CausalModel(
        name="never_registered",
        inputs=("lo", "hi", "x"),
        mechanisms={"answer": lambda lo, hi, x: lo <= x <= hi},
        output="answer",
    )


SITE = "block_output[layer=0, pos=last]"


def experiment(**changes: Any) -> Experiment:
    fields: dict[str, Any] = {"hypothesis": "left_boundary", "site": SITE, "n_train": 8}
    return Experiment(**{**fields, **changes})


CASES = [
    # -- a misspelt keyword: the dataclass's TypeError named the keyword, not the arguments
    pytest.param(
        lambda c: experiment(n_trian=8),
        InvalidArgument,
        r"Experiment\(\) has no argument 'n_trian'\. Did you mean 'n_train'\? It takes: "
        r"hypothesis, site, variables, n_train",
        id="Experiment(n_trian=)",
    ),
    pytest.param(
        lambda c: FitConfig(lr=1e-3),
        InvalidArgument,
        r"FitConfig\(\) has no argument 'lr'\. It takes: method, epochs, .*lr_rotation, "
        r"lr_boundary",
        id="FitConfig(lr=)",
    ),
    pytest.param(
        lambda c: dataclasses.replace(FitConfig(), epoch=2),
        InvalidArgument,
        r"FitConfig\(\) has no argument 'epoch'\. Did you mean 'epochs'\?",
        id="replace(FitConfig(), epoch=)",
    ),
    pytest.param(
        lambda c: Site(1, positon="last"),
        InvalidArgument,
        r"Site\(\) has no argument 'positon'\. Did you mean 'position'\? It takes: layer, position",
        id="Site(positon=)",
    ),
    pytest.param(
        lambda c: PriceFormat(answer=("Yes", "No")),
        InvalidArgument,
        r"PriceFormat\(\) has no argument 'answer'\. Did you mean 'answers'\?",
        id="PriceFormat(answer=)",
    ),
    pytest.param(  # a bare TypeError, where every other public dataclass lists its fields
        lambda c: PromptVariant(answer=("True", "False")),
        InvalidArgument,
        r"PromptVariant\(\) has no argument 'answer'\. Did you mean 'answers'\?",
        id="PromptVariant(answer=)",
    ),
    pytest.param(  # registered as 'causal_model'; a second file's was then "already registered"
        lambda c: register_causal_model(
            CausalModel(
                inputs=("lo", "hi", "x"),
                mechanisms={"answer": lambda lo, hi, x: lo <= x <= hi},
                output="answer",
            ),
            intervened=("answer",),
        ),
        InvalidArgument,
        r"the causal model has no name= \(it is called 'causal_model', CausalModel's default\)",
        id="register_causal_model(<no name=>)",
    ),
    pytest.param(
        lambda c: CausalModel(name="m", inputs=("x",), mechanisms={}, outputs="a"),
        InvalidArgument,
        r"CausalModel\(\) has no argument 'outputs'\. Did you mean 'output'\?",
        id="CausalModel(outputs=)",
    ),
    pytest.param(  # a bare TypeError from the call
        lambda c: run_experiment(c.llama, experiment(), epochs=2),
        InvalidArgument,
        r"run_experiment\(\) takes no epochs: a training setting; pass "
        r"config=FitConfig\(epochs=2\)",
        id="run_experiment(epochs=)",
    ),
    pytest.param(
        lambda c: run_experiment(c.llama, experiment(), n_test=100),
        InvalidArgument,
        r"takes no n_test: the experiment's; make it Experiment\(\.\.\., n_test=100\)",
        id="run_experiment(n_test=)",
    ),
    # -- Experiment and run_experiment: each an AttributeError once the run began
    pytest.param(
        lambda c: experiment(site=None),
        InvalidArgument,
        r"site=None: a Site or its text, e\.g\. Site\(1\) or 'block_output\[layer=1, pos=last\]'",
        id="Experiment(site=None)",
    ),
    pytest.param(
        lambda c: experiment(site=0),
        InvalidArgument,
        r"site=0: a Site or its text",
        id="Experiment(site=0)",
    ),
    pytest.param(
        lambda c: experiment(site="block_output[layer=0]"),
        InvalidArgument,
        r"cannot parse site 'block_output\[layer=0\]'",
        id="Experiment(site='block_output[layer=0]')",
    ),
    pytest.param(
        lambda c: experiment(seed=2**70),
        InvalidArgument,
        rf"seed={2**70}: use an integer 0 to 4294967295",
        id="Experiment(seed=2**70)",
    ),
    # -- prompt_pairs: a raw tuple.index ValueError, a string iterated, a deep TypeError, or
    # a bad seed or count silently accepted
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, variables=("answer",)),
        InvalidArgument,
        r"variables \['answer'\] have no box in left_boundary's alignment, which has one for "
        r"each of \['left'\]; choose among those\.",
        id="prompt_pairs(variables=('answer',))",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, variables=("lo",)),
        InvalidArgument,
        r"variables \['lo'\] have no box in left_boundary's alignment",
        id="prompt_pairs(variables=('lo',))",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, variables="left"),
        InvalidArgument,
        r"variables='left' must name each variable once, e\.g\. \['left'\]",
        id="prompt_pairs(variables='left')",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, variables=()),
        InvalidArgument,
        r"variables=\(\) names no variable; name at least one",
        id="prompt_pairs(variables=())",
    ),
    *(
        pytest.param(
            lambda c, seed=seed: prompt_pairs("left_boundary", 4, seed=seed),
            InvalidArgument,
            rf"seed={seed!r}: the seed of the sampler, an integer",
            id=f"prompt_pairs(seed={seed!r})",
        )
        for seed in (None, "abc", 1.5, True)
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 3.5, seed=0),
        InvalidArgument,
        r"n=3\.5: a number of pairs, an integer",
        id="prompt_pairs(n=3.5)",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", "10", seed=0),
        InvalidArgument,
        r"n='10': a number of pairs, an integer",
        id="prompt_pairs(n='10')",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, fmt="alpaca"),
        InvalidArgument,
        r"fmt='alpaca': a PriceFormat, e\.g\. PriceFormat\(answers=\('True', 'False'\)\), or None",
        id="prompt_pairs(fmt='alpaca')",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, edit=lambda inputs, rng, role: None),
        InvalidArgument,
        r"edit returned None for the base \{'lo': \d+, 'hi': \d+, 'x': \d+\}; it must return "
        r"the inputs, a dict of lo, hi and x in whole cents",
        id="prompt_pairs(edit=<returns None>)",
    ),
    pytest.param(
        lambda c: prompt_pairs(
            "left_boundary",
            4,
            seed=0,
            fmt=PriceFormat(numbers="one_decimal"),
            edit=lambda inputs, rng, role: None,
        ),
        InvalidArgument,
        r"edit returned None for the base",
        id="prompt_pairs(fmt=<one decimal>, edit=<returns None>)",
    ),
    pytest.param(
        lambda c: prompt_pairs("left_boundary", 4, seed=0, edit="on_bound"),
        InvalidArgument,
        r"edit='on_bound': a function edit\(inputs, rng, role\) that returns the inputs",
        id="prompt_pairs(edit='on_bound')",
    ),
    # -- load_model: a TypeError from difflib or pathlib, an AttributeError on .startswith
    pytest.param(
        lambda c: load_model(None),
        InvalidArgument,
        r"path=None: a local model directory, or 'embedded' for the shipped model",
        id="load_model(None)",
    ),
    # -- a transformers model where a LoadedModel goes: its repr was the whole tree of layers
    pytest.param(
        lambda c: run_experiment(c.llama.model, experiment()),
        InvalidArgument,
        r"^model=<LlamaForCausalLM>: a LoadedModel, not LlamaForCausalLM; load it first: "
        r"run_experiment\(load_model\(path\), experiment\) \(a model in memory: "
        r"model\.save_pretrained\(path\) and tokenizer\.save_pretrained\(path\) first\)$",
        id="run_experiment(hf_model, experiment)",
    ),
    pytest.param(
        lambda c: das_assert.load_fitted(c.tmp_path / "a.safetensors", c.llama.model),
        InvalidArgument,
        r"^model=<LlamaForCausalLM>: a LoadedModel \(load_model\(path\)\), not LlamaForCausalLM$",
        id="load_fitted(path, hf_model)",
    ),
    pytest.param(
        lambda c: load_model(c.llama.model),
        InvalidArgument,
        r"^path=<LlamaForCausalLM>: a local model directory",
        id="load_model(hf_model)",
    ),
    pytest.param(
        lambda c: load_model(device=None),
        InvalidArgument,
        r"device=None: one of cpu, cuda, cuda:N",
        id="load_model(device=None)",
    ),
    pytest.param(
        lambda c: load_model(dtype=None),
        InvalidArgument,
        r"dtype=None: one of float32, bfloat16, float16",
        id="load_model(dtype=None)",
    ),
    pytest.param(
        lambda c: load_model(dtype=torch.float64),
        InvalidArgument,
        r"dtype='float64' is not supported; choose one of float32, bfloat16, float16",
        id="load_model(dtype=torch.float64)",
    ),
    # -- Interchange: a ZeroDivisionError, or boxes silently cut to the d coordinates
    pytest.param(
        lambda c: Interchange.boundless(0),
        InvalidArgument,
        r"d=0: the site's width, a positive integer \(the model's hidden_size\)",
        id="Interchange.boundless(0)",
    ),
    pytest.param(
        lambda c: Interchange.boundless(128, 0),
        InvalidArgument,
        r"n_variables=0: the number of variables, one box each, an integer >= 1",
        id="Interchange.boundless(128, 0)",
    ),
    pytest.param(
        lambda c: Interchange.boundless(128, 2, init_fraction=0.8),
        InvalidArgument,
        r"init_fraction=0\.8: each of the 2 boxes starts with this fraction of the d=128 "
        r"coordinates, so a number in \(0, 1/2\], or None for the default",
        id="Interchange.boundless(128, 2, init_fraction=0.8)",
    ),
    pytest.param(
        lambda c: Interchange.noop(8.0),
        InvalidArgument,
        r"d=8\.0: the site's width, a positive integer",
        id="Interchange.noop(8.0)",
    ),
    pytest.param(
        lambda c: Interchange.fixed(8, 6, 2),
        InvalidArgument,
        r"k=6: 2 disjoint boxes of k coordinates must fit in d=8; choose an integer k from 1 to 4",
        id="Interchange.fixed(8, 6, 2)",
    ),
    pytest.param(
        lambda c: Interchange.fixed(8, 10),
        InvalidArgument,
        r"k=10: 1 disjoint boxes of k coordinates must fit in d=8; choose an integer k from 1 to 8",
        id="Interchange.fixed(8, 10)",
    ),
    pytest.param(
        lambda c: Interchange.fixed(8, 0),
        InvalidArgument,
        r"k=0: 1 disjoint boxes",
        id="Interchange.fixed(8, 0)",
    ),
    pytest.param(
        lambda c: Interchange.full(8, 2, box=2),
        InvalidArgument,
        r"box 2 is not one of the 2 variables' boxes",
        id="Interchange.full(8, 2, box=2)",
    ),
    pytest.param(
        lambda c: Interchange.random_rotation(8, [6, 6], seed=0),
        InvalidArgument,
        r"widths=\[6, 6\]: one box width per variable, integers >= 0 that sum to at most d=8",
        id="Interchange.random_rotation(8, [6, 6])",
    ),
    pytest.param(
        lambda c: Interchange.random_rotation(8, [], seed=0),
        InvalidArgument,
        r"widths=\[\]: one box width per variable",
        id="Interchange.random_rotation(8, [])",
    ),
    # -- PriceFormat: a string for the pair of answers, a TypeError on an instruction of None
    pytest.param(
        lambda c: PriceFormat(answers="YN"),
        InvalidArgument,
        r"answers='YN': a pair of words, true one first, e\.g\. \('Yes', 'No'\)",
        id="PriceFormat(answers='YN')",
    ),
    pytest.param(
        lambda c: PriceFormat(answers=("Yes", None)),
        InvalidArgument,
        r"answers=\('Yes', None\): a pair of words",
        id="PriceFormat(answers=('Yes', None))",
    ),
    pytest.param(
        lambda c: PriceFormat(answers=("Yes", "")),
        InvalidArgument,
        r"answers=\('Yes', ''\): a pair of words",
        id="PriceFormat(answers=('Yes', ''))",
    ),
    pytest.param(
        lambda c: PriceFormat(instruction=None),
        InvalidArgument,
        r"instruction=None: a text, a str",
        id="PriceFormat(instruction=None)",
    ),
    pytest.param(
        lambda c: PriceFormat(numbers=1),
        InvalidArgument,
        r"numbers=1: a text, a str",
        id="PriceFormat(numbers=1)",
    ),
    pytest.param(
        lambda c: PriceFormat(prefix=None),
        InvalidArgument,
        r"prefix=None: a text, a str",
        id="PriceFormat(prefix=None)",
    ),
    # -- a hypothesis that is no name: a TypeError from difflib, "unhashable type: 'dict'"
    pytest.param(
        lambda c: experiment(hypothesis=None),
        InvalidArgument,
        r"causal model None: name one by its string, one of left_boundary, ",
        id="Experiment(hypothesis=None)",
    ),
    pytest.param(
        lambda c: experiment(hypothesis=CAUSAL_MODELS["left_boundary"]),
        InvalidArgument,
        r"pass the causal model's registered name, not the CausalModel 'left_boundary' itself: "
        r"'left_boundary', what register_causal_model returned",
        id="Experiment(hypothesis=<registered CausalModel>)",
    ),
    pytest.param(
        lambda c: prompt_pairs(unregistered_model(), 4, seed=0),
        InvalidArgument,
        r"not the CausalModel 'never_registered' itself: register it first, name = "
        r"register_causal_model\(model, intervened\), and pass that name",
        id="prompt_pairs(<unregistered CausalModel>)",
    ),
    # -- variables=() silently meant every variable
    pytest.param(
        lambda c: experiment(hypothesis="left_and_right_boundary", variables=()),
        InvalidArgument,
        r"variables=\(\) names no variable; name at least one of \['left', 'right'\], or "
        r"leave variables out for all",
        id="Experiment(variables=())",
    ),
    pytest.param(
        lambda c: experiment(variables=5),
        InvalidArgument,
        r"variables=5 must name each variable once, e\.g\. \['left'\]",
        id="Experiment(variables=5)",
    ),
    pytest.param(
        lambda c: run_experiment("embedded", experiment()),
        InvalidArgument,
        r"model='embedded': a LoadedModel, not str; load it first: "
        r"run_experiment\(load_model\('embedded'\), experiment\)",
        id="run_experiment('embedded', exp)",
    ),
    pytest.param(
        lambda c: run_experiment(experiment(), c.llama),
        InvalidArgument,
        r"the arguments are swapped; call run_experiment\(model, experiment\)",
        id="run_experiment(exp, model)",
    ),
    pytest.param(
        lambda c: run_experiment(c.llama, "left_boundary"),
        InvalidArgument,
        r"experiment='left_boundary': an Experiment, not str",
        id="run_experiment(model, 'left_boundary')",
    ),
    pytest.param(
        lambda c: run_experiment(c.llama, experiment(), {"epochs": 1}),
        InvalidArgument,
        r"config=\{'epochs': 1\}: a FitConfig, not dict, e\.g\. FitConfig\(\*\*config\)",
        id="run_experiment(config={'epochs': 1})",
    ),
    pytest.param(
        lambda c: run_experiment(c.llama, experiment(), fitted="x.safetensors"),
        InvalidArgument,
        r"fitted='x\.safetensors': a FittedAlignment .*das_assert\.load_fitted\(path, model\)",
        id="run_experiment(fitted='x.safetensors')",
    ),
    pytest.param(
        lambda c: run_experiment(c.llama, experiment(), cache="/tmp/c"),
        InvalidArgument,
        r"cache='/tmp/c': an AlignmentCache, not str",
        id="run_experiment(cache='/tmp/c')",
    ),
    # -- Interchange's own constructor: a ValueError, and no check of d or the boxes
    pytest.param(
        lambda c: Interchange(4, [2.0], rotation="rand", learn_widths=False),
        InvalidArgument,
        r"rotation='rand': one of learned, random, frozen, identity \(or build it with a",
        id="Interchange(rotation='rand')",
    ),
    pytest.param(
        lambda c: Interchange(0, [], rotation="identity", learn_widths=False),
        InvalidArgument,
        r"d=0: the site's width, a positive integer",
        id="Interchange(d=0, widths=[])",
    ),
    # -- parse_site: an AttributeError on .strip()
    pytest.param(
        lambda c: parse_site(None),
        InvalidArgument,
        r"parse_site takes text, not NoneType None; write the site as COMPONENT\[layer=L",
        id="parse_site(None)",
    ),
    pytest.param(
        lambda c: parse_site(3),
        InvalidArgument,
        r"parse_site takes text, not int 3",
        id="parse_site(3)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_a_bad_argument_raises_one_clear_das_error(
    call: Call, error: type[DasError], match: str, ctx: Ctx
) -> None:
    assert_one_clear_das_error(call, error, match, ctx)


def test_numpy_integers_are_taken_as_ints() -> None:
    """A layer or count from a NumPy grid (np.arange) was refused as "not an integer"."""
    site = Site(np.int64(1))
    assert site == Site(1)
    assert type(site.layer) is int
    experiment = Experiment(
        hypothesis="left_boundary",
        site=site,
        n_train=np.int64(8),
        n_test=np.int32(4),
        seed=np.int64(3),
    )
    assert (experiment.n_train, experiment.n_test, experiment.seed) == (8, 4, 3)
    assert all(type(v) is int for v in (experiment.n_train, experiment.n_test, experiment.seed))
    with pytest.raises(InvalidArgument, match="layer must be an integer, not True"):
        Site(True)  # type: ignore[arg-type]


def test_an_experiment_takes_its_site_as_text() -> None:
    """The README writes sites as text; the run failed with 'str' has no attribute 'resolve'."""
    assert experiment().site == Site(0, "last")
    assert experiment(site=Site(0)).site == Site(0)


def test_prompt_pairs_take_numpy_counts_and_seeds_alike() -> None:
    pairs = prompt_pairs("left_and_right_boundary", np.int64(6), seed=np.int64(4))
    assert pairs == prompt_pairs("left_and_right_boundary", 6, seed=4)
    one = prompt_pairs("left_and_right_boundary", 6, seed=4, variables=("right",))
    assert {pair.inputs["variable"] for pair in one} == {"right"}


def test_load_model_takes_a_torch_dtype_and_device() -> None:
    """load_model(dtype=torch.float32) was a TypeError from difflib, device=torch.device an
    AttributeError; they mean their names."""
    loaded = load_model(dtype=torch.float32, device=torch.device("cpu"))
    assert (loaded.dtype, loaded.device) == ("float32", "cpu")
    assert loaded.model.dtype == torch.float32


def test_interchange_boxes_that_fill_d_exactly_are_allowed() -> None:
    assert Interchange.fixed(8, 4, 2).hard_widths() == [4, 4]
    assert Interchange.boundless(8, 2, init_fraction=0.5).hard_widths() == [4, 4]
    assert Interchange.boundless(9, 3, init_fraction=1 / 3).hard_widths() == [3, 3, 3]
    assert Interchange.random_rotation(8, [8], seed=0).hard_widths() == [8]
    assert Interchange.fixed(np.int64(8), np.int64(2)).hard_widths() == [2]


def test_price_format_answers_as_a_list_are_the_pair() -> None:
    fmt = PriceFormat(answers=["True", "False"])
    assert fmt == PriceFormat(answers=("True", "False"))
    assert hash(fmt) == hash(PriceFormat(answers=("True", "False")))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (  # "false" is truthy: the model's own code ran
            lambda: load_model("embedded", trust_remote_code="false"),
            r"trust_remote_code='false': True or False",
        ),
        (lambda: FitConfig(method="das:²"), r"unknown method 'das:²'"),  # a ValueError from int()
        (lambda: Site(0, "last", None), r"unknown component None"),  # a TypeError
        (  # the same cell trained twice, the second result overwriting the first
            lambda: __import__("das_assert.search").search.search(
                lambda *a: None, "left_boundary", layers=[0], positions=["last", "last"]
            ),
            r"positions: 'last' is listed twice",
        ),
        (
            lambda: __import__("das_assert.search").search.search(
                lambda *a: None, "left_boundary", layers=[0, 0], positions=["last"]
            ),
            r"layers=\[0, 0\] lists a layer twice",
        ),
        (  # best() of an empty grid was a ValueError from max()
            lambda: __import__("das_assert.search").search.search(
                lambda *a: None, "left_boundary", layers=[], positions=["last"]
            ),
            r"search needs at least one layer",
        ),
    ],
    ids=[
        "trust-remote-code-text",
        "das-superscript",
        "component-none",
        "positions-twice",
        "layers-twice",
        "no-layers",
    ],
)
def test_more_bad_arguments_found_by_a_reviewer_are_one_clear_error(call: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()
