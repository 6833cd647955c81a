"""One session computes each request once, and never hands one request another's result."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from das_assert import load_model
from das_assert import session as session_module
from das_assert.session import DasSession
from das_assert.settings import ModelSettings


@pytest.fixture
def counted_session(tiny_model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Any:
    runs: list[Any] = []

    def fake_run(model: Any, experiment: Any, config: Any, cache: Any = None) -> Any:
        runs.append(experiment)
        return experiment  # stands in for the result: it carries what was evaluated

    monkeypatch.setattr(session_module, "run_experiment", fake_run)
    settings = ModelSettings(
        key="tiny",
        source=Path("das.yaml"),
        n_train=32,
        n_test=40,
        sites={"a": "block_output[layer=0, pos=last]"},
    )
    # a model of its own: tests edit its weights in place, which the session-wide one would keep
    das = DasSession(model=load_model(tiny_model_dirs["llama"]), settings=settings)
    return das, runs


def test_the_same_request_is_computed_once(counted_session: Any) -> None:
    das, runs = counted_session
    assert das.align("left_boundary", "a") is das.align("left_boundary", "a")
    assert len(runs) == 1


@pytest.mark.parametrize("change", [{"n_test": 200}, {"min_task_accuracy": 0.5}, {"margin": 0.1}])
def test_a_request_evaluated_or_judged_differently_is_not_served_the_first(
    counted_session: Any, change: dict[str, Any]
) -> None:
    das, runs = counted_session
    das.align("left_boundary", "a")
    got = das.align("left_boundary", "a", **change)
    name, value = next(iter(change.items()))
    assert getattr(got, name) == value
    assert len(runs) == 2


def test_a_site_written_out_is_the_site_it_names(counted_session: Any) -> None:
    # "Sites are written block_output[layer=1, pos=last]": align once refused such a string as
    # an unknown das.yaml name.
    das, _ = counted_session
    named = das.align("left_boundary", "a")
    written = das.align("left_boundary", "block_output[layer=0, pos=last]")
    assert written.site == named.site
    assert written is named


def test_a_misspelt_keyword_of_align_is_one_clear_error(counted_session: Any) -> None:
    from das_assert.errors import InvalidArgument

    das, _ = counted_session
    with pytest.raises(InvalidArgument, match=r"unknown keyword\(s\) variable; .*variables") as err:
        das.align("left_and_right_boundary", "a", variable="right")
    assert "seed, variables (and align(), config= and restarts=). Did you mean 'variables'?" in str(
        err.value
    )
    with pytest.raises(InvalidArgument, match=r"restart; .*Did you mean 'restarts'\?"):
        das.align("left_boundary", "a", restart=3)
    # a training setting given to align() was listed among the experiment's keywords, no more
    with pytest.raises(
        InvalidArgument,
        match=r"epochs: a training setting, not the experiment's; pass "
        r"config=das_session\.fit_config\(epochs=2\) to align\(\)",
    ):
        das.align("left_boundary", "a", epochs=2)


def test_align_refuses_a_threshold_rather_than_dropping_it(counted_session: Any) -> None:
    # align(threshold=0.1) was checked and then thrown away: the verdict took das.yaml's.
    from das_assert.errors import InvalidArgument

    das, runs = counted_session
    refused = r"align\(\) takes no threshold \(given 0\.1\)"
    with pytest.raises(InvalidArgument, match=refused) as err:
        das.align("left_boundary", "a", threshold=0.1)
    assert "das.assert_aligned(result, claim=..., threshold=0.8)" in str(err.value)
    assert not runs


@pytest.mark.parametrize("edge", ["one_cent_outside", "on_bound"])
def test_a_model_that_always_gives_the_edges_one_answer_fails_the_variants_gate(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch, edge: str
) -> None:
    import torch

    from das_assert import evaluate as evaluate_module
    from das_assert import variants
    from das_assert.data import encode
    from das_assert.errors import PreconditionFailed
    from das_assert.experiment import Experiment
    from das_assert.sites import Site
    from das_assert.strategies import PromptVariant

    loaded = tiny_models["llama"]
    variant = PromptVariant(amount_edge=edge)
    exp = Experiment(hypothesis="left_boundary", site=Site(0, "last"))
    result = SimpleNamespace(experiment=exp, model=loaded)
    test = encode(loaded, variants.variant_pairs(exp, variant, 64), exp.site.parsed_position)
    (one_answer,) = set(test.base_label_ids.tolist())  # every base prompt has the same answer

    def always(_model: Any, encoded: Any, **_: Any) -> torch.Tensor:
        return torch.full_like(encoded.base_label_ids, one_answer)

    monkeypatch.setattr(evaluate_module, "base_answers", always)
    with pytest.raises(PreconditionFailed, match="all have one answer"):
        variants._check_one_answer_variant(result, variant, test.base_label_ids, 64, 0.8)

    def right(_model: Any, encoded: Any, **_: Any) -> torch.Tensor:
        return encoded.base_label_ids.clone()

    monkeypatch.setattr(evaluate_module, "base_answers", right)
    variants._check_one_answer_variant(result, variant, test.base_label_ids, 64, 0.8)


def test_an_ablated_model_is_refused_not_served_the_intact_models_alignment(
    counted_session: Any,
) -> None:
    """A hook (an ablation) changes no weight file, and the session's memo and disk cache are
    keyed by the files: ``align`` returned the intact model's result, or cached the ablated
    one under the intact model's name."""
    import torch

    from das_assert.errors import ModelChanged

    das, runs = counted_session
    first = das.align("left_boundary", "a")
    layers = das.model.model.model.layers
    handle = layers[0].mlp.register_forward_hook(lambda module, args, out: out * 0)
    try:
        with pytest.raises(ModelChanged, match=r"forward hooks on model\.layers\.0\.mlp added"):
            das.align("left_boundary", "a")
    finally:
        handle.remove()
    assert das.align("left_boundary", "a") is first  # undone: the session's model again
    weight = layers[1].mlp.down_proj.weight
    with torch.no_grad():
        weight.mul_(1.0)  # an edit in place, even one that changes no value
    message = r"parameter model\.layers\.1\.mlp\.down_proj\.weight changed\)\..*run_experiment"
    with pytest.raises(ModelChanged, match=message):
        das.align("left_boundary", "a")
    assert len(runs) == 1


def test_a_global_hook_and_an_edited_buffer_are_changes_too(counted_session: Any) -> None:
    import torch

    from das_assert.errors import ModelChanged

    das, _ = counted_session
    first = das.align("left_boundary", "a")
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, out: None)
    try:
        with pytest.raises(ModelChanged, match=r"torch's global forward hooks added"):
            das.align("left_boundary", "a")
    finally:
        handle.remove()
    assert das.align("left_boundary", "a") is first
    buffer = next(name for name, _ in das.model.model.named_buffers())
    with torch.no_grad():
        das.model.model.get_buffer(buffer).mul_(1.0)
    with pytest.raises(ModelChanged, match=rf"buffer {buffer} changed"):
        das.align("left_boundary", "a")


def test_the_hooks_transformers_adds_to_capture_hidden_states_are_no_change(
    counted_session: Any,
) -> None:
    # transformers 5 installs output-capturing hooks on every layer the first time a pass asks
    # for hidden states, and keeps them: every later align of the session was refused
    import torch

    das, runs = counted_session
    first = das.align("left_boundary", "a")
    ids = das.model.tokenizer("Please say yes", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        das.model.model(input_ids=ids, output_hidden_states=True)
    assert das.align("left_boundary", "a") is first
    assert len(runs) == 1


def test_the_session_keeps_only_its_latest_evaluated_variants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each variant's evaluation holds its encoded prompts (about 5 MiB at n = 400), and every
    # one was kept for the session: gigabytes under a thorough fuzz profile.
    from das_assert import robustness

    evaluated: list[int] = []

    def evaluate(result: Any, variant: int, n: int, **kwargs: Any) -> str:
        evaluated.append(variant)
        return f"outcome {variant}"

    monkeypatch.setattr(robustness, "evaluate_variant", evaluate)
    session = SimpleNamespace(_variant_memo={})
    result = SimpleNamespace(experiment=SimpleNamespace(min_task_accuracy=0.8))
    size = robustness.VARIANT_MEMO_SIZE
    for variant in range(size + 8):
        assert robustness._evaluate_once(session, result, variant, 400) == f"outcome {variant}"
    assert len(session._variant_memo) == size
    robustness._evaluate_once(session, result, size + 7, 400)  # recent: reused
    robustness._evaluate_once(session, result, 0, 400)  # the oldest: evaluated again
    assert evaluated == [*range(size + 8), 0]


def test_a_replaced_forward_is_a_change_but_the_layers_own_forward_set_back_is_not(
    tiny_llama: Any,
) -> None:
    # transformers 4.57 sets each layer's own forward back on the instance after a pass asked
    # for hidden states: every later cached fit was refused as a changed model
    from das_assert.model_state import model_changes, model_snapshot

    model, layer = tiny_llama.model, tiny_llama.model.model.layers[0]
    before = model_snapshot(model)
    layer.forward = layer.forward  # the class's own, bound to the layer
    try:
        assert model_changes(model, before) == []
        own = layer.forward
        layer.forward = lambda *args, **kwargs: own(*args, **kwargs)
        assert any("replaced forward of model.layers.0" in c for c in model_changes(model, before))
    finally:
        del layer.forward
    assert model_changes(model, before) == []
