"""Bad command lines exit 2 with one clear message, before any work; the count of all cases."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from bad_inputs_support import Ctx
from test_bad_artifacts import CASES as ARTIFACT_CASES
from test_bad_experiments import CASES as EXPERIMENT_CASES
from test_bad_model_inputs import CASES as MODEL_CASES
from test_bad_settings import CASES as SETTING_CASES

from das_assert.cli import main
from das_assert.models import EMBEDDED_MODEL_DIR

LLAMA = "<tiny llama>"
FIT = ("fit", "--hypothesis", "left_boundary", "--layer", "1")
SEARCH = ("search", "--hypothesis", "left_boundary", "--n-test", "20", "--layers")


def cli(*argv: str, match: str) -> Any:
    shown = ", ".join(repr(a) if a != LLAMA else a for a in argv)
    return pytest.param(list(argv), match, id=f"main([{shown}])")


CLI_CASES = [
    cli(
        "fit",
        "--model",
        LLAMA,
        "--layer",
        "1",
        match=r"the following arguments are required: --hypothesis",
    ),
    cli(
        "fit",
        "--model",
        LLAMA,
        "--hypothesis",
        "left_boundary",
        "--layer",
        "99",
        match=r"error: layer=99 is out of range for llama \(3 layers: 0\.\.2",
    ),
    cli(*FIT, "--bracket", "12", "3", match=r"argument --bracket: '12' is outside 0\.00\.\.9\.99"),
    cli(  # cents, as Python takes them: the message named no unit
        *FIT,
        "--bracket",
        "130",
        "855",
        match=r"'130' is outside 0\.00\.\.9\.99 dollars: amounts on the command line are "
        r"dollars, so write 1\.30 for 130 cents",
    ),
    cli(
        *FIT,
        "--n-trian=40",
        match=r"fit: error: unrecognized arguments: --n-trian=40 \(did you mean --n-train\?\)",
    ),
    cli(
        *SEARCH,
        "0",
        "--postions",
        "last",
        match=r"search: error: unrecognized arguments: --postions last \(did you mean --positions",
    ),
    cli(  # it said "bracket=(849, 549) must have 0 <= low <= high <= 999 (cents)"
        *FIT,
        "--bracket",
        "8.49",
        "5.49",
        match=r"error: --bracket 8\.49 5\.49: LOW is above HIGH; give the bracket's low end "
        r"first, --bracket 5\.49 8\.49\n",
    ),
    cli(
        "evaluate",
        "--model",
        LLAMA,
        "--alignment",
        "/nonexistent/alignment.safetensors",
        match=r"error: alignment file '/nonexistent/alignment\.safetensors' does not exist; "
        r"check the path",
    ),
    cli(
        "compare",
        "/nonexistent/0001_old.json",
        "/nonexistent/0002_new.json",
        match=r"error: OLD \(a baseline or report\) '/nonexistent/0001_old\.json' does not exist",
    ),
    cli(
        "compare",
        "old.json",
        "new.json",
        "--fail",
        "iia:five",
        match=r"error: could not parse the compare-fail expression 'iia:five'",
    ),
    cli(*FIT, "--method", "bondless", match=r"error: unknown method 'bondless'; choose one of"),
    cli(*FIT, "--bracket", "inf", "3", match=r"argument --bracket: 'inf' is not an amount"),
    cli(
        "evaluate",
        "--model",
        LLAMA,
        "--alignment",
        "/",
        match=r"error: alignment file '/' is a directory; name the \.safetensors file in it",
    ),
    cli(*FIT, "--bracket", "1.005", "3", match=r"'1\.005' has more than two decimals"),
    # Python's float read these as 10 dollars and as 1.10 (within its 1e-6 tolerance)
    cli(*FIT, "--bracket", "1_0", "3", match=r"argument --bracket: '1_0' is not an amount"),
    cli(*FIT, "--bracket", "1.100000001", "3", match=r"'1\.100000001' has more than two"),
    cli(*FIT, "--bracket", ".", "3", match=r"argument --bracket: '\.' is not an amount"),
    cli(*FIT, "--bracket", "1" + "0" * 5000, "3", match=r"'10{19}'\.\.\. is outside 0\.00"),
    cli(  # two names of one token ran the same engine check twice
        "check",
        "--positions",
        "last",
        "last-0",
        match=r"error: --positions: 'last' and 'last-0' name the same token; list it once",
    ),
    cli(*FIT, "--n-test", "1", match=r"--n-test: '1' must be a number of pairs from 2 to"),
    cli(*FIT, "--n-test", "10000000000", match=r"'10000000000' must be a number of pairs from 2"),
    cli(*FIT, "--seed", str(2**70), match=r"--seed: '\d+' is not a seed: use an integer 0 to"),
    cli(*FIT, "--seed", "-1", match=r"--seed: '-1' is not a seed: use an integer 0 to 4294967295"),
    cli(*FIT, "--position", "middle", match=r"error: cannot parse position 'middle'"),
    # an unset $MODEL_DIR: the model in the current folder loaded, with no word
    cli(*FIT, "--model=", match=r"error: argument --model: the path is empty"),
    cli("check", "--causal-models=", match=r"error: argument --causal-models: the path is empty"),
    cli(
        *FIT,
        "--threshold",
        "1.5",
        match=r"--threshold: '1\.5': a threshold is a number in \[0, 1\)",
    ),
    cli(*FIT, "--threshold", "73", match=r"--threshold: '73': .* a percentage\? write 0\.73"),
    cli(
        *FIT,
        "--min-task-accuracy",
        "80",
        match=r"'80' must lie in \[0, 1\]; a percentage\? write 0\.8",
    ),
    cli(
        "fit",
        "--hypothesis",
        "left_boundry",
        "--layer",
        "1",
        match=r"argument --hypothesis: unknown causal model 'left_boundry'; .* Did you mean "
        r"'left_boundary'\? On the command line, name its file with --causal-models FILE",
    ),
    cli(*FIT, "--model", "/no/such/dir", match=r"error: model directory '/no/such/dir' does not"),
    cli(*FIT, "--model", LLAMA, "--device", "tpu", match=r"error: device='tpu' is not one of"),
    cli(*SEARCH, "0", "1", "0", match=r"--layers: layer 0 given twice; list each once"),
    cli(  # the last list won: layers 0 and 1 were not searched
        *SEARCH,
        "0",
        "1",
        "--layers",
        "2",
        match=r"--layers given twice; give all its values once: --layers A B \.\.\.",
    ),
    cli(  # fitted `right` alone
        *FIT,
        "--variables",
        "left",
        "--variables",
        "right",
        match=r"--variables given twice; give all its values once",
    ),
    cli(
        *SEARCH,
        "0",
        "--joint-cells-mib",
        "lots",
        match=r"argument --joint-cells-mib: 'lots' must be an integer >= 0",
    ),
    cli(
        *SEARCH,
        "0",
        "--positions",
        "last",
        "after:amount",
        "last",
        match=r"--positions: position last given twice; list each once",
    ),
    cli(  # two names of one token trained the same cell twice
        *SEARCH,
        "0",
        "--positions",
        "last",
        "last-0",
        match=r"error: --positions: 'last' and 'last-0' name the same token; list it once",
    ),
    cli(  # names that differ as written and parsed, one token as the prompt resolves them
        *SEARCH,
        "0",
        "--positions",
        "last",
        "after:amount+8",
        match=r"error: --positions last and after:amount\+8 land on the same token of every "
        r"prompt \(token \d+ of the first\), so their cells would train the same alignment twice",
    ),
    cli(
        *SEARCH,
        "0",
        "-3",
        "--model",
        LLAMA,
        match=r"error: --layers 0 and -3 are the same block of this model \(0\)",
    ),
    cli(
        *SEARCH,
        "0",
        "7",
        "--model",
        LLAMA,
        match=r"error: layer=7 is out of range for llama \(3 layers",
    ),
    cli(*SEARCH, "0", "--positions", "middle", match=r"error: cannot parse position 'middle'"),
    cli("search", "--hypothesis", "left_boundary", match=r"required: --layers"),
]


@pytest.mark.parametrize(("argv", "match"), CLI_CASES)
def test_a_bad_command_line_exits_2_with_a_message(
    argv: list[str], match: str, ctx: Ctx, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(ctx.model_dir()) if arg == LLAMA else arg for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses the option itself
        code = exit_.code
    assert code == 2
    stderr = capsys.readouterr().err
    assert re.search(match, stderr), stderr
    assert "Traceback" not in stderr
    assert "usage:" not in stderr  # argparse put twenty lines of usage before the message


def test_an_unexpected_error_exits_3_not_1_which_means_a_failed_claim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from das_assert import cli as cli_module

    def crash(args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli_module.COMMANDS, "fit", crash)
    assert main([*FIT, "--n-train", "8"]) == 3
    stderr = capsys.readouterr().err
    assert "RuntimeError: a bug" in stderr
    assert "unexpected error" in stderr


def test_there_are_at_least_45_distinct_cases() -> None:
    cases = MODEL_CASES + EXPERIMENT_CASES + SETTING_CASES + ARTIFACT_CASES + CLI_CASES
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)) >= 45


def test_a_cli_search_asking_for_a_heatmap_without_matplotlib_is_refused_before_training(
    ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from das_assert import experiment

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    trained = []
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: trained.append(a))
    argv = [*SEARCH, "0", "--model", str(ctx.model_dir()), f"--png={tmp_path / 'grid.png'}"]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert "error: --png needs matplotlib: pip install 'das_assert[plots]'" in stderr
    assert trained == []
    assert list(tmp_path.iterdir()) == []


def test_a_cli_search_with_a_misspelt_slot_is_refused_before_any_cell_trains(
    ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from das_assert import experiment

    trained = []
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: trained.append(a))
    argv = [*SEARCH, "0", "1", "--positions", "last", "after:amout"]
    assert main([*argv, "--model", str(ctx.model_dir())]) == 2
    stderr = capsys.readouterr().err
    assert "position 'after:amout' refers to slot 'amout', which this prompt does not" in stderr
    assert trained == []


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([*FIT, "--json", "{dir}"], r"--json .*dir is a directory; name a file inside it"),
        ([*FIT, "--save", "{file}/a.safetensors"], r"--save .*: .*file is a file, not a dir"),
        ([*SEARCH, "0", "--png", "{dir}"], r"--png .*dir is a directory"),
        (["compare", "a.json", "b.json", "--markdown", "{dir}"], r"--markdown .*dir is a dir"),
        (["train-embedded", "--out", "{file}"], r"--out .*file is a file; name a directory"),
        ([*FIT, "--json", "/proc/das_report.json"], r"--json .*: cannot write in /proc \("),
        (
            ["evaluate", "--alignment", "{file}", "--json", "{file}"],
            r"--json .*file is also --alignment, which this command reads: writing it would",
        ),
        ([*FIT, "--save", "{dir}/x", "--json", "{dir}/x"], r"--save and --json both name .*x"),
        (["compare", "{file}", "b.json", "--markdown", "{file}"], r"--markdown .*file is also OLD"),
        (["train-embedded", "--out", "{shipped}"], r"--out .* is the shipped embedded model"),
        (["train-embedded", "--out", "{full}"], r"--out .*full already holds files; name a new"),
        ([*FIT, "--json", "{model}/config.json"], r"--json .*config.json is inside the model dir"),
        ([*FIT, "--save", "{model}/a.safetensors"], r"--save .* is inside the model directory"),
        ([*FIT, "--json", "{code}"], r"--json .*test_x.py is an existing .py file \(code or"),
        ([*SEARCH, "0", "--json", "{yaml}"], r"--json .*das.yaml is an existing .yaml file"),
        (["compare", "a.json", "{file}", "--markdown", "{baseline}"], r"is a saved baseline"),
    ],
    ids=[
        *("json-dir", "save-under-file", "png-dir", "markdown-dir", "out-file", "read-only"),
        *("json-over-alignment", "json-and-save", "markdown-over-old", "shipped", "out-full"),
        *(
            "json-over-model-config",
            "save-into-model-dir",
            "json-over-a-test",
            "json-over-das-yaml",
            "markdown-over-a-baseline",
        ),
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
    argv: list[str],
    match: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from das_assert import models

    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    from das_assert.embedded import train

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.setattr(train, "train_embedded", lambda *a: pytest.fail("training started"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    (tmp_path / "model").mkdir()  # a model directory: config.json and weights
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "model" / name).write_text("{}")
    (tmp_path / "test_x.py").write_text("")
    (tmp_path / "das.yaml").write_text("")
    (tmp_path / "0001_v1.json").write_text('{\n  "kind": "das_assert baseline"\n}\n')
    paths = {"dir": tmp_path / "dir", "file": tmp_path / "file", "full": tmp_path / "full"}
    paths |= {"shipped": EMBEDDED_MODEL_DIR, "model": tmp_path / "model"}
    paths |= {"code": tmp_path / "test_x.py", "yaml": tmp_path / "das.yaml"}
    paths["baseline"] = tmp_path / "0001_v1.json"
    assert main([arg.format(**paths) for arg in argv]) == 2
    assert re.search(match, capsys.readouterr().err)
    for untouched in ("file", "test_x.py", "das.yaml", "model/config.json"):  # not touched
        assert (tmp_path / untouched).read_text() in ("", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        *("0001_v1.json", "das.yaml", "dir", "file", "full", "model", "test_x.py")
    ]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_an_empty_output_path_is_named_as_empty(capsys: pytest.CaptureFixture[str]) -> None:
    # "--markdown $GITHUB_STEP_SUMMARY" outside Actions: the empty path was read as ".", and the
    # error said "--markdown . is a directory"
    from das_assert.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["compare", "a.json", "b.json", "--markdown", ""])
    assert exit_.value.code == 2
    assert "argument --markdown: the path is empty" in capsys.readouterr().err


def test_the_instruction_is_also_named_as_in_the_json_report() -> None:
    # the report calls it data.instruction; --template was its only name on the command line
    from das_assert.cli_args import build_parser

    words = "Say {yes} if it costs from {low} to {high} dollars, else {no}."
    for option in ("--template", "--instruction"):
        args = build_parser().parse_args(
            ["fit", "--hypothesis", "left_boundary", "--layer", "0", option, words]
        )
        assert args.template == words


def test_evaluate_refuses_an_alignment_whose_saved_settings_were_edited(
    ctx: Ctx, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_bad_artifacts import alignment_with_manifest

    path = alignment_with_manifest(ctx, fit={"epochs": "x"})
    code = main(["evaluate", "--model", str(ctx.model_dir()), "--alignment", str(path)])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert "holds training settings das_assert cannot use" in stderr
    assert "Traceback" not in stderr


def test_fit_save_never_overwrites_an_alignment_of_a_saved_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a baseline's alignments lie in <model>/0001_v1/*.safetensors; fit --save replaced them
    from das_assert import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "0001_v1.json").write_text('{\n  "kind": "das_assert baseline"\n}\n')
    (tmp_path / "0001_v1").mkdir()
    saved = tmp_path / "0001_v1" / "left_boundary.safetensors"
    saved.write_bytes(b"weights")
    assert main([*FIT, "--save", str(saved)]) == 2
    assert "is an alignment of the saved baseline" in capsys.readouterr().err
    assert saved.read_bytes() == b"weights"
    from das_assert.store import output_path_problem

    assert output_path_problem(tmp_path / "0001_v1" / "new.safetensors") is None  # a new file


def test_the_help_of_evaluate_names_its_own_default_seed() -> None:
    # evaluate shared fit's help, "data, initialisation and training", though it trains nothing
    # and draws from the alignment's own seed unless --seed is given
    from das_assert.cli_args import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    helps = {a.dest: a.help for a in commands["evaluate"]._actions}
    assert "the alignment's own" in str(helps["seed"])
    assert "training" not in helps["seed"]
    fit_helps = {a.dest: a.help for a in commands["fit"]._actions}
    assert fit_helps["seed"] == "data, initialisation and training"
    compare = {a.dest: a.help for a in commands["compare"]._actions}
    assert "transfer" in str(compare["fail"])


@pytest.mark.parametrize("failure", ["refused", "crash"])
def test_a_failed_run_names_the_reports_it_left_from_an_earlier_run(
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """No report is written when a command fails: a --json file already there is an earlier
    run's, and a CI step uploading it would publish it as this run's; the error says so."""
    from das_assert import cli as cli_module
    from das_assert.errors import PreconditionFailed

    def fail(args: Any) -> int:
        if failure == "crash":
            raise RuntimeError("a bug")
        raise PreconditionFailed("the model answers 0.5 of the test prompts")

    monkeypatch.setitem(cli_module.COMMANDS, "fit", fail)
    old = tmp_path / "old.json"
    old.write_text('{"results": []}')
    new = tmp_path / "new.safetensors"
    assert main([*FIT, "--json", str(old), "--save", str(new)]) == (3 if failure == "crash" else 2)
    stderr = capsys.readouterr().err
    assert f"note: {old} was not written by this run; it is left as it was" in stderr
    assert str(new) not in stderr  # nothing there, nothing to warn of
    assert old.read_text() == '{"results": []}'


@pytest.mark.parametrize(
    "bad",
    [
        ["--n-test", "abc"],
        ["--no-such-option"],
        ["--causal-models", "missing.py"],
        ["--causal-model", "abbreviated.py"],
    ],
)
def test_a_usage_error_names_the_reports_it_left_from_an_earlier_run(
    bad: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the parser (or the causal-models file) exited 2 before the note was prepared
    old = tmp_path / "old.json"
    old.write_text('{"results": []}')
    try:
        code = main([*FIT, f"--json={old}", *bad])
    except SystemExit as exc:  # the parser's own exit
        code = exc.code
    assert code == 2
    stderr = capsys.readouterr().err
    assert f"note: {old} was not written by this run; it is left as it was" in stderr
    assert old.read_text() == '{"results": []}'


@pytest.mark.parametrize("written", [["--js", "{}"], ["--jso={}"]])
def test_an_abbreviated_output_flag_is_named_after_a_usage_error(
    written: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # argparse takes --js for --json; the note after its error looked for --json alone
    old = tmp_path / "old.json"
    old.write_text('{"results": []}')
    with pytest.raises(SystemExit) as stopped:
        main([*FIT, *(token.format(old) for token in written), "--n-test", "abc"])
    assert stopped.value.code == 2
    assert f"note: {old} was not written by this run" in capsys.readouterr().err


def test_a_command_without_causal_models_refuses_the_option_without_running_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = tmp_path / "ran"
    models = tmp_path / "models.py"
    models.write_text(f"from pathlib import Path\nPath({str(ran)!r}).touch()\n")
    report = tmp_path / "r.json"
    report.write_text('{"results": []}')
    with pytest.raises(SystemExit) as stopped:
        main(["compare", str(report), str(report), f"--causal-models={models}"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --causal-models" in capsys.readouterr().err
    assert not ran.exists()
