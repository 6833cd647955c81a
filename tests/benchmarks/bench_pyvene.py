"""das_assert vs pyvene 0.1.8: Boundless DAS side by side, same model, data, site and run.

Both train the same intervention (rotation + learned boundary, Adam 1e-3 / 1e-2, 10 % warm-up,
temperature 50 -> 0.1, cross-entropy at the last token plus the same boundary penalty) at the same
site on the same label-balanced Left Boundary pairs, for the same number of steps of the same batch
size, in one process. pyvene runs a loop of its tutorial's shape (base and source forward every
step, full backward) with das_assert's loss and schedules, not the tutorial's penalty on the raw
boundary or its 16 x 4 accumulation; das_assert runs ``fit_alignment`` (source activations
once, base prefix in a KV cache, suffix-only backward). Both learned interventions are then
scored by the same hard-mask evaluator.

    python tests/benchmarks/bench_pyvene.py --model embedded --layer 1 --json out.json

The defaults are the hypotheses' own fit (1,500 pairs, 3 epochs, batch 32). Step time is the whole
fit's wall time over its steps, one-time passes included, on whatever machine runs this; only the
ratios mean anything. pyvene is a benchmark dependency only: ``pip install pyvene==0.1.8``
(``--no-deps`` works beside an installed torch and transformers).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from das_assert.data import encode, tokenize
from das_assert.evaluate import evaluate
from das_assert.featurizers import Interchange, temperature_schedule
from das_assert.fit import FitConfig, FittedAlignment, fit_alignment
from das_assert.models import load_model
from das_assert.sharing import sharing
from das_assert.sites import Site
from das_assert.tasks.price_tagging import prompt_pairs

#: The seeds of every run: the fit (its starting rotation, for both), its pairs and the test pairs.
SEEDS = {"fit": 0, "train_pairs": 0, "test_pairs": 1}


def pyvene_missing() -> str | None:
    """Why pyvene 0.1.8 cannot run here, or None. It is imported, not looked up: installed
    ``--no-deps``, it fails on the matplotlib or networkx it imports."""
    try:
        import pyvene  # noqa: F401
    except ImportError as exc:
        return (
            f"pyvene cannot be imported ({exc}): in a venv, pip install matplotlib networkx, "
            "then pip install --no-deps pyvene==0.1.8 (README, Performance)"
        )
    return None


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pyvene_fit(model: Any, layer: int, train: Any, config: FitConfig, steps: int) -> dict:
    import pyvene as pv

    d = model.model.config.hidden_size
    # Seeded as das_assert seeds its fit: pyvene's RotateLayer draws ``nn.init.orthogonal_``
    # first, so both start from the same rotation and see the same batches.
    torch.manual_seed(config.fit_seed)
    intervenable = pv.IntervenableModel(
        pv.IntervenableConfig(
            representations=[pv.RepresentationConfig(layer, "block_output")],
            intervention_types=pv.BoundlessRotatedSpaceIntervention,
        ),
        model.model,
    )
    intervenable.disable_model_gradients()
    device = model.input_device
    intervenable.set_device(device)
    intervention = next(iter(intervenable.interventions.values()))
    intervention = intervention[0] if isinstance(intervention, (list, tuple)) else intervention
    optimizer = torch.optim.Adam(
        [
            {"params": intervention.rotate_layer.parameters(), "lr": config.lr_rotation},
            {"params": intervention.intervention_boundaries, "lr": config.lr_boundary},
        ]
    )
    warmup = max(1, int(config.warmup_fraction * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / (steps - warmup)),
    )
    temperatures = temperature_schedule(*config.temperature, steps)
    generator = torch.Generator().manual_seed(config.fit_seed)
    times = []
    step = 0
    while step < steps:
        for index in train.batches(config.batch_size, generator=generator):
            if step == steps:
                break
            started = time.perf_counter()
            base_ids, base_mask = (t.to(device) for t in train.base_batch(index))
            source_ids, source_mask = (t.to(device) for t in train.source_batch(index))
            position = int(train.base_position[index][0])
            _, out = intervenable(
                {"input_ids": base_ids, "attention_mask": base_mask},
                [{"input_ids": source_ids, "attention_mask": source_mask}],
                {"sources->base": position},
            )
            logits = out.logits[:, -1].float()
            labels = train.label_ids[index].to(device)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            boundary = intervention.intervention_boundaries.clamp(0, 1).sum() * d
            loss = loss + config.boundary_penalty * boundary / 4096
            loss.backward()
            optimizer.step()
            schedule.step()
            intervenable.set_zero_grad()
            intervenable.set_temperature(torch.tensor(temperatures[step]))
            _synchronize(device)
            times.append(time.perf_counter() - started)
            step += 1
    rotation = intervention.rotate_layer.weight.detach().float().cpu()
    width = float(intervention.intervention_boundaries.detach().clamp(0, 1)[0]) * d
    return {"times": times, "rotation": rotation, "width": width}


def _synchronize(device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: Any, start: int = 0) -> float | None:
    """Peak GPU memory since ``_reset_peak`` returned ``start``, less ``start``, in GiB."""
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_allocated(device) - start) / 2**30


def _reset_peak(device: Any) -> int:
    """Start a new peak; return the bytes allocated now (what the next phase did not add)."""
    if device.type != "cuda":
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def run(model_path: str, layer: int, position: str, **settings: Any) -> dict:
    """``compare`` on the model directory ``model_path``."""
    return compare(load_model(model_path), layer, position, **settings)


def compare(
    model: Any,
    layer: int,
    position: str,
    *,
    n_train: int,
    epochs: int,
    batch: int,
    n_test: int,
) -> dict:
    """Fit the same Boundless DAS with das_assert and with pyvene on a loaded model."""
    site = Site(layer, position)
    resolved = site.resolve(model.model)
    steps = epochs * -(-n_train // batch)
    pairs = prompt_pairs("left_boundary", n_train, seed=SEEDS["train_pairs"])
    train = encode(model, pairs, site.parsed_position)
    tests = prompt_pairs("left_boundary", n_test, seed=SEEDS["test_pairs"])
    test = encode(model, tests, site.parsed_position)
    config = FitConfig(epochs=epochs, batch_size=batch, seed=SEEDS["fit"])
    if len({int(p) for p in train.base_position}) != 1:
        raise SystemExit("pyvene's single-position unit needs one position for every prompt")
    device = model.input_device
    weights_gib = sum(p.nbytes for p in model.model.parameters()) / 2**30

    # Warm both up on two batches first, so that neither pays the device's one-time costs
    # (kernel selection, library handles) inside its timing.
    warm = encode(model, prompt_pairs("left_boundary", 2 * batch, seed=2), site.parsed_position)
    fit_alignment(model.model, resolved, warm, FitConfig(epochs=1, batch_size=batch, seed=0))
    _pyvene_fit(model, layer, warm, config, 2)

    rss_before = _peak_rss_mib()
    # Each peak counts what that fit adds to what is allocated before it (the weights, and for
    # pyvene also das_assert's trained intervention), plus the weights.
    ours = {name: _das_fit(model, resolved, train, test, c) for name, c in _das_modes(config)}

    start = _reset_peak(device)
    theirs = _pyvene_fit(model, layer, train, config, steps)
    theirs_added = _peak_gib(device, start)
    widths = [theirs["width"]]
    frozen = Interchange.frozen(theirs["rotation"], widths, "boundless")
    frozen.to(device)
    theirs_eval = evaluate(
        model.model, FittedAlignment(frozen, resolved, config, n_train, 0.0), test
    )
    memory = None
    if theirs_added is not None:
        memory = {"weights_gib": weights_gib, "pyvene_peak_gib": weights_gib + theirs_added}
        for name, fit in ours.items():
            suffix = name.removeprefix("das_assert")
            memory[f"das_assert{suffix}_peak_gib"] = weights_gib + fit["added_gib"]
            memory[f"ratio_above_weights{suffix}"] = fit["added_gib"] / max(theirs_added, 1e-9)

    # Whole fits, divided by their steps: das_assert's one-time source and prefix passes count.
    theirs_step = sum(theirs["times"]) / steps
    result: dict[str, Any] = {
        "model": model.name,
        "site": str(site),
        "steps": steps,
        "n_train": n_train,
        "epochs": epochs,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "seeds": SEEDS,
        "prefix_store_mib": config.prefix_store_mib,
        "pyvene": {
            "seconds_per_step": theirs_step,
            "examples_per_s": batch / theirs_step,
            "iia": theirs_eval.iia,
            "boundary_dims": [round(theirs["width"])],
        },
    }
    for name, fit in ours.items():
        suffix = name.removeprefix("das_assert")
        ours_step = fit["seconds"] / steps
        result[name] = {
            "seconds_per_step": ours_step,
            "examples_per_s": batch / ours_step,
            "iia": fit["iia"],
            "boundary_dims": fit["boundary_dims"],
        }
        result[f"ratio_step_speed{suffix}"] = theirs_step / ours_step
        result[f"iia_difference{suffix}"] = fit["iia"] - theirs_eval.iia
    return {
        **result,
        "gpu_memory": memory,
        "device": str(device),
        "n_test": n_test,
        "peak_rss_mib_process": _peak_rss_mib(),
        "peak_rss_mib_before": rss_before,
    }


def _das_modes(config: FitConfig) -> list[tuple[str, FitConfig]]:
    """das_assert's two ways to run a step: the prefix before the site once without gradients,
    then the suffix (the default: fewest FLOPs); and one pass over the whole prompt
    (``prefix_cache=False``: at Llama-7B's depth a few percent fewer ops dispatched, the
    backward over every token after the site's layer), which a GPU step bound by its host may
    prefer."""
    return [("das_assert", config), ("das_assert_one_pass", replace(config, prefix_cache=False))]


def _das_fit(model: Any, resolved: Any, train: Any, test: Any, config: FitConfig) -> dict:
    """One timed das_assert fit: its seconds, the GPU memory it added, its IIA on ``test``."""
    device = model.input_device
    start = _reset_peak(device)
    started = time.perf_counter()
    fit = fit_alignment(model.model, resolved, train, config)
    _synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "added_gib": _peak_gib(device, start),
        "iia": evaluate(model.model, fit, test).iia,
        "boundary_dims": fit.boundary_dims,
    }


def grid(model_path: str, layers: list[int], positions: list[str], **settings: Any) -> dict:
    """``grid_on`` the model directory ``model_path``."""
    return grid_on(load_model(model_path), layers, positions, **settings)


def grid_on(
    model: Any,
    layers: list[int],
    positions: list[str],
    *,
    n_train: int,
    epochs: int,
    batch: int,
    n_test: int,
    pyvene_layers: list[int] | None = None,
) -> dict:
    """Train every cell of a layer x position grid with both; the same evaluator scores both.

    das_assert runs the cells inside ``sharing()`` blocks, as ``das_assert.search`` does: the
    pairs are tokenized once, the source activations of every cell come from one pass, and a
    position's prefix store is shared by its layers. It trains them twice, timed apart: first the
    layers together, one pass per step (``fit_alignments``, ``joint_cells_mib=4096``; the IIA
    column is theirs), then each cell alone (the default). pyvene trains each cell from scratch,
    as a per-cell loop over its tutorial code would.

    ``pyvene_layers`` (default: all) runs pyvene on those layers of each position only, for a
    grid too large to run it whole on a lent GPU: its time for every other cell is estimated
    from the measured cells of its position, linearly in the layer (a pyvene cell runs the whole
    prompt each step, whatever the position; its backward grows with the layers after the site).
    The result says which cells were measured and which estimated.
    """
    config = FitConfig(epochs=epochs, batch_size=batch, seed=SEEDS["fit"])
    joint = replace(config, joint_cells_mib=4096)
    steps = epochs * -(-n_train // batch)
    sampled = sorted(set(pyvene_layers or layers) & set(layers))
    seconds = {"joint": 0.0, "alone": 0.0}
    theirs_seconds = {"measured": 0.0, "estimated": 0.0}
    train_pairs = prompt_pairs("left_boundary", n_train, seed=SEEDS["train_pairs"])
    parsed = {position: Site(0, position).parsed_position for position in positions}
    fitted: dict[tuple[int, str], Any] = {}
    # As a search trains them (an outer block plans every cell, an inner one each position's:
    # one tokenization and one source pass for the grid, a position's layers together), then
    # each cell alone.
    for mode, cell_config in (("joint", joint), ("alone", config)):
        started = time.perf_counter()
        with sharing(sites=[Site(layer, p) for p in positions for layer in layers]):
            tokenized = tokenize(model, train_pairs)
            for position in positions:
                with sharing(sites=[Site(layer, position) for layer in layers]):
                    train = tokenized.at(parsed[position])
                    for layer in layers:
                        resolved = Site(layer, position).resolve(model.model)
                        fit = fit_alignment(model.model, resolved, train, cell_config)
                        fitted.setdefault((layer, position), fit)
        _synchronize(model.input_device)
        seconds[mode] += time.perf_counter() - started
    cells = []
    for position in positions:
        tests = prompt_pairs("left_boundary", n_test, seed=SEEDS["test_pairs"])
        test = encode(model, tests, parsed[position])
        measured: dict[int, float] = {}
        for layer in sampled:
            resolved = Site(layer, position).resolve(model.model)
            started = time.perf_counter()
            train = encode(model, train_pairs, parsed[position])
            theirs = _pyvene_fit(model, layer, train, config, steps)
            measured[layer] = time.perf_counter() - started
            frozen = Interchange.frozen(theirs["rotation"], [theirs["width"]], "boundless")
            theirs_fit = FittedAlignment(frozen, resolved, config, n_train, 0.0)
            cells.append(
                {
                    "site": str(Site(layer, position)),
                    "das_assert_iia": evaluate(model.model, fitted[(layer, position)], test).iia,
                    "pyvene_iia": evaluate(model.model, theirs_fit, test).iia,
                }
            )
        theirs_seconds["measured"] += sum(measured.values())
        theirs_seconds["estimated"] += sum(
            _interpolated(measured, layer) for layer in layers if layer not in measured
        )
    theirs_total = theirs_seconds["measured"] + theirs_seconds["estimated"]
    return {
        "model": model.name,
        "cells": cells,
        "layers": layers,
        "positions": positions,
        "pyvene_layers": sampled,
        "n_train": n_train,
        "epochs": epochs,
        "batch": batch,
        "n_test": n_test,
        "threads": torch.get_num_threads(),
        "seeds": SEEDS,
        "prefix_store_mib": config.prefix_store_mib,
        "das_assert_seconds": seconds["joint"],
        "das_assert_alone_seconds": seconds["alone"],
        "pyvene_seconds": theirs_total,
        "pyvene_seconds_measured": theirs_seconds["measured"],
        "pyvene_seconds_estimated": theirs_seconds["estimated"],
        "ratio_grid_speed": theirs_total / seconds["joint"],
        "ratio_grid_speed_alone": theirs_total / seconds["alone"],
        "max_abs_iia_difference": max(abs(c["das_assert_iia"] - c["pyvene_iia"]) for c in cells),
    }


def _interpolated(measured: dict[int, float], layer: int) -> float:
    """A cell's time at ``layer`` from the cells measured at other layers: linear between the
    nearest below and above, the nearest one's beyond either end."""
    below = [x for x in measured if x <= layer]
    above = [x for x in measured if x >= layer]
    if not below or not above:
        return measured[min(measured, key=lambda x: abs(x - layer))]
    low, high = max(below), min(above)
    if low == high:
        return measured[low]
    weight = (layer - low) / (high - low)
    return (1 - weight) * measured[low] + weight * measured[high]


def seeds_text() -> str:
    return ", ".join(f"{name.replace('_', ' ')} seed {seed}" for name, seed in SEEDS.items())


def grid_table(result: dict) -> str:
    lines = [
        f"{result['model']}, {len(result['cells'])} cells, {result['n_train']} pairs x "
        f"{result['epochs']} epochs, batch {result['batch']}, {result['threads']} threads, "
        f"IIA on {result['n_test']} pairs; {seeds_text()}",
        f"{'cell':<42} {'das_assert':>10} {'pyvene':>7}",
    ]
    for c in result["cells"]:
        lines.append(f"{c['site']:<42} {c['das_assert_iia']:>10.3f} {c['pyvene_iia']:>7.3f}")
    if result.get("pyvene_seconds_estimated"):
        lines.append(
            f"pyvene ran at layers {result['pyvene_layers']} of {result['layers']}: "
            f"{result['pyvene_seconds_measured']:.1f} s measured, the other cells estimated "
            f"from them at {result['pyvene_seconds_estimated']:.1f} s"
        )
    lines.append(
        f"training the grid: pyvene {result['pyvene_seconds']:.1f} s / das_assert "
        f"{result['das_assert_seconds']:.1f} s = {result['ratio_grid_speed']:.2f}x; "
        f"largest IIA difference {result['max_abs_iia_difference']:.3f}"
    )
    lines.append(
        f"each cell trained alone: das_assert {result['das_assert_alone_seconds']:.1f} s = "
        f"{result['ratio_grid_speed_alone']:.2f}x"
    )
    return "\n".join(lines)


def table(result: dict) -> str:
    a, b = result["das_assert"], result["pyvene"]
    one_pass = []
    if "das_assert_one_pass" in result:
        c = result["das_assert_one_pass"]
        one_pass = [
            f"one pass (prefix_cache=False): {c['seconds_per_step']:.4f} s/step, "
            f"{result['ratio_step_speed_one_pass']:.2f}x, IIA {c['iia']:.3f}"
        ]
    return "\n".join(
        [
            f"{result['model']} {result['site']}, {result['n_train']} pairs x "
            f"{result['epochs']} epochs, batch {result['batch']} ({result['steps']} steps), "
            f"{result['threads']} threads, IIA on {result['n_test']} pairs; {seeds_text()}",
            f"{'':<12} {'s/step':>8} {'ex/s':>8} {'IIA':>6}",
            f"{'das_assert':<12} {a['seconds_per_step']:>8.4f} {a['examples_per_s']:>8.1f} "
            f"{a['iia']:>6.3f}",
            f"{'pyvene':<12} {b['seconds_per_step']:>8.4f} {b['examples_per_s']:>8.1f} "
            f"{b['iia']:>6.3f}",
            f"step speed ratio (pyvene time / das_assert time): {result['ratio_step_speed']:.2f}x; "
            f"IIA difference {result['iia_difference']:+.3f}",
            *one_pass,
        ]
    )


def data_sizes(args: argparse.Namespace) -> dict[str, int]:
    """The pairs, epochs, batch and test pairs a command line asked for."""
    return {name: getattr(args, name) for name in ("n_train", "epochs", "batch", "n_test")}


def main(argv: list[str] | None = None) -> int:
    from das_assert.arg_types import positive_int

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--position", default="last")
    parser.add_argument("--n-train", type=positive_int, default=1500)
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--n-test", type=positive_int, default=400)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--grid",
        action="store_true",
        help="train a whole layer x position grid (--layers, --positions) instead of one cell",
    )
    parser.add_argument("--layers", default="0,1,2,3")
    parser.add_argument("--positions", default="after:amount,last")
    args = parser.parse_args(argv)
    from das_assert.errors import DasError

    if problem := pyvene_missing():  # before das_assert's side runs, not after
        parser.error(problem)
    try:
        if args.grid:
            result = grid(
                args.model,
                [int(x) for x in args.layers.split(",")],
                args.positions.split(","),
                **data_sizes(args),
            )
            text = grid_table(result)
        else:
            result = run(args.model, args.layer, args.position, **data_sizes(args))
            text = table(result)
    except DasError as exc:  # a layer the model lacks, a misspelt position: one line
        parser.error(str(exc))
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
