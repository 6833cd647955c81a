"""The best of several restarts: fits of one claim that differ only in their fit seed (the initial
rotation and the order of the batches), of which the one kept is chosen by its IIA on
development pairs, never on the test pairs that then judge it.

Boundless DAS can land in different subspaces from different starts (on the embedded model the
Right Boundary alignments of seeds 0 and 1 differ on True/False answers; README, "What the
thorough profile found"). The paper reports the best seed's IIA on the test pairs, which
overstates it (the winner's curse); here the choice is made on a third stream of the sampler,
``experiment.seed + DEV_STREAM``, so the test pairs' interval means what it says, and the record
keeps every restart's development IIA: the spread across seeds, measured.

>>> [c.seed for c in restart_configs(FitConfig(seed=4), 3)]
[4, 5, 6]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from das_assert import sharing
from das_assert.errors import InvalidArgument
from das_assert.fit_config import MAX_SEED, FitConfig
from das_assert.metrics import rounded_interval, wilson_interval
from das_assert.values import is_integer

if TYPE_CHECKING:
    from das_assert.alignment_result import AlignmentResult
    from das_assert.cache import AlignmentCache
    from das_assert.data import PromptPair
    from das_assert.experiment import Experiment
    from das_assert.models import LoadedModel

__all__ = [
    "DEV_STREAM",
    "MAX_RESTARTS",
    "check_restarts",
    "choose_restart",
    "development_pairs",
    "restart_configs",
    "run_restarts",
    "without_provenance",
]

#: The sampler's stream of the development pairs, beside the test (100,003) and confirmation
#: (200,003) streams: ``experiment.seed + DEV_STREAM``.
DEV_STREAM = 300_007
#: More restarts than this is a search over seeds, not a restart; ask for a seed sweep instead.
MAX_RESTARTS = 20


def check_restarts(restarts: Any, config: FitConfig) -> int:
    """``restarts`` as an int from 1 to MAX_RESTARTS whose fit seeds stay valid.

    Raises:
        InvalidArgument: not an integer, out of range, or seeds past ``MAX_SEED``.
    """
    if not is_integer(restarts):
        raise InvalidArgument(
            f"restarts={restarts!r}: the number of fits to choose among, an integer (1: one fit)"
        )
    restarts = int(restarts)
    if not 1 <= restarts <= MAX_RESTARTS:
        raise InvalidArgument(
            f"restarts={restarts}: choose 1 to {MAX_RESTARTS} (1 is a single fit); for the "
            "spread over many seeds run python -m das_assert.stability --seeds N"
        )
    if restarts > 1 and config.method in ("full", "noop"):
        raise InvalidArgument(
            f"restarts={restarts} with method {config.method!r}: it learns nothing, so every "
            "fit would be the same; use restarts=1 (--restarts 1 on the command line)"
        )
    if config.fit_seed + restarts - 1 > MAX_SEED:
        raise InvalidArgument(
            f"restarts={restarts} from fit seed {config.fit_seed} would fit at seed "
            f"{config.fit_seed + restarts - 1}, past the largest seed {MAX_SEED}; start lower "
            "(the fit seed: --seed on the command line)"
        )
    return restarts


def restart_configs(config: FitConfig, restarts: int) -> list[FitConfig]:
    """The fits of ``restarts`` restarts: ``config`` at fit seeds ``config.seed`` onwards."""
    return [replace(config, seed=config.fit_seed + i) for i in range(restarts)]


def development_pairs(experiment: Experiment, n: int | None = None) -> list[PromptPair]:
    """``n`` (default: as many as the test pairs) pairs of the claim from the development
    stream, disjoint in stream from its training, test and confirmation pairs, and repeating
    none of its training or test pairs (the test pairs judge the restart chosen here)."""
    return experiment.held_out_pairs(
        n or experiment.n_test,
        experiment.seed + DEV_STREAM,
        also_apart_from=experiment.test_pairs(),
    )


def choose_restart(
    results: Sequence[AlignmentResult], development: list[PromptPair]
) -> AlignmentResult:
    """The result among ``results`` (one claim, several fit seeds) with the highest IIA on
    ``development``, the lowest fit seed on a tie, carrying the ``restarts`` record of all.

    Its test evaluation is its own, untouched by the choice."""
    from das_assert.data import encode
    from das_assert.evaluate import evaluate
    from das_assert.request_checks import check_pairs

    if not results:
        raise InvalidArgument("choose_restart needs at least one result")
    experiment, model = results[0].experiment, results[0].model
    if any(r.experiment != experiment or r.model is not model for r in results):
        raise InvalidArgument("choose_restart: the results are of different experiments")
    check_pairs(development, results[0])  # as evaluate_on checks them
    # Encoded once: inside a sharing() block the k evaluations then share one source pass.
    test = encode(model, development, experiment.site.parsed_position)
    rows: list[dict[str, Any]] = []
    for result in results:
        evaluation = evaluate(model.model, result.fitted, test, seed=experiment.seed)
        low, high = wilson_interval(evaluation.successes, evaluation.n)
        rows.append(
            {
                "fit_seed": result.config.seed,
                "dev_iia": round(evaluation.iia, 6),
                "dev_successes": evaluation.successes,
                "dev_ci": rounded_interval(low, high),
                "boundary_dims": result.fitted.boundary_dims,
            }
        )
    best = max(range(len(results)), key=lambda i: (rows[i]["dev_successes"], -i))
    dev_iias = [row["dev_iia"] for row in rows]
    record = {
        "restarts": len(results),
        "chosen_fit_seed": rows[best]["fit_seed"],
        "chosen_by": "dev_iia",
        "dev_pairs": {"n": len(development), "seed": experiment.seed + DEV_STREAM},
        "dev_iia_range": [min(dev_iias), max(dev_iias)],
        "by_fit_seed": rows,
    }
    return replace(results[best], restarts=record)


def without_provenance(record: dict[str, Any]) -> dict[str, Any]:
    """A restarts record as the fit made it: without where a later run found it."""
    return {k: v for k, v in record.items() if k not in ("from_baseline", "from_file")}


def run_restarts(
    model: LoadedModel,
    experiment: Experiment,
    config: FitConfig | None = None,
    restarts: int = 3,
    *,
    cache: AlignmentCache | None = None,
    fit: Callable[[FitConfig], AlignmentResult] | None = None,
) -> AlignmentResult:
    """Fit ``experiment`` at ``restarts`` fit seeds (``config.seed`` onwards; the pairs stay
    those of ``experiment.seed``) and return the one with the best development IIA, judged on
    the test pairs as any result is (see the module's docstring). ``fit`` (one fit of a config)
    replaces ``run_experiment``: the pytest session's cached and locked one."""
    from das_assert.experiment import run_experiment
    from das_assert.run_arguments import check_run_arguments

    check_run_arguments(model, experiment, config, cache, None)
    config = (config or FitConfig()).with_seed(experiment.seed)
    restarts = check_restarts(restarts, config)
    if fit is None:

        def fit(one: FitConfig) -> AlignmentResult:
            return run_experiment(model, experiment, one, cache=cache)

    configs = restart_configs(config, restarts)
    if restarts == 1:
        return fit(configs[0])
    # Each fit would tokenize the pairs, run the source pass and build the prefix store again;
    # inside a block that keeps them (a search's, else this one) all k fits share them.
    with nullcontext() if sharing.prefix_stores_active() else sharing.sharing():
        results = [fit(one) for one in configs]
        return choose_restart(results, development_pairs(experiment))
