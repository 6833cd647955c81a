"""The best of several restarts (``das_assert.restarts``): the fit kept is the one with the best
IIA on development pairs, a stream of their own, and it is judged on its own test pairs exactly
as a single fit at its seed would be; the record keeps every fit's development IIA."""

from __future__ import annotations

from dataclasses import replace

import pytest

from das_assert import Experiment, FitConfig, run_experiment, run_restarts
from das_assert.errors import InvalidArgument
from das_assert.experiment import CONFIRMATION_STREAM, TEST_STREAM
from das_assert.fit_config import MAX_SEED
from das_assert.restarts import (
    DEV_STREAM,
    MAX_RESTARTS,
    choose_restart,
    development_pairs,
    restart_configs,
)
from das_assert.sites import parse_site

SITE = parse_site("block_output[layer=1, pos=last]")


@pytest.fixture(scope="module")
def experiment() -> Experiment:
    return Experiment(
        hypothesis="left_boundary", site=SITE, n_train=16, n_test=24, min_task_accuracy=0, seed=2
    )


@pytest.fixture(scope="module")
def config() -> FitConfig:
    return FitConfig(epochs=1, batch_size=8, seed=2)


@pytest.fixture(scope="module")
def singles(tiny_llama, experiment, config) -> list:
    return [run_experiment(tiny_llama, experiment, one) for one in restart_configs(config, 3)]


def test_the_kept_fit_has_the_best_development_iia_and_its_own_test_numbers(
    tiny_llama, experiment, config, singles
) -> None:
    chosen = run_restarts(tiny_llama, experiment, config, 3)
    record = chosen.restarts
    development = development_pairs(experiment)
    dev = [single.evaluate_on(development) for single in singles]
    assert [row["fit_seed"] for row in record["by_fit_seed"]] == [2, 3, 4]
    assert [row["dev_successes"] for row in record["by_fit_seed"]] == [e.successes for e in dev]
    best = max(range(3), key=lambda i: (dev[i].successes, -i))  # the lowest seed on a tie
    assert record["chosen_fit_seed"] == chosen.config.seed == 2 + best
    assert record["dev_pairs"] == {"n": 24, "seed": 2 + DEV_STREAM}
    assert record["dev_iia_range"] == [
        min(round(e.iia, 6) for e in dev),
        max(round(e.iia, 6) for e in dev),
    ]
    # judged on its test pairs as the single fit at that seed is: the choice did not touch them
    assert chosen.evaluation.successes == singles[best].evaluation.successes
    assert chosen.iia_ci == singles[best].iia_ci
    assert chosen.fitted.boundary_dims == singles[best].fitted.boundary_dims
    assert chosen.to_dict(include_pairs=False)["restarts"] == record
    assert chosen.to_dict(include_pairs=False)["fit"]["seed"] == 2 + best
    assert f"fit seed {2 + best}, the best of 3 fits by IIA on 24 development pairs" in (
        chosen.summary()
    )
    # and the fit kept goes on as the result: judged on other pairs, it keeps its record
    assert chosen.judged_on(experiment.pairs(24, 7)).restarts == record


def test_a_fit_chosen_among_restarts_is_confirmed_apart_from_its_development_pairs(
    tiny_llama, experiment, config, singles, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []
    drawn = Experiment.confirmation_pairs

    def spy(self: Experiment, *, after_restarts: bool = False) -> list:
        asked.append(after_restarts)
        return drawn(self, after_restarts=after_restarts)

    monkeypatch.setattr(Experiment, "confirmation_pairs", spy)
    chosen = choose_restart(singles, development_pairs(experiment))
    assert chosen.confirmed().test_pairs == singles[0].confirmed().test_pairs == "confirmation"
    assert asked == [True, False]


def test_one_restart_is_the_single_fit(tiny_llama, experiment, config, singles) -> None:
    one = run_restarts(tiny_llama, experiment, config, 1)
    assert one.restarts is None
    assert one.evaluation.successes == singles[0].evaluation.successes
    assert "best of" not in one.summary()
    assert "restarts" not in one.to_dict(include_pairs=False)


def test_a_tie_keeps_the_lowest_fit_seed(tiny_llama, experiment, singles) -> None:
    twice = [singles[1], replace(singles[1], config=replace(singles[1].config, seed=9))]
    chosen = choose_restart(twice, development_pairs(experiment))
    assert chosen.config.seed == 3
    assert [row["fit_seed"] for row in chosen.restarts["by_fit_seed"]] == [3, 9]


def test_the_development_pairs_are_a_stream_of_their_own(experiment) -> None:
    assert len({DEV_STREAM, TEST_STREAM, CONFIRMATION_STREAM, 0}) == 4
    development = development_pairs(experiment)
    assert development == experiment.pairs(24, experiment.seed + DEV_STREAM)
    for other in (experiment.test_pairs(), experiment.confirmation_pairs()):
        assert [p.base.text for p in development] != [p.base.text for p in other]
    assert len(development_pairs(experiment, 10)) == 10


@pytest.mark.parametrize(
    ("restarts", "says"),
    [
        (0, "restarts=0: choose 1 to 20"),
        (MAX_RESTARTS + 1, "restarts=21: choose 1 to 20"),
        (True, "restarts=True: the number of fits to choose among, an integer"),
        (2.0, "restarts=2.0: the number of fits to choose among, an integer"),
        ("3", "restarts='3': the number of fits to choose among, an integer"),
    ],
)
def test_a_bad_number_of_restarts_is_refused_before_any_fit(
    tiny_llama, experiment, config, restarts, says
) -> None:
    with pytest.raises(InvalidArgument, match=f"^{says}"):
        run_restarts(tiny_llama, experiment, config, restarts)


def test_restarts_past_the_largest_seed_are_refused(tiny_llama, experiment) -> None:
    late = FitConfig(seed=MAX_SEED - 1)
    with pytest.raises(InvalidArgument, match=f"would fit at seed {MAX_SEED + 1}, past"):
        run_restarts(tiny_llama, experiment, late, 3)


@pytest.mark.parametrize("method", ["full", "noop"])
def test_restarts_of_a_method_that_learns_nothing_are_refused(
    tiny_llama, experiment, method
) -> None:
    with pytest.raises(InvalidArgument, match=f"method '{method}': it learns nothing"):
        run_restarts(tiny_llama, experiment, FitConfig(method=method), 2)
    assert run_restarts(tiny_llama, experiment, FitConfig(method=method), 1).restarts is None


def test_other_arguments_are_refused_as_run_experiment_refuses_them(tiny_llama, experiment):
    with pytest.raises(InvalidArgument, match="config"):
        run_restarts(tiny_llama, experiment, {"epochs": 1}, 2)
    with pytest.raises(InvalidArgument, match="experiment"):
        run_restarts(tiny_llama, "left_boundary", None, 2)


def test_choosing_among_nothing_or_among_other_experiments_is_refused(experiment, singles) -> None:
    with pytest.raises(InvalidArgument, match="at least one result"):
        choose_restart([], development_pairs(experiment))
    other = replace(singles[1], experiment=replace(experiment, n_train=17))
    with pytest.raises(InvalidArgument, match="different experiments"):
        choose_restart([singles[0], other], development_pairs(experiment))
