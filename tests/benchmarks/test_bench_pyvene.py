"""The side-by-side benchmark as a pytest run, collected only on request: ``pytest -m bench``.

It prints the ratio table and asserts only what is not a timing: both implementations learn an
alignment of the same quality on the same data (timings belong in the printed table, not in a
pass/fail). pyvene 0.1.8 is needed, as the README's Performance section installs it: a run that
selects these tests without it fails, since a skip passed the one command having measured nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

sys.path.insert(0, str(Path(__file__).parent))


def _needs_pyvene() -> None:
    """Fail, naming the install, where pyvene cannot be imported."""
    import bench_pyvene

    if problem := bench_pyvene.pyvene_missing():
        pytest.fail(problem, pytrace=False)


def test_one_cell_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    _needs_pyvene()
    import bench_pyvene

    result = bench_pyvene.run("embedded", 0, "last", n_train=1500, epochs=3, batch=32, n_test=400)
    with capsys.disabled():
        print("\n" + bench_pyvene.table(result))
    # Both start from the same rotation and see the same batches, so what differs is the
    # boxes' parametrisation and rounding: issue 7 asks for IIAs within 0.02 of each other.
    assert abs(result["iia_difference"]) <= 0.02


def test_grid_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    _needs_pyvene()
    import bench_pyvene

    result = bench_pyvene.grid(
        "embedded",
        [0, 1, 2, 3],
        ["after:amount", "last"],
        n_train=400,
        epochs=2,
        batch=32,
        n_test=300,
    )
    with capsys.disabled():
        print("\n" + bench_pyvene.grid_table(result))
    assert result["max_abs_iia_difference"] <= 0.02  # same start and batches in every cell


def test_the_7b_gpu_script_runs_end_to_end_at_a_toy_shape_on_cpu(tmp_path: Path) -> None:
    _needs_pyvene()
    import gpu_7b

    argv = ["--shape=tiny", "--device=cpu", "--dtype=float32", "--layer=2", f"--out={tmp_path}"]
    stages = "--stages=compare,dispatch,grid,memory_peak_warm"
    assert gpu_7b.main([*argv, "--n-train=32", "--n-test=16", "--batch=16", stages]) == 0
    result = json.loads((tmp_path / "gpu_7b.json").read_text())
    # its warm-ups ran (pyvene's among them); the allocator's history needs CUDA
    assert result["memory_peak_warm"] == {"skipped": "the allocator's history needs CUDA"}
    assert result["shape"] == "tiny"
    assert result["steps"] == 2
    for name in ("das_assert", "das_assert_one_pass", "pyvene"):
        assert result[name]["seconds_per_step"] > 0
        assert result["dispatch"][f"{name}_aten_ops_per_step"] > 0
    # Each of das_assert's ways to run a step dispatches fewer ops than pyvene's (which of the
    # two dispatches fewer depends on the shape: the suffix pass skips the site's blocks).
    ops = result["dispatch"]
    for name in ("das_assert", "das_assert_one_pass"):
        assert ops[f"{name}_aten_ops_per_step"] < ops["pyvene_aten_ops_per_step"]
    grid = result["grid"]  # 4 layers: pyvene ran 3 of them per position, the 4th is estimated
    assert grid["layers"] == [0, 1, 2, 3]
    assert grid["pyvene_layers"] == [0, 2, 3]
    assert len(grid["cells"]) == 6
    assert grid["pyvene_seconds_estimated"] > 0


def test_peak_memory_side_by_side_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    """Live tensor bytes from the profiler: allocation sizes do not depend on timing, so this
    is a measurement that can be asserted. Without its prefix store (memory spent on speed,
    within its budget) das_assert's fit must hold at most half of what pyvene's does."""
    _needs_pyvene()
    import cpu_memory

    result = cpu_memory.compare("mid", layer=7, n_train=96, batch=16)
    with capsys.disabled():
        print("\n" + json.dumps(result, indent=2))
    assert result["ratio_without_prefix_store"] <= 0.5


def test_the_7b_scripts_breakdown_stages_run_at_a_toy_shape_on_cpu(tmp_path: Path) -> None:
    """The stages a GPU session runs after the comparison (no pyvene needed): none may fail."""
    import gpu_7b

    stages = "fast_path,rotation,forward,memory,profile,memory_peak,syncs,batch_scaling,cost_curve"
    stages += ",every_prefix_kept,windows"
    argv = ["--shape=tiny", "--device=cpu", "--dtype=float32", "--layer=2", f"--out={tmp_path}"]
    assert gpu_7b.main([*argv, f"--stages={stages}", "--n-train=32", "--name=extras"]) == 0
    result = json.loads((tmp_path / "extras.json").read_text())
    for stage in stages.split(","):
        assert "error" not in result[stage], result[stage]
    for row in (result["rotation"]["spread_0.01"], result["rotation"]["spread_0.05"]):
        assert {"action_step_ms", "frechet_step_ms", "torch_step_ms", "taylor_plan"} <= set(row)
    assert result["memory_peak"] == {"skipped": "the allocator's history needs CUDA"}
    assert result["fast_path"]["largest_difference"] <= result["fast_path"]["tolerance"]
    phases = result["profile"]["phases_ms_per_step"]
    assert {"phase: prefix pass", "phase: model pass", "phase: interchange"} <= set(phases)
    assert result["profile"]["aten_ops_per_step"] > 0
    assert result["profile"]["one_pass"]["aten_ops_per_step"] > 0
    assert {"site", "tokens_from_site", "seconds_per_step"} <= set(result["cost_curve"][0])
    assert result["every_prefix_kept"]["examples_per_s"] > 0
    assert result["syncs"] == {"skipped": "counting synchronizations needs CUDA"}
    scaling = result["batch_scaling"]["rows"]
    assert [row["batch"] for row in scaling] == [16, 32, 64]
    assert scaling[0]["step_time_vs_first"] == 1.0
    windows = result["windows"]["rows"]
    assert [row["batches_per_prefix_pass"] for row in windows] == [1, 2, 4]
    assert all(row["examples_per_s"] > 0 for row in windows)


def test_the_7b_scripts_windows_stage_runs_prefix_passes_of_each_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the whole fit's store does not fit (as at 7B's shape), each count of batches a
    prefix pass runs is the one the stage names, and the fits learn the same alignment."""
    import gpu_7b
    import torch

    from das_assert import fit as fit_module
    from das_assert.prefix_store import PrefixStore

    model = gpu_7b.build("tiny", "cpu", torch.float32)
    monkeypatch.setattr(PrefixStore, "shared", classmethod(lambda cls, *a, **k: None))
    fitted = []
    fit_alignment = fit_module.fit_alignment

    def keeping(*args: object, **kwargs: object) -> object:
        fitted.append(fit_alignment(*args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(fit_module, "fit_alignment", keeping)  # das_assert_alone imports it late
    sizes = {"n_train": 48, "epochs": 1, "batch": 8}
    rows = gpu_7b.prefix_windows(model, 1, "last-1", sizes, (1, 2, 4))["rows"]
    assert [row["batches_per_prefix_pass"] for row in rows] == [1, 2, 4]
    # six batches of 8; at one batch a pass, each step runs its own prefix, as the engine does
    assert [row["window_passes"] for row in rows] == [0, 3, 2]
    measured = [fit.interchange.rotation_matrix() for fit in fitted[-3:]]  # after the warm-ups
    for other in measured[1:]:
        assert torch.allclose(other, measured[0], atol=1e-5)


def test_the_7b_scripts_compile_experiment_runs_at_a_toy_shape_and_restores_the_model(
    tmp_path: Path,
) -> None:
    """The ``compiled`` stage (torch.compile of the norms and MLPs after the site), in its own
    process: what dynamo compiles stays out of this one. It pays its compile in the warm-up fit,
    leaves nothing to compile in the measured one, and hands the model back uncompiled."""
    import subprocess

    script = Path(__file__).parent / "gpu_7b.py"
    argv = ["--shape=tiny", "--device=cpu", "--dtype=float32", "--layer=1", f"--out={tmp_path}"]
    check = (
        "import sys; sys.argv = sys.argv[1:]; "
        "import gpu_7b; from das_assert.sites import decoder_blocks; "
        "built = []; build = gpu_7b.build; "
        "gpu_7b.build = lambda *a: built.append(build(*a)) or built[-1]; "
        "code = gpu_7b.main(sys.argv[1:]); "
        "modules = [m for b in decoder_blocks(built[0].model) for m in b.modules()]; "
        "assert all(m._compiled_call_impl is None for m in modules), 'a module left compiled'; "
        "sys.exit(code)"
    )
    command = [sys.executable, "-c", check, str(script), *argv]
    command += ["--stages=compiled", "--n-train=32", "--name=compiled"]
    done = subprocess.run(command, cwd=script.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "compiled.json").read_text())["compiled"]
    assert "error" not in result, result
    assert result["modules_compiled"] == 6  # two blocks' norms and MLPs
    assert result["graphs_compiled_in_warm_up"] > 0
    assert result["graphs_compiled_in_measured_fit"] == 0
    assert result["compiled"]["examples_per_s"] > 0


def test_the_7b_scripts_synchronizations_are_counted_per_step_by_line() -> None:
    import warnings

    import gpu_7b

    def caught(message: str, line: int) -> warnings.WarningMessage:
        return warnings.WarningMessage(message, UserWarning, "das_assert/fit.py", line)

    notice = "Synchronization debug mode is a prototype feature"
    found = [caught(notice, 1), caught("called a synchronizing op", 364)]
    found += [caught("called a synchronizing op", 396)] * 3
    result = gpu_7b.where_synchronized(found, steps=2)
    assert result == {
        "steps": 2,
        "per_step": 2.0,
        "lines": {"das_assert/fit.py:396": 3, "das_assert/fit.py:364": 1},
    }


def test_the_7b_scripts_device_busy_time_counts_each_kernel_once() -> None:
    """An aten op's self device time is its kernels' time, and each kernel is an event of its
    own: the 2026-12-04 profile listed aten::cat at 3.911 ms and its CatArrayBatchedCopy kernel
    at 3.905 ms, so a sum over every event doubled the device's busy time."""
    from types import SimpleNamespace

    import gpu_7b
    from torch.autograd import DeviceType

    def event(device_type: DeviceType, ms: float) -> SimpleNamespace:
        return SimpleNamespace(device_type=device_type, self_device_time_total=ms * 1e3)

    averages = [
        event(DeviceType.CPU, 4.0),  # aten::cat: the time of the kernel below
        event(DeviceType.CUDA, 4.0),  # CatArrayBatchedCopy
        event(DeviceType.CUDA, 2.0),  # Memcpy HtoD, launched outside an aten op
        event(DeviceType.CPU, 0.0),  # phase: model pass
    ]
    assert gpu_7b.device_busy_ms(averages, steps=2) == 3.0


def test_the_7b_scripts_batch_scaling_warms_up_at_every_batch_it_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gpu_7b

    calls: list[dict[str, int]] = []

    def fit(model: object, layer: int, position: str, sizes: dict, mib: int) -> dict:
        calls.append(dict(sizes))
        return {"seconds_per_step": float(sizes["batch"])}

    monkeypatch.setattr(gpu_7b, "das_assert_alone", fit)
    sizes = {"n_train": 640, "epochs": 1, "batch": 16}
    gpu_7b.batch_scaling(None, 15, "last-1", sizes, (1, 2, 4))
    warm, timed = calls[:3], calls[3:]
    assert [c["batch"] for c in timed] == [16, 32, 64]
    assert [c["batch"] for c in warm] == [16, 32, 64]
