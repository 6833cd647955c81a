"""Search: where in the model does ``left = amount >= low`` live?

Claim. Over the layer x position grid of das.yaml (``search``), Boundless DAS for the Left
Boundary model reaches its best IIA inside the expected region (``expect_layers`` x
``expect_positions``), and that best cell is itself aligned (``left_boundary.search`` threshold).
For the embedded model every layer is expected, so the region is a claim about the position: the
last token, not the word after the amount (das.yaml says why).
With ``--das-plots DIR`` the recorded search's heatmap is saved there (``das.record_search``).

Evidence bar. One alignment per cell; every cell's IIA, with its Wilson interval, seed and
controls, is in the reports (``das.record_search``: the terminal, ``searches`` in the JSON).
The best cell is chosen by its IIA on the test pairs, so it is judged on as many fresh pairs (the
winner of several cells overstates its IIA on the pairs that chose it). The region claim is about
the argmax, so the test also checks that the best cell beats every cell outside the region by more
than chance allows: its interval on fresh pairs above every outside cell's, the intervals
widened to hold jointly at 95% (Bonferroni), or it reports the overlap.
"""

import pytest

from das_assert.search import search
from das_assert.sites import Site

HYPOTHESIS = "left_boundary"


@pytest.fixture(scope="module")
def grid(das_session):
    spec = das_session.search_settings()
    if not spec:
        pytest.fail(f"{das_session.settings.source}: no `search:` entry for this model")
    changes = {k: spec[k] for k in ("n_train", "n_test") if k in spec}
    config = das_session.fit_config(epochs=spec.get("epochs", das_session.settings.epochs))
    found = search(
        lambda hypothesis, site, **kw: das_session.align(hypothesis, site, config=config, **kw),
        HYPOTHESIS,
        layers=spec["layers"],
        positions=spec["positions"],
        **changes,
    )
    return found


def test_left_boundary_is_best_found_in_the_expected_region(das, das_session, grid):
    das.record_search(grid)
    spec = das_session.settings.search
    layer, position = grid.best()
    table = "\n".join(
        f"  layer {layer_}: "
        + "  ".join(f"{p}={v:.3f}" for p, v in zip(grid.positions, row, strict=True))
        for layer_, row in zip(grid.layers, grid.matrix(), strict=True)
    )
    where = f"best cell: {grid.results[layer, position].summary()}"
    assert layer in spec["expect_layers"], f"{where}: layer not in {spec['expect_layers']}\n{table}"
    assert position in spec["expect_positions"], (
        f"{where}: position not in {spec['expect_positions']}\n{table}"
    )


def test_the_best_cell_of_the_search_is_aligned(das, grid):
    # Judged on fresh pairs: the test pairs chose the cell, so its interval on them is optimistic.
    das.assert_aligned(grid.best_confirmed(), claim="left_boundary.search")


def test_the_best_cell_stands_out_from_every_cell_outside_the_region(das_session, grid):
    """Against every cell outside the region at once: the best cell's interval on fresh pairs
    lies above each outside cell's interval, all of them widened so that they hold jointly at
    95% (Bonferroni over the k outside cells and the best one: z at 1 - 0.05 / (2 (k + 1))).
    Comparing a lower bound with point estimates, as this test did, ignored both the outside
    cells' sampling error and that there are several of them. Measured over seeds 0-9: joint
    lower bound 0.730-0.777 against outside upper bounds of 0.684-0.740, the closest 0.024 apart
    (seed 5); seed 0: 0.764 against 0.729 (the four outside cells score the no-op, 0.689)."""
    from statistics import NormalDist

    from das_assert.metrics import wilson_interval

    spec = das_session.settings.search
    best = grid.best_confirmed()
    outside = {
        cell: result
        for cell, result in grid.results.items()
        if not (cell[0] in spec["expect_layers"] and cell[1] in spec["expect_positions"])
    }
    z = NormalDist().inv_cdf(1 - 0.05 / (2 * (len(outside) + 1)))
    low = wilson_interval(best.evaluation.successes, best.n, z=z)[0]
    reach = {
        str(Site(*cell)): (round(result.iia, 3), round(high, 3))
        for cell, result in outside.items()
        if (high := wilson_interval(result.evaluation.successes, result.n, z=z)[1]) >= low
    }
    assert not reach, (
        f"the best cell on fresh pairs: {best.summary()}; its joint 95% lower bound {low:.3f} "
        f"(z={z:.2f} over {len(outside)} outside cells); outside cells whose joint upper bound "
        f"reaches it, as (IIA, upper bound): {reach}"
    )
