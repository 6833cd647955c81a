"""The unintervened base run of the test prompts runs once: the precondition's task accuracy and
every evaluation of the same prompts (each cell of a search) read it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from das_assert import evaluate as evaluate_module
from das_assert import experiment as experiment_module
from das_assert import runner
from das_assert.data import encode
from das_assert.engine_check import EngineCheck
from das_assert.evaluate import base_answers
from das_assert.experiment import Experiment, run_experiment, task_accuracy
from das_assert.fit import FitConfig
from das_assert.positions import parse_position
from das_assert.prefix_store import PrefixStore
from das_assert.runner import BaseRun, answer_logits
from das_assert.search import search
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs

CONFIG = FitConfig(epochs=1, batch_size=8)


@pytest.fixture(autouse=True)
def _no_engine_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine check runs passes of its own, on 8 prompts once per model and site
    (test_engine_check.py); these tests count the passes of fits and evaluations."""
    unchecked = EngineCheck(rows=0, tolerance=0.0, output_swap=0.0, cached_vs_plain=0.0)
    monkeypatch.setattr(experiment_module, "check_engine", lambda *_: unchecked)


@contextmanager
def counted_base_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Count the batches of the plain base run (``base_answers``, no site) and the evaluation's
    own unintervened passes (``BaseRun.logits`` at a site without a mix)."""
    counts = {"base_answers": 0, "evaluation": 0}
    plain, own = evaluate_module.answer_logits, BaseRun.logits

    def counting_plain(*args: Any, **kwargs: Any) -> torch.Tensor:
        counts["base_answers"] += 1
        return plain(*args, **kwargs)

    def counting_own(self: BaseRun, mix: Any = None, **kwargs: Any) -> torch.Tensor:
        counts["evaluation"] += mix is None and self.site is not None
        return own(self, mix, **kwargs)

    monkeypatch.setattr(evaluate_module, "answer_logits", counting_plain)
    monkeypatch.setattr(BaseRun, "logits", counting_own)
    yield counts


def experiment(position: str = "last", layer: int = 1) -> Experiment:
    return Experiment(
        hypothesis="left_boundary",
        site=Site(layer, position),
        n_train=16,
        n_test=24,
        seed=3,
        min_task_accuracy=0.0,  # a random tiny model does not do the task
    )


def test_base_answers_are_the_plain_base_runs_argmax(tiny_models: dict[str, Any]) -> None:
    loaded = tiny_models["llama"]
    test = encode(loaded, prompt_pairs("left_boundary", 20, seed=1), parse_position("last"))
    expected = torch.cat(
        [answer_logits(loaded.model, None, test, index).argmax(-1) for index in test.batches(7)]
    )
    assert torch.equal(base_answers(loaded.model, test, batch_size=7), expected)
    hits = int((expected == test.base_label_ids).sum())
    assert task_accuracy(loaded, test) == hits / len(test)


def test_an_experiment_runs_its_base_prompts_once(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models["llama"]
    with counted_base_runs(monkeypatch) as counts:
        result = run_experiment(loaded, experiment(), CONFIG)
    assert counts == {"base_answers": 1, "evaluation": 0}  # 24 test pairs: one batch of 64
    test = encode(loaded, experiment().test_pairs(), parse_position("last"))
    assert torch.equal(result.evaluation.base_predicted, base_answers(loaded.model, test))


def test_a_search_block_runs_the_base_prompts_once_for_every_cell(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_models["llama"]
    cells = [("last", 0), ("last", 1), ("last", 2), ("last-1", 1)]
    with counted_base_runs(monkeypatch) as counts, sharing():
        results = [run_experiment(loaded, experiment(p, layer), CONFIG) for p, layer in cells]
    assert counts == {"base_answers": 1, "evaluation": 0}
    answers = {tuple(r.evaluation.base_predicted.tolist()) for r in results}
    assert len(answers) == 1
    # The same answers as an evaluation that runs its own base passes, outside any block.
    alone = evaluate_module.evaluate(
        loaded.model,
        results[0].fitted,
        encode(loaded, experiment().test_pairs(), parse_position("last")),
    )
    assert alone.base_predicted.tolist() == results[0].evaluation.base_predicted.tolist()


def test_a_search_tokenizes_and_runs_each_pair_sets_prompts_once(
    tiny_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a 2 x 2 grid: one tokenization, one source pass and one prefix store per pair set
    (training, test), one base run of the test prompts, whatever the cell's layer and
    position."""
    loaded = tiny_models["llama"]
    calls = {"tokenize": 0, "source pass": 0, "prefix store": 0}
    tokenize, source_pass = experiment_module.tokenize, runner._source_pass
    build = PrefixStore.build.__func__  # type: ignore[attr-defined]

    def counting_build(cls: type, *args: Any, **kwargs: Any) -> Any:
        calls["prefix store"] += 1
        return build(cls, *args, **kwargs)

    def counting_tokenize(*args: Any, **kwargs: Any) -> Any:
        calls["tokenize"] += 1
        return tokenize(*args, **kwargs)

    def counting_source_pass(*args: Any, **kwargs: Any) -> Any:
        calls["source pass"] += 1
        return source_pass(*args, **kwargs)

    monkeypatch.setattr(experiment_module, "tokenize", counting_tokenize)
    monkeypatch.setattr(runner, "_source_pass", counting_source_pass)
    monkeypatch.setattr(PrefixStore, "build", classmethod(counting_build))
    with counted_base_runs(monkeypatch) as counts:
        grid = search(
            lambda _hypothesis, site: run_experiment(
                loaded, experiment(site.position, site.layer), CONFIG
            ),
            "left_boundary",
            layers=[0, 2],
            positions=["last", "amount.last"],
        )
    assert calls == {"tokenize": 2, "source pass": 2, "prefix store": 2}
    assert counts == {"base_answers": 1, "evaluation": 0}
    assert len(grid.results) == 4
