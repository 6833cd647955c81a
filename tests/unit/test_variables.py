"""A claim on a subset of a hypothesis's variables: boxes, labels and keys follow the alignment's
order, whatever order the user names them in."""

from __future__ import annotations

from typing import Any

import torch

from das_assert.experiment import Experiment, run_experiment
from das_assert.featurizers import Interchange
from das_assert.fit import FitConfig, FittedAlignment
from das_assert.sites import Site


def both(**changes: Any) -> Experiment:
    return Experiment(hypothesis="left_and_right_boundary", site=Site(0), **changes)


def test_a_subset_is_kept_in_the_alignments_box_order() -> None:
    named = both(variables=("right", "left"))
    assert named.variables == ("left", "right")
    assert named.variable == "left+right"
    assert both(variables=("right",)).variable == "right"


def test_a_subsets_pairs_use_the_box_of_their_variable() -> None:
    pairs = both(variables=("right",), n_test=40).test_pairs()
    assert {pair.variable_index for pair in pairs} == {1}  # right is the second box


def test_a_claim_is_collapsed_only_by_the_boxes_of_its_own_variables(tiny_llama: Any) -> None:
    # Trained on "left" alone, the "right" box sees only the penalty and shrinks to 0; the claim
    # on "left" was once judged collapsed (not aligned) for it, whatever its IIA.
    d = tiny_llama.config.hidden_size
    interchange = Interchange.boundless(d, 2)
    with torch.no_grad():
        interchange.widths.copy_(torch.tensor([0.5, 0.0]))
    site = Site(0).resolve(tiny_llama.model)
    fitted = FittedAlignment(interchange, site, FitConfig(), n_train=0, train_seconds=0.0)
    assert fitted.collapsed
    assert not fitted.collapsed_for([0])
    assert fitted.collapsed_for([1])

    def claim(*variables: str) -> Any:
        exp = both(variables=variables, n_test=16, threshold=0.5, min_task_accuracy=0.0)
        return run_experiment(tiny_llama, exp, fitted=fitted)

    left, right, either = claim("left"), claim("right"), claim("left", "right")
    assert not left.collapsed
    assert left.to_dict()["collapsed"] is False
    # The pairs whose label must change, where the no-op scores nothing, counted on their own.
    record = left.to_dict()
    changed = record["iia_on_changed_labels"]
    assert changed["n"] == round(record["n_test"] * (1 - record["unchanged_label_rate"]))
    assert 0 <= changed["correct"] <= min(changed["n"], record["iia_successes"])
    flags = [p.expected != p.base_expected for p in left.evaluation.test.pairs]
    hits = left.evaluation.correct.tolist()
    assert changed["correct"] == sum(h for h, f in zip(hits, flags, strict=True) if f)
    assert "collapsed" not in left.verdict().reason
    assert right.collapsed
    assert either.collapsed
    assert right.verdict().outcome == "not_aligned"
    assert "collapsed" in right.verdict().reason


def test_a_box_of_the_whole_vector_is_not_judged_against_a_random_rotation(
    tiny_llama: Any, monkeypatch: Any
) -> None:
    # --method full: a random rotation with the whole vector boxed is the same intervention, so
    # "does not beat random_rotation by 0.05" once made every such claim not aligned. A learned
    # box that grew to the whole vector keeps the control: it shows no subspace, and must say so.
    import das_assert.evaluate as evaluate

    seen: list[set[str]] = []
    real = evaluate.verdict

    def spy(**kwargs: Any) -> Any:
        seen.append(set(kwargs["gaps"]))
        return real(**kwargs)

    monkeypatch.setattr(evaluate, "verdict", spy)
    d = tiny_llama.config.hidden_size
    site = Site(0).resolve(tiny_llama.model)
    exp = Experiment(
        hypothesis="left_boundary", site=Site(0), n_test=16, threshold=0.5, min_task_accuracy=0.0
    )
    grown = Interchange.boundless(d, 1)
    with torch.no_grad():
        grown.widths.fill_(1.0)
    assert grown.hard_widths() == [d]
    for interchange in (Interchange.full(d, 1), Interchange.boundless(d, 1), grown):
        fitted = FittedAlignment(interchange, site, FitConfig(), n_train=0, train_seconds=0.0)
        run_experiment(tiny_llama, exp, fitted=fitted).verdict()
    assert seen == [{"noop"}, {"noop", "random_rotation"}, {"noop", "random_rotation"}]


def test_an_experiment_without_a_fit_config_is_fitted_at_its_own_seed(tiny_llama: Any) -> None:
    # run_experiment(model, Experiment(seed=s)) once changed the data with s but fitted at seed 0.
    exp = Experiment(
        hypothesis="left_boundary", site=Site(0), n_train=8, n_test=8, seed=5, min_task_accuracy=0
    )
    assert run_experiment(tiny_llama, exp).fitted.config.seed == 5


def test_a_claims_summary_names_each_box_and_the_ones_it_did_not_judge() -> None:
    # A Right Boundary claim printed "boundary [64, 9]": the untrained left box read as learned.
    from types import SimpleNamespace

    from das_assert.experiment import AlignmentResult

    def boxes(experiment: Experiment) -> str:
        fake = SimpleNamespace(experiment=experiment, fitted=SimpleNamespace(boundary_dims=[64, 9]))
        return AlignmentResult.boundary_text(fake)  # type: ignore[arg-type]

    assert boxes(both(variables=("right",))) == "left=64 (not claimed), right=9"
    assert boxes(both()) == "left=64, right=9"
