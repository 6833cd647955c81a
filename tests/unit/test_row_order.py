"""Reports list parametrized claims in the order of their numbers, as pytest runs them: as text,
``test[1]`` came after ``test[19]`` and ``test[100]`` before ``test[10]``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from das_assert.compare import compare_entries
from das_assert.report import markdown_table
from das_assert.row_order import in_report_order, natural_key
from das_assert.summary import limit_lines, summary_lines

IDS = [f"hypotheses/test_x.py::test_claim[{i}]" for i in (10, 2, 100, 1, 19)]
IN_ORDER = [1, 2, 10, 19, 100]


def _record(test_id: str) -> dict[str, Any]:
    return {
        "test_id": test_id,
        "claim": "left_boundary",
        "hypothesis": "left_boundary",
        "variable": "left",
        "site": {"canonical": "block_output[layer=0, pos=last]"},
        "iia": 0.83,
        "iia_ci": (0.80, 0.85),
        "n_test": 800,
        "baselines": {"noop": 0.689, "majority": 0.512, "random_rotation": 0.641},
        "task_accuracy": 0.973,
        "threshold": 0.73,
        "verdict": "aligned",
        "expected_verdict": "aligned",
        "passed": True,
        "seed": 0,
        "data": {},
    }


def _numbers(lines: list[str]) -> list[int]:
    """The parametrized numbers of the rows among ``lines``, in the order they come."""
    return [int(found[0]) for line in lines if (found := re.findall(r"\[(\d+)\]", line))]


def test_numbers_in_a_text_compare_as_numbers() -> None:
    ids = ["t[10]", "t[2]", "t", "u", "t[1]", "t[a]", "t[07]", "t[7]", "t[0.5]", "t[0.05]"]
    assert sorted(ids, key=natural_key) == [
        "t",
        "t[0.05]",
        "t[0.5]",
        "t[1]",
        "t[2]",
        "t[07]",
        "t[7]",
        "t[10]",
        "t[a]",
        "u",
    ]


def test_the_terminal_summary_lists_parametrized_claims_by_number() -> None:
    assert _numbers(summary_lines([_record(i) for i in IDS])) == IN_ORDER


def test_the_json_report_and_markdown_table_list_parametrized_claims_by_number() -> None:
    ordered = in_report_order([_record(i) for i in IDS])  # what the plugin writes them in
    assert _numbers([r["test_id"] for r in ordered]) == IN_ORDER
    assert _numbers(markdown_table(ordered).splitlines()) == IN_ORDER


def test_the_measured_limits_are_listed_by_number() -> None:
    limits = [
        {
            "test_id": test_id,
            "claim": f"left_boundary [{_numbers([test_id])[0]}]",
            "where": "bracket 0.05-1.40",
            "site": "block_output[layer=0, pos=last]",
            "seed": 0,
            "iia": 0.3,
            "iia_ci": [0.25, 0.34],
            "n": 400,
            "noop": 0.497,
            "task_accuracy": 0.897,
            "changed_labels": {"correct": 72, "n": 204},
            "threshold": 0.75,
            "verdict": "not_aligned",
            "status": "breaks",
        }
        for test_id in IDS
    ]
    assert _numbers(limit_lines(limits)) == IN_ORDER


def test_the_compare_table_lists_parametrized_claims_by_number() -> None:
    entries = {f"{test_id}::left_boundary": _record(test_id) for test_id in IDS}
    table, _ = compare_entries(entries, entries, [])
    assert _numbers(table.splitlines()) == IN_ORDER


def test_the_baseline_entries_not_judged_come_by_number(tmp_path: Path) -> None:
    # the note lists the first 10 of them: as text, [10]-[13] took the places of [6]-[9]
    from das_assert.baseline import baseline_entries_not_judged, save_baseline

    claims = [{**_record(f"test_hyp.py::test_gone[{i}]"), "claim": "c"} for i in range(14)]
    path = tmp_path / "0001_v1.json"
    save_baseline(path, model={}, environment={}, records=claims)
    (missing,) = baseline_entries_not_judged([], [path]).values()
    assert _numbers(missing) == list(range(14))


def test_the_terminal_summary_lists_its_files_by_number_as_the_report_does() -> None:
    records = [_record(f"hypotheses/test_v{i}.py::test_claim") for i in (10, 2)]
    headers = [line for line in summary_lines(records) if line.startswith("--- ")]
    assert headers == ["--- hypotheses/test_v2.py", "--- hypotheses/test_v10.py"]
    assert in_report_order(records)[0]["test_id"] == "hypotheses/test_v2.py::test_claim"
