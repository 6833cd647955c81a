"""Values of another kind than the defaults' are read as the same number or refused up front,
never taken and then failed on after training: NumPy scalars in a grid and a config (a search's
record and a result's JSON), a NaN bracket, YAML tags and keys of other types in das.yaml,
numbers past Python's digit limit in a site, and a das marker's ``compare_fail`` that is no
text. Found by property-based tests of the library's own parsers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from das_assert import Experiment, FitConfig, run_experiment
from das_assert.arg_types import baseline_name
from das_assert.compare import marker_expressions, parse_compare_fail
from das_assert.errors import ConfigError, InvalidArgument
from das_assert.positions import parse_position
from das_assert.search import search, search_record
from das_assert.settings import load_settings
from das_assert.sites import Site, parse_site
from das_assert.tasks.price_tagging import check_bracket

SMALL = {"hypothesis": "left_boundary", "n_train": 16, "n_test": 16, "min_task_accuracy": 0}
ONE_EPOCH = FitConfig(epochs=1, batch_size=8)


def test_a_search_over_numpy_layers_writes_its_record(tiny_models: dict[str, Any]) -> None:
    # The grid kept np.int64 layers, and its record failed json.dumps after every cell trained.
    model = tiny_models["llama"]

    def align(hypothesis: str, site: Site, **_: Any) -> Any:
        return run_experiment(model, Experiment(**{**SMALL, "site": site}), ONE_EPOCH)

    grid = search(align, "left_boundary", layers=np.arange(2), positions=["last"])

    assert grid.layers == [0, 1]
    assert all(type(layer) is int for layer in grid.layers)
    assert json.loads(json.dumps(search_record(grid)))["layers"] == [0, 1]


def test_numpy_floats_in_a_config_and_an_experiment_are_written_as_numbers(
    tiny_models: dict[str, Any],
) -> None:
    config = FitConfig(
        epochs=1,
        batch_size=8,
        lr_rotation=np.float32(1e-3),
        temperature=(np.float32(50), np.float32(0.1)),
        init_fraction=np.float32(0.5),
    )
    experiment = Experiment(
        **SMALL, site="block_output[layer=0, pos=last]", margin=np.float32(0.05)
    )
    assert all(type(v) is float for v in (config.lr_rotation, *config.temperature))
    assert type(experiment.margin) is float

    result = run_experiment(tiny_models["llama"], experiment, config)

    record = json.loads(json.dumps(result.to_dict()))
    assert record["fit"]["lr_rotation"] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("bracket", "match"),
    [
        ((math.nan, 855), r"must be \(low, high\) in cents"),
        ((130, math.inf), r"must be \(low, high\) in cents"),
        ((130.0, 855.0), r"whole numbers: write \(130, 855\), integers"),  # not (13000, 85500)
        ((1.3, 8.55), r"write \(130, 855\) for 1\.30-8\.55 dollars"),
    ],
)
def test_a_bracket_of_floats_gets_the_cents_to_write(bracket: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        check_bracket(bracket)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("n_train: !!bool abc", "holds a value its tag cannot make"),  # KeyError in yaml
        ("n_train: !!timestamp abc", "holds a value its tag cannot make"),  # AttributeError
        ("thresholds: {1: 0.5, '1': 0.9}", "the key '1' is given twice"),  # 0.9 won
        ("thresholds: {true: 0.5, 'True': 0.9}", "the key 'True' is given twice"),
        ("thresholds: {null: 0.5}", "an empty key is not a name"),  # read as the claim "None"
    ],
)
def test_das_yaml_tags_and_keys_of_other_types_are_one_clear_error(
    tmp_path: Path, entry: str, match: str
) -> None:
    path = tmp_path / "das.yaml"
    path.write_text(f"models:\n  embedded:\n    {entry}\n")

    with pytest.raises(ConfigError, match=match):
        load_settings(path)


@pytest.mark.parametrize(
    "parse",
    [
        lambda digits: parse_site(f"block_output[layer={digits}, pos=last]"),
        lambda digits: parse_position(f"last-{digits}"),
        lambda digits: Site(0, f"after:amount+{digits}"),
    ],
    ids=["layer", "last-K", "after:slot+K"],
)
def test_a_number_past_pythons_digit_limit_in_a_site_is_refused_as_one(parse: Any) -> None:
    with pytest.raises(InvalidArgument, match="a number of 5000 digits is past any prompt"):
        parse("9" * 5000)  # a ValueError from int() before


@pytest.mark.parametrize("value", [0.05, ["iia:5%", 0.05], b"iia:0.05"])
def test_a_marker_compare_fail_that_is_no_text_is_refused_as_such(value: Any) -> None:
    def parse_all() -> None:
        for expression in marker_expressions(value):
            parse_compare_fail(expression)

    with pytest.raises(ConfigError, match="is not an expression: write it as text"):
        parse_all()


@pytest.mark.parametrize("text", ["iia:0.00001", "iia:2.123456789%", "lead:0", "iia:5%"])
def test_a_compare_fail_expression_is_shown_as_it_parses(text: str) -> None:
    # iia:0.00001 was shown as iia:1e-05, which the parser refuses
    assert str(parse_compare_fail(text)) == text


@pytest.mark.parametrize("name", ["latest", "0001_main"])
def test_a_baseline_name_that_compare_reads_as_another_baseline_is_refused(name: str) -> None:
    # saved as 0002_latest, --das-compare=latest took the newest baseline instead
    with pytest.raises(Exception, match="reads as a baseline of its own"):
        baseline_name(name)
