"""A failure's reproduce line reruns the verdict as it was made: the baseline files, not the
names that resolved to them, and the run's seed, not one a test sets in its own code."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from das_assert.messages import reproduce_line
from das_assert.plugin_options import DEFAULTS, reproduce_options


def _config(start: Path, **options: Any) -> Any:
    values = {**DEFAULTS, **options}
    return SimpleNamespace(
        getoption=lambda name, default=None: values.get(name, default),
        invocation_params=SimpleNamespace(dir=start),
    )


def test_compare_and_frozen_are_named_by_the_files_they_resolved_to(tmp_path: Path) -> None:
    # --das-frozen=latest stayed "latest": once another baseline was saved, the line took its
    # alignments from that one.
    config = _config(tmp_path, das_compare="latest", das_frozen="latest")
    saved = tmp_path / "hypotheses" / "baselines" / "embedded" / "0001_v1.json"
    line = reproduce_options(config, {"das_compare": saved, "das_frozen": saved})
    assert "--das-compare=hypotheses/baselines/embedded/0001_v1.json" in line
    assert "--das-frozen=hypotheses/baselines/embedded/0001_v1.json" in line
    assert "latest" not in line


def test_a_name_not_resolved_is_kept_and_defaults_are_left_out(tmp_path: Path) -> None:
    assert reproduce_options(_config(tmp_path)) == ""
    assert reproduce_options(_config(tmp_path, das_frozen="v1")) == " --das-frozen=v1"


def test_the_fuzz_profile_and_hypothesis_seed_are_repeated() -> None:
    # A fuzz failure under --das-profile=dev printed a line without it: rerun under ci, which
    # draws other variants, the test passed.
    line = reproduce_options(_config(Path("."), das_profile="dev", hypothesis_seed=7))
    assert line == " --das-profile=dev --hypothesis-seed=7"


def test_the_seed_is_the_runs_not_one_set_in_the_tests_code() -> None:
    # align(..., seed=3) in a fixture gave "--das-seed=3", which reseeds every other alignment
    # of the rerun and is not where this one's seed came from.
    result = SimpleNamespace(
        model=SimpleNamespace(name="embedded"), experiment=SimpleNamespace(seed=3)
    )
    session = SimpleNamespace(seed=0, reproduce_options="")
    assert reproduce_line(result, "test_x.py::test_y", session).endswith("--das-seed=0")
