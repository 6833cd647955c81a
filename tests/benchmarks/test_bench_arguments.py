"""The benchmark scripts refuse bad arguments with one usage line, before any model loads
(they gave tracebacks: KeyError for a shape, SiteError for a layer, an assertion for CUDA).
Not marked ``bench``: nothing here is timed or needs pyvene (nor does the GPU script's reading
of an allocator trace, also here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("cpu_memory", ["--shape", "huge"], "argument --shape: invalid choice: 'huge'"),
        ("cost_curve", ["--n-train", "0"], "argument --n-train: '0' must be a positive integer"),
        ("bench_pyvene", ["--n-test", "0"], "argument --n-test: '0' must be a positive integer"),
    ],
)
def test_a_bad_argument_is_one_usage_error(
    script: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = __import__(script)
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_gpu_script_on_a_torch_without_cuda_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    import gpu_7b

    with pytest.raises(SystemExit) as exit_:
        gpu_7b.main(["--out", str(tmp_path), "--device", "cuda"])
    assert exit_.value.code == 2
    assert "--device cuda: this torch has no CUDA device" in capsys.readouterr().err


def test_every_stage_the_gpu_session_runs_by_default_exists() -> None:
    """A misspelt stage would cost a lent GPU's minutes before it said so."""
    import re

    import gpu_7b

    script = (Path(__file__).parent / "gpu_session.sh").read_text()
    (extras,) = re.findall(r"extras=\$\{EXTRAS-([a-z_,]+)\}", script)
    assert set(extras.split(",")) <= set(gpu_7b.STAGES)
    assert "compare" not in extras.split(",")  # the first call runs it on its own


def test_what_was_live_at_an_allocator_traces_peak() -> None:
    """The memory_peak stage's reading of a CUDA allocator trace, on a made-up trace (here,
    not beside the timed benchmarks: marked ``bench`` and without "7b" in its name, CI never
    ran it)."""
    import gpu_7b

    def frame(path: str, line: int) -> dict:
        return {"filename": path, "line": line, "name": "f"}

    torch_frame = frame("/site-packages/torch/nn/functional.py", 1)
    ours = [torch_frame, frame("/repo/das_assert/runner.py", 7)]
    theirs = [frame("/site-packages/transformers/models/llama/modeling_llama.py", 9)]
    mib = 2**20
    trace = [
        {"action": "alloc", "addr": 1, "size": 4 * mib, "frames": ours},
        {"action": "alloc", "addr": 2, "size": 2 * mib, "frames": theirs},
        {"action": "free_requested", "addr": 2, "size": 2 * mib},
        {"action": "free_completed", "addr": 2, "size": 2 * mib},
        {"action": "alloc", "addr": 2, "size": 3 * mib, "frames": theirs},  # the peak: 7 MiB
        {"action": "alloc", "addr": 3, "size": 1 * mib, "frames": [torch_frame]},  # 8 MiB
        {"action": "free_requested", "addr": 1, "size": 4 * mib},
        {"action": "alloc", "addr": 4, "size": 2 * mib, "frames": []},  # 6 MiB: below the peak
    ]
    result = gpu_7b.live_at_peak(trace)
    assert result["traced_peak_mib"] == 8.0
    assert result["live_at_peak_mib"] == {
        "/repo/das_assert/runner.py:7 (f)": 4.0,
        "/site-packages/transformers/models/llama/modeling_llama.py:9 (f)": 3.0,
        "/site-packages/torch/nn/functional.py:1 (f)": 1.0,
    }
