"""The checks, before a model's first alignment at a site, that das_assert's hooks reach the
output and its cached passes give the logits of plain whole-prompt passes; where the cached ones
do not, whole prompts from then on."""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from das_assert import engine_check, hooks, kv_cache, runner
from das_assert.data import encode
from das_assert.engine_check import EngineCheckFailed, FastPathWarning, check_engine
from das_assert.errors import OutOfDeviceMemory
from das_assert.experiment import Experiment, run_experiment
from das_assert.fit import FitConfig
from das_assert.models import load_model
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs


def _encoded(model: Any, site: Site, seed: int = 5) -> Any:
    return encode(model, prompt_pairs("left_boundary", 8, seed=seed), site.parsed_position)


@pytest.fixture
def fresh_llama(tiny_model_dirs: dict[str, Path]) -> Any:
    """A model of its own: set to whole prompts, it would slow every later test's."""
    return load_model(tiny_model_dirs["llama"])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("position", ["last", "after:amount"])
def test_the_cached_passes_agree_with_plain_ones_on_each_architecture(
    tiny_models: dict[str, Any], arch: str, position: str
) -> None:
    model = tiny_models[arch]
    site = Site(1, position)
    checked = check_engine(model.model, site.resolve(model.model), _encoded(model, site))
    assert checked.rows == 8
    assert checked.cached_vs_plain <= checked.tolerance
    assert checked.output_swap <= checked.tolerance
    assert checked.tolerance < 0.01  # float32: a bug would move logits by far more
    assert not checked.whole_prompts


def test_a_hook_whose_change_never_reaches_the_output_stops_the_claim(fresh_llama: Any) -> None:
    """The intervention edits what the model does not pass on (here: nothing at all), the
    silent wrong-site bug: the last block's swap leaves the base's own logits."""
    model, site = fresh_llama.model, Site(1, "last")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hooks, "intervene", lambda *a, **k: contextlib.nullcontext())
        with pytest.raises(EngineCheckFailed, match=r"hooks do not reach what this model \(llama"):
            check_engine(model, site.resolve(model), _encoded(fresh_llama, site))


def test_a_model_and_site_are_checked_once(fresh_llama: Any) -> None:
    site = Site(1, "last")
    resolved, encoded = site.resolve(fresh_llama.model), _encoded(fresh_llama, site)
    first = check_engine(fresh_llama.model, resolved, encoded)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_check, "_plain_logits", pytest.fail)
        assert check_engine(fresh_llama.model, resolved, encoded) is first


def test_what_a_check_reports_does_not_depend_on_which_claim_reached_the_site_first(
    fresh_llama: Any,
) -> None:
    # The memo was keyed by the site alone: the first claim's prompts gave every later claim at
    # the site its numbers, so a record's engine_check moved with the test order and xdist.
    site = Site(1, "last")
    resolved = site.resolve(fresh_llama.model)
    a, b = _encoded(fresh_llama, site), _encoded(fresh_llama, site, seed=7)
    b_first = check_engine(fresh_llama.model, resolved, b)
    engine_check._CHECKED.clear()
    a_then_b = (
        check_engine(fresh_llama.model, resolved, a),
        check_engine(fresh_llama.model, resolved, b),
    )
    assert a_then_b[1] == b_first
    assert a_then_b[0] is not a_then_b[1]


def test_the_checks_kept_per_model_are_bounded_and_of_its_current_weights(
    fresh_llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a notebook's ablation loop (edit a unit, fit again) kept two entries per edit, each keyed
    # by a version tuple as long as the model's parameter list, for the model's life
    model, site = fresh_llama.model, Site(1, "last")
    resolved = site.resolve(model)
    encoded = _encoded(fresh_llama, site)
    for unit in range(3):
        with torch.no_grad():
            model.get_input_embeddings().weight[0, unit] = 0.0
        check_engine(model, resolved, encoded)
    assert len(engine_check._CHECKED[model]) == 2  # the site's check and the output swap
    monkeypatch.setattr(engine_check, "MEMO_SIZE", 4)
    for seed in range(6):  # new prompts each: new seeds
        check_engine(model, resolved, _encoded(fresh_llama, site, seed=seed))
    assert len(engine_check._CHECKED[model]) <= 5


def test_cached_passes_that_disagree_give_way_to_whole_prompts_with_a_warning(
    fresh_llama: Any,
) -> None:
    """A prefix one token too long puts the suffix's intervention on the wrong token: only the
    cached passes go wrong, so the check sets the model to whole prompts, which agree."""
    model, site = fresh_llama.model, Site(1, "after:amount")
    encoded = _encoded(fresh_llama, site)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "shared_prefix", lambda e, i: int(e.base_position[i].min()) + 1)
        with pytest.warns(FastPathWarning, match="cached passes disagreed with plain ones"):
            checked = check_engine(model, site.resolve(model), encoded)
    assert checked.whole_prompts
    assert "a logit off by" in checked.why
    assert checked.cached_vs_plain <= checked.tolerance
    assert kv_cache.whole_prompts_only(model) == checked.why
    assert not kv_cache.prefix_caching_works(model, 10)
    assert not kv_cache.plain_cache(model)
    assert kv_cache.split_head(model, encoded.base_ids, encoded.base_mask, 20) == (0, None)


def test_cached_passes_that_raise_give_way_to_whole_prompts_naming_what_they_raised(
    fresh_llama: Any,
) -> None:
    """A cache layout the engine does not know fails inside a cached pass (Qwen3-Next's did,
    in transformers' mask code): the model runs whole prompts, and the warning says why."""
    model, site = fresh_llama.model, Site(1, "last")
    encoded = _encoded(fresh_llama, site)

    def unknown_layout(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("a cache layer this engine does not know")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "prefix_with_tails", unknown_layout)
        with pytest.warns(FastPathWarning, match=r"raised ValueError \(a cache layer this engine"):
            checked = check_engine(model, site.resolve(model), encoded)
    assert checked.whole_prompts
    assert checked.why.startswith("its cached passes raised ValueError")
    assert checked.cached_vs_plain <= checked.tolerance
    assert kv_cache.whole_prompts_only(model) == checked.why


def test_a_cached_pass_that_raises_once_is_a_passing_fault_not_the_models(
    fresh_llama: Any,
) -> None:
    """One RuntimeError in the first cached pass set the model to whole prompts for the rest of
    the process, with a warning to report the model's type; a second one, once there, failed
    the claim as hooks that do not see the block's output."""
    model, site = fresh_llama.model, Site(1, "last")
    encoded = _encoded(fresh_llama, site)
    real = runner.prefix_with_tails
    calls: list[int] = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a passing fault")
        return real(*args, **kwargs)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("error", FastPathWarning)
        patch.setattr(runner, "prefix_with_tails", fails_once)
        checked = check_engine(model, site.resolve(model), encoded)
    assert len(calls) > 1  # the pass ran again
    assert not checked.whole_prompts
    assert checked.cached_vs_plain <= checked.tolerance
    assert not kv_cache.whole_prompts_only(model)


@pytest.mark.parametrize(
    "failure",
    [
        OutOfDeviceMemory("out of GPU memory with a batch of 8 pairs; lower the batch size", 8),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2 GB"),
    ],
    ids=["gpu", "host"],
)
def test_running_out_of_memory_in_a_cached_pass_is_not_blamed_on_the_model(
    fresh_llama: Any, failure: Exception
) -> None:
    """Out of memory says nothing of the cached passes: it propagates, with no warning that
    blames the model, and the model keeps its cached passes."""
    model, site = fresh_llama.model, Site(1, "last")

    def out_of_memory(*_args: Any, **_kwargs: Any) -> Any:
        raise failure

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("error", FastPathWarning)
        patch.setattr(runner, "prefix_with_tails", out_of_memory)
        with pytest.raises(type(failure)) as raised:
            check_engine(model, site.resolve(model), _encoded(fresh_llama, site))
    assert raised.value is failure
    assert not kv_cache.whole_prompts_only(model)


def _steer(_module: Any, _args: tuple, output: Any) -> Any:
    """A user's hook that moves a block's output (steering, or an additive ablation)."""
    if isinstance(output, tuple):
        return (output[0] + 0.5, *output[1:])
    return output + 0.5


def _steer_in_place(_module: Any, _args: tuple, output: Any) -> None:
    """The same, written as many do: the output edited in place, nothing returned."""
    (output[0] if isinstance(output, tuple) else output).add_(0.5)


@pytest.mark.parametrize("position", ["last", "after:amount"])
@pytest.mark.parametrize(
    ("hook", "block"), [(_steer, 1), (_steer_in_place, 1), (_steer_in_place, 0)]
)
def test_a_users_hook_on_the_sites_block_is_applied_once_by_the_cached_passes(
    fresh_llama: Any, position: str, hook: Any, block: int
) -> None:
    """The passes that skip the blocks up to the site replay the site block's recorded output
    and run the skipped blocks' hooks on it: recorded after a user's hook, or edited in place
    by one (the recorded tail, then every replay of it), that hook would apply twice."""
    model, site = fresh_llama.model, Site(1, position)
    handle = model.model.layers[block].register_forward_hook(hook)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FastPathWarning)
            checked = check_engine(model, site.resolve(model), _encoded(fresh_llama, site))
    finally:
        handle.remove()
    assert checked.cached_vs_plain <= checked.tolerance
    assert not checked.whole_prompts


def test_a_model_changed_since_its_cached_passes_failed_has_them_checked_again(
    fresh_llama: Any,
) -> None:
    model, site = fresh_llama.model, Site(1, "after:amount")
    encoded = _encoded(fresh_llama, site)
    # checked first as it is: removing the hook below brings that version back, memo and all
    assert not check_engine(model, site.resolve(model), encoded).whole_prompts
    handle = model.model.layers[0].register_forward_hook(_steer)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "shared_prefix", lambda e, i: int(e.base_position[i].min()) + 1)
        with pytest.warns(FastPathWarning, match="cached passes disagreed with plain ones"):
            assert check_engine(model, site.resolve(model), encoded).whole_prompts
    assert kv_cache.whole_prompts_only(model)
    handle.remove()  # the model changed: its cached passes, right now, are checked again
    checked = check_engine(model, site.resolve(model), encoded)
    assert not checked.whole_prompts
    assert not kv_cache.whole_prompts_only(model)
    assert checked.cached_vs_plain <= checked.tolerance


def test_a_fit_on_a_model_set_to_whole_prompts_learns_what_the_cached_one_does(
    tiny_models: dict[str, Any], fresh_llama: Any, assert_same_alignment: Any
) -> None:
    experiment = Experiment(
        hypothesis="left_boundary",
        site=Site(1, "last"),
        n_train=32,
        n_test=16,
        seed=3,
        min_task_accuracy=0,  # a random model: the fits are compared, not judged
    )
    config = FitConfig(epochs=1, batch_size=8, seed=3)
    kv_cache.run_whole_prompts(fresh_llama.model, "a test")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastPathWarning)  # set already: no second warning
        whole = run_experiment(fresh_llama, experiment, config)
    cached = run_experiment(tiny_models["llama"], experiment, config)
    assert whole.to_dict()["engine_check"]["whole_prompts"]
    assert not cached.to_dict()["engine_check"]["whole_prompts"]
    assert_same_alignment(whole.fitted, cached.fitted)
    assert whole.evaluation.predicted.tolist() == cached.evaluation.predicted.tolist()


def test_hooks_that_disagree_even_over_whole_prompts_stop_the_claim(fresh_llama: Any) -> None:
    model, site = fresh_llama.model, Site(1, "last")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_check, "source_vectors", lambda *a: runner.source_vectors(*a) + 1)
        with (
            pytest.warns(FastPathWarning),
            pytest.raises(EngineCheckFailed, match=r"even over whole prompts.*no IIA here"),
        ):
            check_engine(model, site.resolve(model), _encoded(fresh_llama, site))


def test_the_tolerance_is_rounding_of_the_weights_type_at_the_logits_scale() -> None:
    logits = torch.tensor([[-3.0, 20.0]])
    assert engine_check._tolerance(logits, torch.float32) == 20 * 2**-12
    assert engine_check._tolerance(logits, torch.bfloat16) == 20 * 16 * 2**-7
    assert engine_check._tolerance(logits / 100, torch.float16) == 16 * 2**-10


@pytest.fixture
def matmul_precision() -> Any:
    """Restores torch's float32 matmul precision a test sets."""
    before = torch.get_float32_matmul_precision()
    yield torch.set_float32_matmul_precision
    torch.set_float32_matmul_precision(before)


def test_float32_matmuls_set_to_trade_precision_round_as_tf32_or_bfloat16(
    matmul_precision: Any,
) -> None:
    # a float32 model under set_float32_matmul_precision("medium") (bfloat16 matmuls on a CPU
    # with AMX) differed by 0.0133 between the cached and plain passes, against 0.00044: every
    # pass went to whole prompts with a warning asking to report the model's type
    logits = torch.tensor([[-3.0, 20.0]])
    matmul_precision("high")
    assert engine_check._tolerance(logits, torch.float32) == 20 * 16 * 2**-10
    matmul_precision("medium")
    assert engine_check._tolerance(logits, torch.float32) == 20 * 16 * 2**-7
    assert engine_check._tolerance(logits, torch.float16) == 20 * 16 * 2**-10  # its own type


def test_the_tolerance_reads_the_scale_of_the_finite_logits() -> None:
    logits = torch.tensor([[-3.0, 20.0, float("nan"), float("inf")]])
    assert engine_check._tolerance(logits, torch.float32) == 20 * 2**-12


def test_cached_passes_giving_nan_give_way_to_whole_prompts(fresh_llama: Any) -> None:
    # NaN > tolerance is false: NaN cached logits passed the check, and every pass then ran on
    # them, so the task gate failed with advice about the prompt format
    model, site = fresh_llama.model, Site(1, "last")
    real = engine_check._cached_logits

    def nan_once_cached(*args: Any) -> Any:
        logits = real(*args)
        if kv_cache.whole_prompts_only(model):
            return logits
        return tuple(torch.full_like(each, float("nan")) for each in logits)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_check, "_cached_logits", nan_once_cached)
        with pytest.warns(FastPathWarning, match=r"a logit off by nan"):
            checked = check_engine(model, site.resolve(model), _encoded(fresh_llama, site))
    assert checked.whole_prompts
    assert checked.cached_vs_plain <= checked.tolerance


def test_a_model_whose_own_logits_are_not_finite_is_one_clear_error(
    tiny_model_dirs: dict[str, Path],
) -> None:
    # float16 overflow of a real model's activations: "off by nan" was shown as a pass, then
    # a task accuracy of 0 blamed the prompt format
    loaded = load_model(tiny_model_dirs["llama"])
    with torch.no_grad():
        loaded.model.lm_head.weight[3] = float("inf")
    site = Site(1, "last")
    message = r"own logits, with no intervention, are not finite .* on 8 of 8 prompts: check"
    with pytest.raises(EngineCheckFailed, match=message):
        check_engine(loaded.model, site.resolve(loaded.model), _encoded(loaded, site))


def test_a_vocabulary_entry_masked_with_minus_infinity_is_no_difference_nor_an_error(
    fresh_llama: Any,
) -> None:
    # -inf - -inf is NaN: a model that masks an entry in every pass would have failed the
    # check, and its logits were refused as not finite
    inf, nan = float("inf"), float("nan")
    masked = torch.tensor([[-inf, 2.0, 1.0]])
    assert engine_check._logit_difference(masked, masked.clone()) == 0.0
    assert engine_check._logit_difference(masked, torch.tensor([[0.0, 2.0, 1.0]])) == inf
    assert math.isnan(engine_check._logit_difference(masked, torch.tensor([[-inf, nan, 1.0]])))
    engine_check.check_finite_logits(fresh_llama.model, masked, 1)
    with pytest.raises(EngineCheckFailed, match="not finite"):
        engine_check.check_finite_logits(fresh_llama.model, torch.tensor([[inf, 1.0]]), 1)


def test_torchs_per_backend_precision_setting_is_read_and_does_not_break_the_check() -> None:
    # with a backend's fp32_precision set, torch.get_float32_matmul_precision() raises: every
    # experiment on a float32 model stopped on a RuntimeError
    logits = torch.tensor([[-3.0, 20.0]])
    before = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        assert engine_check._tolerance(logits, torch.float32) == 20 * 16 * 2**-7
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = before


def test_an_evaluation_refuses_answers_read_from_logits_that_are_not_finite(
    fresh_llama: Any,
) -> None:
    # float16 overflow on some prompts only (not the engine check's 8): argmax of NaN read as a
    # wrong answer, which lowered task accuracy and every IIA with nothing said
    from das_assert.evaluate import base_answers

    with torch.no_grad():
        fresh_llama.model.lm_head.weight[3] = float("nan")
    with pytest.raises(EngineCheckFailed, match=r"own logits, with no intervention, are not"):
        base_answers(fresh_llama.model, _encoded(fresh_llama, Site(1, "last")))
