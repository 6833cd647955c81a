"""The terminal summary: one table per hypothesis file, every claim with the numbers behind it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["summary_lines"]

HEADER = (
    f"{'claim':<34} {'site':<36} {'IIA':>5} {'95% CI':>13} {'n':>5} {'no-op':>5} "
    f"{'rand':>5} {'task':>5} {'thr':>5}  verdict"
)


def _row(r: dict[str, Any]) -> str:
    low, high = r["iia_ci"]
    b = r["baselines"]
    expected = "" if r["passed"] else f" (expected {r['expected_verdict']})"
    return (
        f"{r['claim'][:34]:<34} {r['site']['canonical'][:36]:<36} {r['iia']:>5.3f} "
        f"{low:>6.3f}-{high:<6.3f} {r['n_test']:>5} {b['noop']:>5.3f} "
        f"{b['random_rotation']:>5.3f} {r['task_accuracy']:>5.3f} {r['threshold']:>5.2f}  "
        f"{r['verdict']}{expected}"
    )


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """Lines of the summary, grouped by hypothesis file."""
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_file[record["test_id"].split("::")[0]].append(record)
    lines = []
    for file, group in sorted(by_file.items()):
        lines.append(f"--- {file}")
        lines.append(HEADER)
        lines.extend(_row(r) for r in sorted(group, key=lambda r: r["test_id"]))
    seeds = sorted({r["seed"] for r in records})
    lines.append(
        f"Legend: IIA with a hard mask, Wilson 95% CI over n test pairs; no-op / rand = IIA of the "
        f"plain base run / a random rotation of the learned width; task = task accuracy; "
        f"thr = threshold (das.yaml). seed={','.join(map(str, seeds))}"
    )
    return lines
