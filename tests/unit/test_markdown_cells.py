"""What das_assert writes as Markdown keeps each value in its column and shows the characters a
name holds: a ``|`` in a parametrize id, a newline in a limit's ``where``, HTML in a claim."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_summary_tables import _record as summary_record

from das_assert.cli import main
from das_assert.md_text import code, fenced, plain
from das_assert.report import build_report, markdown_table, write_report
from das_assert.summary import limit_lines, summary_lines

SITE = "block_output[layer=0, pos=last]"


def _cells(row: str) -> list[str]:
    """A GitHub table row's cells: split at each ``|`` not escaped."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _record(test: str, claim: str, iia: float = 0.83, **more: Any) -> dict[str, Any]:
    return {**summary_record(claim, SITE, iia, "aligned", test), **more}


def test_text_keeps_its_cell_and_renders_no_html() -> None:
    assert plain("a|b") == "a\\|b"
    assert plain("<b>x</b>") == "\\<b>x\\</b>"
    assert plain("one\ntwo") == "one<br>two"
    assert plain("R&amp;D") == "R\\&amp;D"  # rendered as "R&D" before
    assert plain("left_boundary") == "left_boundary"  # the names the suite writes, unchanged
    assert code("a|b") == "`a\\|b`"
    assert code("a|b", cell=False) == "`a|b`"
    assert code("x`y") == "``x`y``"
    assert code("`y") == "`` `y ``"
    assert code("") == "`  `"  # "``" is no code span: it showed as two backticks
    assert fenced("a\n```\nb").startswith("````\n")


def test_a_pipe_or_newline_in_a_test_id_or_claim_moves_no_number() -> None:
    records = [
        _record("test_ids[a|b]", "lb|pipe <i>x</i>", 0.83),
        _record("test_ids[c\nd]", "left_boundary", 0.61),
    ]

    table = markdown_table(records)

    header, _, *rows = table.strip().split("\n")
    width = len(_cells(header))
    assert [len(_cells(row)) for row in rows] == [width, width]
    first = dict(zip(_cells(header), _cells(rows[0]), strict=True))
    assert first["IIA"] == "0.830"
    assert first["site"] == f"`{SITE}`"
    assert re.search(r"(?<!\\)<i>", table) is None  # shown as written, not as HTML


def test_a_limit_whose_where_spans_lines_stays_one_row() -> None:
    limit = {
        "test_id": "hypotheses/test_x.py::test_breaks",
        "claim": "left_boundary",
        "where": "bracket | [7.45, 9.95]\nsecond line",
        "site": SITE,
        "iia": 0.61,
        "iia_ci": (0.56, 0.66),
        "n": 400,
        "seed": 0,
        "noop": 0.5,
        "majority": 0.5,
        "random_rotation": 0.6,
        "changed_labels": {"correct": 72, "n": 204},
        "task_accuracy": 0.9,
        "threshold": 0.75,
        "status": "breaks",
    }

    table = markdown_table([], limits=[limit])
    rows = [line for line in table.split("\n") if line.startswith("| hypotheses/")]
    assert len(rows) == 1
    assert len(_cells(rows[0])) == 15
    lines = limit_lines([limit])
    assert len(lines) == 4
    assert "bracket | [7.45, 9.95] ⏎ second line" in lines[2]


def test_rows_of_a_parametrized_test_are_told_apart_in_the_terminal() -> None:
    records = [_record("test_at[fmt0]", "left_boundary", 0.83)]
    records += [_record("test_at[fmt1]", "left_boundary", 0.61)]
    records += [_record("test_other", "right_boundary", 0.9)]

    rows = summary_lines(records)[2:5]

    assert rows[0].startswith("left_boundary [fmt0] ")
    assert rows[1].startswith("left_boundary [fmt1] ")
    assert rows[2].startswith("right_boundary ")  # no other row of its claim: as before


def test_a_transfer_iia_comes_with_its_interval_and_n() -> None:
    record = _record(
        "test_lb",
        "left_boundary",
        baseline={"delta": 0.02, "iia": 0.81, "iia_ci": [0.78, 0.84], "noop": 0.689},
        transfer={"iia": 0.69, "n": 100, "iia_ci": [0.593739, 0.772203]},
    )

    assert "transfer 0.690 [0.594, 0.772] n=100" in summary_lines([record])[2]
    assert "transfer 0.690 [0.594, 0.772] n=100" in markdown_table([record])


def _report(path: Path, *records: dict[str, Any], complete: bool = True) -> Path:
    report = build_report(None, list(records))
    report["run"] = {"complete": complete, "exit_code": 0 if complete else 2}
    write_report(path, report)
    return path


def test_compare_markdown_keeps_a_regression_in_its_column_and_carries_the_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _report(tmp_path / "old.json", _record("test_ids[a|b]", "left_boundary", 0.63))
    new = _report(
        tmp_path / "new.json", _record("test_ids[a|b]", "left_boundary", 0.43), complete=False
    )
    markdown = tmp_path / "c.md"

    assert main(["compare", str(old), str(new), "--markdown", str(markdown)]) == 0

    text = markdown.read_text()
    header, _, row = text.split("\n")[:3]
    cells = dict(zip(_cells(header), _cells(row), strict=True))
    assert cells["IIA new (95% CI, n, seed; controls)"].startswith("0.430")
    assert cells["Δ"] == "-0.200"
    assert "did not complete" in text  # printed, and where a job summary shows it
    assert "no regression checked (no --fail given" in text
    capsys.readouterr()


def test_rows_of_two_tests_claiming_one_thing_are_told_apart_in_the_terminal() -> None:
    # an xfail and a plain test of one claim and site printed two identical rows
    records = [_record("test_strict", "impossible", 0.68)]
    records += [_record("test_not_strict", "impossible", 0.68)]
    records += [_record("test_at[fmt0]", "left_boundary", 0.83)]
    records += [_record("test_at[fmt1]", "left_boundary", 0.61)]

    rows = summary_lines(records)[2:6]

    assert rows[0].startswith("left_boundary [fmt0] ")  # one test's parameters: as before
    assert rows[2].startswith("impossible (test_not_strict) ")
    assert rows[3].startswith("impossible (test_strict) ")
    # two tests at two seeds: told apart by the seed column already, as before
    by_seed = [_record("test_seed_0", "right_boundary", 0.8), _record("test_seed_1", "x", 0.8)]
    by_seed[1] = {**by_seed[1], "claim": "right_boundary", "seed": 1}
    assert not any("(test_seed" in row for row in summary_lines(by_seed))
