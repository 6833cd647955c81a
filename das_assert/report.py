"""The JSON report shared by the CLI and ``pytest --das-json``, and its Markdown rendering.

Top level: ``schema_version``, ``das_assert_version``, ``model``, ``environment``, ``results``
(one record per fitted or evaluated alignment, see ``AlignmentResult.to_dict``); a pytest run
adds ``run``, ``robustness`` and ``unjudged``, a search ``search`` (README, "The JSON report").
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from das_assert.md_text import code, plain
from das_assert.metrics import bracketed, clustered_interval, rounded_interval
from das_assert.row_order import by_test_id, natural_key
from das_assert.store import SCHEMA_VERSION, atomic_write_json
from das_assert.summary import (
    changed_text,
    fit_method,
    limit_result,
    pairs_notes,
    robustness_sites,
    search_against_baseline,
    search_fitted,
    search_rows,
    threshold_moved,
    threshold_text,
    transfer_text,
    unconfirmed_lines,
    unshown_lines,
)

__all__ = [
    "build_report",
    "distinct_draws",
    "environment",
    "installed_version",
    "markdown_table",
    "robustness_summary",
    "write_report",
]


def environment(*, import_torch: bool = True, model_device: str | None = None) -> dict[str, Any]:
    """Versions and the device, as recorded in every report and baseline: the CPU's model and
    the thread count change an alignment's float rounding, hence its IIA in the third decimal,
    and another ``fit_revision`` (das_assert's fit itself changed) what it learns.

    ``device_name`` is that of the processor the model ran on (``model_device``, as its report's
    ``model.device`` says: a model on the CPU of a machine with a GPU ran on the CPU); with no
    model, the machine's first GPU where it has one. ``import_torch=False`` (a pytest run in
    which no das test ran, torch not imported): the installed versions only, device and threads
    None; importing torch for them cost seconds."""
    from das_assert.cache import FIT_REVISION

    if not import_torch and "torch" not in sys.modules:
        return {
            "python": platform.python_version(),
            "torch": installed_version("torch"),
            "transformers": installed_version("transformers"),
            "device_name": None,
            "torch_threads": None,
            "fit_revision": FIT_REVISION,
        }
    import torch
    import transformers

    from das_assert.transfer import gpu_index

    gpu = gpu_index(model_device) if torch.cuda.is_available() else None
    if gpu is not None:
        device = torch.cuda.get_device_name(gpu)
    else:
        device = _cpu_model() or platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device_name": device,
        "torch_threads": torch.get_num_threads(),
        "fit_revision": FIT_REVISION,  # a change to the fit changes what it learns
    }


def installed_version(package: str) -> str | None:
    """The installed distribution's version, without importing it; None where it is absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    """The CPU's model name on Linux (``platform.processor()`` gives only the architecture)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return None


def build_report(
    model: dict[str, Any] | None,
    results: list[dict[str, Any]],
    environment_block: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from das_assert import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "das_assert_version": __version__,
        "model": model,
        "environment": (
            environment(model_device=(model or {}).get("device"))
            if environment_block is None
            else environment_block
        ),
        "results": results,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    atomic_write_json(Path(path), report, follow_link=True)


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(low: float, high: float, threshold: float | None) -> str:
    """``[low, high]``, each bound on the side of ``threshold`` it lies (``metrics.beside``)."""
    if threshold is None:
        return f"[{_fmt(low)}, {_fmt(high)}]"
    return bracketed(low, high, threshold)


#: A fuzz record's numbers that the robustness table pools over a family's pairs, beside IIA.
_POOLED = ("noop", "majority", "random_rotation", "task_accuracy")


def robustness_summary(
    fuzz: list[dict[str, Any]], not_passed: Collection[str] = ()
) -> dict[str, Any]:
    """Per claim and variant family: distinct variants tried, rejected, inconclusive, broken,
    and the IIA pooled over the pairs of the variants not rejected, with n and its 95% interval
    clustered by variant (``metrics.clustered_interval``: a variant's pairs share its wording,
    so they are not independent; the variants are taken as independent of each other), and the
    controls' IIAs (no-op, majority label, random rotation) and the task
    accuracy over the same pairs (``None`` for records without).

    hypothesis may draw one variant more than once (the default variant, often); for one
    alignment (claim and site) and number of pairs, its pairs and predictions are the same each
    time, so it counts once, not as new data. Examples run after a test's first broken one (the
    shrinker's candidates, chosen near the failure) are listed in ``examples`` but not pooled.

    A claim fuzzed both as expected to hold and as expected not to (one name for an aligned site
    and its control) is two rows: the second as ``<claim> (expect not_aligned)``. ``sites``
    gives each row's sites. ``unshown`` lists the fuzz tests none of whose variants held (all
    inconclusive or rejected) and passed (not in ``not_passed``, node ids of the tests that
    failed, xfailed or were skipped): they passed without showing the claim under any
    variant."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    sites: dict[str, set[str]] = {}
    seen: set[tuple[Any, ...]] = set()
    clusters: dict[tuple[str, str], list[tuple[int, int]]] = {}  # each variant's (correct, n)
    expects: dict[str, set[str]] = {}
    for record in fuzz:
        expects.setdefault(record["claim"], set()).add(record.get("expect", "aligned"))
    for record in fuzz:
        if record.get("after_failure"):
            continue
        expect = record.get("expect", "aligned")
        row = record["claim"]
        if expect != "aligned" and len(expects[row]) > 1:
            row = f"{row} (expect {expect})"
        variant = record.get("variant")
        if variant is not None:
            same = (
                row,
                record.get("site"),
                *_alignment_of(record),
                variant,
                record.get("pairs_asked"),
            )
            if same in seen:
                continue
            seen.add(same)
        if record.get("site"):
            sites.setdefault(row, set()).add(record["site"])
        for family in record["families"]:
            cell = table.setdefault(row, {}).setdefault(
                family,
                {"examples": 0, "rejected": 0, "inconclusive": 0, "broken": 0}
                | {"correct": 0, "n": 0}
                | dict.fromkeys(_POOLED, 0.0),
            )
            cell["examples"] += 1
            if record["status"].startswith("rejected"):
                cell["rejected"] += 1
                continue
            cell["broken"] += record["status"] == "broken"
            cell["inconclusive"] += record["status"] == "inconclusive"
            cell["correct"] += record.get("correct", 0)
            cell["n"] += record["n"]
            clusters.setdefault((row, family), []).append((record.get("correct", 0), record["n"]))
            for key in _POOLED:  # weighted by each variant's pairs; None once one lacks it
                missing = cell[key] is None or record.get(key) is None
                cell[key] = None if missing else cell[key] + record[key] * record["n"]
    for row, families in table.items():
        for family, cell in families.items():
            for key in _POOLED:
                total = cell[key]
                cell[key] = round(total / cell["n"], 6) if total is not None and cell["n"] else None
            cell["iia"] = round(cell["correct"] / cell["n"], 6) if cell["n"] else None
            cell["iia_ci"] = (
                rounded_interval(*clustered_interval(clusters[row, family])) if cell["n"] else None
            )
    return {
        "per_family": table,
        "sites": {row: sorted(row_sites) for row, row_sites in sorted(sites.items())},
        "examples": fuzz,
        "unshown": unshown_fuzz_tests(fuzz, not_passed),
        "unconfirmed": unconfirmed_breaks(fuzz),
    }


def _alignment_of(record: dict[str, Any]) -> tuple[Any, Any]:
    """What tells apart the alignments a fuzz example may have scored at one site: the seed, and
    where recorded, the digest of its recipe, fit and model (`robustness.alignment_id`)."""
    return record.get("seed"), record.get("alignment")


def distinct_draws(fuzz: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The fuzz examples of each test as drawn before its first failure, a variant drawn again
    for the same claim, alignment and number of pairs given once (its pairs and predictions
    are the same each time)."""
    seen: set[tuple[Any, ...]] = set()
    for record in fuzz:
        if record.get("after_failure"):
            continue
        keys = ("test_id", "claim", "expect", "site", "variant", "pairs_asked")
        same = (*(record.get(key) for key in keys), *_alignment_of(record))
        if record.get("variant") is not None and same in seen:
            continue
        seen.add(same)
        yield record


def unconfirmed_breaks(fuzz: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The variants that broke their claim on their own pairs but not on fresh ones, so were
    counted inconclusive: each with both sets of numbers (a variant drawn again counts once)."""
    keys = ("test_id", "claim", "expect", "variant", "iia", "iia_ci", "n")
    return [
        {key: record.get(key) for key in keys}
        | {"threshold": record["confirmation"].get("threshold"), "fresh": record["confirmation"]}
        for record in distinct_draws(fuzz)
        if record.get("confirmation") and record["status"] != "broken"
    ]


def unshown_fuzz_tests(
    fuzz: list[dict[str, Any]], not_passed: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The fuzz tests that judged no variant as holding, none broken, not every one rejected
    (that fails the test), and that passed (not in ``not_passed``): each with its counts
    of inconclusive and rejected variants, a variant drawn again counted once, as the
    robustness table counts them."""
    by_test: dict[str, list[dict[str, Any]]] = {}
    for record in distinct_draws(fuzz):
        if record.get("test_id") and record["test_id"] not in not_passed:
            by_test.setdefault(record["test_id"], []).append(record)
    unshown = []
    for test_id, records in sorted(by_test.items(), key=lambda item: natural_key(item[0])):
        statuses = [r["status"] for r in records]
        rejected = sum(status.startswith("rejected") for status in statuses)
        inconclusive = statuses.count("inconclusive")
        if inconclusive and inconclusive + rejected == len(statuses):
            unshown.append({"test_id": test_id, "inconclusive": inconclusive, "rejected": rejected})
    return unshown


def _against_baseline(record: dict[str, Any]) -> str:
    """The comparison with a saved baseline, as the terminal summary gives it; "–" if none."""
    base = record.get("baseline")
    if not base:  # a compared claim without an entry carries why in its regressions
        regressions = record.get("regressions")
        return "**no baseline entry**: " + plain("; ".join(regressions)) if regressions else "–"
    parts = [f"Δ {base['delta']:+.3f}"]
    if moved := threshold_moved(record):
        parts.append(moved)
    transfer = record.get("transfer") or {}
    if "iia" in transfer:
        parts.append(plain(f"transfer {transfer_text(transfer)}"))
    elif transfer.get("skipped") and not (record.get("drift") or {}).get("from"):
        parts.append(plain(f"transfer not measured: {transfer['skipped']}"))  # drift says why
    if (record.get("drift") or {}).get("from"):
        parts.append(f"drift from {code(record['drift']['from'])}")
    if record.get("regressions"):
        parts.append("**regressed**: " + plain("; ".join(record["regressions"])))
    return ", ".join(parts)


def markdown_table(
    results: list[dict[str, Any]],
    robustness: dict[str, Any] | None = None,
    limits: list[dict[str, Any]] | None = None,
    searches: list[dict[str, Any]] | None = None,
) -> str:
    """A Markdown table of results, for a CI job summary; then the robustness per variant family
    and the measured limits, where the run had any."""
    lines = [
        "| test | claim | site | IIA | 95% CI | n | seed | no-op | majority | random rot. "
        "| task acc. | threshold | verdict | vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not results:  # a header alone reads as a table that lost its rows
        others = searches or (robustness or {}).get("per_family") or limits
        lines = [
            "No claim table: this run judged no claim; what it measured follows."
            if others
            else "No claim was judged in this run."
        ]
    for r in results:
        low, high = r["iia_ci"]
        b = r["baselines"]
        claim = r.get("claim") or f"{r['hypothesis']}:{r['variable']}"
        verdict = r.get("verdict") or "–"
        if r.get("expected_verdict") and r.get("verdict") != r["expected_verdict"]:
            verdict += f" (expected {r['expected_verdict']})"
        verdict += "".join(f" {note}" for note in pairs_notes(r))
        method = fit_method(r)
        site = code(r["site"]["canonical"]) + ("" if method == "boundless" else f" ({method})")
        lines.append(
            f"| {plain(r.get('test_id') or '–')} | {plain(claim)} "
            f"| {site} | {_fmt(r['iia'])} | {_interval(low, high, r.get('threshold'))} "
            f"| {r['n_test']} | {r.get('seed', '–')} | {_fmt(b['noop'])} "
            f"| {_fmt(b.get('majority'))} | {_fmt(b['random_rotation'])} "
            f"| {_fmt(r['task_accuracy'])} "
            f"| {'–' if r.get('threshold') is None else threshold_text(r['threshold'])} "
            f"| {plain(verdict)} | {_against_baseline(r)} |"
        )
    for search in searches or ():
        lines += [
            "",
            f"Search: {plain(search['hypothesis'])} in {code(search['test_id'], cell=False)}, "
            f"{plain(search_fitted(search))} (* the best cell, then judged on fresh pairs)",
            "",
            "| site | IIA | 95% CI | n | seed | no-op | majority | random rot. | task acc. |",
            "|---|---|---|---|---|---|---|---|---|",
            *(
                "| " + " | ".join(plain(value) for value in row) + " |"
                for row in search_rows(search, markdown=True)
            ),
        ]
        if why := search.get("confirmation_error"):
            lines += ["", f"The best cell on fresh pairs: not judged: {plain(why)}"]
        if against := search_against_baseline(search):
            lines += ["", plain(against)]
    if robustness and robustness["per_family"]:
        lines += [
            "",
            "Robustness: each claim's fuzz examples per variant family",
            "",
            "| claim | variant family | variants | rejected | inconclusive | broken | pooled IIA "
            "| 95% CI | n | no-op | majority | random rot. | task acc. |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for claim, families in sorted(robustness["per_family"].items()):
            for family, c in sorted(families.items()):
                ci = c.get("iia_ci")
                interval = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–"
                lines.append(
                    f"| {plain(claim)} | {plain(family)} | {c['examples']} | {c['rejected']} "
                    f"| {c.get('inconclusive', '–')} | {c['broken']} | {_fmt(c['iia'])} "
                    f"| {interval} | {c['n']} | {_fmt(c.get('noop'))} | {_fmt(c.get('majority'))} "
                    f"| {_fmt(c.get('random_rotation'))} | {_fmt(c.get('task_accuracy'))} |"
                )
        lines += [
            "",
            *robustness_sites(robustness),
            "",
            "Pooled over the pairs of a family's distinct variants not rejected, its 95% "
            "interval clustered by variant (from the spread of the variants' IIAs, Student's t, "
            "never narrower than Wilson's over all the pairs; one variant: Wilson's); "
            "majority: each variant's commonest-label share, weighted by its pairs. Each variant "
            "was judged on its own pairs (inconclusive: its interval straddled the bar, or it "
            "broke the claim there and fresh pairs did not confirm the break).",
        ]
        notes = unshown_lines(robustness.get("unshown", []))
        notes += unconfirmed_lines(robustness.get("unconfirmed", []))
        if notes:
            lines += ["", *(f"- {plain(line)}" for line in notes)]
    if limits:
        lines += [
            "",
            "Measured limits (das.assert_breaks_on)",
            "",
            "| test | claim | where (claimed to break) | site | IIA | 95% CI | n | seed | no-op "
            "| majority | random rot. | changed | task acc. | threshold | result |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(limits, key=by_test_id):
            low, high = r["iia_ci"]
            lines.append(
                f"| {plain(r['test_id'])} | {plain(r['claim'])} | {plain(r['where'])} "
                f"| {code(r['site'])} "
                f"| {_fmt(r['iia'])} | {_interval(low, high, r['threshold'])} | {r['n']} "
                f"| {r['seed']} "
                f"| {_fmt(r['noop'])} | {_fmt(r.get('majority'))} "
                f"| {_fmt(r.get('random_rotation'))} | {changed_text(r)} "
                f"| {_fmt(r['task_accuracy'])} "
                f"| {threshold_text(r['threshold'])} | {limit_result(r, markdown=True)} |"
            )
    return "\n".join(lines) + "\n"
