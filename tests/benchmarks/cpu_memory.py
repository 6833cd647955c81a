"""Peak memory above the weights of one fit, das_assert vs pyvene 0.1.8, measured on CPU.

No GPU is needed: torch's profiler records every CPU allocation and free, with the running total
of live tensor bytes, so the peak of a fit is exact and repeatable (allocation sizes do not depend
on timing). The model is a randomly initialised Llama of the ``mid`` shape (d=1024, 16 layers,
bf16, the embedded tokenizer), the site is the middle layer at ``last-1`` as in ``gpu_7b.py``, and
both fits use the same pairs and batch. GPU peaks add kernel workspaces and the caching
allocator's rounding, so they are not these numbers; the ratio is what carries over.

    python tests/benchmarks/cpu_memory.py --out memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))


def peak_mib(function: Callable[[], Any]) -> float:
    """Peak live CPU tensor bytes while ``function`` runs, above what was live before, in MiB."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as profiler:
        function()
    with tempfile.TemporaryDirectory() as directory:
        trace = Path(directory) / "trace.json"
        profiler.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals, default=0) / 2**20


def compare(
    shape: str = "mid",
    *,
    layer: int = 7,
    n_train: int = 96,
    pyvene_steps: int = 2,
    batch: int = 16,
    store_mib: int | None = None,
) -> dict[str, Any]:
    """Both fits' peaks at one site. pyvene's step holds the same memory at every step, so two
    steps measure it; das_assert's fit runs its whole recipe (source pass, prefix, steps), once
    with its default prefix store (every base prefix kept for the fit, when they fit in 1 GiB:
    memory spent on speed; ``store_mib`` another budget) and once without it
    (``prefix_store_mib=0``)."""
    from dataclasses import replace

    import bench_pyvene
    import gpu_7b

    from das_assert.data import encode
    from das_assert.fit import FitConfig, fit_alignment
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    model = gpu_7b.build(shape, "cpu", torch.bfloat16)
    site = Site(layer, "last-1")
    seeds = {"fit": bench_pyvene.SEEDS["fit"], "pairs": bench_pyvene.SEEDS["train_pairs"]}
    config = FitConfig(epochs=1, batch_size=batch, seed=seeds["fit"])
    if store_mib is not None:
        config = replace(config, prefix_store_mib=store_mib)
    pairs = prompt_pairs("left_boundary", max(n_train, pyvene_steps * batch), seed=seeds["pairs"])
    train = encode(model, pairs[:n_train], site.parsed_position)
    short = (
        encode(model, pairs[: pyvene_steps * batch], site.parsed_position) if pyvene_steps else None
    )
    resolved = site.resolve(model.model)
    no_store = replace(config, prefix_store_mib=0)
    ours = _measured("das_assert", lambda: fit_alignment(model.model, resolved, train, config))
    lean = _measured(
        "das_assert without the prefix store",
        lambda: fit_alignment(model.model, resolved, train, no_store),
    )
    theirs = (
        _measured(
            "pyvene", lambda: bench_pyvene._pyvene_fit(model, layer, short, config, pyvene_steps)
        )
        if pyvene_steps
        else None
    )
    return {
        "shape": shape,
        "site": str(site),
        "batch": batch,
        "n_train": n_train,
        "seeds": seeds,
        "prefix_store_mib": config.prefix_store_mib,
        "pyvene_steps": pyvene_steps,
        "weights_mib": sum(p.nbytes for p in model.model.parameters()) / 2**20,
        "das_assert_peak_above_weights_mib": ours,
        "das_assert_without_prefix_store_mib": lean,
        "pyvene_peak_above_weights_mib": theirs,
        "ratio": ours / theirs if theirs else None,
        "ratio_without_prefix_store": lean / theirs if theirs else None,
    }


def _measured(name: str, function: Callable[[], Any]) -> float:
    """``peak_mib(function)``, printed as soon as it is known (a long run keeps what it has)."""
    peak = peak_mib(function)
    print(f"{name}: peak {peak:.0f} MiB above what was live before", file=sys.stderr, flush=True)
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    import gpu_7b

    from das_assert.arg_types import positive_int

    parser.add_argument(
        "--shape", choices=sorted(gpu_7b.SHAPES), default="mid", help="default: mid"
    )
    parser.add_argument("--layer", type=int, default=7)
    parser.add_argument("--n-train", type=positive_int, default=96)
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument(
        "--store-mib",
        type=int,
        default=None,
        help="das_assert's prefix store budget (default: FitConfig's, 1024). At 7B shape, 400 "
        "with 64 pairs builds the windows of two batches that 640 pairs get from 1024",
    )
    parser.add_argument(
        "--pyvene-steps",
        type=int,
        default=2,
        help="pyvene's steps (the second holds Adam's state); 0: das_assert alone",
    )
    parser.add_argument("--out", type=Path, default=None, help="write cpu_memory.json here")
    args = parser.parse_args(argv)
    import bench_pyvene

    if args.pyvene_steps and (problem := bench_pyvene.pyvene_missing()):
        parser.error(problem)  # before das_assert's fits run, not after
    torch.manual_seed(0)
    result = compare(
        args.shape,
        layer=args.layer,
        n_train=args.n_train,
        batch=args.batch,
        pyvene_steps=args.pyvene_steps,
        store_mib=args.store_mib,
    )
    theirs = (
        f", pyvene {result['pyvene_peak_above_weights_mib']:.0f} MiB; ratio "
        f"{result['ratio']:.2f} ({result['ratio_without_prefix_store']:.2f})"
        if result["ratio"] is not None
        else ""
    )
    print(
        f"peak CPU memory above the weights ({result['weights_mib']:.0f} MiB), {result['site']}, "
        f"batch {result['batch']}: das_assert {result['das_assert_peak_above_weights_mib']:.0f} "
        f"MiB ({result['das_assert_without_prefix_store_mib']:.0f} MiB without the prefix "
        f"store){theirs}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cpu_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
