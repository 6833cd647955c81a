"""What a Boundless DAS training step costs, as the site moves and as the prompt grows.

das_assert runs the prompt before the site once (a KV cache kept for the whole fit) and trains only
on the tokens from the site on, so the marginal cost of a step should follow the number of tokens
after the site, not the prompt's length. This script measures it on one model: each cell fits
the same Left Boundary pairs for 1 and for 3 epochs, and the difference over the extra steps is
the marginal step cost (one-time passes cancel out). ``one-time`` is the rest of the 1-epoch fit.

    python tests/benchmarks/cost_curve.py --model embedded --json out.json

Rows 1-5 move the site from the last token back into the prompt (layer 0); rows 6-7 keep the site
at the last token and lengthen the prompt with an irrelevant prefix; the rest move the layer (rows
8-10 on the embedded model's four layers).
Seconds are for whatever machine runs this; compare rows with each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from das_assert.data import encode
from das_assert.fit import FitConfig, fit_alignment
from das_assert.models import load_model
from das_assert.sites import Site
from das_assert.tasks.price_tagging import PriceFormat, prompt_pairs

POSITIONS = ("last", "last-5", "after:amount", "amount.first", "low.first")
PREFIXES = (
    "",
    "Read carefully.",
    "Fruitarian Frogs May Be Doing Flowers a Favor. The weather is nice today. "
    "Here is a question about a price, and a short test of reading.",
)


def _fit_seconds(
    model: Any, site: Site, train: Any, epochs: int, batch: int, repeats: int = 2
) -> float:
    """The fastest of ``repeats`` identical fits (timer noise on a shared machine only adds
    time)."""
    config = FitConfig(epochs=epochs, batch_size=batch, seed=0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit_alignment(model.model, site.resolve(model.model), train, config)
        if model.input_device.type == "cuda":
            torch.cuda.synchronize(model.input_device)  # the model's GPU, not the current one
        times.append(time.perf_counter() - started)
    return min(times)


def cell(
    model: Any, layer: int, position: str, prefix: str, *, n: int, batch: int, repeats: int = 2
) -> dict:
    site = Site(layer, position)
    fmt = PriceFormat(prefix=prefix)
    train = encode(model, prompt_pairs("left_boundary", n, seed=0, fmt=fmt), site.parsed_position)
    one = _fit_seconds(model, site, train, 1, batch, repeats)
    three = _fit_seconds(model, site, train, 3, batch, repeats)
    steps_per_epoch = -(-n // batch)
    step = (three - one) / (2 * steps_per_epoch)
    length = int(train.base_last[0]) + 1
    return {
        "site": str(site),
        "prefix_chars": len(prefix),
        "prompt_tokens": length,
        "tokens_from_site": length - int(train.base_position[0]),
        "seconds_per_step": round(step, 5),
        "one_time_seconds": round(one - step * steps_per_epoch, 3),
    }


def cells_for(layer: int, later_layers: list[int]) -> list[tuple[int, str, str]]:
    """The rows of the curve: positions at ``layer``, longer prompts, then ``later_layers``."""
    cells = [(layer, position, "") for position in POSITIONS]
    cells += [(layer, "last", prefix) for prefix in PREFIXES[1:]]
    return cells + [(later, "last", "") for later in later_layers]


def run(model_path: str, *, n: int, batch: int) -> list[dict]:
    model = load_model(model_path)
    cells = cells_for(0, list(range(1, model.config.num_hidden_layers)))
    return [cell(model, *c, n=n, batch=batch) for c in cells]


def table(rows: list[dict]) -> str:
    lines = [
        f"{'site':<40} {'prompt':>6} {'from site':>9} {'s/step':>8} {'one-time s':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['site']:<40} {r['prompt_tokens']:>6} {r['tokens_from_site']:>9} "
            f"{r['seconds_per_step']:>8.4f} {r['one_time_seconds']:>10.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from das_assert.arg_types import positive_int
    from das_assert.errors import DasError

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--n-train", type=positive_int, default=960)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        rows = run(args.model, n=args.n_train, batch=args.batch)
    except DasError as exc:
        parser.error(str(exc))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
