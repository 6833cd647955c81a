"""Baselines that a pull request or a shared runner changed: an alignment file swapped in beside
a baseline whose JSON is untouched, paths and values a hand made up. Each is refused with one
clear error, never used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bad_inputs_support import RECORD, SITE, Ctx, assert_one_clear_das_error

from das_assert.alignment_file import save_alignment
from das_assert.baseline import load_baseline, save_baseline
from das_assert.errors import AlignmentFileError
from das_assert.experiment import Experiment
from das_assert.fit import FitConfig, make_interchange
from das_assert.frozen import alignment_request, frozen_alignment
from das_assert.sites import parse_site
from das_assert.store import atomic_write_json

DATA = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16).data_record()


def frozen_run(
    ctx: Ctx, *, swap: dict[str, Any] | None = None, pin: bool = True, model: Any = None
) -> object:
    """A frozen claim whose baseline entry names ``lb.safetensors``, saved for its request
    (and, where ``pin``, its sha256 recorded as a baseline records it); ``swap`` then replaces
    the file by one whose manifest differs in those fields; ``model`` is the baseline's."""
    experiment = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16)
    config = FitConfig()
    request = alignment_request(experiment, config)
    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    file = path.parent / path.stem / "lb.safetensors"
    width = ctx.llama.config.hidden_size
    here = dict(ctx.llama.fingerprint)
    saved = {**request, "model": here}
    sha256 = save_alignment(file, make_interchange("boundless", width, 1), saved)
    if swap is not None:  # another rotation fitted otherwise, under the same name
        save_alignment(file, make_interchange("boundless", width, 1), {**request, **swap})
    entry = {**request, "site": {"canonical": SITE}, "alignment_file": file.name}
    if pin:
        entry["alignment_sha256"] = sha256
    payload = {
        "entries": {"test_x.py::test::left_boundary": entry},
        "model": {"fingerprint": here if model is None else model},
    }
    return frozen_alignment((path, payload), ctx.llama, experiment, config)


def test_a_frozen_run_takes_the_file_its_baseline_saved(ctx: Ctx) -> None:
    # the control of the refusals below: the same file, pinned, on the baseline's model
    fitted, source = frozen_run(ctx)  # type: ignore[misc]
    assert source["transfer"] is False
    assert fitted.interchange.d == ctx.llama.config.hidden_size


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param(  # the baseline's JSON was byte for byte the same: nothing showed
            {"swap": {"fit": {**FitConfig(seed=0).as_dict(), "epochs": 4}}},
            r"--das-frozen .*0001_v1\.json: alignment file .*lb\.safetensors' is not the file its "
            r"baseline saved \(its sha256 is not the baseline's alignment_sha256\): it was "
            r"replaced or changed since; this file is the baseline's: save the baseline again",
            id="a file swapped in, pinned",
        ),
        pytest.param(  # a baseline saved before the pin: the manifest's settings still tell
            {"swap": {"fit": {**FitConfig(seed=0).as_dict(), "epochs": 4}}, "pin": False},
            r"its alignment file .*lb\.safetensors' for left_boundary \(left\) at "
            r"block_output\[layer=1, pos=last\] holds another alignment \(other fit settings "
            r"\(epochs\)\)",
            id="a file fitted with other epochs, unpinned",
        ),
        pytest.param(
            {"swap": {"data": {**DATA, "prefix": "Q: "}}, "pin": False},
            r"holds another alignment \(other data settings \(prefix\)\)",
            id="a file fitted on other prompts, unpinned",
        ),
        pytest.param(  # a rotation fitted on the candidate model itself
            {"model": {"weights": "0" * 64}},
            r"holds another alignment \(fitted on another model than the baseline's\)",
            id="a file fitted on another model than the baseline's",
        ),
    ],
)
def test_a_frozen_run_refuses_a_file_its_baseline_did_not_save(
    changes: dict[str, Any], match: str, ctx: Ctx
) -> None:
    assert_one_clear_das_error(lambda c: frozen_run(c, **changes), AlignmentFileError, match, ctx)


def test_a_baseline_file_edited_into_nonsense_is_not_advised_to_be_fitted_again(ctx: Ctx) -> None:
    # "...not written by das_assert; fit it again; this file is the baseline's: save the
    # baseline again": a fit does not remake a baseline's file
    with pytest.raises(AlignmentFileError) as info:
        frozen_run(ctx, swap={"data": {"prompt_template": "other"}}, pin=False)
    assert "fit it again" not in str(info.value)
    assert str(info.value).endswith(
        "not written by das_assert; this file is the baseline's: save the baseline again with "
        "--das-save-baseline, or run without --das-frozen"
    )


def edited_baseline(ctx: Ctx, **changes: Any) -> Path:
    """A baseline with a valid checksum whose entry (or, for ``search_cells``, whose payload)
    has ``changes``: what anyone who knows the format can write."""
    path = ctx.tmp_path / "baselines" / "0001_edited.json"
    cells = changes.pop("search_cells", None)
    save_baseline(path, model={}, environment={}, records=[{**RECORD, **changes}])
    if cells is not None:
        payload = json.loads(path.read_text())
        payload.pop("sha256")
        atomic_write_json(path, {**payload, "search_cells": cells}, checksum=True)
    return path


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"threshold": "0.60"}, id="a threshold as text"),  # compare: ValueError
        pytest.param({"threshold": 60}, id="a threshold as a percentage"),
        pytest.param({"alignment_file": "/etc/outside.safetensors"}, id="an absolute path"),
        pytest.param({"alignment_file": "../0002_v2/x.safetensors"}, id="a path out of it"),
        pytest.param({"alignment_file": 5}, id="a number"),  # frozen: TypeError
        pytest.param({"alignment_file": "x.json"}, id="no alignment file"),
        pytest.param(
            {"alignment_file": "x.safetensors", "alignment_sha256": "abc"}, id="a short pin"
        ),
        pytest.param({"search_cells": {"k": 5}}, id="a search cell not an object"),  # frozen:
        pytest.param(  # AttributeError
            {"search_cells": {"k": {"alignment_file": "../x.safetensors"}}},
            id="a search cell's path out of it",
        ),
    ],
)
def test_a_baseline_with_made_up_values_is_refused(changes: dict[str, Any], ctx: Ctx) -> None:
    assert_one_clear_das_error(
        lambda c: load_baseline(edited_baseline(c, **changes)),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks .* or has an iia or threshold outside \[0, 1\], .* "
        r"or an alignment file that is not a \.safetensors file name in the baseline's folder",
        ctx,
    )


def test_a_report_with_a_threshold_as_text_is_refused(ctx: Ctx) -> None:
    # a --das-json report carries no checksum; compare crashed on it (exit 3)
    path = ctx.tmp_path / "report.json"
    atomic_write_json(path, {"schema_version": 1, "results": [{**RECORD, "threshold": "0.60"}]})
    assert_one_clear_das_error(
        lambda c: load_baseline(path),
        AlignmentFileError,
        r"report\.json: a result lacks .* threshold outside \[0, 1\]",
        ctx,
    )


@pytest.mark.parametrize(
    ("swap", "pin", "skipped"),
    [
        pytest.param(
            {"epochs": 4}, True, "is not the file its baseline saved", id="swapped, pinned"
        ),
        pytest.param({"epochs": 4}, False, "other fit settings (epochs)", id="fitted otherwise"),
        pytest.param(
            {"model": {"weights": "0" * 16}},
            False,
            "fitted on another model than the baseline's",
            id="fitted on another model",
        ),
    ],
)
def test_a_compare_does_not_transfer_a_file_its_baseline_did_not_save(
    swap: dict[str, Any], pin: bool, skipped: str, ctx: Ctx
) -> None:
    # the transfer of a --das-compare run read the file as the frozen run did before its checks
    from types import SimpleNamespace

    from das_assert.gate import transfer

    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    file = path.parent / path.stem / "claim.safetensors"
    here = dict(ctx.llama.fingerprint)
    fit = FitConfig(seed=0).as_dict()
    manifest = {"hypothesis": "left_boundary", "variable": "left", "seed": 0, "n_train": 16}
    saved = {**manifest, "site": SITE, "fit": fit, "model": here}
    width = ctx.llama.config.hidden_size
    sha256 = save_alignment(file, make_interchange("boundless", width, 1), saved)
    changed = {"model": swap["model"]} if "model" in swap else {"fit": {**fit, **swap}}
    save_alignment(file, make_interchange("boundless", width, 1), {**saved, **changed})
    entry = {**RECORD, **manifest, "fit": fit, "alignment_file": file.name}
    if pin:
        entry["alignment_sha256"] = sha256
    session = SimpleNamespace(model=ctx.llama, baseline=(path, {"model": {"fingerprint": here}}))
    result = SimpleNamespace(alignment=None, experiment=SimpleNamespace(site=SITE))
    found = transfer(session, result, path, entry, entry["site"])  # type: ignore[arg-type]
    assert skipped in found["skipped"], found


def test_an_alignment_file_that_is_a_git_lfs_pointer_says_so(ctx: Ctx) -> None:
    # a baseline's files kept in Git LFS, checked out without git-lfs: a pinned file was
    # "replaced or changed since", an unpinned one "truncated or corrupted"
    from das_assert.alignment_file import load_alignment

    file = ctx.tmp_path / "claim.safetensors"
    file.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\n")
    for pin in (None, "1" * 64):
        assert_one_clear_das_error(
            lambda c, pin=pin: load_alignment(file, sha256=pin),
            AlignmentFileError,
            r"claim\.safetensors' is a Git LFS pointer, not the file itself .* `git lfs pull`",
            ctx,
        )
