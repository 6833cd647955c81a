"""Model files are JSON in UTF-8 whatever the locale: transformers writes non-ASCII text into
them as it is (``ensure_ascii=False``), and a locale that cannot decode it must change nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from das_assert.models import EMBEDDED_MODEL_DIR as EMBEDDED_DIR

SCRIPT = """
import hashlib, sys
from pathlib import Path
from das_assert.errors import ModelLoadError
from das_assert.model_files import load_tokenizer
from das_assert.models import load_model
directory = Path(sys.argv[1])
try:
    load_tokenizer(directory / "own_code", trust_remote_code=False)
    print("loaded")
except ModelLoadError as exc:
    print("refused:", str(exc)[:60])
print(load_model(directory / "plain").fingerprint["tokenizer"])
"""


def test_a_non_utf8_locale_neither_skips_the_code_check_nor_changes_the_fingerprint(
    tmp_path: Path,
) -> None:
    # under LC_ALL=C a tokenizer_config.json holding one non-ASCII character failed to decode,
    # read as a file without auto_map: its own tokenizer code was not refused, and the
    # fingerprint of a tokenizer.json with "▁" in an added token changed with the locale
    own_code, plain = tmp_path / "own_code", tmp_path / "plain"
    shutil.copytree(EMBEDDED_DIR, own_code)
    shutil.copytree(EMBEDDED_DIR, plain)
    settings = json.loads((own_code / "tokenizer_config.json").read_bytes())
    settings.update(
        auto_map={"AutoTokenizer": [None, "tokenization_own.OwnTokenizer"]},
        chat_template="{{ messages[0]['content'] }} — réponse:",
    )
    text = json.dumps(settings, ensure_ascii=False)
    (own_code / "tokenizer_config.json").write_text(text, encoding="utf-8")
    tokens = json.loads((plain / "tokenizer.json").read_bytes())
    tokens["added_tokens"][-1]["content"] += "▁"
    (plain / "tokenizer.json").write_text(json.dumps(tokens, ensure_ascii=False), "utf-8")
    outputs = []
    for locale in ({"LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}):
        env = {**os.environ, **locale, "HF_HUB_OFFLINE": "1"}
        run = [sys.executable, "-c", SCRIPT, str(tmp_path)]
        done = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0].startswith("refused: the tokenizer in")
    assert outputs[1] == outputs[0]


def test_a_test_id_that_is_not_utf8_is_written_and_hashed() -> None:
    # A hypothesis file named in Latin-1 (or any non-ASCII name under LC_ALL=C PYTHONUTF8=0)
    # gives a test id holding surrogates: --das-markdown ended the run in an INTERNALERROR and
    # every test under --das-save-baseline failed on its baseline file's name.
    from das_assert.baseline import slug, unique_name

    test_id = "hypotheses/test_caf\udce9.py::test_x"
    assert unique_name(test_id) != unique_name("hypotheses/test_caf\udce8.py::test_x")
    assert slug(test_id * 20).isascii()


def test_a_markdown_summary_of_a_test_id_that_is_not_utf8_is_valid_utf8(tmp_path: Path) -> None:
    from das_assert.store import write_markdown

    write_markdown(tmp_path / "summary.md", "| hypotheses/test_caf\udce9.py::test_x | ok |\n")
    text = (tmp_path / "summary.md").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "test_caf\\udce9.py" in text


def test_a_prompt_holding_bytes_that_are_not_utf8_names_the_locale_not_the_tokenizer() -> None:
    import pytest

    from das_assert.errors import InvalidArgument
    from das_assert.model_files import load_tokenizer, tokenized

    tokenizer = load_tokenizer(EMBEDDED_DIR, trust_remote_code=False)
    with pytest.raises(InvalidArgument, match="not UTF-8") as raised:
        tokenized(tokenizer, ["Prix en caf\udcc3\udca9 dollars"])
    assert "PYTHONUTF8=1" in str(raised.value)
    assert "tokenizer.json" not in str(raised.value)
