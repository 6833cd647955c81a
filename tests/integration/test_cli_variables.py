"""A fit on some of a hypothesis's variables, saved and evaluated from the command line: the
evaluation keeps the variables the alignment was trained on, labels each box's IIA by its own
variable, and refuses a hypothesis with another number of boxes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from das_assert.cli import main

pytestmark = pytest.mark.slow

SMALL = ["--n-train=120", "--epochs=1", "--n-test=40"]


def test_a_saved_subset_is_evaluated_on_its_own_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved, fitted, scored = (tmp_path / n for n in ("a.safetensors", "fit.json", "eval.json"))
    fit = ["fit", "--hypothesis=left_and_right_boundary", "--layer=0", "--variables", "right"]
    assert main([*fit, *SMALL, f"--save={saved}", f"--json={fitted}"]) == 0
    assert main(["evaluate", f"--alignment={saved}", "--n-test=40", f"--json={scored}"]) == 0
    (first,), (again,) = (json.loads(p.read_text())["results"] for p in (fitted, scored))
    assert first["variable"] == again["variable"] == "right"
    fingerprint = json.loads(fitted.read_text())["model"]["fingerprint"]
    assert again["alignment"] == {
        "file": str(saved),
        "trained_on": fingerprint,
        "transfer": False,
        "trained_dtype": "float32",
    }
    assert "trained on another model" not in capsys.readouterr().out
    # a box it never trained, asked for by name, was scored as any IIA is, without a word
    assert main(["evaluate", f"--alignment={saved}", "--n-test=40", "--variables", "left"]) == 0
    assert capsys.readouterr().out.startswith(
        f"note: {saved} was trained on right alone; the box of left never trained (no pair "
        "swapped it), so its IIA here measures an untrained box"
    )
    # the same alignment scored on "another model": the note comes first and names its weights
    # (it came after the numbers, with the fingerprint printed as a Python dict)
    from das_assert.models import LoadedModel

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LoadedModel, "fingerprint", {"weights": "f" * 64})
        assert main(["evaluate", f"--alignment={saved}", "--n-test=40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"note: {saved} was trained on another model (weights {fingerprint['weights'][:12]}...)"
    )
    assert "{" not in out.splitlines()[0]
    # the same weights with another tokenizer setting (padding_side, a chat template): the
    # note named the weights, which matched, as "another model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LoadedModel, "fingerprint", {**fingerprint, "tokenizer": "0" * 64})
        assert main(["evaluate", f"--alignment={saved}", "--n-test=40"]) == 0
    assert capsys.readouterr().out.startswith(
        f"note: {saved} was trained on this model's weights with other tokenizer files: this "
        "is a transfer, not a fit here"
    )
    assert set(again["iia_by_variable"]) == {"right"}
    assert {p["variable_index"] for p in again["pairs"]} == {1}
    assert main(["evaluate", f"--alignment={saved}", "--hypothesis=left_boundary"]) == 2
    assert "has 2 box(es), for left_and_right_boundary; left_boundary needs 1" in (
        capsys.readouterr().err
    )


def test_each_box_is_labelled_by_its_own_variable(tmp_path: Path) -> None:
    report = tmp_path / "fit.json"
    fit = ["fit", "--hypothesis=left_and_right_boundary", "--layer=0", "--variables"]
    assert main([*fit, "right", "left", *SMALL, f"--json={report}"]) == 0
    (record,) = json.loads(report.read_text())["results"]
    correct, n = Counter(), Counter()
    for pair in record["pairs"]:
        n[pair["variable_index"]] += 1
        correct[pair["variable_index"]] += pair["correct"]
    assert record["variable"] == "left+right"
    assert record["iia_by_variable"] == {
        "left": {"correct": correct[0], "n": n[0]},
        "right": {"correct": correct[1], "n": n[1]},
    }


def test_a_negative_layer_is_reported_and_saved_as_its_block(tmp_path: Path) -> None:
    from das_assert.alignment_file import load_alignment

    saved, report = tmp_path / "a.safetensors", tmp_path / "fit.json"
    fit = ["fit", "--hypothesis=left_boundary", "--layer=-4", *SMALL, "--min-task-accuracy=0"]
    assert main([*fit, f"--save={saved}", f"--json={report}"]) == 0
    (record,) = json.loads(report.read_text())["results"]
    assert record["site"]["canonical"] == "block_output[layer=0, pos=last]"  # 4 blocks
    assert load_alignment(saved)[1]["site"] == "block_output[layer=0, pos=last]"


def test_evaluate_scores_on_the_alignments_own_seed_and_notes_another_hypothesis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seed 0's test pairs are seed 100003's training pairs: an alignment fitted at seed 100003
    # was scored on its own training pairs by evaluate's default --seed 0.
    saved, scored = tmp_path / "a.safetensors", tmp_path / "eval.json"
    fit = ["fit", "--hypothesis=left_boundary", "--layer=0", "--seed=100003", *SMALL]
    assert main([*fit, f"--save={saved}"]) == 0
    assert main(["evaluate", f"--alignment={saved}", "--n-test=40", f"--json={scored}"]) == 0
    (record,) = json.loads(scored.read_text())["results"]
    assert record["seed"] == 100003
    # --seed 0 names that stream again: its test pairs stay apart from the pairs the alignment
    # was fitted on, not only from seed 0's training stream (all 40 were training pairs)
    from das_assert.experiment import Experiment

    fitted_at = Experiment(hypothesis="left_boundary", site="block_output[layer=0, pos=last]")
    training = fitted_at.keeping_definition(n_train=120, seed=100003).train_pairs()
    fitted_on = {(p.base.text, p.source.text, p.variable_index) for p in training}
    assert (
        main(["evaluate", f"--alignment={saved}", "--seed=0", "--n-test=40", f"--json={scored}"])
        == 0
    )
    (record,) = json.loads(scored.read_text())["results"]
    judged = {(p["base_prompt"], p["source_prompt"], p["variable_index"]) for p in record["pairs"]}
    assert record["seed"] == 0
    assert len(judged) == 40
    assert not judged & fitted_on
    capsys.readouterr()
    other = ["evaluate", f"--alignment={saved}", "--n-test=40", "--hypothesis=midpoint_distance"]
    main(other)
    assert "was trained for left_boundary; scored here under midpoint_distance" in (
        capsys.readouterr().out
    )
