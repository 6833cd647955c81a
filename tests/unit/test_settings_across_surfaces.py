"""A setting means the same given on any surface: the Python API, das.yaml and the command line
refuse and resolve alike (the seed of a fit, a wrapper's BOS token, a grid's duplicate cells,
the number of pairs, an empty instruction, a learning rate float32 cannot hold, the model
named by $DAS_MODEL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from das_assert import Experiment, FitConfig, load_model, run_experiment
from das_assert.cache import cache_key
from das_assert.cli import main
from das_assert.errors import ConfigError, InvalidArgument
from das_assert.session import DasSession
from das_assert.settings import ModelSettings
from das_assert.summary import pairs_notes
from das_assert.tasks.price_tagging import PriceFormat

SITE = "block_output[layer=0, pos=last]"


@pytest.fixture(scope="module")
def embedded() -> Any:
    return load_model()


def test_a_config_that_names_no_seed_fits_at_the_experiments(embedded: Any) -> None:
    experiment = Experiment(hypothesis="left_boundary", site=SITE, n_train=32, n_test=32, seed=3)

    assert FitConfig().seed is None
    assert FitConfig(seed=0).seed == 0
    unnamed, named = FitConfig(epochs=1), FitConfig(epochs=1, seed=3)
    assert cache_key(embedded, experiment, unnamed) == cache_key(embedded, experiment, named)
    assert cache_key(embedded, experiment, FitConfig(epochs=1, seed=0)) != cache_key(
        embedded, experiment, named
    )
    result = run_experiment(embedded, experiment, unnamed)
    assert result.config.seed == 3
    assert "fit seed" not in result.summary()


def test_a_fit_at_another_seed_than_its_pairs_says_so() -> None:
    record = {"seed": 0, "fit": {"seed": 5}, "variable": "left"}
    assert "(fit seed 5)" in pairs_notes(record)
    assert pairs_notes({**record, "fit": {"seed": 0}}) == []


def test_a_wrapper_that_writes_the_bos_token_out_is_refused_in_python(embedded: Any) -> None:
    fmt = PriceFormat(template="<s>Q: {instruction}\n{amount}\nA:")
    experiment = Experiment(hypothesis="left_boundary", site=SITE, fmt=fmt, n_train=8, n_test=8)

    with pytest.raises(InvalidArgument, match=r"starts with '<s>'.*resolve_prompt_template"):
        run_experiment(embedded, experiment, FitConfig(epochs=1))
    with pytest.raises(InvalidArgument, match="resolve_prompt_template\\('chat'"):
        PriceFormat(template="chat")


def test_pairs_past_the_command_lines_cap_are_refused_everywhere(tmp_path: Path) -> None:
    from das_assert.settings import load_settings

    with pytest.raises(InvalidArgument, match="past 1,000,000 pairs"):
        Experiment(hypothesis="left_boundary", site=SITE, n_test=50_000_000)
    das_yaml = tmp_path / "das.yaml"
    das_yaml.write_text("models:\n  embedded:\n    n_train: 50000000\n")
    with pytest.raises(ConfigError, match="n_train = 50000000 is past 1,000,000 pairs"):
        load_settings(das_yaml)


def test_a_bracket_of_numpy_integers_is_a_bracket() -> None:
    bracket = (np.int64(130), np.int64(855))
    experiment = Experiment(hypothesis="left_boundary", site=SITE, bracket=bracket)
    assert experiment.bracket == (130, 855)
    assert type(experiment.bracket[0]) is int


def test_a_learning_rate_float32_cannot_hold_is_refused_up_front() -> None:
    FitConfig(lr_rotation=1e30)  # absurd, but the fit says so itself (a loss that is nan)
    with pytest.raises(InvalidArgument, match="past float32's largest number"):
        FitConfig(lr_boundary=1e39)


def test_an_empty_instruction_is_refused_not_read_as_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--instruction", "", "--n-test", "8"]) == 2
    assert "instruction '' has no" in capsys.readouterr().err


def test_a_das_yaml_grid_naming_one_cell_twice_is_refused_as_the_command_line_does(
    embedded: Any,
) -> None:
    def session(layers: list[int], positions: list[str]) -> DasSession:
        search = {"layers": layers, "positions": positions}
        settings = ModelSettings(key="embedded", source=Path("das.yaml"), search=search)
        return DasSession(model=embedded, settings=settings)

    with pytest.raises(ConfigError, match=r"search\.layers: 0 and -4 are the same block"):
        session([0, -4], ["last"]).search_settings()
    with pytest.raises(
        ConfigError, match=r"search\.positions: last and after:amount\+8 land on the same token"
    ):
        session([0], ["last", "after:amount+8"]).search_settings()
    assert session([0, 1], ["last", "after:amount"]).search_settings()["layers"] == [0, 1]


@pytest.mark.parametrize(
    ("argv", "environment", "loaded"),
    [
        ([], None, "embedded"),
        ([], "/models/new", "/models/new"),  # as pytest's --das-model reads it
        (["--model", "embedded"], "/models/new", "embedded"),
    ],
)
def test_the_command_line_reads_das_model_as_pytest_does(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], environment: str | None, loaded: str
) -> None:
    paths: list[str] = []

    def load_model(path: str, **_: Any) -> Any:
        paths.append(path)
        raise InvalidArgument("stop here")

    monkeypatch.setattr("das_assert.models.load_model", load_model)
    if environment is None:
        monkeypatch.delenv("DAS_MODEL", raising=False)
    else:
        monkeypatch.setenv("DAS_MODEL", environment)
    assert main(["check", *argv]) == 2
    assert paths == [loaded]


def test_a_missing_das_model_is_named_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAS_MODEL", "/no/such/model")

    assert main(["check"]) == 2
    assert "(the model path is $DAS_MODEL='/no/such/model'; --model overrides it)" in (
        capsys.readouterr().err
    )


def test_one_block_written_two_ways_is_one_site_to_the_cache_and_the_records(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    # layer=-1 and layer=2 of a 3-block model: two cache entries, the fit trained twice, and a
    # gate that called the claim drifted (with its transfer "not measured") when one was saved
    # under the other.
    from das_assert.cache import AlignmentCache
    from das_assert.sites import Site

    llama = load_model(tiny_model_dirs["llama"])  # its own: a cache refuses a model edited since
    cache = AlignmentCache(tmp_path / "cache", mode="readwrite")
    small = {"hypothesis": "left_boundary", "n_train": 16, "n_test": 16, "min_task_accuracy": 0}
    one_epoch = FitConfig(epochs=1, batch_size=8)

    written = run_experiment(llama, Experiment(**small, site=Site(-1)), one_epoch, cache=cache)
    spelled = run_experiment(llama, Experiment(**small, site=Site(2)), one_epoch, cache=cache)

    assert written.experiment.site == Site(2)
    assert written.to_dict()["site"]["canonical"] == "block_output[layer=2, pos=last]"
    assert not written.fitted.from_cache
    assert spelled.fitted.from_cache
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
    settings = ModelSettings(
        key="tiny", source=Path("das.yaml"), sites={"last": "block_output[layer=-1, pos=last]"}
    )
    session = DasSession(model=llama, settings=settings)
    assert session.experiment("left_boundary", "last").site == Site(2)
    assert session.experiment("left_boundary", Site(-3)).site == Site(0)
    assert session.experiment("left_boundary", Site(-9)).site == Site(-9)  # align says why


def test_a_baseline_saved_at_a_negative_layer_is_the_same_block_to_the_gate() -> None:
    from das_assert.compare import same_site

    def site(layer: int) -> dict[str, Any]:
        canonical = f"block_output[layer={layer}, pos=last]"
        return {"canonical": canonical, "component": "block_output", "position": "last",
                "module": "model.layers.3"}  # fmt: skip

    assert same_site(site(-1), site(3))  # a baseline of before 2026-12-06 kept -1 as written
    assert not same_site(site(3), {**site(2), "module": "model.layers.2"})
    other_token = {
        **site(3),
        "canonical": "block_output[layer=3, pos=last-1]",
        "position": "last-1",
    }
    assert not same_site(site(3), other_token)
