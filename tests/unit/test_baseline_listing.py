"""``das_assert baselines``: every saved baseline of a directory with what it holds, and every
numbered folder that holds none (a run saving now, a killed run's, a baseline's lost JSON)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from das_assert.baseline import RESERVED_BY, save_baseline
from das_assert.baseline_list import baseline_listing, listing_text
from das_assert.baseline_prune import prune_listing, pruned_text
from das_assert.cli import main

SITE = "block_output[layer=0, pos=last]"


def _claim(test: str, passed: bool) -> dict[str, Any]:
    return {
        "test_id": f"hypotheses/test_x.py::{test}",
        "claim": "left_boundary",
        "hypothesis": "left_boundary",
        "site": {"canonical": SITE},
        "iia": 0.8,
        "iia_ci": [0.77, 0.83],
        "passed": passed,
    }


def _search(cells: int) -> dict[str, Any]:
    return {
        "test_id": "hypotheses/test_where.py::test_search",
        "cells": [
            {"site": f"block_output[layer={i}, pos=last]", "iia": 0.7, "n": 800}
            | {"alignment_file": f"{i}.safetensors"}
            | {"request": {}, "baseline_key": f"hypotheses/test_where.py::test_search::{i}"}
            for i in range(cells)
        ],
    }


def _save(path: Path, claims: list[dict[str, Any]], searches: list[dict[str, Any]]) -> None:
    model = {"fingerprint": {"weights": "3242004d9499b1b6"}}
    save_baseline(path, model=model, environment={}, records=claims, searches=searches)


@pytest.fixture
def baselines(tmp_path: Path) -> Path:
    """Two saved baselines of model ``embedded``, one of them with a failed claim and a search;
    a folder reserved now, one reserved two days ago, one whose JSON is gone, and a baseline
    whose JSON was edited."""
    folder = tmp_path / "embedded"
    folder.mkdir()
    _save(folder / "0001_v1.json", [_claim("test_a", True)], [])
    _save(
        folder / "0002_main.json", [_claim("test_a", True), _claim("test_b", False)], [_search(3)]
    )
    for name, age in (("0003_main", 0), ("0004_v2", 2 * 24 * 3600)):
        (folder / name).mkdir()
        marker = folder / name / RESERVED_BY
        marker.write_text("another run's token")
        for path in (marker, folder / name):  # a killed run's folder: nothing written since
            os.utime(path, (time.time() - age, time.time() - age))
    (folder / "0002_main").mkdir()  # a saved baseline's alignment folder: not listed apart
    (folder / "0000_lost").mkdir()
    edited = folder / "0005_edited.json"
    _save(edited, [_claim("test_a", True)], [])
    edited.write_text(edited.read_text().replace("0.8", "0.9"))
    (tmp_path / "notes.txt").write_text("not a model folder")
    return tmp_path


def test_each_baseline_is_listed_with_what_it_holds(baselines: Path) -> None:
    (block,) = baseline_listing(baselines)["models"]
    assert block["model"] == "embedded"
    assert block["latest"] == "0005_edited"  # what --das-compare=latest takes, readable or not
    first, second, edited = block["baselines"]
    assert (first["number"], first["name"], first["claims"], first["failed"]) == (
        "0001",
        "v1",
        1,
        0,
    )
    assert (second["claims"], second["failed"], second["search_cells"]) == (2, 1, 3)
    assert second["weights"] == "3242004d9499b1b6"
    assert second["saved_at_from"] == "baseline"
    assert "checksum" in edited["error"]
    states = {other["folder"]: other["state"] for other in block["other_folders"]}
    assert states == {"0000_lost": "orphaned", "0003_main": "reserved", "0004_v2": "abandoned"}


def test_the_listing_reads_as_a_table_with_a_line_for_each_folder_without_a_baseline(
    baselines: Path,
) -> None:
    text = listing_text(baseline_listing(baselines))
    lines = text.splitlines()
    assert lines[0] == f"{baselines / 'embedded'}: 3 baselines; latest = 0005_edited"
    assert lines[1].split() == [
        "number",
        "name",
        "saved",
        "(UTC)",
        "claims",
        "search",
        "cells",
        "weights",
    ]
    assert lines[3].split()[:2] == ["0002", "main"]
    assert "2 (1 did not hold)" in lines[3]
    assert any(line.startswith("  0005_edited.json: unreadable: ") for line in lines)
    assert "  0000_lost/: no baseline JSON beside it" in text
    assert "  0003_main/: reserved by a run since " in text
    # a SIGKILLed run's folder read as one saving now, with nothing on what to do
    assert "it is saving a baseline now, or was killed (a day after its last file, `bas" in text
    assert "  0004_v2/: reserved since " in text
    assert "never finished (killed?)" in text


def test_a_baseline_saved_before_it_recorded_its_time_shows_the_files(tmp_path: Path) -> None:
    path = tmp_path / "m" / "0001_old.json"
    path.parent.mkdir()
    _save(path, [_claim("test_a", True)], [])
    payload = json.loads(path.read_text())
    del payload["saved_at"], payload["sha256"]
    from das_assert.store import atomic_write_json

    atomic_write_json(path, payload, checksum=True)
    (row,) = baseline_listing(tmp_path)["models"][0]["baselines"]
    assert row["saved_at_from"] == "file time"
    assert "* the file's time" in listing_text(baseline_listing(tmp_path))


def test_the_baseline_after_9999_is_listed_as_latest_not_its_folder_as_orphaned(
    tmp_path: Path,
) -> None:
    # 10000_main.json was no baseline to the listing: latest stayed 9999 and its alignment folder
    # was called orphaned (which --prune then refused to delete, a JSON beside it)
    folder = tmp_path / "embedded"
    folder.mkdir()
    for stem in ("9999_main", "10000_main"):
        _save(folder / f"{stem}.json", [_claim("test_a", True)], [])
    (folder / "10000_main").mkdir()
    (block,) = baseline_listing(tmp_path)["models"]
    assert [row["number"] for row in block["baselines"]] == ["9999", "10000"]
    assert (block["latest"], block["other_folders"]) == ("10000_main", [])


def test_the_command_lists_one_model_and_writes_json(
    baselines: Path, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("out") / "listing.json"
    assert (
        main(["baselines", "--dir", str(baselines), "--model", "embedded", "--json", str(out)]) == 0
    )
    assert "latest = 0005_edited" in capsys.readouterr().out
    listing = json.loads(out.read_text())
    assert listing["models"][0]["model"] == "embedded"
    assert (listing["schema_version"], listing["kind"]) == (1, "das_assert baselines")
    assert "das_assert_version" in listing


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dir", "nowhere"], "error: no baseline directory nowhere: give the one pytest saves"),
        (["--model", "alpaca"], "error: no baselines of model 'alpaca' in *; present: embedded"),
        # an existing folder that holds nothing printed a blank line and exited 0
        (["--dir", "empty"], "error: no baselines in empty: it holds no model's folder; save"),
    ],
)
def test_a_directory_or_model_without_baselines_is_one_error(
    baselines: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(baselines)
    (baselines / "empty").mkdir()
    if "--model" in args:
        args = ["--dir", str(baselines), *args]
    assert main(["baselines", *args]) == 2
    from fnmatch import fnmatch

    assert fnmatch(capsys.readouterr().err.strip(), says + "*")


def _age(path: Path, days: float) -> None:
    then = time.time() - days * 24 * 3600
    os.utime(path, (then, then))


def test_prune_removes_the_abandoned_and_the_orphaned_folders_only(baselines: Path) -> None:
    folder = baselines / "embedded"
    (folder / "0000_lost" / "claim.safetensors").write_bytes(b"x" * 2048)
    kept_before = sorted(p.name for p in folder.iterdir() if p.name[:4] in ("0001", "0002", "0005"))
    rows = prune_listing(baseline_listing(baselines))
    assert [(Path(r["folder"]).name, r["state"], r["removed"]) for r in rows] == [
        ("0000_lost", "orphaned", True),
        ("0004_v2", "abandoned", True),
    ]
    assert (rows[0]["files"], rows[0]["bytes"]) == (1, 2048)
    assert not (folder / "0000_lost").exists()
    assert not (folder / "0004_v2").exists()
    assert (folder / "0003_main" / RESERVED_BY).exists()  # a run may be saving into it now
    assert kept_before == sorted(
        p.name for p in folder.iterdir() if p.name[:4] in ("0001", "0002", "0005")
    )  # the saved baselines, an edited one among them, and a baseline's alignment folder
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no hidden leftovers
    (block,) = baseline_listing(baselines)["models"]
    assert [o["folder"] for o in block["other_folders"]] == ["0003_main"]
    text = pruned_text(rows)
    lost = folder / "0000_lost"
    assert f"prune: removed {lost}/ (orphaned folder; 1 alignment file, 0.0 MiB)" in text
    assert f"prune: removed {folder / '0004_v2'}/ (abandoned reservation; 0 alignment files" in text


def test_an_empty_token_or_one_dated_days_ahead_is_no_run_saving_now(tmp_path: Path) -> None:
    # An empty token (a crash before its data reached the disk, a touch) matched the listing's
    # own empty token: "saving a baseline now" for good, and --prune never removed it. A token
    # dated two days ahead (a skewed clock, a copy) was "saving now" until then and a day.
    folder = tmp_path / "embedded"
    for name, token, days in (("0004_x", "", 3), ("0005_ahead", "a run's token", -2)):
        (folder / name).mkdir(parents=True)
        (folder / name / RESERVED_BY).write_text(token)
        _age(folder / name / RESERVED_BY, days)
        _age(folder / name, days)
    (block,) = baseline_listing(tmp_path)["models"]
    assert [(o["folder"], o["state"]) for o in block["other_folders"]] == [
        ("0004_x", "abandoned"),
        ("0005_ahead", "abandoned"),
    ]
    assert [r["removed"] for r in prune_listing(baseline_listing(tmp_path))] == [True, True]


def test_prune_keeps_a_folder_holding_what_das_assert_does_not_write(baselines: Path) -> None:
    folder = baselines / "embedded"
    (folder / "0000_lost" / "notes.md").write_text("why this run failed")
    (folder / "0004_v2" / "plots").mkdir()
    _age(folder / "0004_v2", 2)
    rows = prune_listing(baseline_listing(baselines))
    assert [r["removed"] for r in rows] == [False, False]
    assert rows[0]["kept_because"] == (
        "it holds what das_assert does not write there (notes.md): a person's call"
    )
    assert "(plots)" in rows[1]["kept_because"]
    assert (folder / "0000_lost" / "notes.md").exists()
    # the listing after the prune advised the --prune that had just kept them
    text = listing_text(baseline_listing(baselines))
    assert (
        "  0000_lost/: no baseline JSON beside it (a save that did not finish, or a JSON "
        "deleted): it holds files das_assert does not write (notes.md), which --prune keeps: "
        "check them, then delete it by hand, or restore the JSON"
    ) in text
    assert "(plots), which --prune keeps: check them, then delete it by hand unless a run" in text


def test_prune_removes_a_reservation_holding_a_killed_writes_temporary_file(
    baselines: Path,
) -> None:
    # The temporary file of das_assert's own atomic write, left by a SIGKILL, was "what
    # das_assert does not write there", and kept the abandoned folder for good.
    import tempfile

    folder = baselines / "embedded" / "0004_v2"
    fd, name = tempfile.mkstemp(prefix=".cell.safetensors.", suffix=".tmp", dir=folder)
    os.write(fd, b"x" * 100)  # as store.atomic_write_bytes names it
    os.close(fd)
    (baselines / "embedded" / "0000_lost" / ".notes.tmp").write_text("a person's")
    for path in (Path(name), folder):
        _age(path, 2)
    rows = {Path(r["folder"]).name: r for r in prune_listing(baseline_listing(baselines))}
    assert rows["0004_v2"].get("kept_because") is None
    assert (rows["0004_v2"]["files"], rows["0004_v2"]["bytes"]) == (0, 100)
    assert not folder.exists()
    assert "(.notes.tmp): a person's call" in rows["0000_lost"]["kept_because"]


def test_prune_keeps_an_old_reservation_whose_run_wrote_within_the_day(baselines: Path) -> None:
    """Its token is two days old, but an alignment file came an hour ago: a long run (a 7B
    search) may still be saving into it."""
    folder = baselines / "embedded" / "0004_v2"
    (folder / "cell.safetensors").write_bytes(b"x")
    _age(folder, 2)
    _age(folder / "cell.safetensors", 1 / 24)
    (row,) = [r for r in prune_listing(baseline_listing(baselines)) if r["state"] == "abandoned"]
    assert row["kept_because"] == (
        "something in it was written within the day: a run may still be saving"
    )
    assert folder.is_dir()
    # the listing advised the --prune that had just kept it
    text = listing_text(baseline_listing(baselines))
    assert "  0004_v2/: reserved since " in text
    assert (
        "by a run that never finished (killed?), but written into at "
        in text.split("0004_v2/: ")[1]
    )
    assert "a run may still be saving; --prune deletes it once nothing in it is a day old" in text


def test_prune_checks_each_folder_again_when_it_removes_it(baselines: Path) -> None:
    """Listed as orphaned, then saved as a baseline (its JSON written), or reserved by a run:
    the folder stays."""
    folder = baselines / "embedded"
    listing = baseline_listing(baselines)
    _save(folder / "0000_lost.json", [_claim("test_a", True)], [])
    (folder / "0004_v2" / RESERVED_BY).touch()  # a run took the number again
    rows = prune_listing(listing)
    assert [r["kept_because"] for r in rows] == [
        "a baseline JSON is beside it now",
        "its reservation changed since it was listed",
    ]
    assert (folder / "0000_lost").is_dir()
    assert (folder / "0004_v2").is_dir()


def test_the_command_prunes_then_lists_and_writes_what_it_removed(
    baselines: Path, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("out") / "listing.json"
    assert main(["baselines", "--dir", str(baselines), "--prune", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.index("prune: removed") < text.index("3 baselines; latest = 0005_edited")
    assert "0004_v2/: reserved" not in text
    written = json.loads(out.read_text())
    assert [Path(r["folder"]).name for r in written["pruned"]] == ["0000_lost", "0004_v2"]
    assert main(["baselines", "--dir", str(baselines), "--prune"]) == 0
    assert capsys.readouterr().out.startswith("prune: no abandoned or orphaned folder\n")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("utf-16", "is not UTF-8 text (invalid start byte at byte 0)"),
        ("[" * 100_000, "nests its JSON too deeply to read"),
        # parsed, then nested past the limit by the checksum's json.dumps: a RecursionError
        (
            '{"schema_version": 1, "sha256": "x", "a": ' + "[" * 995 + "]" * 995 + "}",
            "nests its JSON too deeply to read",
        ),
        # Python refuses an integer of more than 4,300 digits with a ValueError
        (
            '{"schema_version": 1, "n": ' + "9" * 5000 + "}",
            "cannot be read as JSON (Exceeds the limit (4300 digits) for integer string "
            "conversion: value has 5000 digits); das_assert writes no such number",
        ),
    ],
    ids=["utf-16", "nested", "nested past the checksum", "a 5000-digit number"],
)
def test_a_file_not_utf8_or_nested_too_deep_is_listed_unreadable_and_compare_exits_2(
    baselines: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    # A UnicodeDecodeError or RecursionError escaped both commands: a traceback, exit 3.
    path = baselines / "embedded" / "0001_v1.json"
    if content == "utf-16":  # as PowerShell's `>` re-saves it
        path.write_text(path.read_text(encoding="utf-8"), encoding="utf-16")
    else:
        path.write_text(content)
    assert main(["baselines", "--dir", str(baselines)]) == 0
    assert f"  0001_v1.json: unreadable: baseline '{path}' {says}" in capsys.readouterr().out
    other = str(baselines / "embedded" / "0002_main.json")
    assert main(["compare", str(path), other]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: OLD (a baseline or report) '{path}' {says}")
    assert err.count("\n") == 1


def test_a_compacted_or_key_sorted_baseline_is_never_overwritten_by_an_output(
    baselines: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # Protected only where its first 4096 bytes held '"kind": "das_assert baseline"' verbatim:
    # a compacted baseline, still valid, was overwritten by `baselines --json` on it.
    from das_assert.baseline import load_baseline
    from das_assert.store import output_path_problem

    saved = json.loads((baselines / "embedded" / "0002_main.json").read_text())
    elsewhere = tmp_path_factory.mktemp("kept")
    compact, by_key = elsewhere / "0002_main.json", elsewhere / "sorted.json"
    compact.write_text(json.dumps(saved, separators=(",", ":")))
    padded = {**saved, "environment": {"notes": "x" * 5000}}  # "kind" past the first 4 KiB
    by_key.write_text(json.dumps(padded, sort_keys=True))
    load_baseline(compact)  # still a valid baseline
    for path in (compact, by_key):
        before = path.read_text()
        assert output_path_problem(path) == (
            " is a saved baseline, which a report never replaces; name another file"
        )
        assert main(["baselines", "--dir", str(baselines), "--json", str(path)]) == 2
        assert "is a saved baseline, which a report never replaces" in capsys.readouterr().err
        assert path.read_text() == before
    (elsewhere / "0002_main").mkdir()  # its alignment folder: a file in it is the baseline's
    (elsewhere / "0002_main" / "cell.safetensors").write_bytes(b"x")
    assert "is an alignment of the saved baseline" in str(
        output_path_problem(elsewhere / "0002_main" / "cell.safetensors")
    )
    report = elsewhere / "report.json"  # a report that mentions the kind is no baseline
    report.write_text(json.dumps({"results": [], "note": {"kind": "das_assert baseline"}}))
    assert output_path_problem(report) is None


@pytest.mark.parametrize("where", ["embedded/0009_listing.json", "listing.json"])
def test_the_listing_is_never_written_inside_the_baseline_directory(
    baselines: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    # --json D/embedded/0009_listing.json was written: the newest NNNN_name.json, it became
    # "latest", and every --das-compare=latest stopped on a file that is no baseline.
    out = baselines / where
    assert main(["baselines", "--dir", str(baselines), "--json", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: --json {out} is inside the baseline directory {baselines}, where baselines and "
        "their alignments are kept; name a file elsewhere\n"
    )
    assert not out.exists()


def test_a_baseline_whose_fields_have_other_types_is_listed_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Edited by hand, its checksum recomputed: model a string or saved_at an integer crashed
    # the whole listing (exit 3).
    from das_assert.store import atomic_write_json

    path = tmp_path / "m" / "0001_old.json"
    path.parent.mkdir()
    _save(path, [_claim("test_a", True)], [])
    payload = json.loads(path.read_text())
    payload.update(model="embedded", saved_at=202612041200, search_cells=3)
    atomic_write_json(path, payload, checksum=True)
    (row,) = baseline_listing(tmp_path)["models"][0]["baselines"]
    assert (row["error"], row["weights"], row["saved_at_from"], row["search_cells"]) == (
        None,
        None,
        "file time",
        0,
    )
    assert main(["baselines", "--dir", str(tmp_path)]) == 0
    assert "0001    old" in capsys.readouterr().out


def test_a_token_left_beside_a_saved_baseline_is_advised_away_not_its_folder(
    tmp_path: Path,
) -> None:
    # A run killed between its JSON's rename and its token's release: the listing advised
    # deleting the folder, which holds the saved baseline's alignments.
    path = tmp_path / "m" / "0001_v1.json"
    path.parent.mkdir()
    _save(path, [_claim("test_a", True)], [])
    marker = tmp_path / "m" / "0001_v1" / RESERVED_BY
    marker.parent.mkdir()
    marker.write_text("a killed run's token")
    old = time.time() - 2 * 24 * 3600
    os.utime(marker, (old, old))
    text = listing_text(baseline_listing(tmp_path))
    assert f"delete only its {RESERVED_BY} file, not the folder" in text
    assert "delete it unless a run is still saving" not in text


def test_a_large_report_about_to_be_replaced_is_not_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every run parsed the report it was about to replace, to ask whether it was a baseline:
    # a 746 MiB report took 8 s and 2 GB before the first test. A baseline's kind is looked
    # for in its text, a chunk at a time, and a file is parsed only where it is there.
    from das_assert import store

    report = tmp_path / "r.json"
    report.write_text(json.dumps({"kind": "das_assert report", "results": ["x" * 100] * 30_000}))

    def parsed(text: str) -> object:
        raise AssertionError("the report was parsed")

    monkeypatch.setattr(store.json, "loads", parsed)
    assert store.output_path_problem(report) is None
    assert store._mentions_the_baseline_kind(report, chunk=4096) is False
    spread = tmp_path / "b.json"  # the kind across a chunk's edge
    spread.write_text(" " * 4090 + '{"kind": "das_assert baseline"}')
    assert store._mentions_the_baseline_kind(spread, chunk=4096) is True
