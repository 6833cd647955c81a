"""A causal model of the user's own, registered once, works wherever a built-in one does; a
model that would fail later (wrong inputs, a mechanism that raises, an output that is not a
boolean, a name taken by another model) is refused at registration, with what to change."""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from das_assert.cache import cache_key
from das_assert.causal import CausalModel
from das_assert.cli_args import causal_model_files
from das_assert.errors import InvalidArgument, PreconditionFailed
from das_assert.experiment import Experiment, run_experiment
from das_assert.fit import FitConfig
from das_assert.sites import Site
from das_assert.tasks import registry
from das_assert.tasks.price_tagging import CAUSAL_MODELS, INTERVENED_VARIABLES, prompt_pairs
from das_assert.tasks.registry import import_causal_models, register_causal_model


@pytest.fixture(autouse=True)
def restored_registry(imported_models_files_let_go: None) -> Iterator[None]:
    """Each test registers into the process-wide registry; put it back as it was."""
    tables = (CAUSAL_MODELS, INTERVENED_VARIABLES, registry._registered)
    saved = [dict(table) for table in tables]
    calls, definitions = list(registry._registrations), list(registry._definitions)
    yield
    for live, before in zip(tables, saved, strict=True):
        live.clear()
        live.update(before)
    registry._registrations[:] = calls
    registry._definitions[:] = definitions


def right_boundary(name: str = "mine", *, answer=None) -> CausalModel:
    return CausalModel(
        name=name,
        inputs=("lo", "hi", "x"),
        mechanisms={
            "right": lambda x, hi: x <= hi,
            "answer": answer or (lambda right, x, lo: right and x >= lo),
        },
        output="answer",
    )


def test_a_registered_model_labels_pairs_and_makes_experiments() -> None:
    name = register_causal_model(right_boundary(), intervened=("right",))
    pairs = prompt_pairs(name, 40, seed=3)
    for pair in pairs:
        base, source = pair.inputs["base"], pair.inputs["source"]
        right = source["x"] <= source["hi"]  # computed on the source run, swapped into the base
        assert pair.expected == ("Yes" if right and base["x"] >= base["lo"] else "No")
    assert Experiment(hypothesis=name, site=Site(0)).variables == ("right",)


def test_the_same_model_registered_twice_is_accepted_another_one_is_refused() -> None:
    register_causal_model(right_boundary(), intervened=("right",))
    register_causal_model(right_boundary(), intervened=("right",))  # a module imported twice
    # Differs only one cent past the upper bound, where the sampler almost never draws.
    other = right_boundary(answer=lambda right, x, lo: right and x >= lo and x != 0)
    with pytest.raises(InvalidArgument, match=r"'mine' is already registered, by .*test_registry"):
        register_causal_model(other, intervened=("right",))
    with pytest.raises(InvalidArgument, match="already registered"):
        register_causal_model(right_boundary(), intervened=("right", "answer"))
    register_causal_model(other, intervened=("right",), replace=True)  # a notebook's new cell
    assert CAUSAL_MODELS["mine"] is other


def both_boundaries(name: str = "mine") -> CausalModel:
    return CausalModel(
        name=name,
        inputs=("lo", "hi", "x"),
        mechanisms={
            "left": lambda x, lo: x >= lo,
            "right": lambda x, hi: x <= hi,
            "answer": lambda left, right: left and right,
        },
        output="answer",
    )


def test_boxes_given_as_a_set_are_refused_for_their_order_is_not_the_same_twice() -> None:
    # {"left", "right"} laid the boxes out in PYTHONHASHSEED's order: another fit, other pairs
    # and another cache key in each fresh process.
    with pytest.raises(InvalidArgument, match=r"must be a list in box order, e.g. \('left', "):
        register_causal_model(both_boundaries(), intervened={"left", "right"})


def test_redefining_a_model_leaves_earlier_experiments_and_results_as_they_were() -> None:
    # A notebook re-runs its registration cell with two boxes where there was one: results made
    # before kept reading the live tables (their repr and to_dict raised), and an Experiment
    # made before silently fitted the new definition.
    name = register_causal_model(right_boundary(), intervened=("right",))
    before = Experiment(hypothesis=name, site=Site(0))
    register_causal_model(both_boundaries(), intervened=("left", "right"), replace=True)
    assert before.boxes == ("right",)
    assert before.variables == ("right",)
    with pytest.raises(InvalidArgument, match=r"'mine' was registered again .* make the"):
        before.pairs(4, seed=0)
    after = Experiment(hypothesis=name, site=Site(0))
    assert after.boxes == ("left", "right")
    assert len(after.pairs(4, seed=0)) == 4


def test_a_copy_of_an_experiment_made_before_a_redefinition_keeps_its_boxes() -> None:
    # on_variable and a claim's threshold copied a result's experiment with
    # dataclasses.replace, which read the registry again: after the boxes were listed the other
    # way round, the left pairs' IIA was reported under "right" and the widths swapped.
    name = register_causal_model(both_boundaries(), intervened=("left", "right"))
    before = Experiment(hypothesis=name, site=Site(0))
    register_causal_model(both_boundaries(), intervened=("right", "left"), replace=True)
    kept = before.keeping_definition(variables=("left",), threshold=0.7)
    assert (kept.boxes, kept.variables, kept.threshold) == (("left", "right"), ("left",), 0.7)
    assert kept.causal is before.causal
    assert replace(before, threshold=0.7).boxes == ("right", "left")  # replace: made again
    with pytest.raises(InvalidArgument, match=r"variables \['up'\] have no box in mine's"):
        before.keeping_definition(variables=("up",))


@pytest.mark.slow
def test_a_results_variable_is_scored_under_the_definition_it_was_fitted_with() -> None:
    from das_assert.models import load_model

    name = register_causal_model(both_boundaries(), intervened=("left", "right"))
    experiment = Experiment(hypothesis=name, site=Site(0), n_train=16, n_test=64)
    result = run_experiment(load_model(), experiment, FitConfig(epochs=1))
    left = result.on_variable("left")
    register_causal_model(both_boundaries(), intervened=("right", "left"), replace=True)
    again = result.on_variable("left")
    assert again.experiment.boxes == ("left", "right")
    assert again.to_dict(include_pairs=False) == left.to_dict(include_pairs=False)


def test_a_result_made_before_a_redefinition_is_judged_and_saved_under_its_own(
    tiny_models: dict[str, Any], tmp_path: Path
) -> None:
    # judged_on checked pairs against the definition registered now: the result's own pairs
    # were refused and the new definition's scored as its claim; a save after the redefinition
    # recorded the new definition's digest.
    from das_assert.alignment_file import load_alignment

    def shifted(shift: int) -> CausalModel:
        return right_boundary(answer=lambda right, x, lo: right and x >= lo + shift)

    name = register_causal_model(shifted(0), intervened=("right",))
    experiment = Experiment(
        hypothesis=name, site=Site(1), n_train=16, n_test=16, min_task_accuracy=0
    )
    result = run_experiment(tiny_models["llama"], experiment, FitConfig(epochs=1, batch_size=8))
    own_pairs = experiment.pairs(16, seed=7)
    before = result.save(tmp_path / "before.safetensors")
    register_causal_model(shifted(300), intervened=("right",), replace=True)

    assert result.judged_on(own_pairs).n == 16
    newer = Experiment(hypothesis=name, site=Site(1)).pairs(64, seed=7)
    with pytest.raises(InvalidArgument, match=r"make them with result\.experiment\.pairs"):
        result.judged_on(newer)  # labelled by the definition registered since
    after = result.save(tmp_path / "after.safetensors")
    saved = [load_alignment(path, hidden_size=None)[1]["causal_model"] for path in (before, after)]
    assert saved[0] == saved[1]


def test_pairs_shared_in_a_session_follow_the_definition_registered_at_each_experiment(
    tiny_models: dict[str, Any],
) -> None:
    # The shared tokenization was keyed by the causal model's name: a second definition
    # registered under it in one session was fitted and scored on the first one's pairs.
    from das_assert import sharing
    from das_assert.experiment import _encoded

    model = tiny_models["llama"]
    moved = right_boundary(answer=lambda right, x, lo: right and x >= lo + 100)
    with sharing.sharing():  # a pytest session's
        name = register_causal_model(right_boundary(), intervened=("right",))
        shared_first = _encoded(model, Experiment(hypothesis=name, site=Site(0)), "test").pairs
        register_causal_model(moved, intervened=("right",), replace=True)
        second = Experiment(hypothesis=name, site=Site(0))
        shared_second = _encoded(model, second, "test").pairs
    assert [p.expected for p in shared_second] == [p.expected for p in second.test_pairs()]
    assert [p.expected for p in shared_first] != [p.expected for p in shared_second]


def test_a_difference_only_on_a_bound_is_told_apart() -> None:
    # 512 sampled probes put the amount exactly one cent past the bound about once: edges too.
    def bound_moved_by(offset: int):
        return lambda x, hi: x <= hi + offset

    for offset in (-1, 1):  # differs only at x == hi, or only at x == hi + 1
        near = bound_moved_by(offset)
        a = register_causal_model(right_boundary(f"a{offset + 1}"), intervened=("right",))
        b = register_causal_model(
            CausalModel(
                name=f"b{offset + 1}",
                inputs=("lo", "hi", "x"),
                mechanisms={"right": near, "answer": lambda right, x, lo: right and x >= lo},
                output="answer",
            ),
            intervened=("right",),
        )
        assert registry._registered[a].behaviour != registry._registered[b].behaviour


def test_a_numpy_boolean_output_is_a_boolean() -> None:
    numpy = pytest.importorskip("numpy")
    model = right_boundary(answer=lambda right, x, lo: numpy.bool_(right and x >= lo))
    assert register_causal_model(model, intervened=("right",)) == "mine"


@pytest.mark.parametrize(
    ("model", "intervened", "message"),
    [
        (right_boundary("left_boundary"), ("right",), "one of das_assert's own causal models"),
        (right_boundary("mine.v2"), ("right",), "must be a Python identifier"),
        (right_boundary(), "right", "not a string"),
        (right_boundary(), ("right", "right"), "names a variable twice"),
        (right_boundary(), [1], r"intervened=\[1\] must be a list of the model's variable names"),
        (right_boundary(), ("rigth",), "Did you mean 'right'"),
        (
            CausalModel(
                name="two_inputs",
                inputs=("lo", "x"),
                mechanisms={"left": lambda x, lo: x >= lo, "answer": lambda left: left},
                output="answer",
            ),
            ("left",),
            "reads exactly the inputs lo, hi and x",
        ),
        (
            right_boundary(answer=lambda right, x, lo: "Yes" if right and x >= lo else "No"),
            ("right",),
            "must be True or False",
        ),
        (
            right_boundary(answer=lambda right, x, lo: right and 1 / (x - lo) > 0),
            ("right",),
            r"raised ZeroDivisionError",
        ),
        ("not a model", ("right",), "takes a das_assert.CausalModel"),
        (  # it trained a whole alignment, then came back inconclusive: no label could change
            CausalModel(
                name="mine",
                inputs=("lo", "hi", "x"),
                mechanisms={
                    "cheap": lambda lo: lo < 500,
                    "answer": lambda cheap, lo, hi, x: lo <= x <= hi,
                },
                output="answer",
            ),
            ("cheap",),
            r"mine: taking 'cheap' from a source changes the answer on none of the \d+ probe "
            r"pairs .* intervene on a variable the answer depends on",
        ),
    ],
)
def test_a_model_that_would_fail_later_is_refused_at_registration(
    model: object, intervened: object, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        register_causal_model(model, intervened=intervened)  # type: ignore[arg-type]
    assert "mine" not in CAUSAL_MODELS


def test_a_mechanism_that_raises_only_on_narrow_brackets_is_refused_at_registration() -> None:
    import math

    model = CausalModel(
        name="mine",
        inputs=("lo", "hi", "x"),
        mechanisms={
            "right": lambda x, hi, lo: x <= hi and math.log(hi - lo - 200) > -1,
            "answer": lambda right, x, lo: right and x >= lo,
        },
        output="answer",
    )
    with pytest.raises(InvalidArgument, match="math domain error"):
        register_causal_model(model, intervened=("right",))


def test_a_mechanism_that_raises_while_pairs_are_drawn_names_the_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Registration probes cannot cover every fixed bracket a fuzzer draws.
    model = right_boundary(answer=lambda right, x, lo: right and 1 // (x - 321) >= 0)
    monkeypatch.setitem(CAUSAL_MODELS, "mine", model)
    monkeypatch.setitem(INTERVENED_VARIABLES, "mine", ("right",))
    with pytest.raises(InvalidArgument, match=r"mine: computing 'answer' on base .*'x': 321"):
        prompt_pairs(
            "mine", 10, seed=0, bracket=(300, 340), edit=lambda v, r, role: {**v, "x": 321}
        )


def test_the_error_names_the_mechanism_that_raised_not_the_output() -> None:
    # A raising 'right' was reported as "computing 'answer'", the output, sending users to the
    # wrong function.
    def right(x: int, hi: int) -> bool:
        if x > 900:
            raise ValueError("boom in right")
        return x <= hi

    model = CausalModel(
        name="mine",
        inputs=("lo", "hi", "x"),
        mechanisms={"right": right, "answer": lambda right, x, lo: right and x >= lo},
        output="answer",
    )
    with pytest.raises(InvalidArgument, match=r"mine: computing 'right' on base .* boom in right"):
        register_causal_model(model, intervened=("right",))


def test_a_raising_mechanism_is_shown_with_the_inputs_that_raise() -> None:
    model = right_boundary(answer=lambda right, x, lo: right and 1 / (x - lo) > 0)
    with pytest.raises(InvalidArgument) as raised:
        register_causal_model(model, intervened=("right",))
    assert "on base {'lo': " in str(raised.value)


def test_a_changed_mechanism_under_the_same_name_is_another_cache_entry() -> None:
    # Across two runs a user edits the mechanism but keeps the name: the cached alignment was
    # trained on the old labels and must not be reused.
    def key() -> str:
        model = SimpleNamespace(fingerprint={"weights": "w"}, dtype="float32", device="cpu")
        experiment = Experiment(hypothesis="mine", site=Site(0), n_train=64)
        return cache_key(model, experiment, FitConfig())

    register_causal_model(right_boundary(), intervened=("right",))
    first = key()
    assert key() == first
    for table in (CAUSAL_MODELS, INTERVENED_VARIABLES, registry._registered):
        del table["mine"]  # the next run's process
    register_causal_model(
        right_boundary(answer=lambda right, x, lo: right and x >= lo + 50), intervened=("right",)
    )
    assert key() != first
    for table in (CAUSAL_MODELS, INTERVENED_VARIABLES, registry._registered):
        del table["mine"]
    register_causal_model(right_boundary(), intervened=("right", "answer"))
    assert key() not in (first,)  # other boxes: a cached one-box alignment does not fit it


def test_an_unknown_hypothesis_says_how_to_bring_your_own() -> None:
    with pytest.raises(InvalidArgument, match="register_causal_model"):
        Experiment(hypothesis="mine", site=Site(0))


MODELS_FILE = """
from das_assert import CausalModel, register_causal_model

register_causal_model(
    CausalModel(
        name="mine",
        inputs=("lo", "hi", "x"),
        mechanisms={
            "right": lambda x, hi: x <= hi,
            "answer": lambda right, x, lo: right and x >= lo,
        },
        output="answer",
    ),
    intervened=("right",),
)
"""


def test_the_command_line_imports_the_files_that_register_models(tmp_path: Path) -> None:
    models = tmp_path / "models.py"
    models.write_text(MODELS_FILE)
    argv = ["fit", "--hypothesis=mine", f"--causal-models={models}", "--layer=0"]
    assert causal_model_files(argv) == [str(models)]
    assert causal_model_files(["fit", "--causal-models"]) == []  # the full parser says what
    assert import_causal_models(causal_model_files(argv)) == ["mine"]
    assert INTERVENED_VARIABLES["mine"] == ("right",)


def test_a_models_file_imports_its_neighbours_as_pytest_would(tmp_path: Path) -> None:
    (tmp_path / "shared_mechanisms_xyz.py").write_text("def right(x, hi):\n    return x <= hi\n")
    models = tmp_path / "models.py"
    models.write_text(
        "from shared_mechanisms_xyz import right\n"
        + MODELS_FILE.replace('"right": lambda x, hi: x <= hi', '"right": right')
    )
    assert import_causal_models([models]) == ["mine"]


SHARED_HELPER = """
from das_assert import CausalModel, register_causal_model


def at_least(name, cents):  # through helpers of helpers: a chain cut at four calls matched
    return _checked(name, cents)


def _checked(name, cents):
    return _built(name, cents)


def _built(name, cents):
    return _registered(name, cents)


def _registered(name, cents):
    return register_causal_model(
        CausalModel(
            name=name,
            inputs=("lo", "hi", "x"),
            mechanisms={"ge": lambda x: x >= cents, "answer": lambda ge, x, lo, hi: ge and x <= hi},
            output="answer",
        ),
        intervened=("ge",),
    )
"""


def test_one_name_registered_through_a_shared_helper_by_two_files_is_refused(
    tmp_path: Path,
) -> None:
    # the helper's line was the registration's place for both files, so the second was taken
    # for the first imported again and replaced it: file a's claims were labelled by file b's
    (tmp_path / "helpers_at_least_xyz.py").write_text(SHARED_HELPER)
    use = "from helpers_at_least_xyz import at_least\n\nHYPOTHESIS = at_least('ge_bound', {})\n"
    (tmp_path / "a.py").write_text(use.format(550))
    (tmp_path / "b.py").write_text(use.format(600))
    assert import_causal_models([tmp_path / "a.py"]) == ["ge_bound"]
    assert import_causal_models([tmp_path / "a.py"]) == ["ge_bound"]  # the same file again
    with pytest.raises(InvalidArgument, match=r"'ge_bound' is already registered, by .*a\.py:3"):
        import_causal_models([tmp_path / "b.py"])
    assert CAUSAL_MODELS["ge_bound"].mechanisms["ge"](575) is True  # a's, unreplaced


def test_an_abbreviated_causal_models_option_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from das_assert.cli import main

    models = tmp_path / "models.py"
    models.write_text(MODELS_FILE)
    assert main(["fit", "--hypothesis=left_boundary", f"--causal-model={models}", "--layer=0"]) == 2
    assert "--causal-model: write --causal-models in full" in capsys.readouterr().err
    # with a hypothesis of that file, --hypothesis was refused first: "name its file with
    # --causal-models FILE", which the user had (abbreviated)
    assert main(["fit", "--causal-model", str(models), "--hypothesis", "mine", "--layer=0"]) == 2
    assert "--causal-model: write --causal-models in full" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.py", "does not exist"),
        (None, "folder", "is a directory"),
        ("import pytest\npytest.importorskip('no_such_module_xyz')\n", "models.py", "Skipped"),
        ("x = 1\n", "models.txt", "is not a .py file"),
        ("raise RuntimeError('no GPU here')\n", "models.py", "RuntimeError: no GPU here"),
        ("x = 1\n", "models.py", "registered no causal model"),
    ],
)
def test_a_models_file_that_registers_nothing_is_one_clear_error(
    tmp_path: Path, content: str | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    elif name == "folder":
        path.mkdir()
    modules = set(sys.modules)
    with pytest.raises(InvalidArgument, match=message):
        import_causal_models([path])
    if "registered no" not in message:  # a failed import leaves no half-imported module
        assert set(sys.modules) - modules <= {"no_such_module_xyz"}


def test_a_failed_precondition_says_where_the_causal_model_answers_otherwise_than_the_task(
    tiny_llama: Any,
) -> None:
    # answer = left ignores the upper bound: the gate blamed the model ("check the prompt
    # format and answer words") where the causal model's output was what disagreed.
    register_causal_model(
        CausalModel(
            name="mine",
            inputs=("lo", "hi", "x"),
            mechanisms={"left": lambda x, lo: x >= lo, "answer": lambda left, hi: left},
            output="answer",
        ),
        intervened=("left",),
    )
    experiment = Experiment(hypothesis="mine", site=Site(0), n_train=8, n_test=40)
    pairs = experiment.test_pairs()
    bases = [pair.inputs["base"] for pair in pairs]
    differ = sum(
        (pair.base_expected == "Yes") != (base["lo"] <= base["x"] <= base["hi"])
        for pair, base in zip(pairs, bases, strict=True)
    )
    assert 0 < differ < len(pairs)
    with pytest.raises(PreconditionFailed) as failed:
        run_experiment(tiny_llama, replace(experiment, min_task_accuracy=0.99))
    assert (
        f"(and causal model 'mine' answers otherwise than the task itself, Yes iff lo <= x <= "
        f"hi, on {differ} of these 40 prompts: its output mechanism may be what is wrong, not "
        "the model)"
    ) in str(failed.value)
    assert Experiment(hypothesis="left_boundary", site=Site(0)).disagreement_note() == ""


def test_a_claim_whose_pairs_no_label_changes_on_is_refused_before_training(
    tiny_llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it trained (a minute on the embedded model, hours at 7B) and was then inconclusive:
    # "only 0 of 300 pairs have a label the intervention must change"
    import das_assert.experiment as experiment_module

    free = CausalModel(
        name="free",
        inputs=("lo", "hi", "x"),
        mechanisms={
            "free": lambda x: x == 0,
            "answer": lambda free, x, lo, hi: free or lo <= x <= hi,
        },
        output="answer",
    )
    name = register_causal_model(free, intervened=("free",))  # x = 0 is among the probes
    monkeypatch.setattr(experiment_module, "fit_alignment", lambda *a, **k: pytest.fail("fit"))
    experiment = Experiment(hypothesis=name, site=Site(0), n_train=8, n_test=16)
    with pytest.raises(
        PreconditionFailed,
        match=r"none of the 16 test pairs of free \(variables "
        r"free\) has a label the intervention must change",
    ):
        run_experiment(tiny_llama, experiment, FitConfig(epochs=1, batch_size=8))


class _AtMost:
    """A mechanism as a callable object."""

    def __init__(self, margin: int) -> None:
        self.margin = margin

    def __call__(self, x: int, hi: int) -> bool:
        return x <= hi + self.margin


def _at_most(margin: int, x: int, hi: int) -> bool:
    return x <= hi + margin


@pytest.mark.parametrize(
    ("same", "other"),
    [
        (  # each a new function object, as a file imported again (another address) makes
            lambda: functools.partial(types.FunctionType(_at_most.__code__, globals()), 0),
            lambda: functools.partial(_at_most, 5),
        ),
        (lambda: _AtMost(0), lambda: _AtMost(5)),
    ],
    ids=["functools.partial", "a callable object"],
)
def test_a_mechanism_that_is_no_function_has_one_identity_in_every_process(
    same: Any, other: Any
) -> None:
    # identified by its repr, memory address and all: a file saved by `fit` was "trained under
    # another definition" when `evaluate` loaded the same file, and a notebook cell run again
    # was refused as "already registered ... with other mechanisms"
    def model(right: Any) -> CausalModel:
        mechanisms = {"right": right, "answer": lambda right, x, lo: right and x >= lo}
        return CausalModel(
            name="mine", inputs=("lo", "hi", "x"), mechanisms=mechanisms, output="answer"
        )

    first, again, changed = model(same()), model(same()), model(other())
    assert registry._identity(first, ("right",)) == registry._identity(again, ("right",))
    assert registry._identity(first, ("right",)) != registry._identity(changed, ("right",))
    register_causal_model(first, intervened=("right",))
    register_causal_model(again, intervened=("right",))  # the same cell run twice
    with pytest.raises(InvalidArgument, match="already registered"):
        register_causal_model(changed, intervened=("right",))


MODES = """
from das_assert import CausalModel
from das_assert.tasks import registry

def closed(x, hi):
    return x <= hi if hi % 3 or "hi" in {"closed", "inclusive", "both"} else x < hi

model = CausalModel(
    name="modes",
    inputs=("lo", "hi", "x"),
    mechanisms={"right": closed, "answer": lambda right, x, lo: right and x >= lo},
    output="answer",
)
print(registry._identity(model, ("right",)))
"""


def test_a_set_of_strings_in_a_mechanism_gives_one_identity_under_every_hash_seed() -> None:
    # a set constant's repr follows PYTHONHASHSEED: evaluate said "trained under another
    # definition" of the file fit --save had just written, and xdist workers disagreed
    import os
    import subprocess

    found = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", MODES], env=env, capture_output=True, text=True, check=True
        )
        found.add(run.stdout.strip())
    assert len(found) == 1, found


def test_a_file_saved_on_another_python_is_judged_by_the_models_answers() -> None:
    # bytecode differs between Python versions: the same lambda had another identity on 3.12
    name = register_causal_model(right_boundary(), intervened=("right",))
    saved = registry.causal_model_manifest(name)
    assert not registry.defined_otherwise(saved, name)
    other_python = {**saved, "causal_model": "0" * 16, "causal_model_python": "3.99"}
    assert not registry.defined_otherwise(other_python, name)
    assert registry.defined_otherwise({**other_python, "causal_model_answers": "1" * 16}, name)
    assert registry.defined_otherwise({**saved, "causal_model": "0" * 16}, name)  # same Python


def test_a_causal_models_file_may_register_a_decoder_block_layout_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the unknown-layout error said to register BLOCK_PATHS in conftest.py, which the command
    # line does not read, and its one file, --causal-models, refused a file without a model
    from das_assert import sites

    monkeypatch.setattr(sites, "BLOCK_PATHS", sites.BLOCK_PATHS)  # put back as it was
    monkeypatch.setitem(sites.BLOCK_PATHS, "placeholder", "model.layers")
    layout = tmp_path / "layout.py"
    layout.write_text("from das_assert.sites import BLOCK_PATHS\nBLOCK_PATHS['xllama'] = 'x.h'\n")
    assert import_causal_models([layout]) == []
    assert sites.BLOCK_PATHS.pop("xllama") == "x.h"
    nothing = tmp_path / "nothing.py"
    nothing.write_text("x = 1\n")
    with pytest.raises(InvalidArgument, match="registered no causal model"):
        import_causal_models([nothing])
