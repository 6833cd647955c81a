"""The terminal summary and the Markdown table: every number a verdict rests on, sites whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from das_assert.report import markdown_table, robustness_summary
from das_assert.summary import fuzz_lines, limit_lines, summary_lines

LONG_SITE = "block_output[layer=12, pos=before:amount]"


def _record(claim: str, site: str, iia: float, verdict: str, test: str) -> dict[str, Any]:
    return {
        "test_id": f"hypotheses/test_x.py::{test}",
        "claim": claim,
        "hypothesis": claim,
        "variable": "left",
        "site": {"canonical": site},
        "iia": iia,
        "iia_ci": (iia - 0.03, iia + 0.02),
        "n_test": 800,
        "baselines": {"noop": 0.689, "majority": 0.512, "random_rotation": 0.641},
        "task_accuracy": 0.973,
        "threshold": 0.73,
        "verdict": verdict,
        "expected_verdict": verdict,
        "passed": True,
        "seed": 0,
    }


RECORDS = [
    _record("left_boundary", "block_output[layer=0, pos=last]", 0.830, "aligned", "test_a"),
    _record("left_boundary.control", LONG_SITE, 0.689, "not_aligned", "test_b"),
]


def test_the_summary_shows_whole_sites_and_the_majority_baseline() -> None:
    lines = summary_lines(RECORDS)
    header, first, second = lines[1], lines[2], lines[3]
    assert LONG_SITE in second  # not cut at a fixed width
    assert "maj" in header.split()
    # The numbers line up under their headings (right-aligned, 5 wide) in every row.
    for row, record in zip((first, second), RECORDS, strict=True):
        for heading, value in (("IIA", record["iia"]), ("maj", 0.512), ("task", 0.973)):
            end = header.index(f" {heading} ") + 1 + len(heading)
            assert row[end - 5 : end] == f"{value:.3f}", (heading, row)
        assert row[header.index("verdict") :].split()[0] == record["verdict"]
    assert "maj / rand" in lines[-1]
    assert "commonest label" in lines[-1]


def test_a_failing_claims_row_names_the_verdict_it_expected_in_both_tables() -> None:
    # A claim expected aligned came out not_aligned: its row must say what was expected, in the
    # terminal and the Markdown table alike, or a failing row reads like a passing one (guards
    # against the "(expected X)" note being dropped from either table).
    failed = {**RECORDS[0], "verdict": "not_aligned", "passed": False}
    row = summary_lines([failed])[2]
    assert row.split()[-3:] == ["not_aligned", "(expected", "aligned)"]
    assert "| not_aligned (expected aligned) |" in markdown_table([failed])
    # ... and a claim that came out as expected has no such note in either
    assert "(expected" not in summary_lines([RECORDS[0]])[2]
    assert "(expected" not in markdown_table([RECORDS[0]])


def test_each_row_of_the_summary_names_its_seed() -> None:
    # the seeds were only listed under the table: two rows of one claim and site under seeds 0
    # and 1 could not be told apart
    other_seed = {**RECORDS[0], "seed": 4294967295, "test_id": "hypotheses/test_x.py::test_c"}
    records = [RECORDS[0], other_seed]
    lines = summary_lines(records)
    header = lines[1]
    end = header.index(" seed ") + len(" seed")
    assert [row[end - 10 : end].strip() for row in lines[2:4]] == ["0", "4294967295"]


def test_the_summary_shows_every_digit_of_the_threshold_the_verdict_used() -> None:
    record = _record("left_boundary", "block_output[layer=0, pos=last]", 0.83, "aligned", "t")
    header = summary_lines([record])[1]
    end = header.index(" thr ") + 4
    for threshold, shown in ((0.725, "0.725"), (0.7, " 0.70"), (0.73, " 0.73")):
        row = summary_lines([{**record, "threshold": threshold}])[2]
        assert row[end - 5 : end] == shown


def test_the_markdown_table_shows_every_digit_of_the_threshold_too() -> None:
    record = _record("left_boundary", "block_output[layer=0, pos=last]", 0.83, "aligned", "t")
    row = markdown_table([{**record, "threshold": 0.725}]).splitlines()[2]
    assert "| 0.725 |" in row


def test_a_run_of_fuzz_tests_only_prints_no_claim_legend() -> None:
    assert summary_lines([]) == []


def test_the_summary_marks_a_result_judged_on_fresh_pairs() -> None:
    record = _record("left_boundary.search", "block_output[layer=0, pos=last]", 0.8, "aligned", "t")
    assert "fresh pairs" not in summary_lines([record])[2]
    row = summary_lines([{**record, "test_pairs": "confirmation"}])[2]
    assert "(confirmed on fresh pairs)" in row
    given = summary_lines([{**record, "test_pairs": "given"}])[2]
    assert "(on the pairs given to judged_on)" in given


def test_the_summary_names_the_variable_of_a_row_on_one_box_of_a_joint_alignment() -> None:
    # the two per-boolean rows of Left and Right Boundary read the same but for their numbers
    record = _record(
        "left_and_right_boundary.each", "block_output[layer=0, pos=last]", 0.8, "aligned", "t"
    )
    joint = {**record, "variable": "left+right", "boundary_dims": [40, 30]}
    assert "alone" not in summary_lines([joint])[2]
    one = summary_lines([{**joint, "variable": "right"}])[2]
    assert "(variable right alone)" in one
    single = {**record, "variable": "left", "boundary_dims": [55]}  # Left Boundary: one box
    assert "alone" not in summary_lines([single])[2]


def test_the_summary_says_when_a_record_has_no_majority_baseline() -> None:
    record = _record("left_boundary", "block_output[layer=0, pos=last]", 0.83, "aligned", "t")
    del record["baselines"]["majority"]
    assert "–" in summary_lines([record])[2]


def test_the_markdown_table_has_a_cell_for_every_heading() -> None:
    lines = markdown_table(RECORDS).splitlines()
    header, rule, rows = lines[0], lines[1], lines[2:4]
    assert "majority" in header
    cells = header.count("|")
    assert rule.count("|") == cells
    for row in rows:
        assert row.count("|") == cells
        assert "0.512" in row
    assert f"`{LONG_SITE}`" in rows[1]


def _fuzz(
    variant: str, family: str, status: str, correct: int = 0, n: int = 0, noop: float = 0.5
) -> dict:
    return {
        "claim": "left_boundary",
        "site": "block_output[layer=0, pos=last]",
        "seed": 0,
        "variant": variant,
        "families": [family],
        "status": status,
        "correct": correct,
        "n": n,
        "noop": noop if n else None,
        "majority": 0.5 if n else None,
        "random_rotation": noop - 0.1 if n else None,
        "task_accuracy": 0.9 if n else None,
    }


FUZZ = [
    _fuzz("PromptVariant(bracket=(100, 500))", "bracket", "holds", 45, 48, noop=0.6),
    _fuzz("PromptVariant(bracket=(200, 900))", "bracket", "broken", 30, 48, noop=0.7),
    _fuzz("PromptVariant(bracket=(100, 500))", "bracket", "holds", 45, 48),  # drawn again
    _fuzz("PromptVariant(bracket=(300, 800))", "bracket", "inconclusive", 36, 48, noop=0.65),
    _fuzz("PromptVariant(phrasing=2)", "phrasing", "rejected: task accuracy 0.6"),
]


def test_the_robustness_table_gives_each_pooled_iia_its_n_and_interval() -> None:
    from das_assert.metrics import clustered_interval, wilson_interval

    lines = fuzz_lines(FUZZ)
    assert "95% CI clustered by variant" in lines[0]
    assert "distinct" in lines[0]  # a variant drawn twice has the same pairs: counted once
    bracket = next(line for line in lines if " bracket " in line)
    low, high = clustered_interval([(45, 48), (30, 48), (36, 48)])
    # the variants' IIAs (0.94, 0.62, 0.75) differ: wider than if all 144 pairs were independent
    wilson = wilson_interval(111, 144)
    assert low < wilson[0] - 0.05
    assert high > wilson[1] + 0.05
    assert bracket.split() == [
        "left_boundary",
        "bracket",
        "3",  # variants
        "0",  # rejected
        "1",  # inconclusive: its interval straddles the bar; it neither holds nor breaks
        "1",  # broken
        f"{111 / 144:.3f}",
        f"{low:.3f}-{high:.3f}",
        "144",
        "0.650",  # the no-op over the same 144 pairs: (0.6 + 0.7 + 0.65) * 48 / 144
        "0.500",  # the majority label's share
        "0.550",  # the random rotation
        "0.900",
    ]
    phrasing = next(line for line in lines if " phrasing " in line)
    empty = ["1", "1", "0", "0", "–", "–", "0", "–", "–", "–", "–"]
    assert phrasing.split() == ["left_boundary", "phrasing", *empty]
    assert lines[-1] == "at block_output[layer=0, pos=last], seed=0"
    table = markdown_table([], robustness_summary(FUZZ))
    # no claim judged: a line saying so, not a claim table's header without rows; nor "No
    # claim was judged" above the fuzz table that follows, which had no heading either
    assert table.startswith(
        "No claim table: this run judged no claim; what it measured follows.\n\n"
        "Robustness: each claim's fuzz examples per variant family\n\n| claim | variant family |"
    )
    assert markdown_table([]) == "No claim was judged in this run.\n"
    assert f"| 1 | 1 | 0.771 | [{low:.3f}, {high:.3f}] | 144 | 0.650 | 0.500 | 0.550 | 0.900 |" in (
        table
    )
    assert "| – | – | 0 | – | – | – | – |" in table
    # the Markdown says where and under which seed, as the terminal does
    assert "at block_output[layer=0, pos=last], seed=0" in table
    # and, as the terminal does, what the pooled interval assumes and what its majority is
    assert "interval clustered by variant" in table
    assert "commonest-label share weighted by its pairs" in lines[0]
    assert "commonest-label share, weighted by its pairs" in table


def test_a_pooled_no_op_needs_every_pooled_variant_to_have_one() -> None:
    old = {**_fuzz("PromptVariant(suffix='x')", "context", "holds", 40, 48), "noop": None}
    cell = robustness_summary(
        [*FUZZ, old, _fuzz("PromptVariant(prefix='y')", "context", "holds", 40, 48)]
    )
    context = cell["per_family"]["left_boundary"]["context"]
    assert (context["n"], context["noop"], context["task_accuracy"]) == (96, None, 0.9)


def test_one_variant_on_two_alignments_or_pair_counts_pools_both() -> None:
    plain = "PromptVariant()"
    records = [
        {**_fuzz(plain, "default", "holds", 10, 16), "site": "a", "pairs_asked": 16},
        {**_fuzz(plain, "default", "holds", 40, 64), "site": "b", "pairs_asked": 64},
        {**_fuzz(plain, "default", "holds", 40, 64), "site": "b", "pairs_asked": 64},  # again
        {**_fuzz(plain, "default", "holds", 60, 64), "site": "b", "pairs_asked": 128},
    ]
    cell = robustness_summary(records)["per_family"]["left_boundary"]["default"]
    assert (cell["examples"], cell["correct"], cell["n"]) == (3, 110, 144)


def test_one_variant_on_alignments_of_two_seeds_or_fits_at_one_site_pools_each() -> None:
    # A fuzz test parametrized over seeds draws the same variants for each: the second seed's
    # examples were taken for the first's drawn again, and the row showed seed 0's alone.
    plain = "PromptVariant()"

    def example(seed: int, alignment: str | None, correct: int) -> dict[str, Any]:
        drawn = {**_fuzz(plain, "default", "holds", correct, 64), "site": "a", "seed": seed}
        return {**drawn, "pairs_asked": 64, "alignment": alignment}

    records = [example(0, "f0", 40), example(1, "f1", 50), example(1, "f1", 50)]
    records += [example(1, "f1b", 60), example(2, None, 30), example(2, None, 30)]
    cell = robustness_summary(records)["per_family"]["left_boundary"]["default"]
    # each alignment once: seed 1's two fits apart, a report without the digest by its seed
    assert (cell["examples"], cell["correct"], cell["n"]) == (4, 180, 256)


def test_a_variant_rejected_after_it_was_scored_is_counted_but_not_pooled() -> None:
    # A variant the model fails the task under is rejected with its numbers recorded (n > 0):
    # they must not enter the family's pooled IIA, n or controls (guards against pooling a
    # rejected variant's pairs as if they tested the claim).
    scored = _fuzz("PromptVariant(bracket=(5, 9))", "bracket", "rejected: task 0.4", 2, 48, 0.1)
    cell = robustness_summary([*FUZZ, scored])["per_family"]["left_boundary"]["bracket"]
    without = robustness_summary(FUZZ)["per_family"]["left_boundary"]["bracket"]
    assert (cell["correct"], cell["n"], cell["noop"]) == (111, 144, 0.65)
    assert cell == without | {"examples": 4, "rejected": 1}  # counted, nothing else moved


def test_the_examples_after_a_tests_first_failure_are_listed_but_not_pooled() -> None:
    shrinking = {**_fuzz("PromptVariant(bracket=(300, 900))", "bracket", "broken", 1, 48)}
    records = [*FUZZ, {**shrinking, "after_failure": True}]
    summary = robustness_summary(records)
    assert summary["per_family"] == robustness_summary(FUZZ)["per_family"]
    assert summary["examples"][-1]["after_failure"] is True


def test_a_claim_not_comparable_with_its_baseline_is_not_called_regressed(tmp_path: Path) -> None:
    # das.yaml's answers changed since the baseline: the row said "REGRESSED (1 check(s)
    # failed)" beside a positive delta, while compare called it not comparable.
    from das_assert.compare import not_comparable

    record = _record("left_boundary", "block_output[layer=0, pos=last]", 0.79, "aligned", "t")
    then = {**record, "data": {"answers": ["Yes", "No"]}}
    now = {**record, "data": {"answers": ["True", "False"]}}
    now.update(
        passed=False,
        baseline={"delta": 0.01, "iia_ci": (0.76, 0.82), "path": "b.json", "file": "b"},
        regressions=not_comparable(then, now),
    )
    row = summary_lines([now])[2]
    assert "NOT COMPARABLE (ran on other prompts (answers differ))" in row
    assert "REGRESSED" not in row
    now["regressions"] = [*now["regressions"], "iia dropped by 0.2"]  # and a real drop
    assert "REGRESSED (2 check(s) failed)" in summary_lines([now])[2]


def test_a_regressed_claim_says_so_in_both_tables(tmp_path: Path) -> None:
    from das_assert.baseline import save_baseline

    record = _record("left_boundary", "block_output[layer=0, pos=last]", 0.784, "aligned", "t")
    saved = tmp_path / "0001_v1.json"
    save_baseline(saved, model={}, environment={}, records=[record])
    record.update(
        passed=False,
        baseline={"delta": -0.009, "iia_ci": (0.76, 0.82), "path": str(saved), "file": "b"},
        transfer={"iia": 0.784},
        regressions=["iia dropped by 0.009 (0.793 -> 0.784), more than the allowed 0.001"],
    )
    row = summary_lines([record])[2]
    assert "REGRESSED (1 check(s) failed)" in row
    assert "(expected" not in row  # the verdict itself is the expected one
    markdown = markdown_table([record])
    assert "| left_boundary |" in markdown  # the claim, not hypothesis:variable
    assert "| 800 | 0 |" in markdown  # n, then the seed
    assert "Δ -0.009, transfer 0.784, **regressed**: iia dropped by 0.009" in markdown


def test_improved_follows_the_direction_the_claim_wants() -> None:
    # A negative claim whose IIA rose clearly is moving the way it regresses: never "improved".
    risen = _record("left_boundary.control", LONG_SITE, 0.72, "not_aligned", "t")
    risen["baseline"] = {"delta": 0.08, "iia_ci": (0.606, 0.673)}
    assert "improved" not in summary_lines([risen])[2]
    fallen = _record("left_boundary.control", LONG_SITE, 0.56, "not_aligned", "t")
    fallen["baseline"] = {"delta": -0.08, "iia_ci": (0.606, 0.673), "noop": 0.689}
    assert "(improved: re-save to raise the bar)" in summary_lines([fallen])[2]
    aligned = _record("left_boundary", "block_output[layer=0, pos=last]", 0.9, "aligned", "t")
    aligned["baseline"] = {"delta": 0.08, "iia_ci": (0.786, 0.84), "noop": 0.689}
    assert "(improved: re-save to raise the bar)" in summary_lines([aligned])[2]


def test_an_iia_that_moved_with_its_no_op_is_not_called_improved() -> None:
    # a model worse at the task: the control's IIA fell 0.091 with its no-op (lead +0.000 both
    # times), and the row said "improved: re-save to raise the bar", which would lower it
    fallen = _record("left_boundary.control", LONG_SITE, 0.598, "not_aligned", "t")
    fallen["baselines"] = {**fallen["baselines"], "noop": 0.598}
    fallen["baseline"] = {"delta": -0.091, "iia_ci": (0.656, 0.720), "noop": 0.689}
    assert "improved" not in summary_lines([fallen])[2]
    risen = _record("left_boundary", "block_output[layer=0, pos=last]", 0.9, "aligned", "t")
    risen["baselines"] = {**risen["baselines"], "noop": 0.769}  # the no-op rose by as much
    risen["baseline"] = {"delta": 0.08, "iia_ci": (0.786, 0.84), "noop": 0.689}
    assert "improved" not in summary_lines([risen])[2]
    older = _record("left_boundary", "block_output[layer=0, pos=last]", 0.9, "aligned", "t")
    older["baseline"] = {"delta": 0.08, "iia_ci": (0.786, 0.84)}  # kept no no-op: no claim
    assert "improved" not in summary_lines([older])[2]


def test_each_variant_draws_its_own_numbers_so_pooling_variants_adds_pairs() -> None:
    # Every variant once drew the same 96 number pairs, so a family's pooled n counted each of
    # them once per rewording and its interval was too narrow.
    from das_assert.strategies import PromptVariant
    from das_assert.tasks.price_tagging import prompt_pairs
    from das_assert.variants import variant_seed

    def numbers(variant: PromptVariant) -> list[Any]:
        pairs = prompt_pairs("left_boundary", 32, seed=variant_seed(0, variant))
        return [pair.inputs for pair in pairs]

    plain, prefixed = PromptVariant(), PromptVariant(prefix="I like apples.")
    assert numbers(plain) == numbers(PromptVariant())  # a replayed variant: the same pairs
    assert numbers(plain) != numbers(prefixed)
    assert numbers(prefixed) != numbers(PromptVariant(suffix="I like apples."))


def test_two_fits_at_one_site_are_told_apart_by_their_method() -> None:
    # A one-direction claim (das:1) and a Boundless DAS one at one site read as the same row.
    record = _record("decision", "block_output[layer=1, pos=last]", 0.83, "aligned", "t")
    boundless = {**record, "fit": {"method": "boundless"}}
    one_direction = {**record, "fit": {"method": "das:1"}}
    assert "method" not in summary_lines([boundless])[2]
    assert summary_lines([one_direction])[2].endswith("aligned  (method das:1)")
    assert "| `block_output[layer=1, pos=last]` (das:1) |" in markdown_table([one_direction])
    assert "| `block_output[layer=1, pos=last]` |" in markdown_table([boundless])


def _limit(where: str, iia: float, status: str) -> dict[str, Any]:
    return {
        "test_id": "hypotheses/test_x.py::test_limit",
        "claim": "left_boundary",
        "where": where,
        "site": "block_output[layer=0, pos=last]",
        "seed": 0,
        "iia": iia,
        "iia_ci": [iia - 0.05, iia + 0.04],
        "n": 400,
        "noop": 0.497,
        "task_accuracy": 0.897,
        "changed_labels": {"correct": 72, "n": 204},
        "threshold": 0.75,
        "verdict": "not_aligned" if status == "breaks" else status,
        "status": status,
    }


def test_the_measured_limits_table_gives_each_limit_its_numbers_and_whether_it_broke() -> None:
    limits = [_limit("bracket [7.45, 9.95]", 0.613, "breaks"), _limit("bracket Y", 0.9, "aligned")]
    lines = limit_lines(limits)
    assert lines[0].startswith("--- measured limits")
    header, broke, held = lines[1], lines[2], lines[3]
    for heading, value in (("IIA", "0.613"), ("no-op", "0.497"), ("task", "0.897")):
        end = header.index(f" {heading} ") + 1 + len(heading)
        assert broke[end - 5 : end] == value, heading
    assert "0.563-0.653" in broke
    assert " 400 " in broke
    assert "72/204" in broke
    assert broke.endswith("breaks, as claimed")
    assert held.endswith("NOT SHOWN: aligned")
    assert lines[-1] == "at block_output[layer=0, pos=last], seed=0"
    assert limit_lines([]) == []
    table = markdown_table(RECORDS, None, limits)
    rows = [line for line in table.splitlines() if "bracket" in line]
    assert len(rows) == 2
    assert "**not shown**: aligned" in rows[1]
    heading = next(line for line in table.splitlines() if "claimed to break" in line)
    assert all(row.count("|") == heading.count("|") for row in rows)


def test_recording_a_search_takes_the_grid_search_returned() -> None:
    import pytest

    from das_assert.errors import InvalidArgument
    from das_assert.search import search_record

    with pytest.raises(InvalidArgument, match=r"takes the SearchGrid .* not dict"):
        search_record({"layers": [0]})


def test_one_claim_fuzzed_as_aligned_and_as_its_control_is_two_rows() -> None:
    """An aligned site and its control under one claim name: pooling both would average a
    claim with its own negation."""
    control = {**_fuzz("PromptVariant()", "default", "holds", 30, 64), "expect": "not_aligned"}
    records = [{**_fuzz("PromptVariant()", "default", "holds", 60, 64), "expect": "aligned"}]
    per_family = robustness_summary([*records, control])["per_family"]
    assert per_family["left_boundary"]["default"]["correct"] == 60
    assert per_family["left_boundary (expect not_aligned)"]["default"]["correct"] == 30
    assert list(robustness_summary([control])["per_family"]) == ["left_boundary"]  # alone: as is


def test_rows_fuzzed_at_different_sites_are_each_given_their_site() -> None:
    """A claim at its aligned site and at its control: one list of both sites under the table
    left the reader to guess which row ran where."""
    control = {
        **_fuzz("PromptVariant()", "default", "holds", 30, 64),
        "expect": "not_aligned",
        "site": "block_output[layer=0, pos=before:amount]",
    }
    records = [{**_fuzz("PromptVariant()", "default", "holds", 60, 64), "expect": "aligned"}]
    summary = robustness_summary([*records, control])
    assert summary["sites"] == {
        "left_boundary": ["block_output[layer=0, pos=last]"],
        "left_boundary (expect not_aligned)": ["block_output[layer=0, pos=before:amount]"],
    }
    line = (
        "sites: left_boundary at block_output[layer=0, pos=last]; left_boundary (expect "
        "not_aligned) at block_output[layer=0, pos=before:amount]; seed=0"
    )
    assert line in fuzz_lines([*records, control])
    assert f"\n{line}" in markdown_table([], robustness=summary)
    # One site for every row, or a report of an older das_assert: the one list, as before.
    assert "at block_output[layer=0, pos=last], seed=0" in fuzz_lines(records)
    older = {key: value for key, value in summary.items() if key != "sites"}
    assert (
        "at block_output[layer=0, pos=before:amount]; block_output[layer=0, pos=last], seed=0"
        in (markdown_table([], robustness=older))
    )


def test_a_fuzz_test_with_no_variant_held_is_named_in_both_tables() -> None:
    """All inconclusive or rejected: the test passed, yet showed nothing; a test with one
    variant held, or one broken (it failed), is not named."""
    unshown = [
        {**_fuzz("PromptVariant(phrasing=1)", "phrasing", "inconclusive", 36, 48), "test_id": "a"},
        {**_fuzz("PromptVariant(phrasing=2)", "phrasing", "rejected: task 0.6"), "test_id": "a"},
    ]
    unshown += unshown  # hypothesis drew both again: each counts once, as in the table
    shown = [{**record, "test_id": "b"} for record in FUZZ]
    summary = robustness_summary([*unshown, *shown])
    assert summary["unshown"] == [{"test_id": "a", "inconclusive": 1, "rejected": 1}]
    lines = fuzz_lines([*unshown, *shown])
    assert lines[-1].startswith("no variant held in a: 1 inconclusive, 1 rejected;")
    markdown = markdown_table([], robustness=summary)
    assert "- no variant held in a: 1 inconclusive, 1 rejected;" in markdown
    # a test that failed after its variants (or in its teardown) showed its failure
    assert robustness_summary([*unshown, *shown], not_passed={"a"})["unshown"] == []
    assert not any("no variant held" in line for line in fuzz_lines(unshown, not_passed={"a"}))


def test_a_transfer_that_could_not_be_measured_says_so_in_both_tables(tmp_path: Path) -> None:
    # A baseline whose alignment file was truncated left the row's transfer blank, as if none
    # had been asked for: the damaged baseline went unnoticed under an iia-only gate.
    why = "alignment file 'x.safetensors' is not a readable safetensors file"
    record = _compared(tmp_path, "block_output[layer=0, pos=last]", transfer={"skipped": why})
    assert "transfer not measured" in summary_lines([record])[2]
    assert f"Δ +0.000, transfer not measured: {why}" in markdown_table([record])


def test_a_bound_that_rounds_onto_the_threshold_is_shown_on_its_side_of_it() -> None:
    # 0.72996 under a threshold of 0.73, inconclusive: "0.730-0.790 ... 0.73 inconclusive" read
    # as a lower bound meeting the threshold.
    record = {
        **_record("left_boundary", "block_output[layer=0, pos=last]", 0.76, "inconclusive", "t"),
        "iia_ci": (0.72996, 0.79),
    }
    assert "0.72996-0.790" in summary_lines([record])[2]
    assert "| [0.72996, 0.790] |" in markdown_table([record]).splitlines()[2]
    clear = {**record, "iia_ci": (0.7296, 0.79)}
    assert " 0.7296-0.790 " in summary_lines([clear])[2]
    assert " 0.800-0.850 " in summary_lines([{**record, "iia_ci": (0.8, 0.85)}])[2]


def test_the_command_lines_search_grid_names_its_seed_and_controls() -> None:
    # grid_table gave each cell's IIA, interval and n, but neither the seed nor any control.
    from types import SimpleNamespace

    from das_assert.search import SearchGrid, grid_table

    def cell(iia: float, rotation: float) -> SimpleNamespace:
        return SimpleNamespace(
            iia=iia,
            iia_ci=(iia - 0.03, iia + 0.03),
            n=800,
            experiment=SimpleNamespace(seed=3),
            baselines={"noop": 0.689, "majority": 0.5, "random_rotation": rotation},
            evaluation=SimpleNamespace(task_accuracy=0.973),
        )

    results = {(0, "after:amount"): cell(0.689, 0.689), (0, "last"): cell(0.83, 0.641)}
    grid = SearchGrid("left_boundary", [0], ["after:amount", "last"], results)
    lines = grid_table(grid).splitlines()
    assert "n=800" in lines[0]
    assert lines[1] == (
        "seed=3; no-op 0.689, majority 0.500, random rotation 0.641-0.689, task accuracy 0.973 "
        "(each cell's in the --json report)"
    )
    assert "0.830 [0.800, 0.860]*" in lines[-1]


def test_the_markdown_says_what_pairs_a_row_was_judged_on_as_the_terminal_does() -> None:
    # The Markdown row of a result judged on fresh pairs, on the pairs given to judged_on, or on
    # one variable's pairs of a joint alignment read as if judged on its seed's test pairs.
    base = _record("left_boundary", "block_output[layer=0, pos=last]", 0.8, "aligned", "t")
    records = [
        {**base, "test_pairs": "confirmation"},
        {
            **base,
            "test_pairs": "given",
            "boundary_dims": [9, 7],
            "test_id": "hypotheses/test_x.py::u",
        },
    ]
    rows = markdown_table(records).splitlines()[2:4]
    assert "| aligned (confirmed on fresh pairs) |" in rows[0]
    assert "| aligned (on the pairs given to judged_on) (variable left alone) |" in rows[1]
    terminal = summary_lines(records)
    assert "(confirmed on fresh pairs)" in terminal[2]
    assert "(on the pairs given to judged_on)  (variable left alone)" in terminal[3]


def test_a_claim_that_drifted_says_so_once_in_the_markdown(tmp_path: Path) -> None:
    # "transfer not measured: ... fitted at X, and this run's claim is at Y (drift), drift from
    # `X`": the terminal's row says it once
    was = "block_output[layer=0, pos=last]"
    record = _compared(
        tmp_path,
        "block_output[layer=1, pos=last]",
        transfer={"skipped": f"the baseline's alignment was fitted at {was}, and ... (drift)"},
        drift={"from": was, "to": "block_output[layer=1, pos=last]"},
    )
    table = markdown_table([record])
    assert f"Δ +0.000, drift from `{was}`" in table
    assert "transfer not measured" not in table
    assert "transfer not measured" not in summary_lines([record])[2]


def _compared(tmp_path: Path, site: str, **more: Any) -> dict[str, Any]:
    """An aligned claim at ``site`` compared with a baseline saved of it (Δ 0), and ``more``."""
    from das_assert.baseline import save_baseline

    record = _record("left_boundary", site, 0.830, "aligned", "t")
    saved = tmp_path / "0001_v1.json"
    save_baseline(saved, model={}, environment={}, records=[record])
    baseline = {"delta": 0.0, "iia_ci": (0.80, 0.85), "path": str(saved), "file": "b"}
    return {**record, "baseline": baseline, **more}


def test_a_row_on_other_prompts_than_the_default_says_which() -> None:
    # A negative claim refitted under a sentence of context read as a second, identical-looking
    # row of the default prompt's claim.
    from das_assert import Experiment
    from das_assert.summary import pairs_notes
    from das_assert.tasks.price_tagging import PriceFormat

    site = "block_output[layer=0, pos=last]"
    default = Experiment(hypothesis="bracket_identity", site=site).data_record()
    in_context = Experiment(
        hypothesis="bracket_identity", site=site, fmt=PriceFormat(prefix="Pricing tag game!")
    ).data_record()
    fixed = Experiment(hypothesis="left_boundary", site=site, bracket=(150, 400)).data_record()

    assert pairs_notes({"data": default}) == []
    assert pairs_notes({"data": in_context}) == ["(prompts: prefix 'Pricing tag game!')"]
    assert pairs_notes({"data": fixed}) == ["(prompts: bracket [150, 400])"]
    assert pairs_notes({}) == []  # a report of before prompts were recorded


def test_a_frozen_row_names_the_float_type_its_alignment_was_fitted_in() -> None:
    # a --das-frozen run in bfloat16 of a baseline fitted in float32 said nothing of it, where
    # evaluate notes it: the rotation was learnt on other rounding
    from das_assert.summary import pairs_notes

    record = {
        "alignment": {"baseline": "b/m/0001_fp32.json", "trained_dtype": "float32"},
        "model": {"dtype": "bfloat16"},
    }
    assert pairs_notes(record) == ["(frozen: 0001_fp32.json, fitted in float32)"]
    record["model"]["dtype"] = "float32"
    assert pairs_notes(record) == ["(frozen: 0001_fp32.json)"]
