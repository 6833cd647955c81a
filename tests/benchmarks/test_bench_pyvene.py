"""The side-by-side benchmark as a pytest run, collected only on request: ``pytest -m bench``.

It prints the ratio table and asserts only what is not a timing: both implementations learn an
alignment of the same quality on the same data (timings belong in the printed table, not in a
pass/fail). pyvene 0.1.8 is needed: ``pip install --no-deps pyvene==0.1.8``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

sys.path.insert(0, str(Path(__file__).parent))


def test_one_cell_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyvene")
    import bench_pyvene

    result = bench_pyvene.run("embedded", 0, "last", n_train=1500, epochs=3, batch=32, n_test=400)
    with capsys.disabled():
        print("\n" + bench_pyvene.table(result))
    # n=400: a Wilson half-width is about 0.04; two fits of the same recipe land within it.
    assert abs(result["iia_difference"]) <= 0.04


def test_grid_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyvene")
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
    assert result["max_abs_iia_difference"] <= 0.06
