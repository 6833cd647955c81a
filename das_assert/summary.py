"""The terminal summary: one table per hypothesis file, every claim with the numbers behind it."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Collection
from pathlib import PurePath
from typing import Any

from das_assert.metrics import beside, threshold_text
from das_assert.row_order import by_test_id, natural_key
from das_assert.tasks.phrasings import DEFAULT_INSTRUCTION

__all__ = [
    "NOT_COMPARABLE",
    "changed_text",
    "fuzz_lines",
    "limit_lines",
    "limit_result",
    "one_line",
    "robustness_sites",
    "search_lines",
    "search_rows",
    "sites_and_seeds",
    "summary_lines",
    "threshold_moved",
    "transfer_text",
]

_NUMBERS = (
    f"{'IIA':>5} {'95% CI':>13} {'n':>5} {{seed}} {'no-op':>5} {'maj':>5} {'rand':>5} "
    f"{'task':>5} {'thr':>5}  verdict"
)


#: What ends each reason ``compare.not_comparable`` gives (other prompts, method or pairs).
NOT_COMPARABLE = ": not comparable"


def _number(value: float | None) -> str:
    return f"{'–':>5}" if value is None else f"{value:>5.3f}"


def interval_text(low: float, high: float, threshold: float) -> str:
    """An interval in a table's column, each bound on the side of ``threshold`` it lies
    (``metrics.beside``): a bound of 0.72996 is not shown as 0.730 beside a threshold of 0.73."""
    return f"{beside(low, threshold):>6}-{beside(high, threshold):<6}"


def transfer_text(transfer: dict[str, Any]) -> str:
    """A baseline's frozen alignment on this model: ``0.690 [0.594, 0.772] n=100`` (the IIA
    alone from a report of an older das_assert, which kept no interval)."""
    text = f"{transfer['iia']:.3f}"
    if transfer.get("iia_ci"):
        low, high = transfer["iia_ci"]
        text += f" [{low:.3f}, {high:.3f}]"
    return text + (f" n={transfer['n']}" if transfer.get("n") is not None else "")


def _threshold(value: float) -> str:
    return f"{threshold_text(value):>5}"  # in the column's width


def _header(claim_width: int, site_width: int, seed_width: int) -> str:
    numbers = _NUMBERS.format(seed=f"{'seed':>{seed_width}}")
    return f"{'claim':<{claim_width}} {'site':<{site_width}} {numbers}"


def _row(r: dict[str, Any], claim_width: int, site_width: int, seed_width: int) -> str:
    low, high = r["iia_ci"]
    b = r["baselines"]
    expected = (
        "" if r["verdict"] == r.get("expected_verdict") else f" (expected {r['expected_verdict']})"
    )
    method = fit_method(r)
    base = r.get("baseline")
    if base:
        delta = base["delta"]
        expected += f"  Δ ref {delta:+.3f}"
        if moved := threshold_moved(r):
            expected += f" ({moved})"
        if base.get("method", method) != method:  # not comparable: say why the Δ means little
            expected += f" (ref fitted {base['method']})"
        if _clearly_better(r, base):
            expected += " (improved: re-save to raise the bar)"
        transfer = r.get("transfer") or {}
        if "iia" in transfer:
            expected += f"  transfer {transfer_text(transfer)}"
        elif transfer.get("skipped") and not (r.get("drift") or {}).get("from"):
            expected += "  transfer not measured (--das-json's transfer.skipped says why)"
        if (r.get("drift") or {}).get("from"):
            expected += f"  DRIFT from {r['drift']['from']}"
    if method != "boundless":  # two fits at one site are told apart
        expected += f"  (method {method})"
    expected += "".join(f"  {note}" for note in pairs_notes(r))
    if r.get("regressions") and "baseline" not in r:  # compared, and nothing to compare with
        expected += "  NO BASELINE ENTRY (new or renamed: save one with --das-save-baseline)"
    elif r.get("regressions"):
        # compare.not_comparable's reasons alone (other prompts, method, pairs): no regression
        apart = [m.split(NOT_COMPARABLE)[0] for m in r["regressions"] if NOT_COMPARABLE in m]
        if len(apart) == len(r["regressions"]):
            expected += f"  NOT COMPARABLE ({'; '.join(apart)})"
        else:
            expected += f"  REGRESSED ({len(r['regressions'])} check(s) failed)"
    return (
        f"{r['claim']:<{claim_width}} {r['site']['canonical']:<{site_width}} {r['iia']:>5.3f} "
        f"{interval_text(low, high, r['threshold'])} {r['n_test']:>5} {r['seed']:>{seed_width}} "
        f"{b['noop']:>5.3f} "
        f"{_number(b.get('majority'))} "
        f"{b['random_rotation']:>5.3f} {r['task_accuracy']:>5.3f} {_threshold(r['threshold'])}  "
        f"{r['verdict']}{expected}"
    )


def _clearly_better(r: dict[str, Any], base: dict[str, Any]) -> bool:
    """Whether the two intervals are apart in the claim's favour (IIA rose for a claim expected
    aligned, fell for one expected not aligned, where a rise is the way it regresses) and its
    lead over the no-op carried at least half of that move: an IIA that fell with its no-op
    (a model worse at the task) improved nothing, and re-saving would lower the bar."""
    (low, high), (base_low, base_high) = r["iia_ci"], base["iia_ci"]
    noop, base_noop = (r.get("baselines") or {}).get("noop"), base.get("noop")
    if not isinstance(noop, int | float) or not isinstance(base_noop, int | float):
        return False  # no lead to read (a baseline saved before it kept its no-op)
    delta = base["delta"]
    lead_change = delta - (noop - base_noop)
    if r.get("expected_verdict") == "not_aligned":
        return delta < 0 and high < base_low and lead_change <= delta / 2
    return delta > 0 and low > base_high and lead_change >= delta / 2


def pairs_notes(r: dict[str, Any]) -> list[str]:
    """What a claim row's numbers were measured on, where it is not its seed's test pairs of
    every variable or a fit of its own at that seed: fresh pairs, the pairs given to
    ``judged_on``, one box of a joint alignment, the best of several fits or another fit seed, a
    baseline's frozen alignment (``--das-frozen``)."""
    notes = []
    if r.get("test_pairs") == "confirmation":
        notes.append("(confirmed on fresh pairs)")
    elif r.get("test_pairs") == "given":
        notes.append("(on the pairs given to judged_on)")
    if "+" not in str(r.get("variable", "+")) and len(r.get("boundary_dims") or ()) > 1:
        notes.append(f"(variable {r['variable']} alone)")  # one box of a joint alignment
    restarts = r.get("restarts")
    fit_seed = (r.get("fit") or {}).get("seed")
    if isinstance(restarts, dict) and restarts.get("restarts"):  # the seed column is the pairs'
        notes.append(
            f"(best of {restarts['restarts']} fits: fit seed {restarts.get('chosen_fit_seed')})"
        )
    elif fit_seed is not None and r.get("seed") is not None and fit_seed != r["seed"]:
        notes.append(f"(fit seed {fit_seed})")  # a config= that names its own
    alignment = r.get("alignment") or {}
    if frozen_from := alignment.get("baseline"):  # --das-frozen: no fit here
        trained = alignment.get("trained_dtype")
        scored = (r.get("model") or {}).get("dtype")
        other = f", fitted in {trained}" if trained and scored and trained != scored else ""
        notes.append(f"(frozen: {PurePath(frozen_from).name}{other})")
    if changed := prompt_changes(r.get("data")):  # else the row reads as the default prompt's
        notes.append(f"(prompts: {changed})")
    return notes


#: The default prompt's parts as a record's ``data`` holds them (its wrapper is the model's).
_DEFAULT_PROMPT = {
    "instruction": DEFAULT_INSTRUCTION,
    "answers": ["Yes", "No"],
    "prefix": "",
    "suffix": "",
    "numbers": "plain",
    "bracket": None,
}


def prompt_changes(data: Any) -> str:
    """What a record's prompts change of the default prompt (``prefix 'Pricing tag game!'``),
    or "" where nothing (or no ``data``: a report written before it was recorded)."""
    if not isinstance(data, dict):
        return ""
    changed = [
        f"{name} {data[name]!r}"
        for name, default in _DEFAULT_PROMPT.items()
        if name in data and data[name] != default
    ]
    return "; ".join(changed)


def fit_method(record: dict[str, Any]) -> str:
    """How the record's alignment was fitted (``boundless``, ``das:K``, ``full``)."""
    return str((record.get("fit") or {}).get("method", "boundless"))


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """Lines of the summary, grouped by hypothesis file; the claim and site columns are as wide
    as their longest entry in the run, so no site is cut short and every table lines up. None
    without records (a run of fuzz tests only has no claim table for a legend)."""
    if not records:
        return []
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_file[record["test_id"].split("::")[0]].append(record)
    for file, group in by_file.items():
        by_file[file] = [
            {**r, "claim": label} for r, label in zip(group, _claim_labels(group), strict=True)
        ]
    records = [r for group in by_file.values() for r in group]
    claim_width = max([len("claim"), *(len(r["claim"]) for r in records)])
    site_width = max([len("site"), *(len(r["site"]["canonical"]) for r in records)])
    seed_width = max([len("seed"), *(len(str(r["seed"])) for r in records)])
    lines = []
    for file, group in sorted(by_file.items(), key=lambda item: natural_key(item[0])):
        lines.append(f"--- {file}")
        lines.append(_header(claim_width, site_width, seed_width))
        lines.extend(
            _row(r, claim_width, site_width, seed_width) for r in sorted(group, key=by_test_id)
        )
    lines.append(
        "Legend: IIA with a hard mask, Wilson 95% CI over n test pairs; no-op / maj / rand = IIA "
        "of the plain base run / the share of the commonest label / a random rotation of the "
        "learned width; task = task accuracy; thr = threshold (das.yaml, or the assertion's "
        "threshold=); seed = the fit's seed, from which its test pairs are drawn (a row judged "
        "on other pairs, or the best of several fits, says so)"
    )
    return lines


def _claim_labels(group: list[dict[str, Any]]) -> list[str]:
    """Each claim of one file's rows on one line, with its test's parameters (``[bracket0]``)
    where another row of the file has the same claim and site: else the rows of a parametrized
    test read alike, though their numbers differ. Rows of two tests that claim one thing at one
    site, seed and prompts (an xfail test beside a plain one) read alike too: each says its
    test's name."""
    seen = Counter((one_line(r["claim"]), r["site"]["canonical"]) for r in group)
    tests: dict[tuple[Any, ...], set[str]] = {}  # per claim, site, seed and prompts: test names
    for r in group:
        name = r["test_id"].rsplit("::", 1)[-1].partition("[")[0]
        tests.setdefault(_alike(r), set()).add(name)
    labels = []
    for r in group:
        label = one_line(r["claim"])
        name = r["test_id"].rsplit("::", 1)[-1]
        key = (label, r["site"]["canonical"])
        if len(tests[_alike(r)]) > 1:
            label += f" ({one_line(name)})"
        elif seen[key] > 1 and "[" in name:
            label += " " + one_line(name[name.index("[") :])
        labels.append(label)
    return labels


def _alike(record: dict[str, Any]) -> tuple[Any, ...]:
    """What a row shows besides its numbers: its claim, site, seed and prompts."""
    data = json.dumps(record.get("data"), sort_keys=True, default=str)
    return (one_line(record["claim"]), record["site"]["canonical"], record.get("seed"), data)


def one_line(text: Any) -> str:
    """``text`` with its line breaks shown as `` ⏎ ``, so that a table's row stays one line."""
    return re.sub(r"\r\n|\r|\n", " ⏎ ", str(text))


def search_rows(search: dict[str, Any], *, markdown: bool = False) -> list[tuple[str, ...]]:
    """A search's cells as table rows (site, IIA, interval, n, seed, no-op, majority, random
    rotation, task accuracy), the best cell starred; then the best cell on fresh pairs. Intervals
    as ``0.474-0.714`` in a terminal's columns, ``[0.474, 0.714]`` in ``markdown``."""
    best = search["best"]
    rows = []
    for cell in search["cells"]:
        star = "*" if (cell["layer"], cell["position"]) == (best["layer"], best["position"]) else ""
        rows.append(_cell_row(cell, cell["site"] + star, markdown))
    fresh = best.get("confirmation")
    if fresh:
        numbers = {**fresh, **fresh["baselines"], "n": fresh["n_test"]}
        rows.append(_cell_row(numbers, "* on fresh pairs", markdown))
    return rows


def _cell_row(cell: dict[str, Any], label: str, markdown: bool) -> tuple[str, ...]:
    low, high = cell["iia_ci"]
    return (
        label,
        f"{cell['iia']:.3f}",
        f"[{low:.3f}, {high:.3f}]" if markdown else f"{low:.3f}-{high:.3f}",
        str(cell["n"]),
        str(cell["seed"]),
        *(_number(cell.get(key)).strip() for key in ("noop", "majority", "random_rotation")),
        f"{cell['task_accuracy']:.3f}",
    )


_SEARCH_HEADINGS = ("site", "IIA", "95% CI", "n", "seed", "no-op", "maj", "rand", "task")


def search_lines(searches: list[dict[str, Any]]) -> list[str]:
    """Every cell of each search a test recorded (``das.record_search``)."""
    lines = []
    for search in searches:
        rows = [_SEARCH_HEADINGS, *search_rows(search)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_SEARCH_HEADINGS))]
        lines.append(
            f"--- search: {search['hypothesis']}, {search_fitted(search)}, Wilson 95% CI "
            f"(* the best cell; judged on fresh pairs) ({search['test_id']})"
        )
        for row in rows:
            cells = [v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
            lines.append(" ".join([row[0].ljust(widths[0]), *cells]))
        if search.get("confirmation_error"):
            lines.append(f"* on fresh pairs: not judged: {search['confirmation_error']}")
        if against := search_against_baseline(search):
            lines.append(against)
    return lines


def search_fitted(search: dict[str, Any]) -> str:
    """How a recorded search got its cells' alignments: fitted, or a frozen run's."""
    if frozen := search.get("frozen_from"):
        return f"each cell's saved alignment (frozen: {', '.join(frozen)})"
    return "one alignment per cell"


def search_against_baseline(search: dict[str, Any]) -> str | None:
    """A compared search's grid against its baseline's cells, in one line (None: not compared,
    or the baseline kept no cell of it)."""
    if "baseline" not in search:
        return None
    base = search["baseline"]
    if base is None:
        return "vs baseline: it holds no cell of this search (saved before baselines kept them?)"
    if not base["cells"]:  # every cell it holds was fitted on other prompts
        return (
            f"vs baseline {base['file']}: its cells ran on other prompts "
            f"({', '.join(base['other_prompts'])} differ): not compared"
        )
    r = "-" if base["correlation"] is None else f"{base['correlation']:.2f}"
    change = base["largest_change"]
    delta = change["to"] - change["from"]
    ci = f" [{change['ci'][0]:+.3f}, {change['ci'][1]:+.3f}]" if change.get("ci") else ""
    before = f"{change['from']:.3f}" + (f" of {change['n_from']}" if change.get("n_from") else "")
    return (
        f"vs baseline {base['file']}: {base['cells']} cell{'' if base['cells'] == 1 else 's'} "
        f"in both, IIA correlation r = {r}, largest change {delta:+.3f}{ci} at "
        f"{change['site']} ({before} -> {change['to']:.3f} of {change['n']})"
    )


def fuzz_lines(fuzz: list[dict[str, Any]], not_passed: Collection[str] = ()) -> list[str]:
    """Robustness per claim and variant family (pooled over the fuzz examples); the tests of
    ``not_passed`` (failed, xfailed, skipped) are not named as passing without showing
    their claim."""
    if not fuzz:
        return []
    from das_assert.report import robustness_summary

    summary = robustness_summary(fuzz, not_passed)
    per_family = summary["per_family"]
    width = max([len("claim"), *(len(claim) for claim in per_family)])
    lines = [
        "--- robustness (distinct fuzzed prompt variants; IIA pooled over the pairs of a "
        "family's variants not rejected, 95% CI clustered by variant (never narrower than "
        "Wilson's over n); no-op / maj / rand / task over the same pairs, maj "
        "being each variant's commonest-label share weighted by its pairs; each variant was "
        "judged on its own: inconcl = its interval straddled the bar, or fresh pairs did not "
        "confirm its break)",
        f"{'claim':<{width}} {'family':<12} {'variants':>8} {'rejected':>8} {'inconcl':>7} "
        f"{'broken':>6} {'IIA':>6} {'95% CI':>13} {'n':>5} {'no-op':>5} {'maj':>5} {'rand':>5} "
        f"{'task':>5}",
    ]
    for claim, families in sorted(per_family.items()):
        for family, c in sorted(families.items()):
            if c["n"]:
                low, high = c["iia_ci"]
                numbers = f"{c['iia']:>6.3f} {low:>6.3f}-{high:<6.3f} {c['n']:>5}"
            else:
                numbers = f"{'–':>6} {'–':>13} {0:>5}"
            lines.append(
                f"{claim:<{width}} {family:<12} {c['examples']:>8} {c['rejected']:>8} "
                f"{c.get('inconclusive', '–'):>7} {c['broken']:>6} {numbers} "
                f"{_number(c.get('noop'))} {_number(c.get('majority'))} "
                f"{_number(c.get('random_rotation'))} {_number(c.get('task_accuracy'))}"
            )
    notes = unshown_lines(summary["unshown"]) + unconfirmed_lines(summary["unconfirmed"])
    return lines + robustness_sites(summary) + notes


def unconfirmed_lines(unconfirmed: list[dict[str, Any]]) -> list[str]:
    """A line per variant that broke its claim on its own pairs but not on fresh ones."""
    lines = []
    for u in unconfirmed:
        fresh = u["fresh"]
        again = f"fresh pairs: {fresh['status']}"
        if fresh.get("iia") is not None:
            low, high = fresh["iia_ci"]
            again += f", {fresh['iia']:.3f} [{low:.3f}, {high:.3f}] on {fresh['n']}"
        low, high = u["iia_ci"]
        bar = f" (bar {u['threshold']})" if u.get("threshold") is not None else ""
        expected = "" if u.get("expect", "aligned") == "aligned" else f", expect {u['expect']}"
        lines.append(
            f"a break not confirmed in {u['test_id']}: {u['claim']}{expected} under "
            f"{u['variant']}: broke on its {u['n']} pairs, IIA {u['iia']:.3f} [{low:.3f}, "
            f"{high:.3f}]{bar}; {again}; counted inconclusive"
        )
    return lines


def unshown_lines(unshown: list[dict[str, Any]]) -> list[str]:
    """A line per fuzz test that passed with no variant holding (``unshown_fuzz_tests``)."""
    return [
        f"no variant held in {u['test_id']}: {u['inconclusive']} inconclusive, {u['rejected']} "
        "rejected; it passed without showing its claim under any variant (more pairs per "
        "variant, n=, decide them)"
        for u in unshown
    ]


def sites_and_seeds(records: list[dict[str, Any]]) -> list[str]:
    """The line under a robustness or limits table naming its sites and seeds (none for records
    that lack both, from a report of an older das_assert)."""
    sites = sorted({r["site"] for r in records if r.get("site")})
    seeds = sorted({r["seed"] for r in records if r.get("seed") is not None})
    if not (sites or seeds):
        return []
    return [f"at {'; '.join(sites) or '–'}, seed={','.join(map(str, seeds)) or '–'}"]


def robustness_sites(robustness: dict[str, Any]) -> list[str]:
    """The line under the robustness table naming its sites and seeds: each row's sites where
    the rows were fuzzed at different sites (a claim at its aligned site and at its control),
    else the one list (also for a report of an older das_assert, which gave no row's sites)."""
    per_row = robustness.get("sites") or {}
    if len({site for row_sites in per_row.values() for site in row_sites}) < 2:
        return sites_and_seeds(robustness["examples"])
    rows = "; ".join(f"{row} at {', '.join(row_sites)}" for row, row_sites in per_row.items())
    seeds = sorted({r["seed"] for r in robustness["examples"] if r.get("seed") is not None})
    return [f"sites: {rows}; seed={','.join(map(str, seeds)) or '–'}"]


def changed_text(limit: dict[str, Any]) -> str:
    """A measured limit's answers that must change and did, as ``did/must``."""
    return f"{limit['changed_labels']['correct']}/{limit['changed_labels']['n']}"


def limit_result(limit: dict[str, Any], *, markdown: bool = False) -> str:
    """Whether a measured limit broke as claimed, or why it was not shown."""
    if limit["status"] == "breaks":
        return "breaks, as claimed"
    return f"{'**not shown**' if markdown else 'NOT SHOWN'}: {limit['status']}"


def limit_lines(limits: list[dict[str, Any]]) -> list[str]:
    """The measured limits (``das.assert_breaks_on``): where each claim was to break, with the
    numbers, and whether it did."""
    if not limits:
        return []
    limits = [{**r, "claim": one_line(r["claim"]), "where": one_line(r["where"])} for r in limits]
    claim_width = max([len("claim"), *(len(r["claim"]) for r in limits)])
    where_width = max([len("where"), *(len(r["where"]) for r in limits)])
    lines = [
        "--- measured limits (das.assert_breaks_on: pairs where a claim is to break, i.e. be "
        "clearly not aligned though the model does the task; changed = answers that must change "
        "and did)",
        f"{'claim':<{claim_width}} {'where':<{where_width}} {'IIA':>5} {'95% CI':>13} {'n':>5} "
        f"{'no-op':>5} {'maj':>5} {'rand':>5} {'changed':>9} {'task':>5} {'thr':>5}  result",
    ]
    for r in sorted(limits, key=by_test_id):
        low, high = r["iia_ci"]
        lines.append(
            f"{r['claim']:<{claim_width}} {r['where']:<{where_width}} {r['iia']:>5.3f} "
            f"{interval_text(low, high, r['threshold'])} {r['n']:>5} {r['noop']:>5.3f} "
            f"{_number(r.get('majority'))} "
            f"{_number(r.get('random_rotation'))} {changed_text(r):>9} "
            f"{r['task_accuracy']:>5.3f} {_threshold(r['threshold'])}  {limit_result(r)}"
        )
    return lines + sites_and_seeds(limits)


def threshold_moved(record: dict[str, Any]) -> str | None:
    """ "threshold 0.73 -> 0.70: the bar moved" where the claim's threshold is not the one its
    baseline entry was judged against (a loosened bar passes a claim that did not hold), or
    None."""
    then, now = (record.get("baseline") or {}).get("threshold"), record.get("threshold")
    if then is None or now is None or then == now:
        return None
    return f"threshold {threshold_text(then)} -> {threshold_text(now)}: the bar moved"
