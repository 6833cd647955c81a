"""The hook context managers leave every module's hooks exactly as they found them.

Tests may register their own probes with plain torch; inside das_assert only hooks.py does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import pytest
import torch

from das_assert import hooks
from das_assert.data import EncodedPairs, encode
from das_assert.positions import parse_position
from das_assert.sites import ResolvedSite, Site
from das_assert.tasks.price_tagging import prompt_pairs

ARCHS = ("llama", "gpt2", "gpt_neox")
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_hooks",
)


class Boom(Exception):
    """Raised inside a with-block to check that the hooks come off on the way out."""


def snapshot(model: torch.nn.Module) -> dict[str, dict[str, list[int]]]:
    """Every module's hook-dict keys, by module name."""
    return {
        name: {attr: list(getattr(module, attr, {}).keys()) for attr in HOOK_DICTS}
        for name, module in model.named_modules()
    }


def count_hooks(keys: dict[str, dict[str, list[int]]]) -> int:
    """The forward and forward-pre hooks in a snapshot."""
    return sum(len(k["_forward_hooks"]) + len(k["_forward_pre_hooks"]) for k in keys.values())


@contextmanager
def call_counter(module: torch.nn.Module) -> Iterator[list[int]]:
    """Count the forward calls of ``module`` with a plain torch pre-hook."""
    calls = [0]

    def count(_module: Any, _args: Any) -> None:
        calls[0] += 1

    handle = module.register_forward_pre_hook(count)
    try:
        yield calls
    finally:
        handle.remove()


def encoded_pairs(loaded: Any, position: str = "amount.last", n: int = 4) -> EncodedPairs:
    return encode(loaded, prompt_pairs("left_boundary", n, seed=0), parse_position(position))


def forward(loaded: Any, encoded: EncodedPairs) -> Any:
    ids, mask = encoded.base_batch(torch.arange(len(encoded)))
    return loaded.model(input_ids=ids, attention_mask=mask, use_cache=False)


def site_of(loaded: Any, layer: int, component: str) -> ResolvedSite:
    return Site(layer, "amount.last", component).resolve(loaded.model)


def raise_inside(context: AbstractContextManager[Any], action: Callable[[], Any]) -> None:
    """Enter ``context``, run ``action``, then raise ``Boom`` inside the with-block."""
    with context:
        action()
        raise Boom


def raising_probe(_module: Any, _args: Any) -> None:
    raise Boom


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("component", ["block_output", "block_input"])
def test_intervene_removes_its_hook_when_the_block_raises(
    tiny_models: dict[str, Any], arch: str, component: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    site = site_of(loaded, 1, component)
    before = snapshot(loaded.model)
    added: list[int] = []

    def run() -> None:
        added.append(count_hooks(snapshot(loaded.model)) - count_hooks(before))
        forward(loaded, encoded)

    with pytest.raises(Boom):
        raise_inside(hooks.intervene(site, encoded.base_position, lambda h: h * 0), run)
    assert added == [1]
    assert snapshot(loaded.model) == before


@pytest.mark.parametrize("arch", ARCHS)
def test_intervene_removes_its_hook_when_the_forward_pass_itself_raises(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    site = site_of(loaded, 1, "block_output")
    later = Site(2).resolve(loaded.model).module
    probe = later.register_forward_pre_hook(raising_probe)
    try:
        before = snapshot(loaded.model)
        with pytest.raises(Boom), hooks.intervene(site, encoded.base_position, lambda h: h):
            forward(loaded, encoded)
        assert snapshot(loaded.model) == before
    finally:
        probe.remove()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("component", ["block_output", "block_input"])
@pytest.mark.parametrize("stop", [False, True])
def test_capture_removes_its_hook_when_the_block_raises(
    tiny_models: dict[str, Any], arch: str, component: str, stop: bool
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    site = site_of(loaded, 1, component)
    before = snapshot(loaded.model)
    with pytest.raises(Boom), hooks.capture(site, encoded.base_position, stop=stop):
        raise Boom
    assert snapshot(loaded.model) == before


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_removes_its_hook_after_stopping_the_forward(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    before = snapshot(loaded.model)
    with hooks.capture(site_of(loaded, 0, "block_output"), encoded.base_position, stop=True) as c:
        forward(loaded, encoded)
    assert c["hidden"].shape == (len(encoded), loaded.config.hidden_size)
    assert snapshot(loaded.model) == before


@pytest.mark.parametrize("arch", ARCHS)
def test_a_users_own_hooks_on_the_same_module_survive_and_keep_running(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    site = site_of(loaded, 1, "block_output")
    seen: list[str] = []
    user_post = site.module.register_forward_hook(lambda *_: seen.append("post"))
    user_pre = site.module.register_forward_pre_hook(lambda *_: seen.append("pre"))
    try:
        before = snapshot(loaded.model)
        with pytest.raises(Boom):
            raise_inside(
                hooks.intervene(site, encoded.base_position, lambda h: h),
                lambda: forward(loaded, encoded),
            )
        with pytest.raises(Boom), hooks.capture(site, encoded.base_position):
            raise Boom
        input_site = site_of(loaded, 1, "block_input")
        with hooks.capture(input_site, encoded.base_position, stop=True):
            forward(loaded, encoded)
        assert snapshot(loaded.model) == before
        assert user_post.id in site.module._forward_hooks
        assert user_pre.id in site.module._forward_pre_hooks
        seen.clear()
        forward(loaded, encoded)
        assert seen == ["pre", "post"]
    finally:
        user_post.remove()
        user_pre.remove()


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_with_stop_never_runs_the_later_layers(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    blocks = [Site(layer).resolve(loaded.model).module for layer in range(3)]
    site = site_of(loaded, 0, "block_output")
    with (
        call_counter(blocks[0]) as first,
        call_counter(blocks[1]) as second,
        call_counter(blocks[2]) as third,
        call_counter(loaded.model.get_output_embeddings()) as head,
    ):
        with hooks.capture(site, encoded.base_position, stop=True) as captured:
            forward(loaded, encoded)
            pytest.fail("the forward pass should have been stopped at the site")
        assert (first[0], second[0], third[0], head[0]) == (1, 0, 0, 0)
        assert "hidden" in captured


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_of_block_input_stops_before_the_block_runs(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    block = Site(1).resolve(loaded.model).module
    with ExitStack() as stack:
        calls = [stack.enter_context(call_counter(child)) for child in block.children()]
        with hooks.capture(site_of(loaded, 1, "block_input"), encoded.base_position, stop=True):
            forward(loaded, encoded)
    assert calls
    assert all(c[0] == 0 for c in calls)


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_without_stop_runs_the_whole_model_and_records_the_same_vectors(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    site = site_of(loaded, 1, "block_output")
    with call_counter(loaded.model.get_output_embeddings()) as head:
        with hooks.capture(site, encoded.base_position) as full:
            output = forward(loaded, encoded)
        assert head[0] == 1
    assert output.logits.shape[0] == len(encoded)
    with hooks.capture(site, encoded.base_position, stop=True) as stopped:
        forward(loaded, encoded)
    assert torch.equal(full["hidden"], stopped["hidden"])


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_records_the_hidden_state_at_each_rows_position(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    ids, mask = encoded.base_batch(torch.arange(len(encoded)))
    states = loaded.model(
        input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
    ).hidden_states
    rows = torch.arange(len(encoded))
    # hidden_states[0] is the embedding output, the input of block 0.
    for component, layer, expected in (
        ("block_input", 0, states[0]),
        ("block_input", 1, states[1]),
        ("block_output", 0, states[1]),
        ("block_output", 1, states[2]),
    ):
        site = site_of(loaded, layer, component)
        with hooks.capture(site, encoded.base_position, stop=True) as captured:
            forward(loaded, encoded)
        torch.testing.assert_close(captured["hidden"], expected[rows, encoded.base_position])


@pytest.mark.parametrize("arch", ARCHS)
def test_intervene_changes_only_the_named_position(tiny_models: dict[str, Any], arch: str) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    site = site_of(loaded, 1, "block_output")
    position = encoded.base_position
    with hooks.capture(site, position) as clean:
        forward(loaded, encoded)
    seen: dict[str, torch.Tensor] = {}

    def grab(_module: Any, _args: Any, output: Any) -> None:
        seen["out"] = output[0] if isinstance(output, tuple) else output

    handle = site.module.register_forward_hook(grab)
    try:
        forward(loaded, encoded)
        untouched = seen["out"].clone()
        with hooks.intervene(site, position, lambda h: torch.zeros_like(h)):
            forward(loaded, encoded)
    finally:
        handle.remove()
    # hooks registered later run later: ``grab`` saw the output before the replacement.
    assert torch.equal(seen["out"], untouched)
    assert torch.equal(clean["hidden"], untouched[torch.arange(len(encoded)), position])


@pytest.mark.parametrize("arch", ARCHS)
def test_intervene_with_the_identity_mix_leaves_the_logits_unchanged(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    plain = forward(loaded, encoded).logits
    for component in ("block_output", "block_input"):
        with hooks.intervene(site_of(loaded, 1, component), encoded.base_position, lambda h: h):
            patched = forward(loaded, encoded).logits
        assert torch.equal(plain, patched)


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_many_records_every_site_in_one_pass_and_stops_after_the_deepest(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    sites = [site_of(loaded, 1, "block_output"), site_of(loaded, 0, "block_input")]
    blocks = [Site(layer).resolve(loaded.model).module for layer in range(3)]
    before = snapshot(loaded.model)
    with (
        call_counter(blocks[1]) as second,
        call_counter(blocks[2]) as third,
        call_counter(loaded.model.get_output_embeddings()) as head,
    ):
        with hooks.capture_many(sites, encoded.base_position, stop=True) as captured:
            forward(loaded, encoded)
            pytest.fail("the forward pass should have been stopped after the deepest site")
        assert (second[0], third[0], head[0]) == (1, 0, 0)
    assert snapshot(loaded.model) == before
    for site in sites:
        with hooks.capture(site, encoded.base_position, stop=True) as alone:
            forward(loaded, encoded)
        assert torch.equal(captured[hooks.site_key(site)], alone["hidden"])


@pytest.mark.parametrize("stop", [False, True])
def test_capture_many_removes_every_hook_when_the_block_raises(
    tiny_models: dict[str, Any], stop: bool
) -> None:
    loaded = tiny_models["llama"]
    encoded = encoded_pairs(loaded)
    sites = [site_of(loaded, layer, "block_output") for layer in (0, 1)]
    before = snapshot(loaded.model)
    added: list[int] = []

    def run() -> None:
        added.append(count_hooks(snapshot(loaded.model)) - count_hooks(before))

    with pytest.raises(Boom):
        raise_inside(hooks.capture_many(sites, encoded.base_position, stop=stop), run)
    assert added == [2]
    assert snapshot(loaded.model) == before


@pytest.mark.parametrize("arch", ARCHS)
def test_stop_after_ends_the_pass_after_the_module_and_removes_its_hook(
    tiny_models: dict[str, Any], arch: str
) -> None:
    loaded = tiny_models[arch]
    encoded = encoded_pairs(loaded)
    blocks = [Site(layer).resolve(loaded.model).module for layer in range(3)]
    before = snapshot(loaded.model)
    with call_counter(blocks[1]) as second, call_counter(blocks[2]) as third:
        with hooks.stop_after(blocks[0]):
            result = forward(loaded, encoded)
            pytest.fail(f"the forward pass should have stopped after block 0, got {result!r}")
    assert (second[0], third[0]) == (0, 0)
    assert snapshot(loaded.model) == before


def test_stop_after_removes_its_hook_when_the_block_raises(tiny_models: dict[str, Any]) -> None:
    loaded = tiny_models["llama"]
    before = snapshot(loaded.model)
    with pytest.raises(Boom):
        raise_inside(hooks.stop_after(Site(0).resolve(loaded.model).module), lambda: None)
    assert snapshot(loaded.model) == before


def test_a_capture_inside_another_leaves_the_outer_captures_stop_to_the_outer_one(
    tiny_models: dict[str, Any],
) -> None:
    loaded = tiny_models["llama"]
    encoded = encoded_pairs(loaded)
    early, late = site_of(loaded, 0, "block_output"), site_of(loaded, 2, "block_output")
    before = snapshot(loaded.model)
    reached: list[str] = []
    with hooks.capture(early, encoded.base_position, stop=True) as outer:
        with hooks.capture(late, encoded.base_position) as inner:
            forward(loaded, encoded)
            reached.append("after the pass")  # the outer stop must not end up here
        reached.append("after the inner block")
    assert reached == []
    assert "hidden" in outer
    assert inner == {}
    assert snapshot(loaded.model) == before
