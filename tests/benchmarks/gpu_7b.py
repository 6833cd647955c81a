"""das_assert vs pyvene 0.1.8 at Llama-7B shape on one GPU: random weights, bf16, one script.

Builds a ``LlamaForCausalLM`` with the Llama-7B ``LlamaConfig`` (random weights: nothing is
downloaded) and the embedded model's tokenizer, then runs ``bench_pyvene.compare`` at one site:
step time, examples/s and peak GPU memory above the weights, for both, in one process. Writes
``gpu_7b.json`` to ``--out``. On an H100/H200 it should take a few minutes (model init included).

    pip install --no-deps pyvene-0.1.8-py3-none-any.whl      # a carried wheel; no internet
    python tests/benchmarks/gpu_7b.py --out $OUT                  # the side-by-side step
    python tests/benchmarks/gpu_7b.py --out $OUT --stages all     # and the breakdowns

``--stages all`` adds the rotation alone (das_assert's action and Frechet paths and torch's, which
pyvene trains), one whole forward pass, peak memory by phase, a profile of a short fit, what is
live at a fit's memory peak, where a step makes the host wait for the device, das_assert at 2
and 4 times the batch (is a step bound by its host or by the device?), das_assert with every
prefix kept, the cost curve of cost_curve.py and a 7-layer x 2-position grid against pyvene
(das_assert's layers trained together and alone; pyvene at 3 of the layers per position, its
other cells interpolated by layer). The compare, profile and dispatch stages run das_assert both
ways: two passes (the default) and one pass over the whole prompt (``prefix_cache=False``).
``gpu_session.sh`` beside this is the one device call that runs it all.

``--shape tiny --device cpu`` runs the same code at a toy shape, as a check that the script works
(the library's tests do this). With random weights IIA means nothing; compare the timings.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

SHAPES = {
    # Llama-7B (Touvron et al. 2023): the shape of Alpaca-7B.
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
    },
    # Llama-7B's layers, 8 of them: both fits' memory at 7B's width (where pyvene's rotation
    # holds most of its memory) on a 24 GiB CPU machine, which 7B's weights and pyvene's fit
    # together outgrow.
    "7b_width": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 8,
        "num_attention_heads": 32,
    },
    # Between the two: a shape whose fits cpu_memory.py can profile on a CPU in a minute.
    "mid": {
        "hidden_size": 1024,
        "intermediate_size": 2752,
        "num_hidden_layers": 16,
        "num_attention_heads": 16,
    },
    # Llama-7B's depth at a toy width: a step's fixed costs per layer (Python, dispatch, the
    # cache's bookkeeping) with next to no arithmetic, the part of a GPU step a CPU can show.
    "deep": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 32,
        "num_attention_heads": 4,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
    },
}


def build(shape: str, device: str, dtype: torch.dtype) -> object:
    """A randomly initialised Llama of ``shape`` with the embedded tokenizer, as a LoadedModel."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from das_assert.models import EMBEDDED_MODEL_DIR, LoadedModel

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR, local_files_only=True)
    tokenizer.padding_side = "right"
    dims = SHAPES[shape]
    config = LlamaConfig(
        vocab_size=max(32000, len(tokenizer)),
        num_key_value_heads=dims["num_attention_heads"],
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=None,
        **dims,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval().requires_grad_(False)
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    return LoadedModel(model, tokenizer, Path(f"<random llama {shape}>"), name, device)


ROTATION_PATHS = {  # (FRECHET_MIN_D, ACTION_MIN_D) that select each path of das_assert.rotation
    "action": (0, 0),  # applied to the batch's rows, never formed (das_assert's training path)
    "frechet": (0, 1 << 30),  # formed by matrix_exp, das_assert's Frechet backward
    "torch": (1 << 30, 1 << 30),  # torch's orthogonal map, as pyvene trains it
}


def rotation_cost(
    d: int,
    batch: int,
    device: str,
    *,
    repeats: int = 5,
    spreads: tuple[float, ...] = (0.01, 0.05),
    paths: tuple[str, ...] = tuple(ROTATION_PATHS),
) -> dict[str, object]:
    """The rotation alone, per training step (forward + backward through the soft mix), by each
    of ``paths``, after the parameter's entries moved by noise of each of ``spreads`` (0.01 is
    about as far as the benchmark's 40 steps move them, 0.05 about a 3-epoch fit). Milliseconds,
    peak GPU memory in GiB, and ``||A||`` with the action's Taylor plan."""
    from torch.nn.utils import parametrize

    from das_assert import rotation
    from das_assert.featurizers import Interchange

    base = torch.randn(batch, d, device=device, dtype=torch.bfloat16)
    source = torch.randn(batch, d, device=device, dtype=torch.bfloat16)
    variables = torch.zeros(batch, dtype=torch.long, device=device)
    result: dict[str, object] = {"d": d, "batch": batch}
    saved = rotation.FRECHET_MIN_D, rotation.ACTION_MIN_D
    for spread in spreads:
        noise = torch.randn(d, d, device=device, generator=None) * spread
        row: dict[str, float] = {}
        for label in paths:
            rotation.FRECHET_MIN_D, rotation.ACTION_MIN_D = ROTATION_PATHS[label]
            try:
                interchange = Interchange.boundless(d).to(device)
                rotation.move_generator_(interchange.rotate, noise)

                def step(interchange: Interchange = interchange) -> None:
                    with parametrize.cached():
                        mixed = interchange(base, source, variables, hard=False)
                        mixed.float().sum().backward()

                row[f"{label}_step_ms"] = _median_ms(step, device, repeats)
                row[f"{label}_step_peak_gib"] = _peak_gib_of(step, device)
                if label == "action":
                    action = rotation.RowRotation(interchange.rotate)
                    row["norm_bound"] = rotation._NORM_MARGIN * rotation.spectral_norm_estimate(
                        action.generator.detach()
                    )
                    row["taylor_plan"] = [action.degree, action.steps]
                    row["matrix_path_chosen"] = (
                        rotation.row_rotation(interchange.rotate, batch) is None
                    )
            finally:
                rotation.FRECHET_MIN_D, rotation.ACTION_MIN_D = saved
        result[f"spread_{spread}"] = row
    result["forward_ms"] = _median_ms(lambda: interchange.rotation_matrix(), device, repeats)
    return result


def _peak_gib_of(function: object, device: str) -> float | None:
    """Peak GPU memory that one call of ``function`` adds to what is already allocated."""
    import bench_pyvene

    where = torch.device(device)
    start = bench_pyvene._reset_peak(where)
    function()
    bench_pyvene._synchronize(where)
    return bench_pyvene._peak_gib(where, start)


def das_assert_alone(
    model: object, layer: int, position: str, sizes: dict[str, int], prefix_store_mib: int
) -> dict[str, float]:
    """das_assert's fit at the benchmark's site with another prefix-store budget: step time and
    peak GPU memory above the weights (pyvene is not rerun)."""
    import bench_pyvene

    from das_assert.data import encode
    from das_assert.fit import FitConfig, fit_alignment
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    site = Site(layer, position)
    n, batch = sizes["n_train"], sizes["batch"]
    train = encode(model, prompt_pairs("left_boundary", n, seed=0), site.parsed_position)
    config = FitConfig(
        epochs=sizes["epochs"], batch_size=batch, seed=0, prefix_store_mib=prefix_store_mib
    )
    device = model.input_device
    start = bench_pyvene._reset_peak(device)
    started = time.perf_counter()
    fit_alignment(model.model, site.resolve(model.model), train, config)
    bench_pyvene._synchronize(device)
    step = (time.perf_counter() - started) / (config.epochs * -(-n // batch))
    added = bench_pyvene._peak_gib(device, start)
    return {
        "prefix_store_mib": prefix_store_mib,
        "seconds_per_step": step,
        "examples_per_s": batch / step,
        "peak_above_weights_gib": added,
    }


def compiled_blocks(
    model: object, layer: int, position: str, sizes: dict[str, int]
) -> dict[str, object]:
    """An experiment, not an engine option: das_assert's fit with the state-free parts of the
    decoder blocks after the site (each block's two RMSNorms and its MLP) compiled by
    ``torch.compile`` (dynamic shapes), against the same fit uncompiled, in one process.

    A step bound by its host pays per op dispatched; compiled, a norm is one fused kernel where
    it was eight ops, an MLP's SiLU and product one, forward and backward. Whole blocks are not
    compiled: their attention updates das_assert's caches, whose Python state dynamo guards
    on, so they recompiled in the middle of a fit. The compile is paid by a warm-up fit on the
    same pairs (its seconds reported), recompiles during the measured fit are counted, and the
    modules are restored.

    On 2 CPU cores at the deep shape (2026-12-04) it cut the aten ops a step dispatches from
    4,005 to 3,097 but ran slower, 0.139 against 0.123 s a step: there an op costs little to
    dispatch and a compiled call's wrappers cost more. On a GPU each op is also a kernel launch;
    whether the trade pays there is what this stage measures."""
    import torch._dynamo

    from das_assert.sites import decoder_blocks

    parts = [
        part
        for block in decoder_blocks(model.model)[layer + 1 :]
        for part in (block.input_layernorm, block.post_attention_layernorm, block.mlp)
    ]
    eager = das_assert_alone(model, layer, position, sizes, 1024)
    counted = torch._dynamo.utils.counters["stats"]
    before = counted["unique_graphs"]
    limit = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = max(limit, 64)
    try:
        for part in parts:
            part.compile(dynamic=True)
        started = time.perf_counter()
        das_assert_alone(model, layer, position, sizes, 1024)  # the same shapes as measured
        warm_up = time.perf_counter() - started
        graphs = counted["unique_graphs"] - before
        compiled = das_assert_alone(model, layer, position, sizes, 1024)
        graphs_later = counted["unique_graphs"] - before - graphs
    finally:
        for part in parts:
            part._compiled_call_impl = None
        torch._dynamo.config.cache_size_limit = limit
    return {
        "modules_compiled": len(parts),
        "eager": eager,
        "compiled": compiled,
        "warm_up_fit_with_compile_seconds": round(warm_up, 1),
        "graphs_compiled_in_warm_up": graphs,
        "graphs_compiled_in_measured_fit": graphs_later,
        "step_speedup": eager["seconds_per_step"] / compiled["seconds_per_step"],
    }


def prefix_windows(
    model: object,
    layer: int,
    position: str,
    sizes: dict[str, int],
    counts: tuple[int, ...] = (1, 2, 4),
) -> dict[str, object]:
    """das_assert's fit at the benchmark's site with its prefix passes running each of
    ``counts`` training batches at once, where the whole fit's prefix store does not fit its
    1 GiB (at 7B's shape, 640 pairs: windows): seconds per step, peak memory above the weights,
    and how many window passes ran (none at one batch: each step runs its own prefix). The
    engine picks the count (``prefix_batches``: two at 7B's shape), bounding a window by one
    step's prefix cache. A larger window dispatches fewer ops a step (on 2 CPU cores at the
    deep shape, four batches about 500 fewer than two) and holds more prefixes at once;
    whether a GPU step, bound by its host, gains what the memory costs is what this stage
    measures. Every count is warmed up first."""
    from unittest import mock

    from das_assert import fit as fit_module
    from das_assert.prefix_store import PrefixStore

    build = PrefixStore.build.__func__
    windows = []

    def counted_build(cls: type, *args: object, **kwargs: object) -> object:
        if kwargs.get("rows") is not None:
            windows.append(len(kwargs["rows"]))
        return build(cls, *args, **kwargs)

    def picking(count: int) -> object:
        return mock.patch.object(fit_module, "prefix_batches", return_value=count)

    warm = {**sizes, "n_train": 2 * max(counts) * sizes["batch"]}
    for count in counts:
        with picking(count):
            das_assert_alone(model, layer, position, warm, 1024)
    rows = []
    with mock.patch.object(PrefixStore, "build", classmethod(counted_build)):
        for count in counts:
            windows.clear()
            with picking(count):
                fit = das_assert_alone(model, layer, position, sizes, 1024)
            rows.append({"batches_per_prefix_pass": count, "window_passes": len(windows), **fit})
    first = rows[0]["seconds_per_step"]
    for row in rows:
        row["step_time_vs_first"] = round(row["seconds_per_step"] / first, 3)
    return {"n_train": sizes["n_train"], "batch": sizes["batch"], "rows": rows}


def batch_scaling(
    model: object, layer: int, position: str, sizes: dict[str, int], factors: tuple[int, ...]
) -> dict[str, object]:
    """das_assert's fit on the same pairs at the benchmark's batch times each of ``factors``:
    seconds per step and examples/s. A step bound by its host (the ops it dispatches) costs
    about the same at every batch, so examples/s grows with the batch; one bound by the device
    costs in proportion to the batch."""
    batch = sizes["batch"]
    # warmed up at every batch first: a process's first fit pays the device's one-time costs
    for factor in factors:
        warm = {**sizes, "batch": batch * factor, "n_train": 2 * batch * factor}
        das_assert_alone(model, layer, position, warm, 1024)
    rows = []
    for factor in factors:
        fit = das_assert_alone(model, layer, position, {**sizes, "batch": batch * factor}, 1024)
        rows.append({"batch": batch * factor, **fit})
    first = rows[0]["seconds_per_step"]
    for row in rows:
        row["step_time_vs_first"] = round(row["seconds_per_step"] / first, 3)
    return {"n_train": sizes["n_train"], "epochs": sizes["epochs"], "rows": rows}


def sync_counts(model: object, layer: int, position: str, batch: int, *, steps: int = 8) -> dict:
    """How often a das_assert training step makes the host wait for the device, and where:
    CUDA's sync debug mode warns at each synchronizing call (a copy from pageable host memory,
    reading a value), over a short fit after a warm-up. Needs CUDA."""
    if not str(model.input_device).startswith("cuda"):
        return {"skipped": "counting synchronizations needs CUDA"}
    from das_assert.fit import fit_alignment

    resolved, train, config = _short_fit(model, layer, position, batch, steps)
    fit_alignment(model.model, resolved, train, config)  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit_alignment(model.model, resolved, train, config)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return where_synchronized(caught, steps)


def where_synchronized(caught: list[warnings.WarningMessage], steps: int) -> dict:
    """Synchronizations per step and the code lines that caused them, most frequent first, from
    the warnings of CUDA's sync debug mode (the mode's own notice about itself left out)."""
    lines = Counter(
        f"{warning.filename}:{warning.lineno}"
        for warning in caught
        if "debug mode" not in str(warning.message)
    )
    return {
        "steps": steps,
        "per_step": round(lines.total() / steps, 2),
        "lines": dict(lines.most_common()),
    }


def _short_fit(
    model: object, layer: int, position: str, batch: int, steps: int
) -> tuple[object, object, object]:
    """``(resolved site, encoded pairs, config)`` of a 1-epoch fit of ``steps`` batches at
    (layer, position)."""
    from das_assert.data import encode
    from das_assert.fit import FitConfig
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    site = Site(layer, position)
    pairs = prompt_pairs("left_boundary", steps * batch, seed=0)
    config = FitConfig(epochs=1, batch_size=batch, seed=0)
    return site.resolve(model.model), encode(model, pairs, site.parsed_position), config


def profile_fit(
    model: object,
    layer: int,
    position: str,
    batch: int,
    *,
    steps: int = 6,
    rows: int = 25,
    one_pass: bool = False,
) -> dict[str, object]:
    """Where a das_assert step's time goes: torch's profiler over a short fit (after one
    unprofiled fit as warm-up), the top ops by self time on the device (CPU time on a CPU), and
    the totals of the step's phases, marked by wrapping the engine's functions here (the engine
    itself carries no profiling code). ``one_pass``: the fit runs each step over the whole
    prompt (``prefix_cache=False``)."""
    from contextlib import ExitStack
    from unittest import mock

    from das_assert import kv_cache, runner
    from das_assert.featurizers import Interchange
    from das_assert.fit import fit_alignment

    resolved, train, config = _short_fit(model, layer, position, batch, steps)
    config = replace(config, prefix_cache=not one_pass)
    cuda = str(model.input_device).startswith("cuda")

    def marked(name: str, function: object) -> object:
        def wrapper(*args: object, **kwargs: object) -> object:
            with torch.profiler.record_function(name):
                return function(*args, **kwargs)

        return wrapper

    # A function imported by runner is patched where each module looks it up. Prefix passes:
    # a step's own prefix (``prefix_cache``), and any pass that keeps the skipped blocks' outputs
    # (``filled_with_tails``: a step's prefix with tails, a prefix store or its window); none of
    # these calls another, so no time is counted twice.
    phases = [("phase: prefix pass", owner, "prefix_cache") for owner in (kv_cache, runner)]
    phases.append(("phase: prefix pass", kv_cache, "filled_with_tails"))
    phases += [("phase: model pass", owner, "run_model") for owner in (kv_cache, runner)]
    phases.append(("phase: interchange", Interchange, "forward"))
    fit_alignment(model.model, resolved, train, config)  # warm-up
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with ExitStack() as stack:
        for name, owner, attribute in phases:
            original = getattr(owner, attribute)
            stack.enter_context(mock.patch.object(owner, attribute, marked(name, original)))
        with torch.profiler.profile(activities=activities) as profiler:
            fit_alignment(model.model, resolved, train, config)
            if cuda:
                torch.cuda.synchronize(model.input_device)  # the model's GPU, not the current
    averages = profiler.key_averages()
    kind = "device" if cuda else "cpu"
    dispatched = _dispatched_ops(profiler)

    def per_step_ms(event: object, field: str) -> float:
        return round(getattr(event, field, 0.0) / 1e3 / steps, 3)

    ops = [e for e in averages if not e.key.startswith("phase: ")]
    top = sorted(ops, key=lambda e: -getattr(e, f"self_{kind}_time_total", 0.0))[:rows]
    return {
        "steps": steps,
        "time": kind,
        "aten_ops_per_step": round(dispatched / steps),
        "device_busy_ms_per_step": device_busy_ms(averages, steps) if cuda else None,
        "top_ops_self_ms_per_step": {e.key: per_step_ms(e, f"self_{kind}_time_total") for e in top},
        "phases_ms_per_step": {
            e.key: per_step_ms(e, f"{kind}_time_total")
            for e in averages
            if e.key.startswith("phase: ")
        },
    }


def device_busy_ms(averages: list, steps: int) -> float:
    """Milliseconds per step that the device ran kernels and copies: the device's own events
    only. An aten op's self device time is the time of the kernels it launched, which are also
    events of their own, so a sum over every event counted each such kernel twice."""
    from torch.autograd import DeviceType

    busy = sum(e.self_device_time_total for e in averages if e.device_type != DeviceType.CPU)
    return round(busy / 1e3 / steps, 3)


def _dispatched_ops(profiler: object) -> int:
    """aten ops called from outside another aten op: each is one trip through the dispatcher
    from Python or autograd, a fixed host cost per op that a GPU step pays whatever its size."""
    return sum(
        1
        for e in profiler.events()
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


def dispatch_counts(
    model: object, layer: int, position: str, batch: int, *, steps: int = 6
) -> dict[str, float]:
    """aten ops dispatched per training step by das_assert and by pyvene at the same site, from
    short fits after a warm-up (das_assert's one-time passes included, as in its step time).
    Where a GPU step is bound by the host, not the device, this count sets its time."""
    import bench_pyvene

    from das_assert.fit import fit_alignment

    resolved, train, config = _short_fit(model, layer, position, batch, steps)
    runs: dict[str, object] = {
        name: functools.partial(fit_alignment, model.model, resolved, train, mode)
        for name, mode in bench_pyvene._das_modes(config)
    }
    runs["pyvene"] = lambda: bench_pyvene._pyvene_fit(model, layer, train, config, steps)
    counts = {}
    for name, run in runs.items():
        run()  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            run()
        counts[f"{name}_aten_ops_per_step"] = round(_dispatched_ops(profiler) / steps)
    pyvene = counts["pyvene_aten_ops_per_step"]
    counts["ratio"] = round(pyvene / counts["das_assert_aten_ops_per_step"], 3)
    counts["ratio_one_pass"] = round(pyvene / counts["das_assert_one_pass_aten_ops_per_step"], 3)
    return counts


def live_at_peak(trace: list[dict], *, top: int = 15) -> dict[str, object]:
    """What was allocated at the highest point of a CUDA allocator trace (the ``device_traces``
    entry of ``torch.cuda.memory._snapshot()``), grouped by where it was allocated: the first
    frame in das_assert, transformers or pyvene, else the innermost. Bytes in MiB, largest first.
    A pure function of the trace, so it is tested without a GPU."""
    live: dict[int, tuple[int, str]] = {}
    total = peak = 0
    at_peak: dict[int, tuple[int, str]] = {}
    for event in trace:
        action, address, size = event.get("action"), event.get("addr"), event.get("size", 0)
        if action == "alloc":
            live[address] = (size, _allocation_site(event.get("frames") or []))
            total += size
            if total > peak:
                peak, at_peak = total, dict(live)
        elif action in ("free_requested", "free_completed"):  # whichever comes first
            freed = live.pop(address, None)
            total -= freed[0] if freed else 0
    grouped: dict[str, int] = {}
    for size, where in at_peak.values():
        grouped[where] = grouped.get(where, 0) + size
    largest = sorted(grouped.items(), key=lambda item: -item[1])[:top]
    return {
        "traced_peak_mib": round(peak / 2**20, 1),
        "live_at_peak_mib": {where: round(size / 2**20, 1) for where, size in largest},
    }


def _allocation_site(frames: list[dict]) -> str:
    """``file:line (function)`` of the first frame in this project's code or the libraries it
    drives, else of the innermost frame."""

    def named(frame: dict) -> str:
        return f"{frame.get('filename', '?')}:{frame.get('line', '?')} ({frame.get('name', '?')})"

    for frame in frames:
        if any(
            part in frame.get("filename", "") for part in ("das_assert", "transformers/", "pyvene")
        ):
            return named(frame)
    return named(frames[0]) if frames else "<no Python frame>"


def memory_peak(
    model: object, layer: int, position: str, sizes: dict[str, int], *, warm: bool = False
) -> dict:
    """das_assert's fit at the benchmark's site with the CUDA allocator's history recorded: the
    peak above what was allocated before, and what was live at the highest point, by where it was
    allocated (``live_at_peak``). Needs CUDA.

    ``warm``: first the comparison's two warm-ups, das_assert's and pyvene's fit of two batches
    (``bench_pyvene.compare``). On the H200 (2026-12-04) the comparison's default fit peaked at
    2.38 GiB above what it started from, a fresh process's at 1.61 GiB: the history then shows
    what the extra is."""
    if warm:  # on a CPU too, so that a toy-shape run checks them
        _comparison_warm_ups(model, layer, position, sizes["batch"])
    if not str(model.input_device).startswith("cuda"):
        return {"skipped": "the allocator's history needs CUDA"}
    from torch.cuda import memory

    memory._record_memory_history(max_entries=2_000_000, stacks="python")
    try:
        fit = das_assert_alone(model, layer, position, sizes, 1024)
        snapshot = memory._snapshot()
    finally:
        memory._record_memory_history(enabled=None)
    device = torch.device(model.input_device).index or 0
    return {"fit": fit, **live_at_peak(snapshot["device_traces"][device])}


def _comparison_warm_ups(model: object, layer: int, position: str, batch: int) -> None:
    """What ``bench_pyvene.compare`` runs before its timed fits: das_assert's and pyvene's fit of
    the same two batches."""
    import bench_pyvene

    from das_assert.data import encode
    from das_assert.fit import FitConfig, fit_alignment
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    site = Site(layer, position)
    warm = encode(model, prompt_pairs("left_boundary", 2 * batch, seed=2), site.parsed_position)
    config = FitConfig(epochs=1, batch_size=batch, seed=0)
    fit_alignment(model.model, site.resolve(model.model), warm, config)
    bench_pyvene._pyvene_fit(model, layer, warm, config, 2)


def memory_peak_warm(model: object, layer: int, position: str, sizes: dict[str, int]) -> dict:
    """``memory_peak`` after the comparison's warm-ups, where the stage runs on a GPU."""
    return memory_peak(model, layer, position, sizes, warm=True)


def memory_phases(model: object, layer: int, position: str, batch: int) -> dict[str, float | None]:
    """Peak GPU memory (GiB) that each part of a das_assert fit adds to what is allocated: the
    source pass (at its batch of 64 and at the fit's), the prefix store's first batch, one
    training step's model part (a scalar mix, so no rotation), and a whole short fit."""
    from das_assert.data import encode
    from das_assert.fit import FitConfig, fit_alignment
    from das_assert.prefix_store import PrefixStore
    from das_assert.runner import answer_logits, source_vectors
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    device = str(model.input_device)
    site = Site(layer, position)
    resolved = site.resolve(model.model)
    train = encode(model, prompt_pairs("left_boundary", 4 * batch, seed=0), site.parsed_position)
    index = torch.arange(batch)

    def model_step() -> None:
        scale = torch.ones((), device=device, requires_grad=True)
        logits = answer_logits(model.model, resolved, train, index, lambda h: h * scale)
        logits.logsumexp(dim=-1).sum().backward()

    phases = {
        "sources_batch_64": lambda: source_vectors(model.model, resolved, train, batch_size=64),
        "sources_batch_fit": lambda: source_vectors(model.model, resolved, train, batch_size=batch),
        "prefix_store_attempt": lambda: PrefixStore.build(
            model.model, train, batch_size=batch, max_bytes=2**30
        ),
        "model_step": model_step,
        "fit_4_steps": lambda: fit_alignment(
            model.model, resolved, train, FitConfig(epochs=1, batch_size=batch)
        ),
    }
    return {name: _peak_gib_of(phase, device) for name, phase in phases.items()}


def fast_path_margin(model: object, layer: int, position: str) -> dict[str, float]:
    """The engine's check of its cached passes against plain ones (``engine_check``) at this
    shape and type, without its fallback: how far inside the tolerance a bf16 model on a GPU
    stays (on CPU at Llama-7B's depth, 0.019 against 0.18 in bf16)."""
    from das_assert.data import encode
    from das_assert.engine_check import CHECK_ROWS, cached_against_plain
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    site = Site(layer, position)
    pairs = prompt_pairs("left_boundary", CHECK_ROWS, seed=0)
    encoded = encode(model, pairs, site.parsed_position)
    difference, tolerance = cached_against_plain(model.model, site.resolve(model.model), encoded)
    return {"largest_difference": difference, "tolerance": tolerance}


def forward_cost(model: object, batch: int, *, repeats: int = 5) -> dict[str, float]:
    """Milliseconds of one no-grad forward of ``batch`` whole prompts (the floor pyvene's step
    pays twice, for base and source, before its backward)."""
    from das_assert.data import encode
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    position = Site(0, "last").parsed_position
    encoded = encode(model, prompt_pairs("left_boundary", batch, seed=2), position)
    ids, mask = encoded.base_batch(torch.arange(batch))
    device = model.input_device
    ids, mask = ids.to(device), mask.to(device)

    @torch.no_grad()
    def forward() -> None:
        model.model(input_ids=ids, attention_mask=mask)

    return {"forward_ms": _median_ms(forward, str(device), repeats), "tokens": ids.shape[1]}


def _median_ms(function: object, device: str, repeats: int) -> float:
    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)  # the model's GPU, not the current one

    for _ in range(2):
        function()
    synchronize()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--position", default="last-1")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument(
        "--stages",
        default="compare",
        help="comma-separated, in order: compare (the side-by-side step), fast_path (the engine's "
        "check of its cached passes against plain ones, its margin), rotation (the rotation "
        "alone), forward (one whole forward pass), memory (peak by phase), profile (where a "
        "step's time goes), dispatch (aten ops per step, both), memory_peak (what is live at a "
        "fit's peak; memory_peak_warm: after the comparison's warm-ups), syncs (where a step "
        "waits for the device), batch_scaling (das_assert at 1, 2 and 4 times the batch), "
        "windows (das_assert with prefix passes of 1, 2 and 4 batches), every_prefix_kept, "
        "cost_curve, grid (7 layers x 2 positions against pyvene), compiled (das_assert with "
        "the norms and MLPs after the site under torch.compile, an experiment); 'all' for every"
        " one. Default: compare",
    )
    parser.add_argument("--name", default="gpu_7b", help="the JSON file's name, without .json")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="start no stage but the first after this many seconds (the results so far are kept)",
    )
    args = parser.parse_args(argv)
    stages = STAGES if args.stages == "all" else args.stages.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)} or all")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(
            f"--device {args.device}: this torch has no CUDA device; use --device cpu with a "
            "small --shape"
        )
    from das_assert.report import installed_version

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model = build(args.shape, args.device, getattr(torch, args.dtype))
    result = {
        "shape": args.shape,
        "dtype": args.dtype,
        "build_seconds": round(time.perf_counter() - started, 1),
        "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
        "torch": torch.__version__,
        "transformers_version": installed_version("transformers"),
        "pyvene_version": installed_version("pyvene"),
        "date": time.strftime("%Y-%m-%d"),
    }
    result["complete"] = False  # in every write until the last: a run cut short says so
    _write(args.out / f"{args.name}.json", result)
    _run_stages(model, args, stages, result, started)
    result["complete"] = True
    _write(args.out / f"{args.name}.json", result)
    failed = [name for name in stages if "error" in (result.get(name) or {})]
    if "compare" in stages and "das_assert" not in result and "compare" not in failed:
        failed.insert(0, "compare")  # its numbers merge into the top level
    if failed:
        print(f"stages that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _print_compare(result: dict) -> None:
    import bench_pyvene

    print(bench_pyvene.table(result), flush=True)
    if result["gpu_memory"]:
        memory = result["gpu_memory"]
        print(
            f"peak GPU memory above the weights ({memory['weights_gib']:.2f} GiB): das_assert "
            f"{memory['das_assert_peak_gib'] - memory['weights_gib']:.2f} GiB, pyvene "
            f"{memory['pyvene_peak_gib'] - memory['weights_gib']:.2f} GiB, ratio "
            f"{memory['ratio_above_weights']:.2f}; in one pass "
            f"{memory['das_assert_one_pass_peak_gib'] - memory['weights_gib']:.2f} GiB, ratio "
            f"{memory['ratio_above_weights_one_pass']:.2f}",
            flush=True,
        )


STAGES = (
    "compare",
    "fast_path",
    "rotation",
    "forward",
    "memory",
    "profile",
    "dispatch",
    "memory_peak",
    "memory_peak_warm",
    "syncs",
    "batch_scaling",
    "windows",
    "every_prefix_kept",
    "cost_curve",
    "grid",
    "compiled",
)


def _run_stages(
    model: object, args: argparse.Namespace, names: list[str], result: dict, started: float
) -> None:
    """Run the stages in order, each but the first skipped once the budget is spent; a failing
    stage records its error and the next one still runs. The JSON is rewritten after each."""
    import bench_pyvene
    import cost_curve

    layers = model.config.num_hidden_layers
    middle = min(args.layer, layers - 1)
    sizes = bench_pyvene.data_sizes(args)
    # The paper's grid has 7 layers; pyvene runs 3 of them per position (its time for the other
    # cells is interpolated: see bench_pyvene.grid_on), which a lent GPU's minutes allow.
    grid_layers = sorted({round(i * (layers - 1) / 6) for i in range(7)})
    grid_sizes = {"n_train": min(args.n_train, 12 * args.batch), "epochs": 1, "batch": args.batch}
    every = {
        "compare": lambda: bench_pyvene.compare(model, args.layer, args.position, **sizes),
        "rotation": lambda: rotation_cost(model.config.hidden_size, args.batch, args.device),
        "forward": lambda: forward_cost(model, args.batch),
        "fast_path": lambda: fast_path_margin(model, args.layer, args.position),
        "memory": lambda: memory_phases(model, args.layer, args.position, args.batch),
        "profile": lambda: {
            **profile_fit(model, args.layer, args.position, args.batch),
            "one_pass": profile_fit(model, args.layer, args.position, args.batch, one_pass=True),
        },
        "dispatch": lambda: dispatch_counts(model, args.layer, args.position, args.batch),
        "memory_peak": lambda: memory_peak(model, args.layer, args.position, sizes),
        "memory_peak_warm": lambda: memory_peak_warm(model, args.layer, args.position, sizes),
        "syncs": lambda: sync_counts(model, args.layer, args.position, args.batch),
        "batch_scaling": lambda: batch_scaling(model, args.layer, args.position, sizes, (1, 2, 4)),
        "windows": lambda: prefix_windows(model, args.layer, args.position, sizes),
        "compiled": lambda: compiled_blocks(model, args.layer, args.position, sizes),
        "every_prefix_kept": lambda: das_assert_alone(
            model, args.layer, args.position, sizes, 1 << 20
        ),
        "cost_curve": lambda: [
            cost_curve.cell(model, *c, n=4 * args.batch, batch=args.batch, repeats=1)
            for c in cost_curve.cells_for(middle, sorted({0, 3 * layers // 4}))
        ],
        "grid": lambda: bench_pyvene.grid_on(
            model,
            grid_layers,
            ["after:amount", "last"],
            **grid_sizes,
            n_test=args.n_test,
            pyvene_layers=[grid_layers[0], grid_layers[len(grid_layers) // 2], grid_layers[-1]],
        ),
    }
    stages = {name: every[name] for name in names}
    for position, (name, stage) in enumerate(stages.items()):
        if position and time.perf_counter() - started > args.budget_s:
            result[name] = {"skipped": f"over the {args.budget_s:.0f} s budget"}
            continue
        stage_started = time.perf_counter()
        try:
            outcome = stage()
        except Exception as exc:  # one stage's failure must not lose the others' numbers
            outcome = {"error": f"{type(exc).__name__}: {exc}"}
        if name == "compare" and "error" not in outcome:
            result.update(outcome)
            _print_compare(result)
        else:
            result[name] = outcome
            print(f"{name} ({time.perf_counter() - stage_started:.0f} s):", outcome, flush=True)
        _write(args.out / f"{args.name}.json", result)
    if isinstance(result.get("grid"), dict) and "cells" in result["grid"]:
        print(bench_pyvene.grid_table(result["grid"]))


def _write(path: Path, result: dict) -> None:
    """Write the JSON whole or not at all (a killed run keeps the last complete one)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1, default=str) + "\n")
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
