"""``das_assert check``: a model and its prompts looked over before any fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from das_assert import preflight
from das_assert.cli import main

pytestmark = pytest.mark.slow


def test_the_embedded_model_passes_its_check_and_shows_where_each_position_lands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "check.json"
    assert main(["check", "--layers", "0", "-1", f"--json={report}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model: embedded (llama, 4 layers, d=128, float32, cpu)\n")
    assert "  | ### Input:\n" in out
    # the text cannot show the start token a model trained with one must read
    assert (
        "its first tokens: '<s>' 'Below' 'is' 'an' 'instruction' 'that' ... "
        "(starts with the BOS token '<s>')\n"
    ) in out
    assert "answers, read after its last token: 'Yes' -> token 'Yes', 'No' -> token 'No'" in out
    assert "  after:amount   token  70  '8' '9' ['dollars'] '\\n' '\\n'" in out
    assert "passes the gate 0.8" in out
    assert "unknown token" not in out
    found = json.loads(report.read_text())
    assert found["unknown_tokens"] == {"count": 0, "token": "<unk>"}
    assert (found["tokens"][0], found["bos_token"]) == ("<s>", "<s>")
    assert set(found["positions"]) == {"last", "after:amount", "amount.last", "before:amount"}
    last = found["positions"]["last"]
    assert last["index"] == len(found["tokens"]) - 1
    assert found["tokens"][last["index"]] == last["token"]
    accuracy = found["task_accuracy"]
    assert accuracy["n"] == 200
    assert accuracy["ci"][0] <= accuracy["value"] <= accuracy["ci"][1]
    assert accuracy["passed"]
    sites = [row["site"] for row in found["engine_check"]]
    assert len(sites) == 8
    assert sites[0] == "block_output[layer=0, pos=last]"
    # -1 is named as the block it is, as fit and search name it (it was printed as given)
    assert sites[-1] == "block_output[layer=3, pos=before:amount]"
    assert "layer=-1" not in out
    for row in found["engine_check"]:
        assert row["cached_vs_plain"] <= row["tolerance"]
        assert row["output_swap"] <= row["tolerance"]
        assert not row["whole_prompts"]
    # the header of every report (it had none), and compare refuses it by what it is
    assert (found["schema_version"], found["kind"]) == (1, "das_assert check")
    assert {"das_assert_version", "environment"} <= set(found)
    # the model block of every report: it had no fingerprint, so which weights were checked
    # could not be told
    assert set(found["model"]["fingerprint"]) == {"weights", "tokenizer", "config"}
    assert main(["compare", str(report), str(report)]) == 2
    assert "is a `das_assert check` report: the model looked over before any fit" in (
        capsys.readouterr().err
    )


def test_a_wrapper_the_model_does_not_read_fails_the_gate_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrapper = "Q: {instruction}\nA: {amount} dollars\n"
    assert main(["check", f"--prompt-template={wrapper}", "--positions", "last"]) == 1
    out = capsys.readouterr().out
    assert "  | Q: Please say yes only if it costs between " in out
    assert "FAILS the gate 0.8" in out


def test_text_the_tokenizer_cannot_read_is_named_and_a_typed_backslash_n_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The prompt showed the snowman and the check said nothing of the <unk> the model read.
    args = ["check", "--positions", "last", "--n-test=16", "--min-task-accuracy=0"]
    assert main([*args, "--prefix", "Hello \u2603 world"]) == 0
    assert (
        "warning: 3 of its tokens are the tokenizer's unknown token '<unk>', which the model "
        "cannot read"
    ) in capsys.readouterr().out
    # bash passes "...\n..." as a backslash and an n: <unk>s, then a task accuracy of 0.6
    assert main([*args, "--prompt-template", r"Q: {instruction}\nA: {amount} dollars"]) == 2
    assert "holds \\n as two characters, a backslash and n" in capsys.readouterr().err


def test_another_architecture_is_checked_too(
    tiny_model_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(tiny_model_dirs["gpt2"]), "--min-task-accuracy=0"]
    assert main(["check", *model, "--positions", "last", "after:amount", "--n-test=16"]) == 0
    out = capsys.readouterr().out
    assert "(gpt2, 3 layers, d=32, float32, cpu)" in out
    assert out.count("hooks reach the output") == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--threshold", "0.7"], "unrecognized arguments: --threshold 0.7"),
        (["--positions", "after:price"], "after:price"),
        (["--layers", "9"], "layer=9 is out of range"),
        (["--layers", "3", "-1"], "--layers 3 and -1 are the same block of this model (3)"),
    ],
)
def test_bad_input_to_check_is_one_error(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    try:
        code = main(["check", *args])
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    assert code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    ("tokens", "bos", "says"),
    [
        (["<s>", "<s>", "Q"], "<s>", "'<s>' '<s>' 'Q' (starts with the BOS token '<s>' 2 times)"),
        (["Q", ":"], None, "'Q' ':' (this tokenizer has no BOS token)"),
        (["Q", "<s>"], "<s>", "'Q' '<s>' (does not start with the BOS token '<s>')"),
        (["<s>"] * 7, "<s>", "'<s>' ... (starts with the BOS token '<s>' 7 times)"),
    ],
)
def test_the_first_tokens_say_how_often_the_prompt_starts_with_the_bos_token(
    tokens: list[str], bos: str | None, says: str
) -> None:
    line = preflight._first_tokens_line({"tokens": tokens, "bos_token": bos})
    assert line.startswith("its first tokens: '")
    assert line.endswith(says)
