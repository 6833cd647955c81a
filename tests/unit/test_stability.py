"""The stability script reads which plain tests failed under a seed from pytest's JUnit XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from das_assert.stability import _failed_tests

pytest_plugins = ["pytester"]


def test_failed_and_erroring_tests_are_read_from_junit_xml(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(
        test_region="""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup fails")

        def test_passes():
            pass

        def test_fails():
            assert False

        def test_errors(broken):
            pass

        @pytest.mark.parametrize("side", ["left", "right"])
        def test_each(side):
            assert side == "left"
        """
    )
    junit = tmp_path / "report.xml"
    pytester.runpytest(f"--junitxml={junit}", "-p", "no:cacheprovider")
    assert sorted(_failed_tests(junit)) == [
        "test_region.py::test_each[right]",
        "test_region.py::test_errors",
        "test_region.py::test_fails",
    ]
    assert _failed_tests(tmp_path / "missing.xml") == []
