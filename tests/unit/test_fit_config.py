"""FitConfig validation, method names, and the untrained intervention each method starts from."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import pytest

from das_assert.errors import InvalidArgument
from das_assert.featurizers import temperature_schedule
from das_assert.fit import FitConfig, make_interchange, parse_method


def test_the_default_config_is_the_papers_recipe() -> None:
    config = FitConfig()
    assert config.method == "boundless"
    assert (config.lr_rotation, config.lr_boundary) == (1e-3, 1e-2)
    assert config.temperature == (50.0, 0.1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs=0; train for at least 1 epoch"),
        ({"epochs": -2}, "epochs=-2"),
        ({"batch_size": 0}, "batch_size=0; use a positive batch size"),
        ({"lr_rotation": -1e-3}, "lr_rotation=-0.001 must be a finite number >= 0"),
        ({"lr_boundary": -0.5}, "lr_boundary=-0.5 must be a finite number >= 0"),
        ({"lr_rotation": math.inf}, "lr_rotation=inf must be a finite number"),
        ({"boundary_penalty": math.nan}, "boundary_penalty=nan must be a finite number"),
        ({"boundary_penalty": -1.0}, "boundary_penalty=-1.0"),
        ({"warmup_fraction": 1.0}, "warmup_fraction=1.0 must be in \\[0, 1\\)"),
        ({"warmup_fraction": -0.1}, "warmup_fraction=-0.1"),
        ({"temperature": (0.1, 50.0)}, "must go down: 0 < end <= start"),
        ({"temperature": (50.0, 0.0)}, "temperature=\\(50.0, 0.0\\) must go down"),
        ({"temperature": (50.0, -1.0)}, "must go down"),
        ({"method": "bondless"}, "unknown method 'bondless'; choose one of: boundless, das:K"),
        ({"method": "das:0"}, "method 'das:0': das:K learns a subspace of K dimensions, so K"),
        # a hypothesis file's fit_config(epochs="3") failed with a TypeError from a comparison
        ({"epochs": "3"}, "epochs='3': an integer"),
        ({"epochs": 2.5}, "epochs=2.5: an integer"),
        ({"seed": "0"}, "seed='0': an integer"),
        ({"lr_rotation": "1e-3"}, "lr_rotation='1e-3': a number"),
        # each was accepted and failed (or did nothing sensible) later
        ({"init_fraction": -1.0}, r"init_fraction=-1\.0: the fraction of coordinates .* \(0, 1\]"),
        ({"init_fraction": 2.0}, r"init_fraction=2\.0: the fraction"),
        ({"init_fraction": 0.0}, r"init_fraction=0\.0: the fraction"),
        ({"init_fraction": "0.5"}, r"init_fraction='0\.5': the fraction"),
        ({"seed": 2**70}, rf"seed={2**70}: use an integer 0 to 4294967295"),
        ({"seed": -1}, r"seed=-1: use an integer 0 to 4294967295"),
        ({"temperature": (50, 1, 0.1)}, r"temperature=\(50, 1, 0\.1\): a pair \(start, end\)"),
        ({"temperature": 50}, r"temperature=50: a pair \(start, end\) of finite numbers"),
        ({"temperature": (math.inf, 0.1)}, r"temperature=\(inf, 0\.1\): a pair"),
        ({"temperature": ("50", "0.1")}, r"temperature=\('50', '0\.1'\): a pair"),
        ({"method": None}, r"method=None: a method's name, one of: boundless, das:K"),
        ({"method": 5}, r"method=5: a method's name"),
        ({"progress": "yes"}, r"progress='yes': True or False"),
        ({"prefix_cache": 1}, r"prefix_cache=1: True or False"),
        # Adam's float32 second moment overflowed and the boxes stayed where they began
        ({"boundary_penalty": 1e30}, r"boundary_penalty=1e\+30 is past 1e\+20, .* Adam's float32"),
    ],
)
def test_an_invalid_config_is_rejected_with_the_reason(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        FitConfig(**changes)


def test_a_zero_learning_rate_and_penalty_are_allowed() -> None:
    FitConfig(lr_rotation=0.0, lr_boundary=0.0, boundary_penalty=0.0, warmup_fraction=0.0)
    FitConfig(boundary_penalty=1e20)  # the largest: 1e21 still shrinks the boxes


def test_a_constant_temperature_is_allowed() -> None:
    assert FitConfig(temperature=(1.0, 1.0)).temperature == (1.0, 1.0)


def test_the_config_is_frozen_and_changed_with_replace() -> None:
    config = FitConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 5  # type: ignore[misc]
    assert dataclasses.replace(config, epochs=5).epochs == 5
    with pytest.raises(InvalidArgument, match="epochs=0"):
        dataclasses.replace(config, epochs=0)


def test_the_config_takes_keyword_arguments_only() -> None:
    with pytest.raises(TypeError):
        FitConfig("boundless")  # type: ignore[misc]


def test_as_dict_leaves_out_the_progress_bar() -> None:
    record = FitConfig(progress=True).as_dict()
    assert "progress" not in record
    assert record["method"] == "boundless"
    assert record["temperature"] == (50.0, 0.1)


@pytest.mark.parametrize("progress", [False, True])
def test_a_fit_reads_its_boxes_each_step_only_for_a_progress_bar(
    tiny_llama: Any, monkeypatch: pytest.MonkeyPatch, progress: bool
) -> None:
    """Reading a loss or a box waits for a GPU to finish the step; without a bar to show them,
    a fit keeps its logged steps' boxes as tensors and reads them once its steps are done."""
    from das_assert.data import encode
    from das_assert.featurizers import Interchange
    from das_assert.fit import fit_alignment
    from das_assert.positions import parse_position
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    reads = []
    original = Interchange.hard_widths
    monkeypatch.setattr(Interchange, "hard_widths", lambda self: reads.append(1) or original(self))
    pairs = encode(tiny_llama, prompt_pairs("left_boundary", 48, seed=0), parse_position("last"))
    site = Site(1, "last").resolve(tiny_llama.model)
    fitted = fit_alignment(
        tiny_llama.model, site, pairs, FitConfig(epochs=2, batch_size=2, progress=progress)
    )
    steps = 48
    assert len(fitted.history) < steps
    assert len(reads) == (steps if progress else 0)
    assert all(row["widths"] for row in fitted.history)


# -- method names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "parsed"),
    [
        ("boundless", ("boundless", None)),
        ("full", ("full", None)),
        ("noop", ("noop", None)),
        ("das:1", ("das", 1)),
        ("das:16", ("das", 16)),
    ],
)
def test_parse_method_reads_every_method(method: str, parsed: tuple[str, int | None]) -> None:
    assert parse_method(method) == parsed


def test_a_das_method_has_one_spelling() -> None:
    # das:016 and das:16 are one fit: the cache keyed them apart (a needless fit), and the
    # reports wrote the spelling
    assert FitConfig(method="das:016").method == "das:16"
    assert FitConfig(method="das:016").as_dict() == FitConfig(method="das:16").as_dict()


@pytest.mark.parametrize(
    "method", ["bondless", "das:", "das", "das:-4", "das:4.5", "das:x", "DAS:4", ""]
)
def test_parse_method_rejects_anything_else_and_lists_the_methods(method: str) -> None:
    with pytest.raises(InvalidArgument, match="boundless, das:K \\(fixed K coordinates\\), full"):
        parse_method(method)


@pytest.mark.parametrize(
    ("method", "n_variables", "hard_widths", "trainable"),
    [
        ("boundless", 1, [16], True),  # half of d = 32
        ("boundless", 2, [16, 16], True),  # 1/2 each
        ("das:4", 2, [4, 4], True),
        ("full", 1, [32], False),
        ("noop", 2, [0, 0], False),
    ],
)
def test_make_interchange_builds_the_untrained_intervention(
    method: str, n_variables: int, hard_widths: list[int], trainable: bool
) -> None:
    interchange = make_interchange(method, 32, n_variables)
    assert interchange.method == method
    assert interchange.hard_widths() == hard_widths
    assert any(p.requires_grad for p in interchange.parameters()) is trainable


def test_full_interchange_gives_the_whole_vector_to_the_one_variable_its_pairs_use() -> None:
    # With two variables, box 1 was once empty: "right" pairs ran unintervened under "full".
    assert make_interchange("full", 32, 2, boxes_used=[1, 1]).hard_widths() == [0, 32]
    assert make_interchange("full", 32, 2, boxes_used=[0]).hard_widths() == [32, 0]
    with pytest.raises(InvalidArgument, match="cannot interchange 2 variables separately"):
        make_interchange("full", 32, 2, boxes_used=[0, 1, 0])


def test_make_interchange_rejects_more_fixed_coordinates_than_the_site_has() -> None:
    with pytest.raises(InvalidArgument, match="das:20 with 2 variables needs more than d=32"):
        make_interchange("das:20", 32, 2)


def test_the_temperature_anneals_linearly_from_start_to_end() -> None:
    assert temperature_schedule(50.0, 0.1, 1) == [0.1]
    schedule = temperature_schedule(50.0, 0.1, 5)
    assert schedule[0] == 50.0
    assert schedule[-1] == pytest.approx(0.1)
    steps = [a - b for a, b in itertools.pairwise(schedule)]
    assert steps == pytest.approx([steps[0]] * 4)


def test_a_das_yaml_merge_key_is_not_a_repeated_key(tmp_path) -> None:
    from das_assert.settings import load_settings

    path = tmp_path / "das.yaml"
    path.write_text(
        "models:\n"
        "  embedded: &base\n    path: embedded\n    n_train: 100\n"
        "  copy:\n    <<: *base\n    path: /models/copy\n"
    )
    loaded = load_settings(path)
    assert (loaded["copy"].path, loaded["copy"].n_train) == ("/models/copy", 100)


@pytest.mark.parametrize(("method", "hard"), [("das:4", True), ("boundless", False)])
def test_fixed_k_das_trains_with_the_mask_it_is_judged_with(
    tiny_llama: Any, monkeypatch: pytest.MonkeyPatch, method: str, hard: bool
) -> None:
    # das:K once trained through the soft mask at temperature 50 -> 0.1, which spreads over all
    # d coordinates early on: not a K-dimensional subspace.
    from das_assert.data import encode
    from das_assert.featurizers import Interchange
    from das_assert.fit import fit_alignment
    from das_assert.positions import parse_position
    from das_assert.sites import Site
    from das_assert.tasks.price_tagging import prompt_pairs

    seen: list[bool] = []
    real = Interchange.forward

    def forward(self: Interchange, *args: Any, hard: bool = False, **kwargs: Any) -> Any:
        seen.append(hard)
        return real(self, *args, hard=hard, **kwargs)

    monkeypatch.setattr(Interchange, "forward", forward)
    site = Site(1).resolve(tiny_llama.model)
    train = encode(tiny_llama, prompt_pairs("left_boundary", 8, seed=0), parse_position("last"))
    fit_alignment(tiny_llama.model, site, train, FitConfig(epochs=1, batch_size=8, method=method))
    assert seen
    assert set(seen) == {hard}


def test_the_cli_search_sets_the_joint_training_budget_and_fit_has_none() -> None:
    from das_assert.cli import _fit_config
    from das_assert.cli_args import build_parser

    search = ["search", "--hypothesis", "left_boundary", "--layers", "0", "1"]
    parser = build_parser()
    assert _fit_config(parser.parse_args(search)).joint_cells_mib == 0
    joint = parser.parse_args([*search, "--joint-cells-mib", "4096"])
    assert _fit_config(joint).joint_cells_mib == 4096
    fit = parser.parse_args(["fit", "--hypothesis", "left_boundary", "--layer", "0"])
    assert _fit_config(fit).joint_cells_mib == 0  # one site: nothing to train together


def test_the_cli_sets_the_temperature_schedule_and_refuses_one_that_rises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # fit and search exposed the learning rates and the penalty, not the temperature
    from das_assert.cli import _fit_config, main
    from das_assert.cli_args import build_parser

    fit = ["fit", "--hypothesis", "left_boundary", "--layer", "0"]
    parser = build_parser()
    assert _fit_config(parser.parse_args(fit)).temperature == FitConfig().temperature
    config = _fit_config(parser.parse_args([*fit, "--temperature", "20", "0.5"]))
    assert config.temperature == (20.0, 0.5)
    search = ["search", "--hypothesis", "left_boundary", "--layers", "0", "--temperature", "9", "1"]
    assert _fit_config(parser.parse_args(search)).temperature == (9.0, 1.0)
    assert main([*fit, "--temperature", "0.1", "50"]) == 2
    assert "temperature=(0.1, 50.0) must go down: 0 < end <= start" in capsys.readouterr().err


def test_a_seed_init_fraction_and_temperature_at_their_limits_are_allowed() -> None:
    config = FitConfig(seed=2**32 - 1, init_fraction=1.0, temperature=[50, 1])
    assert config.temperature == (50, 1)  # a list (a manifest's JSON) as the tuple it means
    assert hash(config) == hash(FitConfig(seed=2**32 - 1, init_fraction=1.0, temperature=(50, 1)))


def test_numpy_integers_are_taken_as_ints() -> None:
    config = FitConfig(epochs=np.int64(2), seed=np.int32(7))
    assert (type(config.epochs), type(config.seed)) == (int, int)
