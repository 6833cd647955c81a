"""Bad causal models, experiments, statistics and training that cannot go on: one DasError."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from bad_inputs_support import EXAMPLE, Call, Ctx, assert_one_clear_das_error

from das_assert.cache import AlignmentCache
from das_assert.causal import CausalModel
from das_assert.data import PromptPair, encode
from das_assert.errors import (
    ConfigError,
    DasError,
    InvalidArgument,
    OutOfDeviceMemory,
    PreconditionFailed,
    TrainingDiverged,
)
from das_assert.evaluate import evaluate
from das_assert.experiment import Experiment, run_experiment
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment
from das_assert.metrics import required_n, verdict, wilson_interval
from das_assert.models import LoadedModel, load_model
from das_assert.positions import parse_position
from das_assert.sites import Site
from das_assert.tasks.price_tagging import CAUSAL_MODELS, causal_model, prompt_pairs


def model_with_an_unused_variable() -> CausalModel:
    return CausalModel(
        inputs=("x", "y"),
        mechanisms={"s": lambda x: x + 1, "unused": lambda y: -y, "out": lambda s: s > 3},
        output="out",
        name="with_unused",
    )


def mechanism_with_star_args(*values: int) -> int:
    return sum(values)


def tiny_result(ctx: Ctx) -> Any:
    return run_experiment(
        ctx.llama,
        tiny_experiment(n_train=8, n_test=16, min_task_accuracy=0.0),
        FitConfig(epochs=1, batch_size=8),
    )


def by_hand(*indexes: int) -> list[PromptPair]:
    """Pairs as a user builds them (no ``inputs``), intervening on variables ``indexes``."""
    pairs = prompt_pairs("left_boundary", len(indexes), seed=1)
    return [
        dataclasses.replace(pair, inputs={}, variable_index=index)
        for pair, index in zip(pairs, indexes, strict=True)
    ]


def unwrapped(pairs: list[PromptPair]) -> list[PromptPair]:
    """``pairs`` with each prompt's last line alone, outside the Alpaca wrapper."""
    return [
        dataclasses.replace(
            pair,
            base=dataclasses.replace(pair.base, text=pair.base.text.splitlines()[-1]),
            source=dataclasses.replace(pair.source, text=pair.source.text.splitlines()[-1]),
        )
        for pair in pairs
    ]


def relabelled(*, swap_every: int) -> list[PromptPair]:
    """left_boundary's pairs with the answers of every pair swapped (``swap_every=1``), or of
    the first pair only (0): a swap keeps whether the intervention changes the answer."""
    swap = {"Yes": "No", "No": "Yes"}
    pairs = prompt_pairs("left_boundary", 16, seed=1)
    return [
        dataclasses.replace(
            pair, expected=swap[pair.expected], base_expected=swap[pair.base_expected]
        )
        if (i == 0 or swap_every)
        else pair
        for i, pair in enumerate(pairs)
    ]


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


def fit_out_of_cpu_memory(ctx: Ctx) -> object:
    """torch's CPU allocator fails with a plain RuntimeError: it was "an unexpected error"."""
    loaded = ctx.llama

    def forward(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 1073741824 bytes. Error code 12"
        )

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


def evaluate_out_of_cpu_memory_outside_a_pass(ctx: Ctx) -> object:
    """The random-rotation control of a wide site cannot be allocated: a plain RuntimeError
    outside any forward pass, which stopped the run as a bug to report."""

    def random_rotation(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 16777216 bytes. Error code 12"
        )

    ctx.monkeypatch.setattr(Interchange, "random_rotation", staticmethod(random_rotation))
    loaded = ctx.llama
    site = Site(1, "last").resolve(loaded.model)
    alignment = FittedAlignment(
        Interchange.boundless(loaded.config.hidden_size), site, FitConfig(), 0, 0.0
    )
    test = encode(loaded, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    return evaluate(loaded.model, alignment, test)


def fitted_at(loaded: LoadedModel, site: Site, boxes: int = 1) -> FittedAlignment:
    interchange = Interchange.boundless(loaded.config.hidden_size, boxes)
    return FittedAlignment(interchange, site.resolve(loaded.model), FitConfig(), 0, 0.0)


def tiny_experiment(**changes: Any) -> Experiment:
    fields: dict[str, Any] = {"hypothesis": "left_boundary", "site": Site(1)}
    return Experiment(**{**fields, **changes})


CASES = [
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
        # it listed the causal model's every variable (lo, hi, x, left, answer), not the boxes
        r"variables \['right'\] have no box in left_boundary's alignment, which has one for "
        r"each of \['left'\]; choose among those\.$",
        id="Experiment('left_boundary', variables=('right',))",
    ),
    pytest.param(
        lambda c: tiny_experiment(hypothesis="left_and_right_boundary", variables=("rigth",)),
        InvalidArgument,
        r"variables \['rigth'\] have no box in left_and_right_boundary's alignment, which has "
        r"one for each of \['left', 'right'\]; choose among those\. Did you mean 'right'\?",
        id="Experiment('left_and_right_boundary', variables=('rigth',))",
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
        r"threshold=1\.5: a threshold is a number in \[0, 1\)",
        id="Experiment(threshold=1.5)",
    ),
    pytest.param(
        lambda c: tiny_experiment(margin=-0.5),
        InvalidArgument,
        r"margin=-0\.5 must lie in \[0, 1\): how much IIA must beat each baseline by",
        id="Experiment(margin=-0.5)",
    ),
    pytest.param(
        lambda c: verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=-0.1, gaps={}),
        InvalidArgument,
        r"threshold=-0\.1: a threshold is a number in \[0, 1\)",
        id="verdict(threshold=-0.1)",
    ),
    # das_session.align(..., seed="1") failed deep in the sampler with a TypeError, margin= and
    # min_task_accuracy= as text at a comparison, fmt= of another type in the cache key
    pytest.param(
        lambda c: tiny_experiment(seed="1"),
        InvalidArgument,
        r"seed='1': the seed of the pairs and fit, an integer",
        id="Experiment(seed='1')",
    ),
    pytest.param(
        lambda c: tiny_experiment(margin="0.05"),
        InvalidArgument,
        r"margin='0\.05' must lie in \[0, 1\)",
        id="Experiment(margin='0.05')",
    ),
    pytest.param(
        lambda c: tiny_experiment(min_task_accuracy="0.8"),
        InvalidArgument,
        r"min_task_accuracy='0\.8' must lie in \[0, 1\]",
        id="Experiment(min_task_accuracy='0.8')",
    ),
    pytest.param(
        lambda c: tiny_experiment(fmt="plain"),
        InvalidArgument,
        r"fmt='plain': a PriceFormat",
        id="Experiment(fmt='plain')",
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
        r"bracket=\(849, 549\) must have 0 <= low <= high <= 999 \(cents\)",
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
    pytest.param(
        lambda c: run_experiment(
            c.llama, tiny_experiment(site=Site(0)), fitted=fitted_at(c.llama, Site(1))
        ),
        InvalidArgument,
        r"fitted= was trained at block_output\[layer=1, pos=last\], but the experiment's site is "
        r"block_output\[layer=0, pos=last\]: an alignment is scored where it was trained",
        id="run_experiment(<alignment of layer 1>, experiment at layer 0)",
    ),
    pytest.param(
        lambda c: run_experiment(
            c.llama,
            tiny_experiment(hypothesis="left_and_right_boundary"),
            fitted=fitted_at(c.llama, Site(1)),
        ),
        InvalidArgument,
        r"fitted= has 1 box\(es\), but 'left_and_right_boundary' intervenes on 2 variable\(s\) "
        r"\(left, right\)",
        id="run_experiment(<one-box alignment>, a two-variable hypothesis)",
    ),
    pytest.param(
        lambda c: tiny_result(c).evaluate_on(prompt_pairs("midpoint_distance", 4, seed=1)),
        InvalidArgument,
        r"these pairs intervene on 'mid', but left_boundary's alignment has a box for each of "
        r"\['left'\]",
        id="result.evaluate_on(<pairs of another causal model>)",
    ),
    pytest.param(  # an IndexError, and -1 took the last box silently
        lambda c: tiny_result(c).evaluate_on(by_hand(0, 3)),
        InvalidArgument,
        r"a pair's variable_index is 3, but left_boundary's alignment has 1 box\(es\), 0 to 0 "
        r"\(left\): make them with",
        id="result.evaluate_on(<pairs by hand, variable_index past the boxes>)",
    ),
    pytest.param(
        lambda c: tiny_result(c).judged_on(by_hand(-1, -1)),
        InvalidArgument,
        r"a pair's variable_index is -1, but left_boundary's alignment has 1 box",
        id="result.judged_on(<pairs by hand, variable_index -1>)",
    ),
    pytest.param(
        lambda c: tiny_result(c).evaluate_on(relabelled(swap_every=1)),
        InvalidArgument,
        r"these pairs answer \('(Yes|No)', '(Yes|No)'\) where left_boundary's outputs are "
        r"\((True|False), (True|False)\), but their format answers \('Yes', 'No'\) .*the labels "
        r"are swapped or edited",
        id="result.evaluate_on(<pairs with every label swapped>)",
    ),
    pytest.param(
        lambda c: tiny_result(c).evaluate_on(relabelled(swap_every=0)),
        InvalidArgument,
        r"these pairs answer \('(Yes|No)', '(Yes|No)'\) where .*the labels are swapped or "
        r"edited",
        id="result.evaluate_on(<pairs with one label swapped>)",
    ),
    # pairs built by hand (no causal inputs) skipped the wrapper and answer-word checks
    pytest.param(
        lambda c: tiny_result(c).evaluate_on(unwrapped(by_hand(0, 0))),
        InvalidArgument,
        r"these pairs are not written in the wrapper the alignment was trained in",
        id="result.evaluate_on(<pairs by hand, without the prompt's wrapper>)",
    ),
    pytest.param(
        lambda c: tiny_result(c).evaluate_on(
            [dataclasses.replace(pair, expected="yes") for pair in by_hand(0, 0)]
        ),
        InvalidArgument,
        r"a pair answers \('(Yes|No)', 'yes'\), which are not its format's answer words "
        r"\('Yes', 'No'\): the labels are edited",
        id="result.evaluate_on(<pairs by hand, an answer not the format's>)",
    ),
    pytest.param(
        lambda c: tiny_result(c).evaluate_on(
            prompt_pairs("left_boundary", 4, seed=1),
            seed="1",  # type: ignore[arg-type]
        ),
        InvalidArgument,
        r"seed='1': use an integer 0 to 4294967295",
        id="result.evaluate_on(seed='1')",
    ),
    pytest.param(
        lambda c: run_experiment(
            c.llama,
            tiny_experiment(n_train=8, n_test=16),
            cache=AlignmentCache(c.tmp_path / "never_written", mode="read"),
        ),
        ConfigError,
        r"AlignmentCache\(mode='read'\): its directory .*never_written does not exist, so there "
        r"is nothing to read and the alignment would train unseen",
        id="run_experiment(cache=AlignmentCache(<missing directory>, mode='read'))",
    ),
    pytest.param(
        lambda c: evaluate(None, None, None, batch_size=0),  # type: ignore[arg-type]
        InvalidArgument,
        r"batch_size=0: a number of pairs, at least 1",
        id="evaluate(batch_size=0)",
    ),
    pytest.param(  # one too long was cut short silently; others failed deep inside
        lambda c: evaluate(None, None, [None] * 4, known_base_answers=torch.zeros(5, dtype=int)),  # type: ignore[arg-type]
        InvalidArgument,
        r"known_base_answers is a torch.int64 tensor of shape \(5,\); give base_answers\(model, "
        r"test\): one answer token per test pair, an integer tensor of shape \(4,\)",
        id="evaluate(known_base_answers=<5 answers for 4 pairs>)",
    ),
    pytest.param(
        lambda c: evaluate(None, None, [None] * 4, known_base_answers=[1, 2, 3, 4]),  # type: ignore[arg-type]
        InvalidArgument,
        r"known_base_answers is list; give base_answers",
        id="evaluate(known_base_answers=<a list>)",
    ),
    # -- training that cannot go on
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
        fit_out_of_cpu_memory,
        OutOfDeviceMemory,
        r"out of memory \(the CPU's allocator failed\) with a batch of \d+ pairs .*lower the "
        r"batch size",
        id="fit_alignment(<forward raises the CPU allocator's RuntimeError>)",
    ),
    pytest.param(
        evaluate_out_of_gpu_memory,
        OutOfDeviceMemory,
        r"out of memory evaluating one pair at a time at block_output\[layer=1, pos=last\] "
        r".*device_map='auto'",
        id="evaluate(<every forward raises torch.cuda.OutOfMemoryError>)",
    ),
    pytest.param(
        evaluate_out_of_cpu_memory_outside_a_pass,
        OutOfDeviceMemory,
        r"out of memory at block_output\[layer=1, pos=last\] outside the model's passes "
        r"\(.*can't allocate memory.*\): the rotations are 32 x 32 matrices whatever the batch "
        r"size; give the process more memory",
        id="evaluate(<the random rotation raises the CPU allocator's RuntimeError>)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_a_bad_input_raises_one_clear_das_error(
    call: Call, error: type[DasError], match: str, ctx: Ctx
) -> None:
    assert_one_clear_das_error(call, error, match, ctx)


def test_pairs_pooled_from_two_formats_or_of_a_flipped_format_are_not_refused(ctx: Ctx) -> None:
    # The first check of swapped labels compared every pair with the alignment's own format,
    # and refused two legitimate lists: Yes/No pairs pooled with True/False ones, and pairs of a
    # format whose true answer is "No". Each pair is checked against its own format's words.
    from das_assert.request_checks import check_pairs
    from das_assert.tasks.price_tagging import PriceFormat

    result = tiny_result(ctx)
    true_false = PriceFormat(answers=("True", "False"))
    pooled = prompt_pairs("left_boundary", 8, seed=1)
    pooled += prompt_pairs("left_boundary", 8, seed=2, fmt=true_false)
    flipped = prompt_pairs("left_boundary", 8, seed=3, fmt=PriceFormat(answers=("No", "Yes")))
    for pairs in (pooled, flipped):
        check_pairs(pairs, result)
