"""Baselines in the pytest plugin: at setup, the one a run saves into (its number reserved), the
one it compares with and the one a frozen run takes its alignments from; at the end (the
reporter's part), saving the baseline of a complete run (claims, their alignments and recorded
searches' cells), naming the ones compared with, and failing a complete run that did not judge
every claim of its baseline."""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from das_assert.errors import DasError, OutputWriteError, SetupError, did_you_mean
from das_assert.plugin_options import baseline_root, invocation_path, run_token

__all__ = ["BaselineReporting", "baseline_file", "baseline_setup"]


def baseline_setup(config: pytest.Config, settings: Any, checks: list[Any]) -> dict[str, Any]:
    """Where this run saves its baseline, the baseline it compares with (and its
    ``--das-compare-fail`` ``checks``), and the one a frozen run (``--das-frozen``) takes its
    alignments from (each if any), as ``DasSession`` fields.

    Raises:
        SetupError: the baseline cannot be reserved, or one named does not exist or is invalid.
    """
    from das_assert.baseline import load_baseline, reserve_baseline_name

    directory = baseline_root(config) / settings.key
    out: dict[str, Any] = {"compare_checks": checks}
    name = config.getoption("das_save_baseline")
    if name:
        try:
            out["save_to"] = directory / reserve_baseline_name(directory, name, run_token(config))
        except OSError as exc:
            raise SetupError(
                f"das_assert --das-save-baseline: cannot reserve a baseline in {directory}: "
                f"{exc}; give a writable --das-baseline-dir"
            ) from None
        except DasError as exc:  # its numbers are used up
            raise SetupError(f"das_assert --das-save-baseline: {exc}") from None
    for option, field in (("das_compare", "baseline"), ("das_frozen", "frozen")):
        reference = config.getoption(option)
        if not reference:
            continue
        try:
            path = baseline_file(
                config, settings, reference, option=f"--{option.replace('_', '-')}"
            )
            out[field] = (path, load_baseline(path))
        except DasError as exc:
            message = f"das_assert --{option.replace('_', '-')}: {exc}"
            if not directory.is_dir() and not config.getoption("das_baseline_dir"):
                message += (
                    f" (baselines are kept under pytest's rootdir, here {config.rootpath}: a "
                    "path option written with a space, --das-model PATH, can move it; write "
                    "--das-model=PATH, or give --das-baseline-dir=DIR)"
                )
            raise SetupError(message) from None
    return out


def baseline_file(
    config: pytest.Config, settings: Any, reference: str, option: str = "--das-compare"
) -> Path:
    """The baseline file that ``reference`` (given to ``option``, ``--das-compare`` or
    ``--das-frozen``) names.

    Raises:
        DasError: no such baseline.
    """
    from das_assert.baseline import find_baseline
    from das_assert.settings import load_settings

    if reference.endswith(".json"):  # a baseline file, wherever it is
        return invocation_path(config, reference)
    root = baseline_root(config)
    # KEY/NAME of another model's baselines, or NAME (release/v2) of this one's
    key, _, name = reference.rpartition("/")
    entries = load_settings(settings.source) if key else {}
    if key and (key in entries or (root / key).is_dir()):
        return find_baseline(root / key, name, option)
    try:
        return find_baseline(root / settings.key, reference, option)
    except DasError as exc:
        if not key:
            raise
        folders = (
            {*entries, *(p.name for p in root.iterdir() if p.is_dir())}
            if root.is_dir()
            else set(entries)
        )
        raise type(exc)(
            f"{exc} (read as a name of this model's, {settings.key!r}: {key!r} is neither a "
            f"das.yaml entry nor a folder of {root}.{did_you_mean(key, sorted(folders))})"
        ) from None


def ran_no_test(config: pytest.Config) -> str | None:
    """The flag by which this run ran no test (its fixtures may have run), or None."""
    for flag, name in (
        ("--collect-only", "collectonly"),
        ("--setup-plan", "setupplan"),
        ("--setup-only", "setuponly"),
    ):
        if config.getoption(name, False):
            return flag
    return None


class BaselineReporting:
    """Mixed into ``plugin_report.Reporter``, which holds the records and writes the notes."""

    config: pytest.Config
    records: list[dict[str, Any]]
    searches: list[dict[str, Any]]
    notes: list[str]

    def _shown(self, path: str) -> str:
        raise NotImplementedError

    def _unwritten(self, what: str, exc: Exception | str) -> None:
        raise NotImplementedError

    def _environment(self) -> dict[str, Any]:
        raise NotImplementedError

    def _save_baseline(self, run: dict[str, Any]) -> None:
        """Save the baseline of a complete run; a run cut short (Ctrl-C, -x, a collection
        error) saves none and removes the alignment files it wrote for it, for a later
        ``--das-compare latest`` would take the fragment for the whole suite."""
        asked = self.config.getoption("das_save_baseline")
        if not asked:
            return
        try:
            self._save_baseline_files(run, asked)
        finally:  # the folders this run reserved: their tokens go, and each folder left empty
            from das_assert.baseline import (
                RESERVED_BY,
                abandoned_reservations,
                release_reservation,
                reservations,
            )

            root = baseline_root(self.config)
            token, now = run_token(self.config), time.time()
            try:
                for directory in root.iterdir() if root.is_dir() else ():
                    for folder in reservations(directory, token):
                        if not folder.with_name(f"{folder.name}.json").exists():
                            _remove_unsaved_alignments(folder)  # all this run's: none named
                        release_reservation(folder)
                    for folder in abandoned_reservations(directory, token, now):
                        if folder.with_name(f"{folder.name}.json").exists():
                            self.notes.append(
                                f"das: {self._shown(str(folder))}/{RESERVED_BY} was left by a "
                                "run killed as it saved that baseline: delete only that file"
                            )
                            continue
                        self.notes.append(
                            f"das: {self._shown(str(folder))}/ was reserved more than a day ago "
                            "by a run that never finished (killed?) and keeps its number: "
                            "delete it unless a run is still saving into it (python3 -m "
                            f"das_assert baselines --dir {self._shown(str(root))} --prune)"
                        )
            except OSError as exc:  # a folder this user may not list: the reports still go out
                self.notes.append(
                    f"das: the baseline folders this run reserved under {self._shown(str(root))} "
                    f"could not all be released ({exc}); a folder holding only a "
                    f"{RESERVED_BY} file can be deleted"
                )

    def _save_baseline_files(self, run: dict[str, Any], asked: str) -> None:
        # a record names the baseline's .json; its alignments lie in the folder of that stem
        named = {r["baseline_file"] for r in self.records + self.searches if r.get("baseline_file")}
        stems = {file.removesuffix(".json") for file in named}
        if not stems:  # nothing judged: a collection error, Ctrl-C before the first verdict
            why = (
                f"{ran_no_test(self.config)} ran no test"
                if ran_no_test(self.config)
                else f"the run did not complete (pytest exit {run['exit_code']})"
                if not run["complete"]
                else "no claim reached a verdict"
            )
            self.notes.append(f"das: baseline {asked} NOT saved: {why}")
            return
        from das_assert.baseline import save_baseline

        for stem in sorted(stems):
            records = [r for r in self.records if r.get("baseline_file") == f"{stem}.json"]
            searches = [r for r in self.searches if r.get("baseline_file") == f"{stem}.json"]
            files = _alignment_files(stem, records, searches)
            name = Path(stem).name
            unwritten = [r for r in records + searches if r.get("alignment_unwritten")]
            which = " and ".join(
                f"{len(kind)} {noun}"
                for kind, noun in (
                    ([r for r in records if r.get("alignment_unwritten")], "claim(s)"),
                    ([r for r in searches if r.get("alignment_unwritten")], "search(es)"),
                )
                if kind
            )
            if unwritten or not run["complete"]:
                _remove(files)
            if unwritten:  # a baseline without a claim's alignment could not gate its transfer
                self._unwritten(
                    f"das: baseline {name}",
                    f"the alignment file of {which} could not be written "
                    f"({unwritten[0]['alignment_unwritten']}); the {len(files)} written for it "
                    "were removed",
                )
                continue
            if not run["complete"]:
                self.notes.append(
                    f"das: baseline {name} NOT saved: the run did not complete (pytest exit "
                    f"{run['exit_code']}), and a baseline must hold the whole suite; the "
                    f"{len(files)} alignment file(s) written for it were removed"
                )
                continue
            if Path(stem + ".json").exists():  # written since this run reserved the number
                self.notes.append(
                    f"das: baseline {name} NOT saved: {self._shown(stem + '.json')} was written "
                    "by another process (an earlier das_assert, which did not reserve its "
                    "number, or by hand) while this run ran, and is not replaced; this run's "
                    f"alignment files are in {self._shown(stem)}/: delete both and save again"
                )
                continue
            try:
                save_baseline(
                    Path(stem + ".json"),
                    model=(records + searches)[0]["model"],
                    environment=self._environment(),
                    records=records,
                    searches=searches,
                )
            except OutputWriteError as exc:  # its alignments, without it, would be a stray folder
                _remove(files)
                self._unwritten(
                    f"das: baseline {name}",
                    f"{exc}; the {len(files)} alignment file(s) written for it were removed",
                )
                continue
            count = _claims(len(records))
            if cells := sum(len(s["cells"]) for s in searches if not s.get("cells_unsaved")):
                count += f", {cells} search cell{'' if cells == 1 else 's'}"
            self.notes.append(f"das: baseline saved: {self._shown(stem + '.json')} ({count})")
            for search in searches:
                if unsaved := search.get("cells_unsaved"):
                    test_id = search["test_id"]
                    self.notes.append(f"das: baseline {name} leaves out {test_id}'s {unsaved}")
            if failed := failed_claims(records):
                self.notes.append(
                    f"das: baseline {name} records {failed}: a --das-compare against it gates "
                    "those numbers as they are; to gate against claims that hold, save it again "
                    "once they do (an inconclusive claim, which --das-inconclusive may pass, "
                    "decides with more test pairs: n_test in das.yaml)"
                )
            if run["selection"]:
                self.notes.append(
                    f"das: baseline {name} holds only the {len(records)} claim(s) selected: "
                    f"{run['selection']}, and a --das-compare against it fails every claim it "
                    "lacks"
                )

    def _note_compared(self) -> None:
        """Name the baseline each judged claim was compared with: a passing gate printed only
        deltas, and with two baselines of one name saved, which one was the reference?"""
        compared: dict[str, int] = {}
        models: dict[str, dict[str, Any]] = {}  # the model block of a claim compared with each
        other_seeds: dict[tuple[Any, Any], int] = {}  # (baseline's seed, run's) -> claims
        for record in self.records:
            base = record.get("baseline") or {}
            if path := base.get("path"):
                compared[path] = compared.get(path, 0) + 1
                models.setdefault(path, record.get("model") or {})
                seeds = (base.get("seed"), record.get("seed"))
                if None not in seeds and seeds[0] != seeds[1]:
                    other_seeds[seeds] = other_seeds.get(seeds, 0) + 1
        # Read only when a baseline was compared: it imports torch, which a run without das tests
        # (a pytester run in-process, a plain test file) never needed.
        here = self._environment() if compared else {}
        for path, count in sorted(compared.items()):
            claims = f"{count} claim{'' if count == 1 else 's'}"
            self.notes.append(f"das: compared with baseline: {self._shown(path)} ({claims})")
            if differs := _other_environment(path, here, models[path]):
                from das_assert.rounding import ROUNDING_EFFECT

                self.notes.append(f"das: that baseline was saved with {differs}: {ROUNDING_EFFECT}")
        for (then, now), count in sorted(other_seeds.items(), key=str):
            # a failing claim says so in its message; a passing one was silent about it
            self.notes.append(
                f"das: {count} claim{'' if count == 1 else 's'} compared with a baseline saved "
                f"under seed {then} ran under seed {now}: IIA moves with the seed, so the "
                "tolerances must allow for it (python3 -m das_assert.stability shows by how much)"
            )

    def _judge_baseline_coverage(
        self, session: pytest.Session, complete: bool, selection: str | None
    ) -> list[str]:
        """The claims of the baselines compared with that this run did not judge, where that
        fails the gate (``path::key`` each): a complete run, not narrowed, saving no baseline,
        without --das-warn-unused, whose paths cover the claim's test file. As ``das_assert
        compare`` fails an entry missing from NEW, a gate that cannot check a claim does not
        pass; a removed, renamed or skipped claim test is a change to review, and saving a
        baseline without it records that review. Notes say which, either way."""
        from das_assert.baseline import baseline_entries_not_judged

        also = []
        if not any(record.get("baseline") for record in self.records):
            if not (complete and self.config.getoption("das_compare")):
                return []
            # No claim reached the baseline (every das test skipped, say): a gate that checked
            # nothing does not pass. Resolved here, as no das_session fixture did.
            try:
                from das_assert.plugin import compared_baseline

                also = [str(compared_baseline(self.config, session))]
            except DasError as exc:
                self.notes.append(f"das: FAILED: --das-compare: {exc}")
                return [f"--das-compare: {exc}"]
        found = baseline_entries_not_judged(self.records, also)
        for path, keys in found.items():  # in the Markdown too, which the notes end
            judged = "no test in this run" if complete else "no test judged before the run stopped"
            self.notes.append(self._not_judged_list(path, keys, judged))
        if not complete:
            return []  # cut short: its exit status says so
        elsewhere = {p: [k for k in keys if not self._given(k)] for p, keys in found.items()}
        if count := sum(map(len, elsewhere.values())):
            files = ", ".join(self._shown(path) for path, keys in elsewhere.items() if keys)
            self.notes.append(
                f"das: {_claims(count)} of {files} not judged: their test files were not among "
                "this run's paths"
            )
        found = {p: [k for k in keys if self._given(k)] for p, keys in found.items()}
        found = {path: keys for path, keys in found.items() if keys}
        if not found:
            return []
        claims = _claims(sum(map(len, found.values())))
        files = ", ".join(self._shown(path) for path in found)
        if selection:
            self.notes.append(f"das: {claims} of {files} not judged, as {selection} (listed above)")
            return []
        if self.config.getoption("das_save_baseline"):
            self.notes.append(
                f"das: {claims} of {files} not judged (listed above): the baseline saved now "
                "leaves them out"
            )
            return []
        if self.config.getoption("das_warn_unused"):
            self.notes.append(
                f"das: {claims} of {files} not judged by this complete run (listed above); "
                "--das-warn-unused: not failed"
            )
            return []
        self.notes.append(
            f"das: FAILED: {claims} of {files} not judged by this complete run (listed above): a "
            "gate that cannot check a claim does not pass. Run each one's test again (removed, "
            "renamed, skipped, or failed before a verdict?), or save a baseline without them "
            "(--das-save-baseline=NAME) and compare with that"
        )
        return [f"{path}::{key}" for path, keys in found.items() for key in keys]

    def _not_judged_list(self, path: str, keys: list[str], judged: str) -> str:
        """The note listing baseline ``path``'s ``keys`` with ``judged``: the first
        ``_LISTED_KEYS`` and how many more, with the command that lists them all (a 10-claim run
        against a 300-claim baseline printed 290 lines, into the Markdown summary too)."""
        lines = [f"Baseline entries with {judged} ({self._shown(path)}):"]
        lines += [f"  - {key}" for key in keys[:_LISTED_KEYS]]
        if len(keys) > _LISTED_KEYS:
            from das_assert.plugin_options import invocation_path

            report = self.config.getoption("das_json")
            compare = f"python3 -m das_assert compare {shlex.quote(self._shown(path))}"
            lists = (
                f"{compare} {shlex.quote(self._shown(str(invocation_path(self.config, report))))}"
                if report
                else f"give --das-json=REPORT, then {compare} REPORT"
            )
            lines.append(
                f"  - and {len(keys) - _LISTED_KEYS} more, not listed: {lists} lists them all "
                "(missing in NEW)"
            )
        return "\n".join(lines)

    def _given(self, key: str) -> bool:
        """Whether the test file of baseline claim ``key`` (a rootdir-relative node id) lies
        under a path this run was given (every one where it was given none), or is gone: a
        file that exists outside them was left out by the command line, not by a change."""
        path = key.split("::")[0]
        start = Path(self.config.invocation_params.dir)
        given = [(start / arg.split("::")[0]).resolve() for arg in self.config.args]
        # saved under another rootdir (matching_key): its path is relative to an ancestor of
        # this one's, or to a directory this run was given
        roots = [self.config.rootpath, *self.config.rootpath.parents, *given]
        file = next((f.resolve() for root in roots if (f := root / path).is_file()), None)
        if file is None:
            return True
        return any(place == file or place in file.parents for place in given)


_LISTED_KEYS = 10  # baseline entries that a note of those not judged names; the rest it counts


def _claims(count: int) -> str:
    return f"{count} claim{'' if count == 1 else 's'}"


def _remove_unsaved_alignments(folder: Path) -> None:
    """Delete the alignment files (and their temporaries) in a folder this run reserved for a
    baseline it did not save: those of claims whose record never arrived (Ctrl-C after a claim
    wrote its alignment, before its test ended) are named by no record."""
    for file in folder.iterdir():
        written = file.suffix == ".safetensors" or (
            file.name.startswith(".") and ".safetensors." in file.name and file.suffix == ".tmp"
        )
        if written and file.is_file():
            file.unlink(missing_ok=True)


def _remove(files: list[Path]) -> None:
    """Delete the alignment files written for a baseline that is not saved."""
    for file in files:
        file.unlink(missing_ok=True)


def _alignment_files(
    stem: str, records: list[dict[str, Any]], searches: list[dict[str, Any]]
) -> list[Path]:
    """The alignment files that claims ``records`` and the cells of ``searches`` wrote beside
    the baseline ``stem``."""
    named = records + [cell for search in searches for cell in search.get("cells", [])]
    return [Path(stem) / r["alignment_file"] for r in named if r.get("alignment_file")]


def _other_environment(
    path: str, here: dict[str, Any], model: dict[str, Any] | None = None
) -> str | None:
    """What of ``here``'s CPU or GPU and thread count, and of ``model``'s dtype and device, the
    baseline at ``path`` was saved under otherwise (``rounding.rounding_differences``)."""
    from das_assert.rounding import rounding_differences

    try:
        payload = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return rounding_differences(payload, {"environment": here, "model": model or {}})


def failed_claims(records: list[dict[str, Any]]) -> str:
    """``N claim(s) that did not hold in this run (names)``, one per record as ``das_assert
    baselines`` counts them (a claim judged at its site and at a control is two), or ``""``."""
    failed = Counter(r["claim"] for r in records if r.get("passed") is False)
    if not failed:
        return ""
    names = ", ".join(c if k == 1 else f"{c} x{k}" for c, k in sorted(failed.items()))
    return f"{failed.total()} claim(s) that did not hold in this run ({names})"
