"""``--prompt-template`` from the command line on the embedded model: a chat template that
writes Alpaca's prompt gives the default fit bit for bit, and another wrapper is what the report
and the pairs show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from chat_templates import ALPACA_AS_CHAT

from das_assert.cli import main
from das_assert.models import EMBEDDED_MODEL_DIR
from das_assert.tasks.price_tagging import ALPACA_TEMPLATE

pytestmark = pytest.mark.slow

SMALL = ["--hypothesis=left_boundary", "--layer=0", "--n-train=64", "--epochs=1", "--n-test=64"]


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model with a chat template that writes Alpaca's prompt around the message."""
    directory = tmp_path_factory.mktemp("chat") / "price_tagger"
    shutil.copytree(EMBEDDED_MODEL_DIR, directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "chat_template": ALPACA_AS_CHAT}))
    return directory


def _fit(tmp_path: Path, name: str, *options: str) -> dict:
    report = tmp_path / f"{name}.json"
    assert main(["fit", *SMALL, *options, f"--json={report}"]) == 0
    (record,) = json.loads(report.read_text())["results"]
    return record


def test_a_chat_template_that_writes_alpacas_prompt_gives_the_default_fit(
    tmp_path: Path, chat_model_dir: Path
) -> None:
    chat = _fit(tmp_path, "chat", f"--model={chat_model_dir}", "--prompt-template=chat")
    plain = _fit(tmp_path, "plain", f"--model={chat_model_dir}")
    assert chat["data"]["template"] == plain["data"]["template"] == ALPACA_TEMPLATE
    assert chat["iia"] == plain["iia"]
    assert chat["baselines"] == plain["baselines"]
    assert [p["predicted"] for p in chat["pairs"]] == [p["predicted"] for p in plain["pairs"]]


def test_a_written_wrapper_is_the_reports_and_the_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrapper = "### Instruction:\n{instruction}\n\n### Input:\n{amount} dollars\n\n### Response:\n"
    report = tmp_path / "fit.json"
    code = main(["fit", *SMALL, f"--prompt-template={wrapper}", f"--json={report}"])
    assert code in (0, 1)  # its verdict is the model's business; the wrapper is what is tested
    (record,) = json.loads(report.read_text())["results"]
    assert record["data"]["template"] == wrapper
    assert all(p["base_prompt"].startswith("### Instruction:\n") for p in record["pairs"])


def test_evaluate_reads_a_saved_alignment_in_the_wrapper_it_was_trained_in(
    tmp_path: Path, chat_model_dir: Path
) -> None:
    saved, report = tmp_path / "chat.safetensors", tmp_path / "eval.json"
    fit = ["fit", *SMALL, f"--model={chat_model_dir}", "--prompt-template=chat"]
    assert main([*fit, f"--save={saved}"]) == 0
    wrapper = "Q: {instruction}\nAmount: {amount} dollars\nA:"
    other = tmp_path / "other.safetensors"
    anyway = "--min-task-accuracy=0"  # the embedded model does not read this wrapper well
    assert main(["fit", *SMALL, anyway, f"--prompt-template={wrapper}", f"--save={other}"]) == 0
    evaluate = ["evaluate", f"--alignment={other}", "--n-test=64", anyway, f"--json={report}"]
    assert main(evaluate) == 0
    (record,) = json.loads(report.read_text())["results"]
    assert record["data"]["template"] == wrapper  # from the file, not --prompt-template
    assert main(["evaluate", f"--alignment={saved}", "--n-test=64", f"--json={report}"]) == 0
    (record,) = json.loads(report.read_text())["results"]
    assert record["data"]["template"] == ALPACA_TEMPLATE  # Alpaca's: the file names none


def test_evaluate_scores_on_every_prompt_setting_the_alignment_was_fitted_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file recorded the wrapper alone: evaluate scored a fit on a fixed bracket and a prefix
    # on drawn brackets and no prefix, other pairs on other prompts, and said nothing.
    saved = tmp_path / "fixed.safetensors"
    prompts = ["--bracket", "5.49", "8.49", "--prefix", "Hi."]
    fit = _fit(tmp_path, "fit", *prompts, f"--save={saved}")
    report = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["evaluate", f"--alignment={saved}", "--n-test=64", f"--json={report}"]) == 0
    assert "note:" not in capsys.readouterr().out
    (record,) = json.loads(report.read_text())["results"]
    assert record["data"] == fit["data"]
    assert (record["data"]["bracket"], record["data"]["prefix"]) == ([549, 849], "Hi.")
    assert (record["iia"], record["baselines"]) == (fit["iia"], fit["baselines"])
    # a setting given on the command line wins, and is named
    again = ["evaluate", f"--alignment={saved}", "--n-test=64", "--prefix=", f"--json={report}"]
    assert main(again) == 0
    assert (
        f"note: {saved} was fitted on other prompts (prefix 'Hi.' there, '' here): scored on these"
    ) in capsys.readouterr().out
    (record,) = json.loads(report.read_text())["results"]
    assert (record["data"]["prefix"], record["data"]["bracket"]) == ("", [549, 849])
    # its fixed bracket given up for drawn ones: the command line has no "--bracket none"
    drawn = ["evaluate", f"--alignment={saved}", "--n-test=64", "--drawn-brackets"]
    assert main([*drawn, f"--json={report}"]) == 0
    (record,) = json.loads(report.read_text())["results"]
    assert (record["data"]["prefix"], record["data"]["bracket"]) == ("Hi.", None)
    assert main([*drawn, "--bracket", "1.00", "2.00"]) == 2
    assert "give --bracket LOW HIGH or --drawn-brackets, not both" in capsys.readouterr().err


def test_an_alignment_file_without_its_prompts_is_said_so_and_one_with_bad_ones_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from das_assert.alignment_file import load_alignment, save_alignment

    saved = tmp_path / "lb.safetensors"
    _fit(tmp_path, "fit", f"--save={saved}")
    interchange, manifest = load_alignment(saved)
    older = tmp_path / "older.safetensors"
    save_alignment(older, interchange, {k: v for k, v in manifest.items() if k != "data"})
    capsys.readouterr()
    assert main(["evaluate", f"--alignment={older}", "--n-test=64"]) == 0
    assert (
        f"note: {older} does not record the prompts it was fitted on (saved before alignment "
        "files did): scored on the command line's prompts"
    ) in capsys.readouterr().out
    edited = tmp_path / "edited.safetensors"
    save_alignment(edited, interchange, {**manifest, "data": {**manifest["data"], "answers": "Y"}})
    assert main(["evaluate", f"--alignment={edited}", "--n-test=64"]) == 2
    assert "has a manifest with data={" in capsys.readouterr().err


def test_the_note_shows_a_bracket_as_the_command_line_gives_it() -> None:
    from das_assert.cli_evaluate import _shown

    assert _shown("bracket", [549, 849]) == "5.49-8.49"
    assert _shown("bracket", None) == "drawn per prompt"
    assert _shown("prefix", "Hi.") == "'Hi.'"
