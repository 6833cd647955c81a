"""Bad alignment files, caches and baselines: one clear das_assert error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from bad_inputs_support import RECORD, SITE, Call, Ctx, assert_one_clear_das_error

from das_assert.alignment_file import load_alignment, save_alignment
from das_assert.baseline import find_baseline, load_baseline, save_baseline
from das_assert.cache import AlignmentCache
from das_assert.errors import AlignmentFileError, ConfigError, DasError
from das_assert.fit import FitConfig, make_interchange
from das_assert.frozen import FrozenAlignmentMissing
from das_assert.store import atomic_write_json


def saved_alignment(ctx: Ctx) -> Path:
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    path = ctx.tmp_path / "alignment.safetensors"
    save_alignment(path, interchange, {"site": SITE, "hypothesis": "left_boundary"})
    return path


def truncated_alignment(ctx: Ctx) -> Path:
    path = saved_alignment(ctx)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def tampered_alignment(ctx: Ctx) -> Path:
    path = saved_alignment(ctx)
    raw = bytearray(path.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    raw[8 + header_len + 5] ^= 0xFF  # a byte of tensor data; the header is untouched
    path.write_bytes(bytes(raw))
    return path


def random_bytes_file(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "random.safetensors"
    path.write_bytes(bytes(range(7, 256, 3)) * 4)
    return path


def pickled_tensors(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "pickled.safetensors"
    torch.save({"rotation": torch.eye(4)}, path)
    return path


def safetensors_without_manifest(ctx: Ctx) -> Path:
    from safetensors.torch import save_file

    path = ctx.tmp_path / "plain.safetensors"
    save_file({"rotation": torch.eye(4), "widths": torch.ones(1)}, path)
    return path


def saved_baseline(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "baselines" / "0001_first.json"
    save_baseline(path, model={"path": "embedded"}, environment={"torch": "2"}, records=[RECORD])
    return path


def baseline_of(ctx: Ctx, **changes: Any) -> Path:
    """A baseline with a valid checksum whose one entry has ``changes``: well-signed nonsense."""
    path = ctx.tmp_path / "baselines" / "0001_edited.json"
    record = {**RECORD, **changes}
    save_baseline(path, model={"path": "embedded"}, environment={"torch": "2"}, records=[record])
    return path


def baseline_without(ctx: Ctx, key: str) -> Path:
    path = ctx.tmp_path / "baselines" / "0001_edited.json"
    record = {k: v for k, v in RECORD.items() if k != key}
    save_baseline(path, model={"path": "embedded"}, environment={"torch": "2"}, records=[record])
    return path


def baseline_with_schema(ctx: Ctx, version: int) -> Path:
    from das_assert.store import atomic_write_json

    path = saved_baseline(ctx)
    payload = json.loads(path.read_text())
    payload["schema_version"] = version
    atomic_write_json(path, payload, checksum=True)
    return path


def alignment_with_list_manifest(ctx: Ctx) -> Path:
    from safetensors.torch import save_file

    path = ctx.tmp_path / "list.safetensors"
    tensors = {"rotation": torch.eye(4), "widths": torch.ones(1)}
    save_file(tensors, path, metadata={"manifest": "[1, 2]"})
    return path


def alignment_with_manifest(ctx: Ctx, **changes: Any) -> Path:
    """A saved alignment whose manifest (which the tensors' checksum does not cover) is edited."""
    from safetensors.torch import load, save

    raw = saved_alignment(ctx).read_bytes()
    metadata = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    manifest = {**json.loads(metadata["manifest"]), **changes}
    path = ctx.tmp_path / "edited.safetensors"
    path.write_bytes(save(load(raw), metadata={"manifest": json.dumps(manifest)}))
    return path


def alignment_with_tensors(ctx: Ctx, **changes: torch.Tensor) -> Path:
    """A saved alignment whose tensors are replaced, its manifest (and checksum) as they were."""
    from safetensors.torch import load, save

    raw = saved_alignment(ctx).read_bytes()
    metadata = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    path = ctx.tmp_path / "converted.safetensors"
    path.write_bytes(save({**load(raw), **changes}, metadata=metadata))
    return path


def alignment_resigned(ctx: Ctx, **changes: torch.Tensor) -> Path:
    """A saved alignment whose tensors are replaced and its checksum computed again: an edit
    made by someone who knows the format."""
    import hashlib

    from safetensors.torch import load, save

    raw = saved_alignment(ctx).read_bytes()
    manifest = json.loads(
        json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]["manifest"]
    )
    tensors = {**load(raw), **changes}
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    manifest["tensor_sha256"] = digest.hexdigest()
    path = ctx.tmp_path / "resigned.safetensors"
    path.write_bytes(save(tensors, metadata={"manifest": json.dumps(manifest)}))
    return path


def alignment_with_deep_manifest(ctx: Ctx) -> Path:
    from safetensors.torch import save_file

    path = ctx.tmp_path / "deep.safetensors"
    tensors = {"rotation": torch.eye(4), "widths": torch.ones(1)}
    save_file(tensors, path, metadata={"manifest": "[" * 100_000 + "]" * 100_000})
    return path


def frozen_run_of_a_swapped_file(ctx: Ctx) -> object:
    """A frozen request whose baseline entry names a file holding another site's alignment: what
    a baseline kept when two cells' long keys were cut to one file name."""
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig
    from das_assert.frozen import alignment_request, frozen_alignment
    from das_assert.sites import parse_site

    experiment = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16)
    config = FitConfig()
    request = alignment_request(experiment, config)
    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    other = "block_output[layer=0, pos=last]"
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    save_alignment(
        path.parent / path.stem / "cell.safetensors", interchange, {**request, "site": other}
    )
    cell = {"site": SITE, "iia": 0.9, "n": 8, "alignment_file": "cell.safetensors"}
    payload = {"entries": {}, "search_cells": {"k": {**cell, "request": request}}}
    return frozen_alignment((path, payload), ctx.llama, experiment, config)


def frozen_run_of_an_earlier_definition(ctx: Ctx) -> object:
    """A frozen claim whose causal model gained a box since its baseline was saved (the
    manifest's digest of the definition differs): it was blamed on a file saved under
    another's name."""
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig
    from das_assert.frozen import alignment_request, frozen_alignment
    from das_assert.sites import parse_site

    experiment = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16)
    config = FitConfig()
    request = alignment_request(experiment, config)
    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 2)
    earlier = {**request, "causal_model": "0123456789abcdef"}
    save_alignment(path.parent / path.stem / "cell.safetensors", interchange, earlier)
    cell = {"site": SITE, "iia": 0.9, "n": 8, "alignment_file": "cell.safetensors"}
    payload = {"entries": {}, "search_cells": {"k": {**cell, "request": request}}}
    return frozen_alignment((path, payload), ctx.llama, experiment, config)


def frozen_run_of_another_tests_file(ctx: Ctx) -> object:
    """A frozen claim whose baseline entry names a file another test's claim saved: what a
    baseline kept when parametrized ids that slug alike ([Hello!], [Hello?]) shared a name."""
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig
    from das_assert.frozen import alignment_request, frozen_alignment
    from das_assert.sites import parse_site

    experiment = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16)
    config = FitConfig()
    request = alignment_request(experiment, config)
    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    saved_by = {"claim": "left_boundary", "test_id": "test_x.py::test_greeting[Hello?]"}
    file = path.parent / path.stem / "test_x.py_test_greeting_Hello.safetensors"
    save_alignment(file, interchange, {**request, **saved_by})
    entry = {
        **{k: v for k, v in request.items() if k != "site"},
        "site": {"canonical": SITE},
        "claim": "left_boundary",
        "test_id": "test_x.py::test_greeting[Hello!]",
        "alignment_file": file.name,
    }
    payload = {"entries": {"test_x.py::test_greeting[Hello!]::left_boundary": entry}}
    return frozen_alignment((path, payload), ctx.llama, experiment, config)


def frozen_run_of_an_older_versions_entry(ctx: Ctx, **older: Any) -> object:
    """A frozen claim whose baseline entry was saved by another version: ``older`` replaces
    what it records of the request (no ``data``, other fit settings)."""
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig
    from das_assert.frozen import alignment_request, frozen_alignment
    from das_assert.sites import parse_site

    experiment = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16)
    config = FitConfig()
    request = alignment_request(experiment, config)
    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    save_alignment(path.parent / path.stem / "lb.safetensors", interchange, request)
    entry = {**request, "site": {"canonical": SITE}, "alignment_file": "lb.safetensors", **older}
    payload = {"entries": {"test_x.py::test::left_boundary": entry}}
    return frozen_alignment((path, payload), ctx.llama, experiment, config)


def frozen_run_of_a_truncated_file(ctx: Ctx) -> object:
    """A frozen request whose baseline's alignment file was cut short (a partial checkout)."""
    from das_assert.experiment import Experiment
    from das_assert.fit import FitConfig
    from das_assert.frozen import alignment_request, frozen_alignment
    from das_assert.sites import parse_site

    experiment = Experiment(hypothesis="left_boundary", site=parse_site(SITE), n_train=16)
    config = FitConfig()
    request = alignment_request(experiment, config)
    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    file = path.parent / path.stem / "cell.safetensors"
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    save_alignment(file, interchange, request)
    file.write_bytes(file.read_bytes()[:100])
    cell = {"site": SITE, "iia": 0.9, "n": 8, "alignment_file": "cell.safetensors"}
    payload = {"entries": {}, "search_cells": {"k": {**cell, "request": request}}}
    return frozen_alignment((path, payload), ctx.llama, experiment, config)


def truncated_baseline(ctx: Ctx) -> Path:
    path = saved_baseline(ctx)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return path


def utf16_baseline(ctx: Ctx) -> Path:
    """A saved baseline re-saved as UTF-16, as PowerShell's ``>`` writes it."""
    path = saved_baseline(ctx)
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-16")
    return path


def deeply_nested_json(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "0001_deep.json"
    path.write_text("[" * 100_000)
    return path


def tampered_baseline(ctx: Ctx) -> Path:
    path = saved_baseline(ctx)
    payload = json.loads(path.read_text())
    next(iter(payload["entries"].values()))["iia"] = 0.99  # checksum left as it was
    path.write_text(json.dumps(payload, indent=2))
    return path


def unsigned_baseline(ctx: Ctx) -> Path:
    path = saved_baseline(ctx)
    payload = json.loads(path.read_text())
    next(iter(payload["entries"].values()))["iia"] = 0.99
    del payload["sha256"]  # the checksum line deleted with it, so none is left to fail
    path.write_text(json.dumps(payload, indent=2))
    return path


def json_report(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "fit.json"
    atomic_write_json(path, {"schema_version": 1, "results": []})
    return path


def future_baseline(ctx: Ctx) -> Path:
    path = ctx.tmp_path / "0001_future.json"
    atomic_write_json(path, {"schema_version": 99, "entries": {}}, checksum=True)
    return path


CASES = [
    # -- alignment files, the cache, baselines
    pytest.param(
        lambda c: load_alignment(saved_alignment(c), hidden_size=64),
        AlignmentFileError,
        r"was learned on a hidden size of 32, but this model's hidden size is 64.*fit a new "
        r"alignment on this model",
        id="load_alignment(<d=32 alignment>, hidden_size=64)",
    ),
    pytest.param(
        lambda c: load_alignment(truncated_alignment(c)),
        AlignmentFileError,
        r"(?s)is not a readable safetensors file .*: it is truncated or corrupted, or not a "
        r"das_assert alignment \(check the path\); fit it again$",
        id="load_alignment(<truncated file>)",
    ),
    pytest.param(
        lambda c: load_alignment(tampered_alignment(c)),
        AlignmentFileError,
        r"fails its checksum: its tensors were modified after it was saved; delete it",
        id="load_alignment(<tensor bytes flipped>)",
    ),
    pytest.param(  # it said "truncated or corrupted: delete it", of a good report
        lambda c: load_alignment(json_report(c)),
        AlignmentFileError,
        r"is a JSON file, not a safetensors alignment: a report \(--json\) holds no weights; "
        r"give the file that fit --save",
        id="load_alignment(<a JSON report>)",
    ),
    pytest.param(
        lambda c: load_alignment(random_bytes_file(c)),
        AlignmentFileError,
        r"is not a readable safetensors file",
        id="load_alignment(<random bytes>)",
    ),
    pytest.param(
        lambda c: load_alignment(pickled_tensors(c)),
        AlignmentFileError,
        r"is not a readable safetensors file",
        id="load_alignment(<a torch.save pickle>)",
    ),
    pytest.param(  # it said "truncated or corrupted: delete it", of a model's weights
        lambda c: load_alignment(safetensors_without_manifest(c)),
        AlignmentFileError,
        r"is a safetensors file without das_assert's manifest \(a model's weights, or another "
        r"tool's tensors\), not an alignment: give the file that fit --save",
        id="load_alignment(<safetensors without a manifest>)",
    ),
    pytest.param(
        lambda c: load_alignment(c.tmp_path / "missing.safetensors"),
        AlignmentFileError,
        r"missing\.safetensors' does not exist; check the path, or save an alignment with",
        id="load_alignment('missing.safetensors')",
    ),
    pytest.param(
        lambda c: AlignmentCache(c.tmp_path, mode="sometimes"),
        ConfigError,
        r"cache mode 'sometimes' is not one of off, read, write, readwrite",
        id="AlignmentCache(mode='sometimes')",
    ),
    pytest.param(
        lambda c: load_baseline(truncated_baseline(c)),
        AlignmentFileError,
        r"is not valid JSON .*truncated or was edited by hand\. Restore it from version control",
        id="load_baseline(<truncated JSON>)",
    ),
    pytest.param(  # a UnicodeDecodeError escaped: a traceback, exit 3
        lambda c: load_baseline(utf16_baseline(c)),
        AlignmentFileError,
        r"0001_first\.json' is not UTF-8 text \(invalid start byte at byte 0\), which "
        r"das_assert writes: it was re-saved in another encoding \(UTF-16\?\).*Save it as UTF-8",
        id="load_baseline(<UTF-16>)",
    ),
    pytest.param(  # it loaded, and its interchange swapped no subspace: IIA of nothing
        lambda c: load_alignment(alignment_resigned(c, rotation=torch.eye(32) * 1.1)),
        AlignmentFileError,
        r"resigned\.safetensors' holds a matrix that is not a rotation \(\|R\^T R v - v\| / \|v\| "
        r"= 0\.21\): it is not a usable alignment",
        id="load_alignment(<a scaled rotation, its checksum recomputed>)",
    ),
    pytest.param(  # a RecursionError escaped
        lambda c: load_baseline(deeply_nested_json(c)),
        AlignmentFileError,
        r"0001_deep\.json' nests its JSON too deeply to read: das_assert writes no such file",
        id="load_baseline(<[ 100000 deep>)",
    ),
    pytest.param(
        lambda c: load_baseline(tampered_baseline(c)),
        AlignmentFileError,
        r"fails its checksum: it was modified after it was written\. Re-create it",
        id="load_baseline(<iia edited by hand>)",
    ),
    pytest.param(
        lambda c: load_baseline(unsigned_baseline(c)),
        AlignmentFileError,
        r"has no checksum \(sha256\), which every saved baseline carries: it was edited by hand",
        id="load_baseline(<iia edited, its sha256 deleted>)",
    ),
    pytest.param(
        lambda c: load_baseline(future_baseline(c)),
        AlignmentFileError,
        r"has schema_version 99, newer than this das_assert understands \(1\); upgrade",
        id="load_baseline(<schema_version 99>)",
    ),
    pytest.param(
        lambda c: load_baseline(c.tmp_path / "0001_missing.json"),
        AlignmentFileError,
        r"0001_missing\.json' does not exist; check the path",
        id="load_baseline('0001_missing.json')",
    ),
    pytest.param(
        lambda c: find_baseline(c.tmp_path, "latest"),
        AlignmentFileError,
        r"no baselines in .*; save one first with --das-save-baseline",
        id="find_baseline(<empty dir>, 'latest')",
    ),
    pytest.param(  # it named --das-compare=KEY/latest to a run given --das-frozen
        lambda c: find_baseline(c.tmp_path, "latest", "--das-frozen"),
        AlignmentFileError,
        r"or name another model's: --das-frozen=KEY/latest or a baseline \.json file",
        id="find_baseline(<empty dir>, 'latest', '--das-frozen')",
    ),
    pytest.param(
        lambda c: find_baseline(saved_baseline(c).parent, "0007"),
        AlignmentFileError,
        r"no baseline '0007' in .*; present: 0001_first",
        id="find_baseline(<dir with 0001_first>, '0007')",
    ),
    # -- baselines and alignment files edited into nonsense
    pytest.param(
        lambda c: load_baseline(baseline_of(c, iia=float("nan"))),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks a finite iia \(or a two-number iia_ci\)",
        id="load_baseline(<an entry with iia NaN>)",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_of(c, iia_ci="x")),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks a finite iia \(or a two-number iia_ci\)",
        id="load_baseline(<an entry with iia_ci 'x'>)",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_without(c, "iia_ci")),
        AlignmentFileError,
        r"0001_edited\.json: a result lacks a finite iia \(or a two-number iia_ci\)",
        id="load_baseline(<an entry without iia_ci>)",
    ),
    pytest.param(
        lambda c: load_baseline(baseline_with_schema(c, 0)),
        AlignmentFileError,
        r"has schema_version 0, which no das_assert wrote \(1 to \d+\): it was edited by hand",
        id="load_baseline(<schema_version 0>)",
    ),
    pytest.param(
        lambda c: load_baseline(c.tmp_path),
        AlignmentFileError,
        r"baseline '.*' is a directory; name a \.json file in it",
        id="load_baseline(<a directory>)",
    ),
    pytest.param(
        lambda c: load_alignment(alignment_with_list_manifest(c)),
        AlignmentFileError,
        r"has a manifest that is not a JSON object: it was not written by das_assert",
        id="load_alignment(<manifest a JSON list>)",
    ),
    pytest.param(
        lambda c: load_alignment(alignment_with_manifest(c, seed="abc")),
        AlignmentFileError,
        r"has a manifest with seed='abc', not an integer: it was edited by hand",
        id="load_alignment(<manifest seed a string>)",
    ),
    pytest.param(
        lambda c: load_alignment(alignment_with_manifest(c, seed=-5)),
        AlignmentFileError,
        r"has a manifest with seed=-5 out of range",
        id="load_alignment(<manifest seed negative>)",
    ),
    pytest.param(  # a TypeError from numpy escaped, and the cache entry was kept
        lambda c: load_alignment(
            alignment_with_tensors(c, rotation=torch.eye(32, dtype=torch.bfloat16))
        ),
        AlignmentFileError,
        r"holds torch\.bfloat16 tensors, where das_assert writes float32 alone: it was converted",
        id="load_alignment(<a bfloat16 rotation>)",
    ),
    pytest.param(  # a RecursionError escaped
        lambda c: load_alignment(alignment_with_deep_manifest(c)),
        AlignmentFileError,
        r"deep\.safetensors' has a manifest that cannot be read \(",
        id="load_alignment(<manifest [ 100000 deep>)",
    ),
    pytest.param(  # it loaded, and reports named the method "zzz"
        lambda c: load_alignment(alignment_with_manifest(c, method="zzz")),
        AlignmentFileError,
        r"was trained with method 'zzz', which this das_assert does not know \(it knows "
        r"boundless, das:K.*\): a newer version's, or the file was edited by hand; upgrade "
        r"das_assert, or fit it again",
        id="load_alignment(<manifest method unknown>)",
    ),
    pytest.param(
        lambda c: load_alignment(alignment_with_manifest(c, fit=[1], site="x")),
        AlignmentFileError,
        r"has a manifest with fit=\[1\], not dict",
        id="load_alignment(<manifest fit a list>)",
    ),
    pytest.param(  # evaluate prints the record's rows: a KeyError there, not this message
        lambda c: load_alignment(alignment_with_manifest(c, restarts={"restarts": 2})),
        AlignmentFileError,
        r"has a manifest with restarts=\{'restarts': 2\}, not the record of a best-of-k fit",
        id="load_alignment(<manifest restarts without its rows>)",
    ),
    pytest.param(  # it evaluated the claim with the other cell's rotation, silently
        frozen_run_of_a_swapped_file,
        AlignmentFileError,
        r"--das-frozen .*0001_v1\.json: its alignment file .*cell\.safetensors' for left_boundary "
        r"\(left\) at block_output\[layer=1, pos=last\] holds another alignment "
        r"\(site='block_output\[layer=0, pos=last\]', not 'block_output\[layer=1, pos=last\]'\)"
        r".*Save the baseline again \(--das-save-baseline\)",
        id="frozen_alignment(<a baseline entry naming another cell's alignment file>)",
    ),
    pytest.param(
        frozen_run_of_an_earlier_definition,
        AlignmentFileError,
        r"--das-frozen .*0001_v1\.json: its alignment for left_boundary was fitted under another "
        r"definition of it \(2 variables' boxes, not 1\): its mechanisms or intervened variables "
        r"have changed since the baseline was saved\. Save the baseline again",
        id="frozen_alignment(<a causal model that gained a box since the save>)",
    ),
    pytest.param(  # it judged [Hello!] with [Hello?]'s rotation, silently
        frozen_run_of_another_tests_file,
        AlignmentFileError,
        r"--das-frozen .*0001_v1\.json: its alignment file .* holds another alignment "
        r"\(test_id='test_x\.py::test_greeting\[Hello\?\]', not "
        r"'test_x\.py::test_greeting\[Hello!\]'\)",
        id="frozen_alignment(<a baseline entry naming another test's alignment file>)",
    ),
    pytest.param(  # "a claim added since it was saved, other settings": the user's doing
        lambda c: frozen_run_of_an_older_versions_entry(c, data=None),
        FrozenAlignmentMissing,
        r"--das-frozen .*0001_v1\.json: the baseline's alignment for left_boundary \(left\) at "
        r"block_output\[layer=1, pos=last\] was saved by another version of das_assert \(saved "
        r"before baselines recorded the prompts, 2026-12-02\).*Save the baseline again with this "
        r"version",
        id="frozen_alignment(<an entry saved before baselines recorded their prompts>)",
    ),
    pytest.param(
        lambda c: frozen_run_of_an_older_versions_entry(
            c, fit={**FitConfig(seed=0).as_dict(), "new_knob": 1}
        ),
        FrozenAlignmentMissing,
        r"was saved by another version of das_assert \(fit settings new_knob known to one "
        r"version alone\)",
        id="frozen_alignment(<an entry whose fit has a setting this version does not know>)",
    ),
    pytest.param(  # "delete it and fit again" is no fix for a file the baseline holds
        frozen_run_of_a_truncated_file,
        AlignmentFileError,
        r"(?s)--das-frozen .*0001_v1\.json: alignment file .*truncated or corrupted.*this file is "
        r"the baseline's: save the baseline again with --das-save-baseline",
        id="frozen_alignment(<a baseline's alignment file cut short>)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_a_bad_input_raises_one_clear_das_error(
    call: Call, error: type[DasError], match: str, ctx: Ctx
) -> None:
    assert_one_clear_das_error(call, error, match, ctx)


def test_a_compare_does_not_transfer_another_claims_alignment_file(ctx: Ctx) -> None:
    # Two claims' long keys cut to one file name: the transfer evaluated the other claim's
    # rotation on this one's pairs, silently.
    from types import SimpleNamespace

    from das_assert.gate import transfer

    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    interchange = make_interchange("boundless", ctx.llama.config.hidden_size, 1)
    manifest = {"hypothesis": "left_boundary", "variable": "left", "seed": 0, "n_train": 16}
    file = path.parent / path.stem / "claim.safetensors"
    save_alignment(file, interchange, {**manifest, "site": SITE, "variable": "right"})
    entry = {**RECORD, **manifest, "alignment_file": file.name}
    result = SimpleNamespace(alignment=None, experiment=SimpleNamespace(site=SITE))
    session = SimpleNamespace(model=ctx.llama, baseline=(path, {}))
    found = transfer(session, result, path, entry, entry["site"])  # type: ignore[arg-type]
    assert found == {
        "skipped": f"the baseline's alignment file {str(file)!r} holds another alignment "
        "(variable='right', not 'left'): save the baseline again (--das-save-baseline)"
    }


def test_a_damaged_baseline_file_is_not_advised_to_be_fitted_again(ctx: Ctx) -> None:
    # "delete it and fit again": a fit does not remake a baseline's file, saving does
    from types import SimpleNamespace

    from das_assert.gate import transfer

    path = ctx.tmp_path / "baselines" / "0001_v1.json"
    file = path.parent / path.stem / "claim.safetensors"
    save_alignment(file, make_interchange("boundless", ctx.llama.config.hidden_size, 1), {})
    file.write_bytes(file.read_bytes()[:100])
    entry = {**RECORD, "alignment_file": file.name}
    result = SimpleNamespace(alignment=None, experiment=SimpleNamespace(site=SITE))
    session = SimpleNamespace(model=ctx.llama, baseline=(path, {}))
    found = transfer(session, result, path, entry, entry["site"])  # type: ignore[arg-type]
    assert found["skipped"].endswith(
        "it is truncated or corrupted, or not a das_assert alignment (check the path); this file "
        "is the baseline's: save the baseline again with --das-save-baseline"
    )
    assert "fit again" not in found["skipped"]
    file.unlink()  # "check the path, or save an alignment with `... fit ... --save FILE`"
    found = transfer(session, result, path, entry, entry["site"])  # type: ignore[arg-type]
    assert found["skipped"] == (
        f"alignment file {str(file)!r} does not exist; this file is the baseline's: save the "
        "baseline again with --das-save-baseline"
    )
