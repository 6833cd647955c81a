"""Verdict stability: run the hypothesis files under several seeds and compare the verdicts.

    python -m das_assert.stability --seeds 10 [-- extra pytest args]

Each seed reruns ``pytest hypotheses/`` with ``--das-seed=S`` (new data, initialisation and
training) and its JSON report. The table lists, per claim, the verdict under every seed and the
IIA range, then each seed's IIA with its n, 95% interval, site and controls; a claim whose
verdict differs between seeds is flagged, with how close what decided it (IIA against the
threshold, or a lead over a baseline against the margin) came to its bar.
Tests that are not IIA claims (a search's region, disjoint boxes) are listed with the seeds
under which they failed. Exit code 1 if a claim flipped though what decided it stayed at least
``--margin`` from its bar under every seed, or if another test passed under some seeds and
failed under others; exit code 2 if a seed's pytest did not run its tests (a usage, setup or
collection error) or nothing was judged at all (no claim, limit or fuzz variant). Fuzz tests
are listed with the range of their variants' statuses per seed and the seeds under which they
failed. Measured limits (``das.assert_breaks_on``) are listed with the seeds under which they
broke and their IIA, upper bound and no-op ranges; one that did not break under a seed fails
its test, so it counts as such a test.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from pathlib import Path

from das_assert.arg_types import MAX_SEED, parse_fraction, positive_int, seed_int
from das_assert.metrics import (
    ANSWERS_KEPT,
    LABELS_THAT_CHANGE,
    controls_text,
    lead_over,
    perfect_gap,
)
from das_assert.report import distinct_draws

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m das_assert.stability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --seed was read as --seeds
    )
    parser.add_argument("--seeds", type=positive_int, default=10, help="how many (default 10)")
    parser.add_argument("--first-seed", type=seed_int, default=0, help="the first seed (default 0)")
    parser.add_argument(
        "--margin",
        type=parse_fraction,
        default=0.05,
        help="a claim this far from the bar that decides it must not flip (default 0.05)",
    )
    parser.add_argument("--path", default="hypotheses/", help="the hypothesis files to run")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    return parser


_ITS_OPTIONS = ("--das-seed", "--das-json", "--junitxml", "--junit-xml")


def _options_it_sets(pytest_args: list[str]) -> str | None:
    """The first of ``pytest_args`` that overrides what ``_run_seed`` sets (``--das-seed``,
    ``--das-json``, ``--junitxml``) or turns das_assert off, else None."""
    for index, arg in enumerate(pytest_args):
        after = pytest_args[index + 1] if index + 1 < len(pytest_args) else ""
        name = arg.partition("=")[0]
        if name in _ITS_OPTIONS:
            return name
        plugin = after if arg == "-p" else arg.removeprefix("-p") if arg.startswith("-p") else ""
        if plugin.strip() == "no:das_assert":
            return f"-p {plugin.strip()}"
    return None


def _run_seed(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "pytest",
        path,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--das-seed={seed}",
        f"--das-json={report}",
        f"--junitxml={junit}",
        *extra,
    ]
    # why it stopped, if it did
    with open(report.with_suffix(".log"), "w", encoding="utf-8") as log:
        return subprocess.run(command, check=False, stdout=log).returncode


def _why_stopped(report: dict, log: Path) -> str:
    """Why a seed's pytest ran no test: das_assert's setup error, the first file that failed
    to collect, a das_assert output it could not write (exit 3, as for pytest's internal
    error), or pytest's own last line (its output is not shown while the seeds run)."""
    recorded = report.get("run")
    run = recorded if isinstance(recorded, dict) else {}
    if run.get("setup_error"):
        return str(run["setup_error"])
    unjudged = report.get("unjudged") or [None]
    if isinstance(unjudged[0], dict):
        first = unjudged[0]
        message = str(first.get("message", "")).removeprefix("E").strip()
        return f"{first.get('test_id')} ({first.get('when')}): {message}"
    lines = log.read_text(encoding="utf-8", errors="replace").split("\n") if log.is_file() else []
    if unwritten := [line.strip() for line in lines if " NOT written: " in line]:
        where = f" (each seed's report is written under {log.parent}, in $TMPDIR)"
        return "; ".join(unwritten) + (where if str(log.parent) in unwritten[0] else "")
    last = next((line.strip(" =") for line in reversed(lines) if line.strip(" =")), None)
    return f"pytest said {last!r}" if last else "see its output"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.first_seed + args.seeds - 1 > MAX_SEED:  # refused now, not after the first runs
        parser.error(f"--first-seed {args.first_seed} + --seeds {args.seeds} passes {MAX_SEED}")
    if taken := _options_it_sets(args.pytest_args):
        parser.error(
            f"{taken} after --: this tool sets it for each seed (a later value wins, so every "
            "seed would run as one, or its report or failures would not be read); leave it out"
        )
    verdicts: dict[str, dict[int, dict]] = defaultdict(dict)
    failed: dict[str, list[int]] = defaultdict(list)
    judged: dict[str, set[int]] = defaultdict(set)  # claim test -> seeds with a verdict
    limits: dict[str, dict[int, dict]] = defaultdict(dict)  # test [where] -> seed -> record
    fuzz: dict[str, dict[int, Counter]] = defaultdict(dict)  # test -> seed -> status counts
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            report = Path(tmp) / f"seed{seed}.json"
            junit = Path(tmp) / f"seed{seed}.xml"
            status = _run_seed(args.path, seed, report, junit, args.pytest_args)
            loaded = json.loads(report.read_bytes()) if report.is_file() else {}
            if status not in (0, 1):  # 0: all passed, 1: some failed; else nothing to compare
                why = _why_stopped(loaded, report.with_suffix(".log"))
                print(
                    f"seed {seed}: pytest exited {status} ({_exit_name(status)}), so no seed "
                    f"is compared: {why.rstrip('.')}. Run it alone: pytest {args.path} "
                    f"--das-seed={seed} {' '.join(args.pytest_args)}".rstrip(),
                    file=sys.stderr,
                )
                return 2
            if not loaded or not junit.is_file():
                missing = f"report {report}" if not loaded else f"JUnit XML {junit}"
                print(
                    f"seed {seed}: pytest exited {status} but wrote no {missing}, so its "
                    "failures cannot be read and no seed is compared",
                    file=sys.stderr,
                )
                return 2
            for record in loaded.get("limits", []):
                limits[f"{record['test_id']} [{record['where']}]"][seed] = record
            # each variant once, as the robustness table counts it: not a draw made while
            # shrinking a failure, nor one drawn again for the same alignment
            for record in distinct_draws((loaded.get("robustness") or {}).get("examples", [])):
                counts = fuzz[record["test_id"]].setdefault(seed, Counter())
                counts[record["status"].split(":")[0]] += 1
                if record.get("confirmation") and record["status"] != "broken":
                    counts["unconfirmed"] += 1  # inconclusive, and said so
            for record in loaded["results"]:
                key = f"{record['test_id']}::{record['claim']}"
                verdicts[key][seed] = record
                judged[record["test_id"]].add(seed)
            for test in _failed_tests(junit):
                failed[test].append(seed)
    if not verdicts and not limits and not fuzz:  # -k that selects nothing of das
        print(
            f"no claim, measured limit or fuzz variant was judged under seeds "
            f"{seeds[0]}-{seeds[-1]}: "
            "nothing to compare; check the path and the pytest arguments after --",
            file=sys.stderr,
        )
        return 2
    unstable_far = 0
    for key, by_seed in sorted(verdicts.items()):
        records = list(by_seed.values())
        outcomes = {r["verdict"] for r in records}
        iias = [r["iia"] for r in records]
        threshold = records[0]["threshold"]
        sites = {_site_name(r) for r in records}
        header = f"{key} at {sites.pop()}" if len(sites) == 1 else key
        line = f"{header}\n  verdicts {sorted(outcomes)}  IIA {min(iias):.3f}..{max(iias):.3f}  "
        line += f"threshold {threshold}"
        if len(outcomes) > 1:
            distance, what = _closest_to_its_bar(records)
            far = distance >= args.margin
            unstable_far += far
            if math.isinf(distance):  # a collapse or broken answers: no bar to be near
                line += f"  FLIPS ({what} under some seed: near no bar, so not tolerated!)"
            else:
                line += f"  closest {distance:.3f} ({what})  FLIPS " + (
                    f"(far from the bar of {what}!)"
                    if far
                    else f"(within {args.margin} of the bar of {what}: tolerated, exit 0)"
                )
        else:
            line += f"  closest {min(abs(i - threshold) for i in iias):.3f}"
        print(line)
        print(_seed_lines(by_seed, with_site=header == key))
    for key, limit_by_seed in sorted(limits.items()):
        print(f"{key}\n  {_limit_line(limit_by_seed, len(seeds))}")
        print(_seed_lines(limit_by_seed, with_site=True))
    unstable_tests = 0
    for test, counts_by_seed in sorted(fuzz.items()):
        bad_seeds = failed.pop(test, [])
        unstable_tests += 0 < len(bad_seeds) < len(seeds)
        print(f"{test}\n  {_fuzz_line(counts_by_seed, bad_seeds, len(seeds))}")
    for test, bad_seeds in sorted(failed.items()):
        if test in judged:  # a claim: judged above on its interval, unless it reached no verdict
            unjudged = [seed for seed in bad_seeds if seed not in judged[test]]
            if unjudged:
                unstable_tests += 1
                print(f"{test}\n  failed before a verdict under seeds {unjudged}  UNSTABLE")
            continue
        flag = "FAILS UNDER SOME SEEDS" if len(bad_seeds) < len(seeds) else "fails under every seed"
        unstable_tests += len(bad_seeds) < len(seeds)
        print(f"{test}\n  failed under seeds {bad_seeds}  {flag}")
    return 1 if unstable_far or unstable_tests else 0


def _distances(record: dict) -> dict[str, float]:
    """Under one seed, how far each quantity a verdict compares lies from its bar: IIA from the
    threshold, each lead over a baseline, and the share of labels that change (or the lower
    bound it allows) from the margin. A collapse has none: it is near no bar."""
    margin = record["margin"]
    far = {"threshold": abs(record["iia"] - record["threshold"])}
    for name, gap in (record.get("baseline_leads") or {}).items():
        far[lead_over(name)] = abs(gap["lead"] - margin)
    changed, n = record.get("iia_on_changed_labels"), record["n_test"]
    if changed and n:  # the verdict reads the share itself, or where it is above the margin,
        # the lower bound of the lead that changing every such label would show ("increase n")
        share, low = changed["n"] / n, perfect_gap(changed["n"], n).low
        far[LABELS_THAT_CHANGE] = min(abs(share - margin), abs(low - margin))
    return far


def _site_name(record: dict) -> str:
    """A claim record's site (a dict with its ``canonical`` name) or a limit record's (a str)."""
    site = record["site"]
    return str(site["canonical"] if isinstance(site, dict) else site)


def _seed_lines(by_seed: dict[int, dict], *, with_site: bool) -> str:
    """Each seed's own numbers, as every IIA is shown: n, the 95% interval and the controls
    (no-op, majority label, random rotation, task accuracy), and its verdict or status."""
    lines = []
    for seed, record in sorted(by_seed.items()):
        controls = record.get("baselines") or record  # a claim's are nested, a limit's are not
        low, high = record["iia_ci"]
        where = f" at {_site_name(record)}" if with_site else ""
        lines.append(
            f"    seed {seed}{where}: IIA {record['iia']:.3f} [{low:.3f}, {high:.3f}] "
            f"n={record.get('n_test', record.get('n'))}, "
            f"{controls_text(controls, record['task_accuracy'])}: "
            f"{record.get('status', record.get('verdict'))}"
        )
    return "\n".join(lines)


def _closest_to_its_bar(records: list[dict]) -> tuple[float, str]:
    """For a claim whose verdict flips between seeds: how far from their bars the quantities
    that decided its verdicts other than ``aligned`` stayed, and which. Each such verdict is
    excused by the nearest any seed came to the bar on an axis that decided it (a lost lead is
    not excused by an IIA near the threshold, nor by another seed's verdict decided near the
    threshold), never by a collapse or by answers the intervention broke (near no bar); the flip
    is as far as the least excused of them."""
    distances = [_distances(record) for record in records]
    worst = (-math.inf, "no bar")
    for record in records:
        if record["verdict"] == "aligned":
            continue
        axes = record["verdict_decided_by"]
        for unexcused in ("collapse", ANSWERS_KEPT):
            if unexcused in axes:
                return math.inf, unexcused
        nearest = min(
            ((d[axis], axis) for d in distances for axis in axes if axis in d),
            default=(math.inf, "no bar"),
        )
        worst = max(worst, nearest)
    return worst


def _exit_name(status: int) -> str:
    import pytest

    if status == pytest.ExitCode.INTERNAL_ERROR:  # das_assert's too, for an output not written
        return "INTERNAL_ERROR, or a das_assert output not written"
    return pytest.ExitCode(status).name if status in set(pytest.ExitCode) else "unknown"


def _limit_line(by_seed: dict[int, dict], n_seeds: int) -> str:
    """One measured limit across seeds: under which it broke, and the ranges of its numbers."""
    broke = sorted(seed for seed, r in by_seed.items() if r["status"] == "breaks")
    not_shown = {seed: r["status"] for seed, r in sorted(by_seed.items()) if seed not in broke}
    records = list(by_seed.values())

    def span(values: list[float]) -> str:
        return f"{min(values):.3f}..{max(values):.3f}"

    line = (
        f"breaks under {len(broke)} of {n_seeds} seeds  IIA {span([r['iia'] for r in records])}  "
        f"upper bound {span([r['iia_ci'][1] for r in records])}  no-op "
        f"{span([r['noop'] for r in records])}  task {span([r['task_accuracy'] for r in records])}"
    )
    return line + (f"  NOT SHOWN under {not_shown}" if not_shown else "")


def _fuzz_line(by_seed: dict[int, Counter], failed: list[int], n_seeds: int) -> str:
    """One fuzz test across seeds: the range of its variants' statuses per seed (held,
    inconclusive, broken, rejected; and, where any, the inconclusive ones that were breaks
    fresh pairs did not confirm), and the seeds under which it failed."""
    statuses = ("holds", "inconclusive", "broken", "rejected")
    ranges = []
    for status in statuses:
        counts = [by_seed.get(seed, Counter())[status] for seed in by_seed]
        low, high = min(counts), max(counts)
        ranges.append(f"{status} {low}" + (f"-{high}" if high != low else ""))
    line = f"fuzz variants per seed: {', '.join(ranges)}"
    unconfirmed = [by_seed.get(seed, Counter())["unconfirmed"] for seed in by_seed]
    if max(unconfirmed, default=0):  # counted inconclusive above; a pattern across seeds shows
        low, high = min(unconfirmed), max(unconfirmed)
        span = f"{low}" + (f"-{high}" if high != low else "")
        line += f" (of the inconclusive, breaks fresh pairs did not confirm: {span})"
    if not failed:
        return f"{line}  passed under all {n_seeds} seeds"
    flag = "FAILS UNDER SOME SEEDS" if len(failed) < n_seeds else "fails under every seed"
    return f"{line}  failed under seeds {failed}  {flag}"


def _failed_tests(junit: Path, root: Path | None = None) -> list[str]:
    """Node ids (``path::name``, ``path::Class::name``) of the failed or erroring tests of a
    JUnit XML report, whose ``classname`` dots both the path and a class: the file is the
    longest dotted prefix that is a ``.py`` file under ``root`` (the current directory)."""
    if not junit.is_file():
        return []
    root = Path.cwd() if root is None else root
    out = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            parts = case.get("classname", "").split(".")
            split = next(
                (
                    k
                    for k in range(len(parts), 0, -1)
                    if (root / "/".join(parts[:k])).with_suffix(".py").is_file()
                ),
                len(parts),
            )
            node = ["/".join(parts[:split]) + ".py", *parts[split:], case.get("name", "")]
            out.append("::".join(node))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
