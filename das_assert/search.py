"""Where does a variable live? Boundless DAS over a layer x position grid, and its heatmap."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from das_assert.errors import InvalidArgument
from das_assert.metrics import rounded_interval
from das_assert.positions import check_distinct_positions
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.store import atomic_write_bytes

__all__ = ["SearchGrid", "grid_table", "save_heatmap", "search", "search_record"]


@dataclass
class SearchGrid:
    """IIA per (layer, position) cell, with the full result of every cell."""

    hypothesis: str
    layers: list[int]
    positions: list[str]
    results: dict[tuple[int, str], Any]  # (layer, position) -> AlignmentResult
    _confirmed: Any = field(default=None, repr=False, compare=False)

    def best_confirmed(self) -> Any:
        """The best cell's alignment evaluated on fresh pairs (``AlignmentResult.confirmed``):
        judge the chosen cell by these, not by the pairs that chose it. Computed once."""
        if self._confirmed is None:
            self._confirmed = self.results[self.best()].confirmed()
        return self._confirmed

    def iia(self, layer: int, position: str) -> float:
        return self.results[(layer, position)].iia

    def best(self) -> tuple[int, str]:
        """The cell with the highest IIA (ties: earliest layer, then earliest position)."""
        return max(
            self.results,
            key=lambda c: (self.iia(*c), -self.layers.index(c[0]), -self.positions.index(c[1])),
        )

    def matrix(self) -> list[list[float]]:
        """IIA as rows = layers (as given), columns = positions (as given)."""
        return [[self.iia(layer, pos) for pos in self.positions] for layer in self.layers]

    def to_dict(self, *, include_pairs: bool = True) -> dict[str, Any]:
        """The grid; ``best.confirmation`` with its pairs (``include_pairs``), so that the
        number a search's verdict follows can be recomputed from the report."""
        best_layer, best_position = self.best()
        confirmed = self._confirmed
        return {
            "hypothesis": self.hypothesis,
            "layers": self.layers,
            "positions": self.positions,
            "iia": self.matrix(),
            "best": {
                "layer": best_layer,
                "position": best_position,
                "iia": self.iia(best_layer, best_position),
                # on fresh pairs, where computed: the record to judge the chosen cell by
                "confirmation": confirmed and confirmed.to_dict(include_pairs=include_pairs),
            },
        }


def search(
    align: Callable[..., Any],
    hypothesis: str,
    *,
    layers: Sequence[int],
    positions: Sequence[str],
    component: str = "block_output",
    check: Callable[..., Any] | None = None,
    **changes: Any,
) -> SearchGrid:
    """Fit ``hypothesis`` at every cell; ``align(hypothesis, site, **changes)`` fits one cell.

    ``check(hypothesis, site, **changes)`` (e.g. ``das_session.check``), when given, runs on
    every cell before the first one trains: a layer the model lacks or a misspelt slot fails
    in milliseconds, not after the cells before it have trained.

    The cells run inside ``sharing()`` blocks, one around the grid and one per position: each
    set of prompts (training, test) is tokenized once, its source activations for every cell
    come from one pass (those of later positions kept on the CPU until their cells run), and
    one prefix KV store serves every cell (each position a view of it), where it fits.
    """
    layers = list(layers)
    if isinstance(positions, str) or not positions or not layers:
        raise InvalidArgument(
            f"search needs at least one layer and a list of positions, not layers={layers!r}, "
            f"positions={positions!r}"
        )
    check_distinct_positions(positions)
    if len(set(layers)) != len(layers):  # the same cell twice, the second overwriting it
        raise InvalidArgument(f"layers={layers} lists a layer twice; list it once")
    results = {}
    grid = [[Site(layer, position, component) for layer in layers] for position in positions]
    # as Site reads them: a NumPy integer as an int and a Position by its name (JSON holds both)
    layers = [site.layer for site in grid[0]]
    positions = [
        position if isinstance(position, str) else site.position
        for position, (site, *_) in zip(positions, grid, strict=True)
    ]
    cells = [site for sites in grid for site in sites]
    if check is not None:
        for site in cells:
            check(hypothesis, site, **changes)
    with sharing(sites=cells):
        for position, sites in zip(positions, grid, strict=True):
            with sharing(sites=sites):
                for site in sites:
                    results[(site.layer, position)] = align(hypothesis, site, **changes)
    return SearchGrid(hypothesis, list(layers), list(positions), results)


def search_record(grid: SearchGrid) -> dict[str, Any]:
    """A search for the reports: the grid (``SearchGrid.to_dict``, with the best cell on fresh
    pairs, unless the model fails the task on them: ``confirmation_error`` says why) and every
    cell's numbers: IIA with n, Wilson interval and seed, its controls, the task accuracy and
    the learned boundary."""
    if not isinstance(grid, SearchGrid):
        raise InvalidArgument(
            f"record_search takes the SearchGrid that das_assert.search.search returned, not "
            f"{type(grid).__name__}"
        )
    from das_assert.errors import PreconditionFailed

    try:  # one evaluation of fresh pairs, once per grid: the record shows the best cell on them
        grid.best_confirmed()
        unconfirmed = None
    except PreconditionFailed as exc:  # recorded, not raised: the cells are what helps then
        unconfirmed = str(exc)
    cells = []
    for (layer, position), result in grid.results.items():
        cells.append(
            {
                "site": str(result.experiment.site),
                "layer": layer,
                "position": position,
                "iia": round(result.iia, 6),
                "iia_ci": rounded_interval(*result.iia_ci),
                "n": result.n,
                "seed": result.experiment.seed,
                **{key: round(value, 6) for key, value in result.baselines.items()},
                "task_accuracy": round(result.evaluation.task_accuracy, 6),
                "boundary": result.boundary_text(),
            }
        )
    frozen = sorted(
        {Path(r.alignment["baseline"]).name for r in grid.results.values() if r.alignment}
    )
    return {
        **grid.to_dict(),
        "cells": cells,
        "confirmation_error": unconfirmed,
        "frozen_from": frozen or None,  # --das-frozen: where its cells' alignments came from
    }


def grid_table(grid: SearchGrid) -> str:
    """The grid as text: a row per layer, a column per position, each cell's IIA and its Wilson
    95% interval; the best cell starred; under the heading the seed and the controls (the no-op,
    majority label and task accuracy, one run of the test pairs every cell shares, and the
    random rotation's range over the cells)."""
    best = grid.best()
    cells = {
        cell: f"{result.iia:.3f} [{result.iia_ci[0]:.3f}, {result.iia_ci[1]:.3f}]"
        + ("*" if cell == best else " ")
        for cell, result in grid.results.items()
    }
    width = max(len(text) for text in (*cells.values(), *grid.positions))
    label = max(len(f"layer {layer}") for layer in grid.layers)
    ns = sorted({result.n for result in grid.results.values()})
    lines = [
        f"{grid.hypothesis}: IIA per cell (hard mask, 95% CI, n={'/'.join(map(str, ns))}; "
        "* the best)",
        _controls_line(list(grid.results.values())),
        " " * label + "  " + "  ".join(f"{p:<{width}}" for p in grid.positions),
    ]
    for layer in grid.layers:
        row = "  ".join(f"{cells[(layer, p)]:<{width}}" for p in grid.positions)
        lines.append(f"{f'layer {layer}':<{label}}  {row}")
    return "\n".join(line.rstrip() for line in lines)


def _controls_line(results: list[Any]) -> str:
    """The seed and controls of a grid's cells: one value where the cells share it, else the
    range over them."""

    def spread(values: list[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}-{high:.3f}"

    seeds = sorted({result.experiment.seed for result in results})
    noop, majority, rotation = (
        spread([result.baselines[key] for result in results])
        for key in ("noop", "majority", "random_rotation")
    )
    task = spread([result.evaluation.task_accuracy for result in results])
    return (
        f"seed={','.join(map(str, seeds))}; no-op {noop}, majority {majority}, random rotation "
        f"{rotation}, task accuracy {task} (each cell's in the --json report)"
    )


def save_heatmap(grid: SearchGrid, path: Path, *, title: str = "") -> Path:
    """Save the grid as a PNG heatmap (rows: layers, top = deepest; columns: positions)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("heatmaps need matplotlib: pip install 'das_assert[plots]'") from exc
    matrix = grid.matrix()[::-1]
    layers = grid.layers[::-1]
    best = grid.best()
    width = 1.1 * len(grid.positions) + 2
    ns = sorted({result.n for result in grid.results.values()})
    caption = textwrap.fill(  # the numbers every stated IIA comes with
        f"IIA with a hard mask, n={'/'.join(map(str, ns))} test pairs a cell; * the best cell "
        f"(judge it on fresh pairs); {_controls_line(list(grid.results.values()))}",
        width=int(width * 13),
    )
    title = textwrap.fill(title or f"{grid.hypothesis}: IIA (hard mask)", width=int(width * 9))
    lines = caption.count("\n") + title.count("\n")
    fig, ax = plt.subplots(figsize=(width, 0.6 * len(layers) + 2.2 + 0.18 * lines))
    image = ax.imshow(matrix, vmin=0.4, vmax=1.0, cmap="viridis", aspect="auto")
    for row, values in enumerate(matrix):
        for col, value in enumerate(values):
            starred = (layers[row], grid.positions[col]) == best
            ax.text(
                col,
                row,
                f"{value:.2f}" + ("*" if starred else ""),
                ha="center",
                va="center",
                color="white" if value < 0.75 else "black",
                fontsize=8,
                fontweight="bold" if starred else "normal",
            )
    # a model path or position is shown as written, never read as TeX ("$" in a path)
    ax.set_xticks(
        range(len(grid.positions)), grid.positions, rotation=30, ha="right", parse_math=False
    )
    ax.set_yticks(range(len(layers)), [f"layer {layer}" for layer in layers])
    ax.set_title(title, parse_math=False, fontsize=10)
    fig.text(0.01, 0.01, caption, fontsize=7, ha="left", va="bottom", parse_math=False)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * caption.count("\n"), 1, 1))
    image_bytes = io.BytesIO()
    fig.savefig(image_bytes, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, image_bytes.getvalue(), follow_link=True)  # never a half-written PNG
    return path
