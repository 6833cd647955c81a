"""``compare`` on the command line's own reports (``fit``/``search`` ``--json``): their results
carry no pytest claim, yet each must be compared, never skipped into a silent "no regression"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from das_assert.baseline import KeyIndex, load_baseline, matching_key
from das_assert.cli import main
from das_assert.report import build_report, write_report


def _cli_record(site: str, iia: float) -> dict[str, Any]:
    return {
        "test_id": None,
        "hypothesis": "left_boundary",
        "variable": "left",
        "site": {"canonical": site},
        "iia": iia,
        "iia_ci": [round(iia - 0.03, 3), round(iia + 0.03, 3)],
    }


def _report(path: Path, *records: dict[str, Any]) -> Path:
    write_report(path, build_report(None, list(records)))
    return path


LAST, EARLY = "block_output[layer=0, pos=last]", "block_output[layer=0, pos=before:amount]"


def test_each_cell_of_a_command_line_report_is_an_entry(tmp_path: Path) -> None:
    report = _report(tmp_path / "r.json", _cli_record(LAST, 0.83), _cli_record(EARLY, 0.66))
    assert sorted(load_baseline(report)["entries"]) == [
        f"left_boundary:left at {EARLY}",
        f"left_boundary:left at {LAST}",
    ]


def test_a_drop_between_two_command_line_reports_is_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.83), _cli_record(EARLY, 0.66))
    new = _report(tmp_path / "new.json", _cli_record(LAST, 0.70), _cli_record(EARLY, 0.66))
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s)" in out
    assert f"| left_boundary:left at {LAST} | `{LAST}` | 0.830 | 0.700 | -0.130 |" in out
    assert main(["compare", str(old), str(old), "--fail", "iia:0.05"]) == 0


def test_comparing_two_reports_without_results_is_an_error_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _report(tmp_path / "empty.json")
    assert main(["compare", str(empty), str(empty)]) == 2
    assert "holds a result to compare" in capsys.readouterr().err


def test_an_empty_old_report_is_an_error_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a run stopped at setup left a report of no result; as OLD it passed every claim as new
    stopped = {"complete": False, "exit_code": "USAGE_ERROR", "setup_error": "das_assert setup: x"}
    empty = tmp_path / "empty.json"
    write_report(empty, {**build_report(None, []), "run": stopped})
    new = _report(tmp_path / "new.json", _cli_record(LAST, 0.83))
    assert main(["compare", str(empty), str(new)]) == 2
    assert (
        f"OLD {empty} holds no result to compare with: its run did not complete (das_assert "
        "setup: x)"
    ) in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    report = build_report(None, [_cli_record(LAST, 0.83)])
    write_report(partial, {**report, "run": {**stopped, "setup_error": None}})
    assert main(["compare", str(partial), str(new)]) == 0
    assert f"note: OLD {partial} is from a run that did not complete (pytest exit USAGE_ERROR)" in (
        capsys.readouterr().out
    )


def test_the_compare_table_gives_each_iia_its_interval_and_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = {**_cli_record(LAST, 0.83), "iia_ci": [0.802, 0.854], "n_test": 800}
    old = _report(tmp_path / "old.json", record)
    assert main(["compare", str(old), str(old)]) == 0
    assert "| 0.830 [0.802, 0.854] n=800 | 0.830 [0.802, 0.854] n=800 | +0.000 | ok |" in (
        capsys.readouterr().out
    )
    # and, where the records hold them, its seed and the controls it is read against
    controls = {"noop": 0.682, "majority": 0.5, "random_rotation": 0.654}
    full = {**record, "seed": 3, "baselines": controls, "task_accuracy": 0.976}
    old = _report(tmp_path / "full.json", full)
    assert main(["compare", str(old), str(old)]) == 0
    cell = (
        "0.830 [0.802, 0.854] n=800, seed 3; no-op 0.682, majority 0.500, random 0.654, task 0.976"
    )
    assert f"| {cell} | {cell} | +0.000 | ok |" in capsys.readouterr().out


def test_a_check_on_a_field_a_report_lacks_fails_its_row_instead_of_crashing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.83))
    new = _report(tmp_path / "new.json", _cli_record(LAST, 0.83))
    # transfer is measured by pytest --das-compare; a command-line report has none
    assert main(["compare", str(old), str(new), "--fail", "transfer:0.05"]) == 1
    captured = capsys.readouterr()
    assert "transfer is missing in the current result, so transfer:0.05 cannot be" in captured.out
    assert "Traceback" not in captured.err
    moved = {**_cli_record(LAST, 0.70), "transfer": {"iia": 0.81}}
    new = _report(tmp_path / "moved.json", moved)
    assert main(["compare", str(old), str(new), "--fail", "transfer:0.05"]) == 0  # 0.83 -> 0.81
    assert main(["compare", str(old), str(new), "--fail", "transfer:0.01"]) == 1


def _claim(iia: float, expect: str, verdict: str) -> dict[str, Any]:
    return {
        **_cli_record(EARLY, iia),
        "test_id": "hypotheses/test_lb.py::test_control",
        "claim": "left_boundary.control",
        "expected_verdict": expect,
        "verdict": verdict,
        "passed": verdict == expect,
    }


@pytest.mark.parametrize(
    ("old_iia", "new_iia", "new_verdict", "code", "says"),
    [
        (0.689, 0.600, "not_aligned", 0, "ok"),  # the absent variable is more absent: fine
        (0.689, 0.760, "not_aligned", 1, "iia rose by 0.071 (0.689 -> 0.760)"),
        (0.689, 0.900, "aligned", 1, "the claim held in OLD and fails in NEW"),
    ],
    ids=["drop", "rise", "flipped"],
)
def test_a_negative_claim_regresses_when_its_variable_shows_up(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old_iia: float,
    new_iia: float,
    new_verdict: str,
    code: int,
    says: str,
) -> None:
    old = _report(tmp_path / "old.json", _claim(old_iia, "not_aligned", "not_aligned"))
    new = _report(tmp_path / "new.json", _claim(new_iia, "not_aligned", new_verdict))
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == code
    assert says in capsys.readouterr().out


def test_a_negative_claim_whose_no_op_rose_with_it_passes_a_gate_on_its_lead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a model update that answers the task better moves a negative claim's IIA with its no-op:
    # iia:0.05 took that for the variable showing up
    def control(iia: float, noop: float) -> dict[str, Any]:
        return {**_claim(iia, "not_aligned", "not_aligned"), "baselines": {"noop": noop}}

    old = _report(tmp_path / "old.json", control(0.689, 0.689))
    new = _report(tmp_path / "new.json", control(0.760, 0.755))
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 1
    assert main(["compare", str(old), str(new), "--fail", "lead:0.05"]) == 0
    shown = _report(tmp_path / "shown.json", control(0.760, 0.689))  # the variable shows up
    capsys.readouterr()
    assert main(["compare", str(old), str(shown), "--fail", "lead:0.05"]) == 1
    assert "lead rose by 0.071 (0.000 -> 0.071)" in capsys.readouterr().out
    bare = _report(tmp_path / "bare.json", _claim(0.760, "not_aligned", "not_aligned"))
    assert main(["compare", str(old), str(bare), "--fail", "lead:0.05"]) == 1
    assert "lead is missing in the current result" in capsys.readouterr().out


def test_a_negative_claims_task_accuracy_regresses_by_dropping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A negative claim's alignment numbers fail by rising, but the model answering the task
    # worse is a regression whatever the claim expects (guards against task accuracy taking the
    # negative claim's direction, which passed a collapse from 0.97 to 0.50).
    def control(accuracy: float) -> dict[str, Any]:
        return {**_claim(0.689, "not_aligned", "not_aligned"), "task_accuracy": accuracy}

    old = _report(tmp_path / "old.json", control(0.97))
    new = _report(tmp_path / "new.json", control(0.50))
    assert main(["compare", str(old), str(new), "--fail", "task_accuracy:0.05"]) == 1
    assert "task_accuracy dropped by 0.470 (0.970 -> 0.500)" in capsys.readouterr().out
    assert main(["compare", str(new), str(old), "--fail", "task_accuracy:0.05"]) == 0


def test_a_claims_lead_regresses_by_dropping() -> None:
    from das_assert.compare import parse_compare_fail

    check = parse_compare_fail("lead:0.05")
    then = {"iia": 0.83, "baselines": {"noop": 0.69}, "expected_verdict": "aligned"}
    assert check.check({**then, "iia": 0.80}, then) is None  # 0.14 -> 0.11
    assert check.check({**then, "iia": 0.76}, then) == (
        "lead dropped by 0.070 (0.140 -> 0.070), more than the allowed 0.050"
    )


@pytest.mark.parametrize(
    "results",
    [
        [{**_cli_record(LAST, 0.8), "iia": None}],
        [{**_cli_record(LAST, 0.8), "iia": "0.5"}],
        [{k: v for k, v in _cli_record(LAST, 0.8).items() if k != "site"}],
        {"not": "a list"},
        [{**_cli_record(LAST, 0.8), "iia": 5.0}],
        [{**_cli_record(LAST, 0.8), "data": "x"}],
        [{**_cli_record(LAST, 0.8), "fit": [1]}],
    ],
    ids=[
        "iia-null",
        "iia-string",
        "no-site",
        "results-a-dict",
        "iia-5",
        "data-a-string",
        "fit-a-list",
    ],
)
def test_a_malformed_report_is_refused_with_one_message(
    results: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "results": results}))
    good = _report(tmp_path / "good.json", _cli_record(LAST, 0.8))
    assert main(["compare", str(good), str(bad), "--fail", "iia:0.05"]) == 2
    err = capsys.readouterr().err
    assert (
        "a result lacks a finite iia (or a two-number iia_ci), a site or a claim/hypothesis" in err
    )
    assert "Traceback" not in err


def test_results_on_other_prompts_are_not_compared_as_if_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"prefix": "", "bracket": None, "numbers": "plain"}
    old = _report(tmp_path / "old.json", {**_cli_record(LAST, 0.83), "data": data})
    moved = {**data, "bracket": [549, 849]}
    new = _report(tmp_path / "new.json", {**_cli_record(LAST, 0.83), "data": moved})
    assert main(["compare", str(old), str(new)]) == 1
    assert "ran on other prompts (bracket differ): not comparable" in capsys.readouterr().out
    # a setting only the newer side records is named too: it said "( differ)"
    newer = {**data, "system_prompt": "Be brief."}
    new = _report(tmp_path / "new.json", {**_cli_record(LAST, 0.83), "data": newer})
    assert main(["compare", str(old), str(new)]) == 1
    assert "ran on other prompts (system_prompt differ): not comparable" in (
        capsys.readouterr().out
    )


def test_a_best_cell_judged_on_fresh_pairs_is_not_compared_with_one_on_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.83))  # before test_pairs existed
    new = _report(tmp_path / "new.json", {**_cli_record(LAST, 0.80), "test_pairs": "confirmation"})
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "judged on other pairs (test -> confirmation): not comparable" in out
    same = _report(tmp_path / "same.json", {**_cli_record(LAST, 0.83), "test_pairs": "test"})
    assert main(["compare", str(old), str(same)]) == 0


def test_a_claim_seen_from_another_rootdir_is_the_same_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest's node ids follow the rootdir, which an existing directory passed as an option's
    # value can move: the same claim then looked missing from NEW.
    old = _report(tmp_path / "old.json", _claim(0.689, "not_aligned", "not_aligned"))
    moved = {
        **_claim(0.600, "not_aligned", "not_aligned"),
        "test_id": "suite/hypotheses/test_lb.py::test_control",
    }
    new = _report(tmp_path / "new.json", moved)
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 0
    assert "missing in NEW" not in capsys.readouterr().out
    keys = ["a/test_x.py::t::c", "b/test_x.py::t::c"]
    assert matching_key("test_x.py::t::c", keys) is None  # ambiguous: no guess
    assert matching_key("test_y.py::t::c", keys) is None
    assert matching_key("x/a/test_x.py::t::c", keys) == "a/test_x.py::t::c"
    index = KeyIndex(keys)  # the same answers, looked up without a scan of every key
    assert matching_key("test_x.py::t::c", index) is None
    assert matching_key("x/a/test_x.py::t::c", index) == "a/test_x.py::t::c"
    assert matching_key("t.py::p[a/b]::c", KeyIndex(["s/t.py::p[a/b]::c"])) == "s/t.py::p[a/b]::c"


def test_one_old_key_is_never_taken_by_two_new_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # saved from rootdir hypotheses/a; compared from the repository root, where a/ and b/ both
    # hold test_lb.py: both matched the one old key, and which took its number (and which
    # vanished from the table) depended on their order
    old = _report(tmp_path / "old.json", _claim(0.689, "not_aligned", "not_aligned"))
    both = [
        {**_claim(iia, "not_aligned", "not_aligned"), "test_id": f"{d}/test_lb.py::test_control"}
        for d, iia in (("hypotheses/a", 0.689), ("hypotheses/b", 0.600))
    ]
    outputs = []
    for name, records in (("ab", both), ("ba", both[::-1])):
        new = _report(tmp_path / f"{name}.json", *records)
        assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 1
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1].replace("ba.json", "ab.json")
    assert "missing in NEW" in outputs[0]
    assert outputs[0].count("new in NEW") == 2, outputs[0]
    keys = KeyIndex(["test_x.py::t::c"])
    run = KeyIndex(["a/test_x.py::t::c", "b/test_x.py::t::c"])
    assert matching_key("a/test_x.py::t::c", keys) == "test_x.py::t::c"  # alone: the match
    assert matching_key("a/test_x.py::t::c", keys, among=run) is None
    assert matching_key("a/test_x.py::t::c", keys, among=KeyIndex(["a/test_x.py::t::c"])) == (
        "test_x.py::t::c"
    )
    exact = KeyIndex(["a/test_x.py::t::c", "test_x.py::t::c"])  # the old key is a run key too
    assert matching_key("a/test_x.py::t::c", keys, among=exact) is None


DATA = {"prefix": "", "bracket": None, "numbers": "plain"}


def _baseline(path: Path, *records: dict[str, Any]) -> Path:
    from das_assert.baseline import save_baseline

    save_baseline(path, model={}, environment={}, records=list(records))
    return path


def _positive(site: str, iia: float, test: str = "test_at_boundary") -> dict[str, Any]:
    return {
        **_cli_record(site, iia),
        "data": DATA,
        "test_id": f"hypotheses/test_lb.py::{test}",
        "claim": "left_boundary",
        "expected_verdict": "aligned",
        "verdict": "aligned",
        "passed": True,
    }


def test_a_command_line_result_is_matched_to_a_pytest_claim_by_hypothesis_variable_and_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A pytest baseline against `fit --json` at the same site: every claim read as missing in
    # NEW and the fit as new in NEW, so the gate could never compare the two.
    baseline = _baseline(
        tmp_path / "0001_v1.json",
        _positive(LAST, 0.83),
        {**_claim(0.689, "not_aligned", "not_aligned"), "data": DATA},  # at EARLY
    )
    fit = _report(tmp_path / "fit.json", {**_cli_record(LAST, 0.70), "data": DATA})
    assert main(["compare", str(baseline), str(fit), "--fail", "iia:5%"]) == 1
    out = capsys.readouterr().out
    row = (
        f"| hypotheses/test_lb.py::test_at_boundary::left_boundary (NEW: left_boundary:left at "
        f"{LAST}) | `{LAST}` | 0.830 | 0.700 | -0.130 | iia dropped by 0.130"
    )
    assert row in out
    assert "new in NEW" not in out
    assert (
        "missing in NEW (no result in NEW has hypothesis left_boundary, variable left at site "
        f"{EARLY})"
    ) in out
    assert out.splitlines()[-1] == "1 regression(s), 1 missing in NEW"
    # the negative claim, matched too, regresses by rising whichever side holds the claim
    control = {**_cli_record(EARLY, 0.76), "data": DATA}
    fit = _report(tmp_path / "fit.json", {**_cli_record(LAST, 0.83), "data": DATA}, control)
    assert main(["compare", str(baseline), str(fit), "--fail", "iia:0.05"]) == 1
    assert "iia rose by 0.071 (0.689 -> 0.760)" in capsys.readouterr().out
    assert main(["compare", str(fit), str(baseline), "--fail", "iia:0.05"]) == 0
    capsys.readouterr()
    fit = _report(tmp_path / "fit.json", {**_cli_record(LAST, 0.70), "data": DATA})
    # either way round
    assert main(["compare", str(fit), str(baseline), "--fail", "iia:5%"]) == 0
    out = capsys.readouterr().out
    assert "| +0.130 | ok |" in out
    assert out.splitlines()[-1] == "no regression"
    # without --fail a drop is shown, and the last line says nothing judged it
    high = _report(tmp_path / "high.json", {**_cli_record(LAST, 0.83), "data": DATA})
    assert main(["compare", str(high), str(fit)]) == 0
    out = capsys.readouterr().out
    assert "| -0.130 | ok |" in out
    assert out.splitlines()[-1] == (
        "no regression checked (no --fail given: IIA drops are shown, not judged)"
    )


def test_a_command_line_result_on_other_prompts_is_matched_but_not_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline(tmp_path / "0001_v1.json", _positive(LAST, 0.83))
    moved = {**_cli_record(LAST, 0.83), "data": {**DATA, "prefix": "Good morning!"}}
    fit = _report(tmp_path / "fit.json", moved)
    assert main(["compare", str(baseline), str(fit)]) == 1
    out = capsys.readouterr().out
    assert "ran on other prompts (prefix differ): not comparable" in out
    assert out.splitlines()[-1] == "0 regression(s), 1 not comparable"


def test_a_command_line_result_is_not_guessed_between_two_alike_claims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline(
        tmp_path / "0001_v1.json", _positive(LAST, 0.83), _positive(LAST, 0.81, "test_again")
    )
    fit = _report(tmp_path / "fit.json", {**_cli_record(LAST, 0.83), "data": DATA})
    assert main(["compare", str(baseline), str(fit)]) == 1
    out = capsys.readouterr().out
    shared = (
        "missing in NEW (2 results in OLD share the hypothesis, variable and site of NEW's "
        f"left_boundary:left at {LAST}: none is guessed)"
    )
    assert out.count(shared) == 2
    assert "new in NEW" in out
    assert out.splitlines()[-1] == "0 regression(s), 2 missing in NEW"


def test_the_final_count_says_what_it_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.83), _cli_record(EARLY, 0.66))
    new = _report(tmp_path / "new.json", _cli_record(LAST, 0.70))
    both = ["--fail", "iia:0.05", "--fail", "transfer:0.05"]
    assert main(["compare", str(old), str(new), *both]) == 1
    # LAST dropped (and its transfer cannot be checked: still one row, one regression)
    assert capsys.readouterr().out.splitlines()[-1] == "1 regression(s), 1 missing in NEW"
    assert main(["compare", str(old), str(old), "--fail", "transfer:0.05"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "0 regression(s), 2 cannot be checked"


def _search_report(path: Path, cell_iia: float, confirmed_iia: float) -> Path:
    best = {**_cli_record(LAST, cell_iia), "data": DATA}
    confirmation = {**best, "iia": confirmed_iia, "test_pairs": "confirmation"}
    confirmation["iia_ci"] = [round(confirmed_iia - 0.03, 3), round(confirmed_iia + 0.03, 3)]
    other = {**_cli_record(EARLY, 0.60), "data": DATA}
    report = build_report(None, [best, other])
    report["search"] = {
        "hypothesis": "left_boundary",
        "layers": [0],
        "positions": ["last", "before:amount"],
        "iia": [[cell_iia, 0.60]],
        "best": {"layer": 0, "position": "last", "iia": cell_iia, "confirmation": confirmation},
    }
    write_report(path, report)
    return path


def test_a_search_report_is_compared_on_its_best_cells_fresh_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its verdict follows the confirmation record; compare gated on the best cell's IIA on the
    # pairs that chose it, so a confirmed drop 0.810 -> 0.740 passed as a rise 0.767 -> 0.800.
    old = _search_report(tmp_path / "old.json", 0.767, 0.810)
    new = _search_report(tmp_path / "new.json", 0.800, 0.740)
    entry = load_baseline(old)["entries"][f"left_boundary:left at {LAST}"]
    assert (entry["iia"], entry["test_pairs"]) == (0.810, "confirmation")
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 1
    out = capsys.readouterr().out
    assert "iia dropped by 0.070 (0.810 -> 0.740)" in out
    # the pytest search claim is judged on fresh pairs too: it compares with the search report
    claim = {**_positive(LAST, 0.80, "test_search"), "claim": "left_boundary.search"}
    baseline = _baseline(tmp_path / "0001_v1.json", {**claim, "test_pairs": "confirmation"})
    assert main(["compare", str(baseline), str(old), "--fail", "iia:0.05"]) == 0
    assert "| +0.010 | ok |" in capsys.readouterr().out


def _fitted(record: dict[str, Any], method: str) -> dict[str, Any]:
    return {**record, "fit": {"method": method}}


def test_fits_by_another_method_are_not_compared_as_if_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `fit --method boundless` against `fit --method das:1` at one site: compared as one entry,
    # "no regression", and the method shown nowhere.
    old = _report(tmp_path / "old.json", _fitted(_cli_record(LAST, 0.83), "boundless"))
    new = _report(tmp_path / "new.json", _fitted(_cli_record(LAST, 0.83), "das:1"))
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 1
    out = capsys.readouterr().out
    assert f"`{LAST}` (boundless -> das:1) |" in out
    assert "fitted by another method (boundless -> das:1): not comparable" in out
    assert out.splitlines()[-1] == "0 regression(s), 1 not comparable"
    # a record without a method was fitted by Boundless DAS (older reports): alike
    plain = _report(tmp_path / "plain.json", _cli_record(LAST, 0.83))
    assert main(["compare", str(plain), str(old), "--fail", "iia:0.05"]) == 0
    assert f"| `{LAST}` | 0.830" in capsys.readouterr().out
    assert main(["compare", str(new), str(new), "--fail", "iia:0.05"]) == 0
    assert f"`{LAST}` (das:1) | 0.830" in capsys.readouterr().out


def test_a_claim_fitted_by_another_method_than_a_command_line_fit_is_not_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a pytest das:1 claim against a boundless `fit --json` read as a regression
    baseline = _baseline(tmp_path / "0001_v1.json", _fitted(_positive(LAST, 0.83), "das:1"))
    fit = _report(
        tmp_path / "fit.json", _fitted({**_cli_record(LAST, 0.60), "data": DATA}, "boundless")
    )
    assert main(["compare", str(baseline), str(fit), "--fail", "iia:0.05"]) == 1
    out = capsys.readouterr().out
    assert "fitted by another method (das:1 -> boundless): not comparable" in out
    assert out.splitlines()[-1] == "0 regression(s), 1 not comparable"


def test_a_command_line_fit_is_matched_with_the_claim_at_its_site_fitted_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # two claims at one site, by two methods: a `fit --method das:1` is the das:1 claim's
    baseline = _baseline(
        tmp_path / "0001_v1.json",
        _positive(LAST, 0.93, "test_boundless"),
        _fitted(_positive(LAST, 0.83, "test_one_direction"), "das:1"),
    )
    fit = _report(
        tmp_path / "fit.json", _fitted({**_cli_record(LAST, 0.82), "data": DATA}, "das:1")
    )
    assert main(["compare", str(baseline), str(fit), "--fail", "iia:0.05"]) == 1
    out = capsys.readouterr().out
    assert (
        f"| hypotheses/test_lb.py::test_one_direction::left_boundary (NEW: left_boundary:left at "
        f"{LAST}) | `{LAST}` (das:1) | 0.830 | 0.820 | -0.010 | ok |"
    ) in out
    assert (
        f"| hypotheses/test_lb.py::test_boundless::left_boundary | | | | | missing in NEW (NEW's "
        f"left_boundary:left at {LAST} is matched with hypotheses/test_lb.py::test_one_direction"
        "::left_boundary, alike to it (fit method, prompts, pairs)) |"
    ) in out
    assert out.splitlines()[-1] == "0 regression(s), 1 missing in NEW"


def test_a_relative_drop_of_a_negative_number_is_measured_from_its_size() -> None:
    from das_assert.compare import parse_compare_fail

    check = parse_compare_fail("normalized_iia:5%")
    # unchanged: once "dropped by 0.000, more than the allowed 5% = -0.005"
    assert check.fails(current=-0.1, baseline=-0.1) is None
    assert check.fails(current=-0.104, baseline=-0.1) is None  # within 5% of 0.1
    assert check.fails(current=-0.2, baseline=-0.1) is not None


def test_a_claim_that_failed_only_against_its_runs_own_baseline_is_not_called_flipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", _claim(0.689, "not_aligned", "not_aligned"))
    failed_its_gate = {**_claim(0.689, "not_aligned", "not_aligned"), "passed": False}
    new = _report(tmp_path / "new.json", failed_its_gate)
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 0
    assert "held in OLD and fails in NEW" not in capsys.readouterr().out


def test_results_under_another_seed_are_compared_with_the_seeds_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", {**_cli_record(LAST, 0.83), "seed": 0})
    new = _report(tmp_path / "new.json", {**_cli_record(LAST, 0.80), "seed": 7})
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 0
    assert "| ok (seed 0 -> 7: IIA moves with the seed) |" in capsys.readouterr().out


def test_a_reader_that_leaves_early_does_not_stop_the_files_being_written(tmp_path: Path) -> None:
    # `compare OLD NEW --markdown T | head -1`: the table's print raised BrokenPipeError, exit 3
    # with "please report it", and the Markdown file was never written
    import os
    import subprocess
    import sys

    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.8))
    markdown = tmp_path / "table.md"
    command = [sys.executable, "-m", "das_assert", "compare", str(old), str(old)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with subprocess.Popen(
        [*command, "--markdown", str(markdown)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None
        process.stdout.close()  # the reader is gone before the first line
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert "| ok |" in markdown.read_text()


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "cp1252"])
def test_a_stdout_that_cannot_encode_a_character_still_shows_everything(
    tmp_path: Path, encoding: str
) -> None:
    # The table's Δ raised UnicodeEncodeError, taken for a reader gone: nothing was printed
    # (what was buffered went to /dev/null too), and a failing gate exited 1 with no reason.
    import os
    import subprocess
    import sys

    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.8))
    new = _report(tmp_path / "new.json", _cli_record(LAST, 0.55))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "PYTHONIOENCODING": encoding,
    }
    command = [sys.executable, "-m", "das_assert", "compare", "--fail", "iia:0.05"]
    done = subprocess.run(
        [*command, str(old), str(new)], capture_output=True, env=env, check=False, timeout=120
    )
    out = done.stdout.decode(encoding)
    assert done.returncode == 1, done.stderr.decode()
    assert "\\u0394" in out  # as pytest writes what its stream cannot take
    assert "1 regression(s)" in out
    assert b"could not be written" not in done.stderr


@pytest.mark.parametrize("stdout", ["full disk", "closed"])
def test_a_stdout_that_cannot_be_written_does_not_stop_the_files_being_written(
    tmp_path: Path, stdout: str
) -> None:
    # `> /dev/full` (a CI log on a full disk) or `>&-`: exit 3, "please report it", and the
    # report of a finished run never written
    import os
    import subprocess
    import sys

    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.8))
    markdown = tmp_path / "table.md"
    command = [sys.executable, "-m", "das_assert", "compare", str(old), str(old)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    closed = stdout == "closed"
    with open(os.devnull if closed else "/dev/full", "w") as target:
        done = subprocess.run(
            [*command, "--markdown", str(markdown)],
            stdout=target,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
            preexec_fn=(lambda: os.close(1)) if closed else None,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "| ok |" in markdown.read_text()
    if not closed:
        assert "note: stdout could not be written ([Errno 28] No space left on device)" in stderr


def test_a_leading_tilde_in_an_output_path_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the shell leaves `--markdown=~/t.md` as it is: it was written into a folder named "~"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    old = _report(tmp_path / "old.json", _cli_record(LAST, 0.8))
    assert main(["compare", str(old), str(old), "--markdown=~/t.md"]) == 0
    assert (tmp_path / "home" / "t.md").is_file()
    assert not (tmp_path / "~").exists()


def test_a_regression_message_shows_the_no_op_then_and_now() -> None:
    # A control claim (IIA at the no-op) of a model that got better at the task "rose by 0.051"
    # and failed the gate; the message showed only the two IIAs, not that the no-op rose as much,
    # nor that a claim of absence regresses by rising.
    from das_assert.gate import regression_message

    record = {
        **_claim(0.689, "not_aligned", "not_aligned"),
        "n_test": 800,
        "seed": 0,
        "baselines": {"noop": 0.689},
        "baseline": {"iia": 0.637, "n": 800, "iia_ci": [0.604, 0.670], "seed": 0, "noop": 0.635},
    }
    failures = ["iia rose by 0.051 (0.637 -> 0.689), more than the allowed 0.050"]
    message = regression_message("left_boundary.control", record, failures, Path("0001_v1.json"))
    assert (
        "no-op now 0.689, baseline 0.635: lead over it now +0.000, baseline +0.002 (a claim "
        "that the variable is absent regresses by rising)"
    ) in message


def test_a_drop_just_past_the_tolerance_is_not_shown_as_equal_to_it() -> None:
    # "iia dropped by 0.050 (0.850 -> 0.800), more than the allowed 0.050" read as a false alarm
    from das_assert.compare import parse_compare_fail

    message = parse_compare_fail("iia:0.05").fails(current=0.79996, baseline=0.85)
    assert message == "iia dropped by 0.05004 (0.850 -> 0.800), more than the allowed 0.050"
    assert parse_compare_fail("iia:0.05").fails(current=0.75, baseline=0.85) == (
        "iia dropped by 0.100 (0.850 -> 0.750), more than the allowed 0.050"
    )


def test_a_drop_just_past_a_relative_tolerance_is_not_shown_as_equal_to_it() -> None:
    # 5% of 0.911 is 0.04555: "dropped by 0.046 ..., more than the allowed 5% = 0.046"
    from das_assert.compare import parse_compare_fail

    message = parse_compare_fail("iia:5%").fails(current=0.8652, baseline=0.911)
    assert message == "iia dropped by 0.046 (0.911 -> 0.865), more than the allowed 5% = 0.0456"


def test_compare_names_a_cpu_thread_count_or_dtype_that_rounds_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # only the pytest gate said so; a CI job gating with `compare` got no word of it (nor of
    # another torch, whose kernels round otherwise too, as the cache key says, nor of another
    # transformers, whose modeling code computes the model)
    from das_assert.report import environment

    record = {**_cli_record(LAST, 0.83), "data": DATA}
    here = {"environment": environment(), "model": {"dtype": "float32", "device": "cpu"}}
    then = {
        **here["environment"],
        **{"torch_threads": 64, "torch": "2.11.0+cpu", "transformers": "0.0.0.test"},
    }
    old = build_report(None, [record], environment_block=then)
    old["model"] = {"dtype": "bfloat16", "device": "cpu"}
    new = build_report(None, [record], environment_block=here["environment"])
    new["model"] = here["model"]
    write_report(tmp_path / "old.json", old)
    write_report(tmp_path / "new.json", new)
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    out = capsys.readouterr().out
    threads = here["environment"]["torch_threads"]
    assert out.splitlines()[0] == (
        f"note: OLD {tmp_path / 'old.json'} was made with torch_threads 64 (NEW {threads!r}), "
        f"torch '2.11.0+cpu' (NEW {here['environment']['torch']!r}), "
        f"transformers '0.0.0.test' (NEW {here['environment']['transformers']!r}), "
        "dtype 'bfloat16' (NEW 'float32'): a fit rounds (or, under another fit_revision, "
        "learns) otherwise there, which moves an IIA with no change to the model (measured: up "
        "to 0.026 from the thread count alone; README, What a run looks like)"
    )
    assert main(["compare", str(tmp_path / "new.json"), str(tmp_path / "new.json")]) == 0
    assert "note:" not in capsys.readouterr().out


def test_compare_names_another_fit_revision_and_not_an_old_files_architecture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Baselines did not record which revision of the fit made them, so a das:K baseline of
    # revision 1 gated under revision 2 showed the fit's change as the model's; and those saved
    # before 2026-12-04 hold the architecture as their device_name ('x86_64'), which read as
    # "other hardware" on the same machine.
    from das_assert.report import environment

    record = {**_cli_record(LAST, 0.83), "data": DATA}
    here = environment()
    assert here["fit_revision"] >= 1
    older = {**here, "fit_revision": here["fit_revision"] - 1, "device_name": "x86_64"}
    write_report(tmp_path / "old.json", build_report(None, [record], environment_block=older))
    write_report(tmp_path / "new.json", build_report(None, [record], environment_block=here))
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    note = capsys.readouterr().out.splitlines()[0]
    assert note.startswith(
        f"note: OLD {tmp_path / 'old.json'} was made with fit_revision "
        f"{here['fit_revision'] - 1} (NEW {here['fit_revision']}): a fit rounds (or, under "
        "another fit_revision, learns) otherwise there"
    )
    assert "device_name" not in note


def test_compare_names_a_fit_revision_that_an_old_file_did_not_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reports before 2026-12-06 did not record it, and a das:K fit of revision 1 (before
    # 2026-12-04) gated under revision 3 moved by +0.020 with no note: unknown read as equal.
    from das_assert.report import environment

    record = {**_cli_record(LAST, 0.83), "data": DATA}
    here = environment()
    unrecorded = {key: value for key, value in here.items() if key != "fit_revision"}
    write_report(tmp_path / "old.json", build_report(None, [record], environment_block=unrecorded))
    write_report(tmp_path / "new.json", build_report(None, [record], environment_block=here))
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    assert capsys.readouterr().out.startswith(
        f"note: OLD {tmp_path / 'old.json'} was made with fit_revision None (NEW "
        f"{here['fit_revision']}; then: a das_assert from before 2026-12-06, which did not "
        "record it): a fit rounds (or, under another fit_revision, learns) otherwise there"
    )


def test_a_flip_that_the_interval_rule_for_leads_decided_is_not_called_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A baseline judged before leads were read off their intervals (2026-12-03) held; the same
    # fit, judged now, is inconclusive on its lead over the no-op: "1 regression(s)", exit 1.
    held = {**_cli_record(LAST, 0.75), "threshold": 0.7, "expected_verdict": "aligned"}
    old = _report(tmp_path / "old.json", {**held, "verdict": "aligned", "passed": True})
    decided = ["lead over noop"]
    unsure = {**held, "verdict": "inconclusive", "passed": False, "verdict_decided_by": decided}
    leads = {"noop": {"lead": 0.06, "low": 0.02, "high": 0.1}}
    new = _report(tmp_path / "new.json", {**unsure, "baseline_leads": leads})
    main(["compare", str(old), str(new), "--fail", "iia:0.05"])
    out = capsys.readouterr().out
    assert "OLD was judged before verdicts read each lead over a baseline off its interval" in out
    assert out.splitlines()[-1] == "0 regression(s), 1 not comparable"
    # a baseline judged by the interval rule, flipped: a regression, as before
    again = _report(
        tmp_path / "again.json",
        {**held, "verdict": "aligned", "passed": True, "baseline_leads": leads},
    )
    assert main(["compare", str(again), str(new), "--fail", "iia:0.05"]) == 1
    assert "1 regression(s)" in capsys.readouterr().out
    # a drop past the check, or a verdict the threshold decided too, is the model's: a
    # regression, not hidden as "not comparable" behind the rule's change
    dropped = _report(tmp_path / "dropped.json", {**unsure, "iia": 0.6, "baseline_leads": leads})
    both = {**unsure, "verdict_decided_by": ["threshold", *decided], "baseline_leads": leads}
    below = _report(tmp_path / "below.json", both)
    for other in (dropped, below):
        assert main(["compare", str(old), str(other), "--fail", "iia:0.05"]) == 1
        out = capsys.readouterr().out
        assert out.splitlines()[-1] == "1 regression(s)"
        assert "the rule moved" not in out


def test_a_verdict_that_flipped_with_its_threshold_names_the_threshold_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # das.yaml raised the claim's bar from 0.7 to 0.85: the same IIA now fails. The row said
    # only "the claim held in OLD and fails in NEW", as if the model had changed.
    held = {**_cli_record(LAST, 0.80), "threshold": 0.7, "expected_verdict": "aligned"}
    old = _report(tmp_path / "old.json", {**held, "verdict": "aligned", "passed": True})
    new = _report(
        tmp_path / "new.json",
        {**held, "threshold": 0.85, "verdict": "not_aligned", "passed": False},
    )
    assert main(["compare", str(old), str(new), "--fail", "iia:0.05"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if "held in OLD" in line)
    assert row.endswith("(threshold 0.70 -> 0.85: the claim's bar moved) |")


@pytest.mark.parametrize(
    ("old_fields", "says"),
    [
        ({"task_accuracy": float("nan")}, "task_accuracy is not a finite number in the baseline"),
        ({"baselines": {"noop": float("nan")}}, "lead is missing in the baseline result"),
    ],
    ids=["nan task accuracy", "nan no-op"],
)
def test_a_field_that_is_nan_or_of_another_kind_cannot_be_checked_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old_fields: dict, says: str
) -> None:
    # A NaN compares false with every tolerance: task_accuracy and lead dropped past their
    # limits and compare said "no regression", exit 0. A string for `baselines` was a traceback.
    record = {**_cli_record(LAST, 0.80), "task_accuracy": 0.5, "baselines": {"noop": 0.79}}
    old = _report(tmp_path / "old.json", {**record, "task_accuracy": 0.97, **old_fields})
    new = _report(tmp_path / "new.json", record)
    checks = ["--fail", "task_accuracy:0.05", "--fail", "lead:0.05"]
    assert main(["compare", str(old), str(new), *checks]) == 1
    out = capsys.readouterr().out
    assert says in out
    assert "no regression" not in out


@pytest.mark.parametrize("fields", [{"baselines": "x"}, {"baselines": [1]}, {"transfer": "x"}])
def test_a_report_whose_baselines_or_transfer_is_not_a_mapping_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict
) -> None:
    # compare read them as mappings: an AttributeError traceback, exit 3.
    good = _report(tmp_path / "good.json", _cli_record(LAST, 0.80))
    bad = _report(tmp_path / "bad.json", {**_cli_record(LAST, 0.80), **fields})
    assert main(["compare", str(good), str(bad), "--fail", "lead:0.05"]) == 2
    assert "bad.json" in capsys.readouterr().err


#: What a record the gate compares names beyond a command line's: its test, claim and widths.
GATED = {"test_id": "test_x.py::test", "claim": "left", "boundary_dims": [60]}


def _gated(path: Path, entry: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The gate's regressions of ``record`` against a baseline at ``path`` holding ``entry``."""
    from types import SimpleNamespace

    from das_assert.baseline import entry_key
    from das_assert.gate import compare_with_baseline

    session = SimpleNamespace(
        baseline=(path, {"entries": {entry_key(record): entry}}),
        save_to=None,
        compare_checks=[],
    )
    node = SimpleNamespace(iter_markers=lambda name: iter(()))  # a test without a das marker
    return compare_with_baseline(session, node, None, record)


def test_a_report_entry_without_its_n_is_compared_by_the_gate_not_a_key_error(
    tmp_path: Path,
) -> None:
    # --das-compare with a report filtered by hand (reports carry no checksum) whose results
    # lack n_test: a KeyError inside every claim's test.

    entry = {**_cli_record(LAST, 0.8), **GATED}
    record = {**entry, "n_test": 400}
    assert _gated(tmp_path / "report.json", entry, record) == []
    assert record["baseline"]["n"] is None
    assert record["transfer"] == {"skipped": "the baseline holds no alignment file for this claim"}


def test_the_gate_says_where_a_claims_threshold_moved_since_its_baseline(tmp_path: Path) -> None:
    # Loosening a claim's bar in das.yaml passed it through --das-compare without a word: the
    # terminal row, the Markdown and the JSON said nothing; `compare` alone named it.

    from das_assert.report import _against_baseline
    from das_assert.summary import threshold_moved

    entry = {**_cli_record(LAST, 0.7), **GATED, "threshold": 0.73, "n_test": 400}
    record = {**entry, "threshold": 0.7}
    _gated(tmp_path / "0001_v1.json", entry, record)
    assert record["baseline"]["threshold"] == 0.73
    assert threshold_moved(record) == "threshold 0.73 -> 0.70: the bar moved"
    assert "threshold 0.73 -> 0.70: the bar moved" in _against_baseline(record)
    assert threshold_moved({**record, "threshold": 0.73}) is None
    from das_assert.summary import _row

    shown = {
        **record,
        "verdict": "aligned",
        "expected_verdict": "aligned",
        "seed": 0,
        "task_accuracy": 0.98,
        "baselines": {"noop": 0.6, "majority": 0.5, "random_rotation": 0.6},
    }
    assert "Δ ref +0.000 (threshold 0.73 -> 0.70: the bar moved)" in _row(shown, 10, 40, 4)
    assert threshold_moved({**record, "baseline": {"delta": 0.0}}) is None  # an older baseline


def test_the_gate_gives_a_drop_since_the_baseline_a_negative_delta(tmp_path: Path) -> None:
    # Δ ref is this run's IIA less the baseline's: the other way round, a claim whose IIA fell
    # showed a rise in the terminal row, the Markdown and the JSON.
    entry = {**_cli_record(LAST, 0.8), **GATED, "n_test": 400}
    record = {**_cli_record(LAST, 0.7), **GATED, "n_test": 400}
    _gated(tmp_path / "0001_v1.json", entry, record)
    assert record["baseline"]["iia"] == 0.8
    assert record["baseline"]["delta"] == pytest.approx(-0.1)


def test_the_gate_records_a_changed_boundary_width_as_drift(tmp_path: Path) -> None:
    # A claim whose boundary width changed since its baseline (the same site) was recorded with
    # drift None, as if it measured the same alignment as the baseline's.
    entry = {**_cli_record(LAST, 0.8), **GATED, "n_test": 400}
    record = {**entry, "boundary_dims": [48]}
    _gated(tmp_path / "0001_v1.json", entry, record)
    assert record["drift"] == {"boundary_dims": [[60], [48]]}
    same = {**entry}
    _gated(tmp_path / "0001_v1.json", entry, same)
    assert same["drift"] is None  # the same site and width: no drift


def test_a_claim_at_a_negative_layer_is_matched_with_the_command_lines_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest and the API kept layer=-4 as written until 2026-12-06 (a report of then); fit
    # names the block it was (0 of 4): the same measurement read as "missing in NEW" and "new
    # in NEW", so it was never compared.
    def site(layer: int) -> dict[str, Any]:
        canonical = f"block_output[layer={layer}, pos=last]"
        return {"canonical": canonical, "layer": layer, "position": "last",
                "component": "block_output", "module": "model.layers.0"}  # fmt: skip

    claim = {**_positive(LAST, 0.83), "site": site(-4)}
    result = {**_cli_record(LAST, 0.63), "data": DATA, "site": site(0)}
    old = _report(tmp_path / "py.json", claim)
    new = _report(tmp_path / "cli.json", result)

    assert main(["compare", str(old), str(new), "--fail", "iia:0.01"]) == 1

    out = capsys.readouterr().out
    assert "(same block)" in out
    assert "missing in NEW" not in out
    assert out.splitlines()[-1] == "1 regression(s)"


def test_a_foreign_entry_whose_variable_is_a_list_is_compared_not_a_crash() -> None:
    # matching claims with command-line results by an index keyed by the variable raised
    # "unhashable type: 'list'" (exit 3) on a hand-made report's ["left", "right"]
    from das_assert.compare import compare_entries

    claim = {**_cli_record(LAST, 0.83), "test_id": "t.py::test_a", "claim": "left_boundary"}
    renamed = {**claim, "test_id": "u.py::test_a", "variable": ["left", "right"]}
    table, counts = compare_entries(
        {"t.py::test_a::left_boundary": claim}, {"u.py::test_a::left_boundary": renamed}, []
    )
    assert counts["missing in NEW"] == 1
    assert "t.py::test_a::left_boundary" in table
