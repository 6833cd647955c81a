"""Reproducibility and artifact safety: fixed seeds, atomic files, a self-healing cache, parallel
writers, hooks that never outlive a failing fit, and no code execution when loading anything."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import das_assert
from das_assert import store
from das_assert.alignment_file import load_alignment, save_alignment
from das_assert.alignment_result import AlignmentResult
from das_assert.cache import AlignmentCache, CacheWarning, cache_key
from das_assert.data import encode
from das_assert.errors import ConfigError
from das_assert.experiment import Experiment, run_experiment
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, fit_alignment
from das_assert.models import LoadedModel
from das_assert.positions import parse_position
from das_assert.sites import Site
from das_assert.store import atomic_write_bytes, atomic_write_json
from das_assert.tasks.price_tagging import prompt_pairs

PACKAGE_DIR = Path(das_assert.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
CONFIG = FitConfig(epochs=1, batch_size=8)
SEED = 7


def small_experiment() -> Experiment:
    return Experiment(
        hypothesis="left_boundary",
        site=Site(1),
        n_train=32,
        n_test=32,
        seed=SEED,
        min_task_accuracy=0.0,
    )


def rotation_of(result: AlignmentResult) -> torch.Tensor:
    rotation = result.fitted.interchange.rotation_matrix()
    assert rotation is not None
    return rotation.detach().cpu().clone()


# -- (1) a fixed seed gives the same result --------------------------------------------------------


def test_a_fixed_seed_gives_identical_iia_predictions_and_rotation(tiny_llama: LoadedModel) -> None:
    first = run_experiment(tiny_llama, small_experiment(), CONFIG)
    second = run_experiment(tiny_llama, small_experiment(), CONFIG)

    assert first.iia == second.iia
    assert first.evaluation.successes == second.evaluation.successes
    assert first.evaluation.predicted.tolist() == second.evaluation.predicted.tolist()
    assert first.evaluation.random_predicted.tolist() == second.evaluation.random_predicted.tolist()
    assert torch.equal(rotation_of(first), rotation_of(second))
    assert first.fitted.boundary_dims == second.fitted.boundary_dims

    record, again = first.to_dict(), second.to_dict()
    assert record["seed"] == SEED
    assert [p["predicted"] for p in record["pairs"]] == [p["predicted"] for p in again["pairs"]]
    assert record["iia_ci"] == again["iia_ci"]
    assert record["baselines"] == again["baselines"]


def test_a_fit_leaves_torchs_global_generator_where_the_caller_had_it(
    tiny_llama: LoadedModel,
) -> None:
    # Every fit seeded torch's global generator and left it there: a notebook's random ablation
    # between fits drew the same "random" units each round, and another after a cache hit.
    site = Site(1).resolve(tiny_llama.model)
    train = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    torch.manual_seed(123)
    expected = [torch.randperm(64)[:5].tolist() for _ in range(3)]
    torch.manual_seed(123)
    drawn, rotations = [], []
    for _ in range(3):
        drawn.append(torch.randperm(64)[:5].tolist())
        fitted = fit_alignment(tiny_llama.model, site, train, FitConfig(epochs=1, batch_size=8))
        rotations.append(fitted.interchange.rotate.weight.detach().clone())
    assert drawn == expected
    assert all(torch.equal(rotations[0], other) for other in rotations[1:])  # seeded alike


def test_a_fit_on_the_cpu_seeds_no_gpus_generator(
    tiny_llama: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.manual_seed seeds every CUDA (and MPS) device's generator too, and the fit restores
    # only those of the devices its model is on: a model on the CPU left each GPU's generator
    # at the fit's seed after every fit
    seeded: list[str] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append("cuda"))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda seed: seeded.append("mps"))
    site = Site(1).resolve(tiny_llama.model)
    train = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    fit_alignment(tiny_llama.model, site, train, FitConfig(epochs=1, batch_size=8))
    assert seeded == []


def test_the_records_pairs_recompute_every_number_the_verdict_rests_on(
    tiny_llama: LoadedModel,
) -> None:
    # The pairs held only the intervened prediction: IIA could be checked, but not the no-op,
    # the random rotation, the task accuracy nor the leads whose intervals the verdict judges.
    from das_assert.metrics import Gap, paired_gap, verdict, wilson_interval

    result = run_experiment(tiny_llama, replace(small_experiment(), threshold=0.5), CONFIG)
    record = json.loads(json.dumps(result.to_dict()))
    pairs = record["pairs"]
    n = len(pairs)
    right = [p["predicted"] == p["expected"] for p in pairs]
    assert [p["correct"] for p in pairs] == right
    assert sum(right) == record["iia_successes"]
    assert record["iia_ci"] == pytest.approx(wilson_interval(sum(right), n), abs=1e-6)
    runs = {
        "noop": [p["base_predicted"] == p["expected"] for p in pairs],
        "random_rotation": [p["random_predicted"] == p["expected"] for p in pairs],
    }
    for name, theirs in runs.items():
        assert record["baselines"][name] == pytest.approx(sum(theirs) / n, abs=1e-6)
        mine_only = sum(a and not b for a, b in zip(right, theirs, strict=True))
        theirs_only = sum(b and not a for a, b in zip(right, theirs, strict=True))
        both = sum(a and b for a, b in zip(right, theirs, strict=True))
        gap = paired_gap(only_iia=mine_only, only_baseline=theirs_only, both=both, n=n)
        lead = record["baseline_leads"][name]
        assert lead["lead"] == pytest.approx(gap.estimate, abs=1e-6)
        assert lead["ci"] == pytest.approx([gap.low, gap.high], abs=1e-6)
    task = sum(p["base_predicted"] == p["base_expected"] for p in pairs) / n
    assert record["task_accuracy"] == pytest.approx(task, abs=1e-6)
    labels = [p["expected"] for p in pairs]
    majority = max(labels.count(label) for label in set(labels)) / n
    assert record["baselines"]["majority"] == pytest.approx(majority, abs=1e-6)
    # The verdict, and what decided it, follow from the record's own numbers.
    gaps = {
        name: Gap(
            baseline=lead["baseline"], estimate=lead["lead"], low=lead["ci"][0], high=lead["ci"][1]
        )
        for name, lead in record["baseline_leads"].items()
    }
    judged = verdict(
        iia_ci=tuple(record["iia_ci"]),
        iia=record["iia"],
        threshold=record["threshold"],
        gaps=gaps,
        margin=record["margin"],
        collapsed=record["collapsed"],
        changed=(record["iia_on_changed_labels"]["n"], n),
    )
    assert [record["verdict"], record["verdict_decided_by"]] == [
        judged.outcome,
        list(judged.decided_by),
    ]


# -- (2) atomic writes ---------------------------------------------------------------------------

Writer = Callable[[Path], None]


def write_bytes(path: Path) -> None:
    atomic_write_bytes(path, b"new content")


def write_json(path: Path) -> None:
    atomic_write_json(path, {"schema_version": 1, "entries": {}}, checksum=True)


def write_alignment(path: Path) -> None:
    save_alignment(path, Interchange.boundless(8), {"site": "block_output[layer=1, pos=last]"})


WRITERS = [
    pytest.param(write_bytes, id="atomic_write_bytes"),
    pytest.param(write_json, id="atomic_write_json"),
    pytest.param(write_alignment, id="save_alignment"),
]


@pytest.mark.parametrize("writer", WRITERS)
def test_an_atomic_write_leaves_no_temporary_file(writer: Writer, tmp_path: Path) -> None:
    target = tmp_path / "out" / "artifact"
    writer(target)
    writer(target)  # and again over an existing file
    assert target.stat().st_size > 0
    assert [p.name for p in target.parent.iterdir()] == ["artifact"]


@pytest.mark.parametrize("writer", WRITERS)
def test_an_atomic_write_stopped_before_its_file_object_closes_its_descriptor(
    writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Ctrl-C between mkstemp and fdopen left the temporary file's descriptor open (a review
    # injected the fault: one descriptor more after every failed cache write)
    import os

    def interrupted(*_args: object, **_kwargs: object) -> object:
        raise KeyboardInterrupt

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("counts open descriptors in /proc/self/fd (Linux)")
    open_before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer(tmp_path / "artifact")
    monkeypatch.undo()
    assert set(os.listdir("/proc/self/fd")) <= open_before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_an_atomic_write_gets_the_mode_a_plain_new_file_would(
    writer: Writer, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    target = tmp_path / "artifact"
    writer(target)
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's 0600


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()], ids=repr)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_failed_atomic_write_keeps_the_old_content(
    writer: Writer, failure: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "artifact"
    target.write_bytes(b"old content")

    def replace(*args: Any, **kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(store.os, "replace", replace)
    with pytest.raises(type(failure)):
        writer(target)
    monkeypatch.undo()

    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def test_the_cache_key_tells_dtypes_and_kinds_of_device_apart() -> None:
    # A bfloat16 run once reused the float32 run's alignment: another fit than a cold run gives.
    def key(dtype: str, device: str) -> str:
        model = SimpleNamespace(fingerprint={"weights": "w"}, dtype=dtype, device=device)
        return cache_key(model, Experiment(hypothesis="left_boundary", site=Site(0)), FitConfig())

    assert key("float32", "cpu") != key("bfloat16", "cpu")
    assert key("float32", "cpu") != key("float32", "cuda:0")
    assert key("float32", "cuda:0") == key("float32", "cuda:1")  # xdist workers share entries


def test_the_cache_key_tells_kinds_of_gpu_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # A cache that machines share served an A100's fit to an H100, which rounds otherwise; and
    # a device map's placement of the layers follows the GPUs it sees.
    import torch

    names = {0: "GPU A", 1: "GPU A", 2: "GPU B"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: names[index])

    def key(device: str) -> str:
        model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device=device)
        return cache_key(model, Experiment(hypothesis="left_boundary", site=Site(0)), FitConfig())

    assert key("cuda:0") == key("cuda:1")  # one kind: xdist workers share entries
    assert key("cuda:0") != key("cuda:2")
    # a map as a dict names its devices: the CPU's alone keeps the CPU's key
    assert key("device_map={'': 2}") != key("device_map={'': 1}")
    cpu_map = key("device_map={'': 'cpu'}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert key("device_map={'': 'cpu'}") == cpu_map
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = key("device_map=auto")
    names[3] = "GPU B"  # one more GPU to spread the layers over
    assert key("device_map=auto") != seen


def test_the_cache_key_tells_cpu_thread_counts_apart() -> None:
    # An xdist worker's one-thread fit was served to a serial two-thread run, whose own fit
    # rounds otherwise (Right Boundary 0.816 against 0.811): the cache changed the numbers.
    import torch

    def key(device: str, threads: int) -> str:
        model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device=device)
        torch.set_num_threads(threads)
        return cache_key(model, Experiment(hypothesis="left_boundary", site=Site(0)), FitConfig())

    before = torch.get_num_threads()
    try:
        assert key("cpu", 1) != key("cpu", 2)
        assert key("cuda:0", 1) == key("cuda:0", 2)  # a GPU fit does not run on those threads
    finally:
        torch.set_num_threads(before)


def test_the_cache_key_tells_kinds_of_cpu_and_torch_versions_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cache that machines share served an AVX2 machine's fit to an AVX512 one, whose own fit
    # rounds otherwise (a limit 0.043 apart between two kinds of CPU).
    import torch

    def key(device: str) -> str:
        model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device=device)
        return cache_key(model, Experiment(hypothesis="left_boundary", site=Site(0)), FitConfig())

    here = key("cpu"), key("cuda:0")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "ANOTHER")
    assert key("cpu") != here[0]
    assert key("cuda:0") == here[1]  # a GPU fit does not run on the CPU's kernels
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert key("cuda:0") != here[1]


def test_the_cache_key_tells_whole_prompt_passes_apart() -> None:
    # prefix_cache=False rounds the fit otherwise (another rotation, bit for bit); the cache
    # served it the prefix-cached fit's entry. The other speed settings do not count.
    model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device="cpu")
    experiment = Experiment(hypothesis="left_boundary", site=Site(0))
    key = cache_key(model, experiment, FitConfig())
    assert cache_key(model, experiment, FitConfig(prefix_cache=False)) != key
    assert cache_key(model, experiment, FitConfig(progress=True, prefix_store_mib=64)) == key


def test_the_cache_key_tells_brackets_and_prompt_formats_apart() -> None:
    # Without the data recipe in the key, a claim on other prompts (another bracket, prefix,
    # answer words, number style, ...) was served the alignment fitted on the first prompts.
    model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device="cpu")
    experiment = Experiment(hypothesis="left_boundary", site=Site(0))
    key = cache_key(model, experiment, FitConfig())
    assert cache_key(model, replace(experiment, bracket=(130, 855)), FitConfig()) != key
    formats = {
        "prefix": {"prefix": "Some context."},
        "suffix": {"suffix": "More context."},
        "answers": {"answers": ("True", "False")},
        "numbers": {"numbers": "dollar"},
        "instruction": {"instruction": experiment.fmt.instruction + " Answer now."},
        "template": {"template": "Q: {instruction} {amount}\nA:"},
    }
    for field, change in formats.items():
        other = replace(experiment, fmt=experiment.fmt.with_(**change))
        assert cache_key(model, other, FitConfig()) != key, field


def test_the_cache_key_moves_with_the_fit_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    # __version__ moves only on releases: a fit changed between commits was served from a cache
    # entry of the code before, unless the change happened to touch a key field
    import das_assert.cache

    model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device="cuda:0")
    experiment = Experiment(hypothesis="left_boundary", site=Site(0))
    before = cache_key(model, experiment, FitConfig())
    monkeypatch.setattr(das_assert.cache, "FIT_REVISION", das_assert.cache.FIT_REVISION + 1)
    assert cache_key(model, experiment, FitConfig()) != before


# -- (3) the cache never uses a corrupted entry ---------------------------------------------------


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])


def flip_a_tensor_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[8 + int.from_bytes(raw[:8], "little") + 3] ^= 0xFF
    path.write_bytes(bytes(raw))


def overwrite_with_garbage(path: Path) -> None:
    path.write_bytes(b"\x00" * 7)


@pytest.mark.parametrize("corrupt", [truncate, flip_a_tensor_byte, overwrite_with_garbage])
def test_a_corrupted_cache_entry_is_reported_and_ignored(
    corrupt: Callable[[Path], None], tmp_path: Path
) -> None:
    cache = AlignmentCache(tmp_path)
    cache.put("key", Interchange.boundless(16), {"site": "block_output[layer=1, pos=last]"})
    assert cache.get("key", 16) is not None
    corrupt(cache.path("key"))
    with pytest.warns(CacheWarning, match="ignoring a bad cache entry and recomputing"):
        assert cache.get("key", 16) is None
    assert not cache.path("key").exists()  # removed first: a rerun recomputes it


def test_a_bad_cache_entry_is_removed_even_where_warnings_are_errors(tmp_path: Path) -> None:
    import warnings

    cache = AlignmentCache(tmp_path)
    cache.put("key", Interchange.boundless(16), {"site": "block_output[layer=1, pos=last]"})
    truncate(cache.path("key"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as `-W error` or a filterwarnings = ["error"] does
        with pytest.raises(CacheWarning):
            cache.get("key", 16)
    assert not cache.path("key").exists()
    assert cache.get("key", 16) is None  # the next run finds nothing, and recomputes


def test_a_truncated_cache_entry_is_recomputed_and_rewritten(
    tiny_llama: LoadedModel, tmp_path: Path
) -> None:
    cache = AlignmentCache(tmp_path / "cache")
    first = run_experiment(tiny_llama, small_experiment(), CONFIG, cache=cache)
    assert not first.fitted.from_cache
    (entry,) = (tmp_path / "cache").glob("*.safetensors")

    truncate(entry)
    with pytest.warns(CacheWarning, match="ignoring a bad cache entry"):
        second = run_experiment(tiny_llama, small_experiment(), CONFIG, cache=cache)
    assert not second.fitted.from_cache  # recomputed, not used
    assert second.iia == first.iia
    load_alignment(entry, hidden_size=tiny_llama.config.hidden_size)  # rewritten, readable

    third = run_experiment(tiny_llama, small_experiment(), CONFIG, cache=cache)
    assert third.fitted.from_cache
    assert third.iia == first.iia


# -- (4) parallel writers ------------------------------------------------------------------------

KEYS = ("k0", "k1", "k2")
ROUNDS = 12
N_WRITERS = 4
WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import torch

    from das_assert.cache import AlignmentCache
    from das_assert.featurizers import Interchange
    from das_assert.alignment_file import save_alignment

    directory, writer, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    keys = sys.argv[4].split(",")
    torch.manual_seed(writer)
    interchange = Interchange.boundless(64)
    cache = AlignmentCache(directory / "cache")
    (directory / f"ready-{writer}").touch()
    deadline = time.monotonic() + 300
    while not (directory / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.005)
    for round_ in range(rounds):
        for key in keys:
            manifest = {"writer": writer, "round": round_}
            cache.put(key, interchange, manifest)
            save_alignment(directory / "direct" / f"{key}.safetensors", interchange, manifest)
    """
)


def expected_rotation(writer: int) -> torch.Tensor:
    torch.manual_seed(writer)
    rotation = Interchange.boundless(64).rotation_matrix()
    assert rotation is not None
    return rotation.detach()


def test_parallel_writers_leave_every_file_whole(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER_SCRIPT,
                str(tmp_path),
                str(w),
                str(ROUNDS),
                ",".join(KEYS),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(N_WRITERS)
    ]
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("ready-*"))) < N_WRITERS:
            failed = [p for p in processes if p.poll() not in (None, 0)]
            assert not failed, failed[0].communicate()[1].decode()
            assert time.monotonic() < deadline, "the writers did not start"
            time.sleep(0.05)
        (tmp_path / "go").touch()  # all four start writing together
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr.decode()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    files = sorted((tmp_path / "cache").glob("*.safetensors"))
    files += sorted((tmp_path / "direct").glob("*.safetensors"))
    assert [f.stem for f in files] == [*KEYS, *KEYS]
    for file in files:
        interchange, manifest = load_alignment(file, hidden_size=64)  # whole and checksummed
        assert manifest["writer"] in range(N_WRITERS)
        assert manifest["round"] == ROUNDS - 1  # the last write of some writer: nothing lost
        rotation = interchange.rotation_matrix()
        assert rotation is not None
        assert torch.allclose(rotation, expected_rotation(manifest["writer"]), atol=1e-6)
    assert not list(tmp_path.rglob("*.tmp"))


# -- (5) hooks never outlive a failing fit -----------------------------------------------------


class MidFitFailure(Exception):
    """Raised by a patched intervention on its second call, i.e. during the second step."""


def registered_hooks(model: torch.nn.Module) -> dict[str, int]:
    found = {}
    for name, module in model.named_modules():
        count = len(module._forward_hooks) + len(module._forward_pre_hooks)
        count += len(module._forward_hooks_with_kwargs) + len(module._forward_pre_hooks_with_kwargs)
        if count:
            found[name or "<root>"] = count
    return found


@pytest.mark.parametrize("component", ["block_output", "block_input"])
def test_hooks_are_removed_when_a_fit_raises_mid_way(
    component: str, tiny_llama: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_llama.model
    site = Site(1, component=component).resolve(model)
    train = encode(tiny_llama, prompt_pairs("left_boundary", 16, seed=0), parse_position("last"))
    ids, mask = train.base_batch(torch.arange(4))
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    # transformers' own output-capturing hooks stay once any test asked a shared model for
    # hidden states (test_hooks.py does): exactly those remain, whatever ran first
    hooks_before = registered_hooks(model)

    calls: list[int] = []
    original = Interchange.forward

    def forward(self: Interchange, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 1:
            raise MidFitFailure("the intervention failed in step 2")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Interchange, "forward", forward)
    with pytest.raises(MidFitFailure):
        fit_alignment(model, site, train, FitConfig(epochs=1, batch_size=8))
    monkeypatch.undo()

    assert len(calls) == 2  # one whole step ran, the second one failed inside the hook
    assert registered_hooks(model) == hooks_before
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(before, after)


# -- (6) loading never runs code; one module owns the hooks --------------------------------------

SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


def calls_of(text: str, function: str) -> list[str]:
    """The argument text of every call ``function(...)`` in ``text``."""
    found = []
    for match in re.finditer(re.escape(function) + r"\(", text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        found.append(text[match.end() : end - 1])
    return found


def test_sources_are_found() -> None:
    names = {p.relative_to(PACKAGE_DIR).as_posix() for p in SOURCES}
    assert {"store.py", "hooks.py", "models.py", "cache.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(PACKAGE_DIR).as_posix())
def test_no_module_unpickles_or_trusts_remote_code(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"\bpickle\.(load|loads|Unpickler)\b", text)
    assert not re.search(r"\b(dill|cloudpickle|joblib)\.load", text)
    for arguments in calls_of(text, "torch.load"):
        assert re.search(r"weights_only\s*=\s*True", arguments), f"torch.load({arguments})"
    assert not re.search(r"trust_remote_code\s*=\s*True", text)


def test_only_hooks_py_registers_hooks_or_replaces_a_forward() -> None:
    # Any torch hook (forward, pre-forward, backward, a tensor's, a global module hook) and any
    # swapped ``forward``: each must be undone, and hooks.py is where that is checked.
    # (a bare register_module_forward_hook(...) after a from-import counts too)
    touches = re.compile(r"\bregister_\w*hook\b|\.forward\s*=(?!=)")
    users = [
        p.relative_to(PACKAGE_DIR).as_posix() for p in SOURCES if touches.search(p.read_text())
    ]
    assert users == ["hooks.py"]


# -- (5) Ctrl-C in the middle of a real fit --------------------------------------------------------


def _interrupt_once_training(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Start ``command``, wait for the fit's progress bar on stderr, then send SIGINT."""
    import signal

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def default_sigint() -> None:
        # A shell without job control starts background jobs with SIGINT ignored, and the child
        # would inherit that: the fit under test must see the signal as a terminal sends it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    assert process.stderr is not None
    seen = ""
    while "boundless DAS" not in seen:
        char = process.stderr.read(1)
        if not char:
            break
        seen += char
    assert "boundless DAS" in seen, f"the fit never started:\n{seen}"
    time.sleep(0.5)  # well inside the fit: it has thousands of steps to go
    process.send_signal(signal.SIGINT)
    try:
        _, rest = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the interrupt was swallowed: say where, from stderr
        process.kill()
        _, rest = process.communicate()
        pytest.fail(f"the fit went on for 120 s after SIGINT; its stderr ends:\n{rest[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, "", seen + rest)


@pytest.mark.slow
def test_ctrl_c_during_a_cli_fit_exits_cleanly_and_writes_nothing(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    command = [
        sys.executable,
        "-m",
        "das_assert",
        "fit",
        f"--model={tiny_model_dirs['llama']}",
        "--hypothesis=left_boundary",
        "--layer=1",
        "--n-train=2000",
        "--n-test=50",
        "--epochs=200",
        "--min-task-accuracy=0",
        f"--save={out / 'alignment.safetensors'}",
        f"--json={out / 'report.json'}",
        "--progress",
    ]
    result = _interrupt_once_training(command, tmp_path)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "interrupted: no file was left half-written" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert list(out.iterdir()) == []


def _resave_with(path: Path, **changes: torch.Tensor) -> None:
    """Rewrite a saved alignment's tensors with a valid checksum: well-formed, wrong content."""
    from safetensors.torch import load, save

    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    manifest = json.loads(header["__metadata__"]["manifest"])
    tensors = {**load(raw), **changes}
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    manifest["tensor_sha256"] = digest.hexdigest()
    path.write_bytes(save(tensors, metadata={"manifest": json.dumps(manifest)}))


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"rotation": torch.eye(8)}, "a rotation of shape (8, 8), not (16, 16)"),
        ({"rotation": torch.full((16, 16), float("nan"))}, "values that are not finite"),
        ({"widths": torch.tensor([0.5, 0.5])}, "2 variables' boxes where 1 are needed"),
        ({"widths": torch.tensor([16.5])}, "box widths [16.5] outside [0, 16] coordinates"),
        (  # all 5,000 were written into one line of 30 million characters
            {"widths": torch.full((5000,), 99.0)},
            "box widths [99.0, 99.0, 99.0, 99.0, 99.0, 99.0, 99.0, 99.0] ... (5000) outside",
        ),
    ],
    ids=["shape", "nan", "boxes", "width", "many widths"],
)
def test_a_cache_entry_with_a_good_checksum_and_bad_tensors_is_not_used(
    tmp_path: Path, changes: dict[str, torch.Tensor], says: str
) -> None:
    # Such entries once crashed every later run (a shape) or were used silently (NaN, boxes).
    cache = AlignmentCache(tmp_path)
    cache.put("key", Interchange.boundless(16), {"site": "block_output[layer=1, pos=last]"})
    _resave_with(cache.path("key"), **changes)
    with pytest.warns(CacheWarning, match=re.escape(says)):
        assert cache.get("key", 16, n_boxes=1) is None
    assert not cache.path("key").exists()


def test_a_cache_write_that_fails_warns_and_keeps_the_run_going(tmp_path: Path) -> None:
    cache = AlignmentCache(tmp_path / "cache")
    (tmp_path / "cache").write_text("a file where the directory should be")
    with pytest.warns(CacheWarning, match=r"could not write .*key\.safetensors.* not cached"):
        cache.put("key", Interchange.boundless(16), {"site": "block_output[layer=1, pos=last]"})
    with pytest.raises(ConfigError, match="is a file; choose another --das-cache-dir"):
        cache.check_usable()


def test_a_cache_to_read_that_is_missing_or_a_file_is_refused(tmp_path: Path) -> None:
    # it ran and trained every alignment, silently
    with pytest.raises(ConfigError, match=r"--das-cache=read: the cache directory .* does not"):
        AlignmentCache(tmp_path / "nowhere", "read").check_usable()
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file; choose another --das-cache-dir, or turn"):
        AlignmentCache(tmp_path / "file", "read").check_usable()
    AlignmentCache(tmp_path, "read").check_usable()  # a directory to read: fine


def test_a_cache_directory_that_cannot_be_made_is_not_advised_to_be_read(tmp_path: Path) -> None:
    # it advised --das-cache=read, which then refused the directory as missing
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as raised:
        AlignmentCache(tmp_path / "file" / "cache").check_usable()
    assert str(raised.value).endswith(
        "; choose another --das-cache-dir, or turn the cache off with --das-cache=off"
    )


def test_a_confirmed_result_is_the_same_alignment_on_fresh_pairs_of_the_same_size(
    tiny_models: dict[str, Any],
) -> None:
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig
    from das_assert.sites import Site

    loaded = tiny_models["llama"]
    experiment = Experiment(
        hypothesis="left_boundary",
        site=Site(1, "last"),
        n_train=32,
        n_test=24,
        threshold=0.5,
        min_task_accuracy=0.0,  # random weights
    )
    result = run_experiment(loaded, experiment, FitConfig(epochs=1, batch_size=16))
    confirmed = result.confirmed()
    assert confirmed.fitted is result.fitted  # nothing trained again
    assert confirmed.n == result.n == 24
    assert confirmed.to_dict()["test_pairs"] == "confirmation"
    assert result.to_dict()["test_pairs"] == "test"
    fresh = {pair.base.text for pair in confirmed.evaluation.test.pairs}
    chose = {pair.base.text for pair in result.evaluation.test.pairs}
    assert fresh.isdisjoint(chose) or len(fresh & chose) < 4  # another draw of the sampler
    assert "n=24 fresh pairs" in confirmed.summary()
    again = result.confirmed()
    assert again.evaluation.successes == confirmed.evaluation.successes  # seeded


def test_a_killed_writers_temporary_files_are_removed_after_an_hour(tmp_path: Path) -> None:
    # a SIGKILL between the write and the rename left .NAME.XXXX.tmp behind for good: about
    # 64 MB per alignment of a 7B model, in every cache a CI job kept
    import os
    import time

    stale = tmp_path / ".key.safetensors.abc123.tmp"
    live = tmp_path / ".other.safetensors.def456.tmp"  # another process writing it right now
    entry = tmp_path / "key.safetensors"
    for path in (stale, live, entry):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(entry, (two_hours_ago, two_hours_ago))
    AlignmentCache(tmp_path).check_usable()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, entry.name])
    AlignmentCache(tmp_path, "read").check_usable()  # a run that only reads deletes nothing
    # only pytest's check swept them: run_experiment(cache=) from Python left them for good
    stale.write_bytes(b"x")
    os.utime(stale, (two_hours_ago, two_hours_ago))
    from das_assert.fit import make_interchange

    AlignmentCache(tmp_path).put("new", make_interchange("boundless", 8, 1), {"hypothesis": "h"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, entry.name, "new.safetensors"]
    )


def test_stale_temporary_cleanup_leaves_other_programs_files_in_the_cache_dir(
    tmp_path: Path,
) -> None:
    # --das-cache-dir may name a folder the user keeps other files in (~, /tmp, a project's):
    # only the temporaries of the cache's own files are das_assert's to delete
    import time

    def old(name: str) -> Path:
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
        return path

    mine = [old(".0123abcd.safetensors.k2x_9qzw.tmp"), old(".digests.json.a1b2c3d4.tmp")]
    theirs = [old(".notes.tmp"), old(".draft.md.tmp"), old(".session.vim.abcd1234.tmp")]
    AlignmentCache(tmp_path).check_usable()
    assert not any(path.exists() for path in mine)
    assert all(path.exists() for path in theirs)


def test_this_repositorys_warning_filters_let_a_bad_cache_entry_be_refitted() -> None:
    # pyproject.toml turns warnings into errors for this repository's runs, `pytest hypotheses/`
    # included: a damaged cache entry then errored every test of its module instead of refitting.
    import warnings

    import tomllib
    from _pytest.config import parse_warning_filter

    from das_assert.cache import CacheWarning

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    filters = tomllib.loads(pyproject.read_text())["tool"]["pytest"]["ini_options"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        for spec in filters["filterwarnings"]:  # as pytest applies them: the last one wins
            warnings.filterwarnings(*parse_warning_filter(spec, escape=False))
        warnings.warn("ignoring a bad cache entry and recomputing it: x", CacheWarning, 1)
        with pytest.raises(UserWarning):
            warnings.warn("any other warning", UserWarning, 1)
    assert [str(w.message) for w in caught] == ["ignoring a bad cache entry and recomputing it: x"]
