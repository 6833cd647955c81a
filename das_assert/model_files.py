"""A model directory's config and tokenizer, read as ``load_model`` needs them: refused where
they name code that is not trusted, damaged, or hold values transformers rejects, each with
one ``ModelLoadError`` that says what to fix; and the tokenizer's calls, whose failure on a
text names it (``tokenized``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from das_assert.errors import InvalidArgument, ModelLoadError

__all__ = ["LFS_POINTER", "load_config", "load_tokenizer", "refuse_lfs_pointers", "tokenized"]

LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def refuse_lfs_pointers(directory: Path) -> None:
    """Refuse a directory whose files are Git LFS pointers (a clone made without git-lfs): each
    loader would call its file damaged and advise a save that cannot be made without it."""
    try:
        files = sorted(directory.iterdir())
    except OSError:  # not listable: the loaders say so
        return
    pointers = []
    for file in files:
        try:
            if file.is_file() and file.stat().st_size < 1024:  # a pointer is ~130 bytes
                with file.open("rb") as handle:
                    if handle.read(len(LFS_POINTER)) == LFS_POINTER:
                        pointers.append(file.name)
        except OSError:  # unreadable: the loader that needs it says so
            continue
    if pointers:
        raise ModelLoadError(
            f"{', '.join(pointers)} in {str(directory)!r} "
            f"{'is a Git LFS pointer' if len(pointers) == 1 else 'are Git LFS pointers'}, not "
            "the file itself (a clone made without git-lfs): run `git lfs pull` in the "
            "directory, or `git lfs install` before cloning"
        )


def load_config(directory: Path, trust_remote_code: bool) -> Any:
    """The model's config, refused where it names model code not trusted, or is an
    encoder-decoder."""
    from transformers import AutoConfig

    unreadable: tuple[type[Exception], ...] = (
        ValueError,
        KeyError,
        OSError,
        TypeError,
        ArithmeticError,
        RecursionError,  # json nested past the interpreter's limit: damaged
        *_strict_errors(),
    )
    try:
        config = AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except unreadable as exc:
        reason = str(exc).rstrip(".")
        if _rejected_value(exc):
            raise ModelLoadError(
                f"the config.json in {str(directory)!r} holds a value transformers rejects: "
                f"{_last_line(reason)}; restore the model's own config.json"
            ) from None
        if isinstance(exc, json.JSONDecodeError | RecursionError) or "valid JSON" in reason:
            raise ModelLoadError(
                f"cannot read the model config in {str(directory)!r}: {reason}; config.json is "
                "damaged: re-save the model with save_pretrained(dir)"
            ) from None
        raise ModelLoadError(
            f"cannot read the model config in {str(directory)!r}: {reason}. The architecture "
            "must be one that transformers knows, or, for a custom one whose code you trust, "
            "--trust-remote-code (the command line) or load_model's trust_remote_code argument "
            "in a pytest_das_load_model hook (pytest)"
        ) from None
    auto_map = getattr(config, "auto_map", None)
    own_code = next(
        (
            f"{kind}: {auto_map[kind]}"
            for kind in _CODE_THAT_SHAPES_THE_MODEL
            if isinstance(auto_map, dict) and auto_map.get(kind)
        ),
        None,
    )
    if own_code and not trust_remote_code:
        raise ModelLoadError(
            f"the config.json in {str(directory)!r} names its own model code ({own_code}), "
            f"which das_assert runs only when asked; without it transformers would load its "
            f"built-in {config.model_type} class, another model than the checkpoint defines. "
            "Pass --trust-remote-code (the command line) or load_model's trust_remote_code in "
            "a pytest_das_load_model hook (pytest) if you trust the code, or remove auto_map "
            "from config.json to measure the built-in class"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(
            f"{str(directory)!r} holds an encoder-decoder model ({config.model_type}); das_assert "
            "needs a decoder-only causal LM (Llama, GPT-2, Mistral, Qwen, ...)"
        )
    return config


#: The ``auto_map`` entries of config.json whose code, unrun, leaves transformers building another
#: model than the checkpoint's: its causal LM, its base model or its config class.
_CODE_THAT_SHAPES_THE_MODEL = ("AutoModelForCausalLM", "AutoModel", "AutoConfig")


def _tokenizer_code(directory: Path) -> str | None:
    """The tokenizer code that ``tokenizer_config.json`` or ``config.json`` names in its
    ``auto_map`` (``AutoTokenizer``), else None. transformers ignores it without
    ``trust_remote_code`` where the file also names a built-in class, silently."""
    for name in ("tokenizer_config.json", "config.json"):
        settings = _settings_in(directory / name)
        auto_map = settings.get("auto_map") if settings is not None else None
        # a list is the older form of a tokenizer's: [slow class, fast class]
        code = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else auto_map
        if isinstance(code, list | tuple):
            code = next((c for c in code if c), None)
        if code:
            return f"{name}: {code}"
    return None


def _settings_in(path: Path) -> dict[str, Any] | None:
    """A JSON settings file's object; None where it is absent or damaged (the loaders then say
    so, in their own words)."""
    try:
        settings = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return settings if isinstance(settings, dict) else None


def _strict_errors() -> tuple[type[Exception], ...]:
    """huggingface_hub's errors for a config value of the wrong type or out of range, which
    transformers 5 raises (not ValueError); none before it."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:
        return ()
    return (StrictDataclassError,)


def _rejected_value(exc: Exception) -> bool:
    """Whether transformers refused one of the config's values (a type, a range, a division
    by a zero head count), not the file or the architecture."""
    return isinstance(exc, (TypeError, ArithmeticError, *_strict_errors()))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes of another encoding, kept as surrogates
        return False
    return True


def _last_line(text: str) -> str:
    """The last line of a multi-line message: the hub's validation errors end with the cause."""
    return text.strip().splitlines()[-1].strip() if text.strip() else text


#: The files a tokenizer's vocabulary is read from (tokenizer_config.json holds none): a
#: SentencePiece ``*.model``, a tiktoken file, a BPE's vocab.json and merges.txt, a vocab.txt.
TOKENIZER_FILES = ("tokenizer.json", "*.model", "*.tiktoken", "vocab.*", "merges.txt", "*.spm")


def _as_saved_by_transformers_5(directory: Path) -> tuple[bool, dict[str, Any]]:
    """What the installed transformers 4.x needs to read a tokenizer transformers 5 saved:
    whether to load it as ``PreTrainedTokenizerFast`` (5.x saves it as ``TokenizersBackend``, a
    class 4.x lacks, and the same class in 5.x), and the keywords that pass a list of
    ``extra_special_tokens`` (5.x's form; 4.x reads a dict there and fails) as 4.x's
    ``additional_special_tokens``. Nothing under 5.x."""
    import transformers

    if hasattr(transformers, "TokenizersBackend"):
        return False, {}
    settings = _settings_in(directory / "tokenizer_config.json")
    if settings is None:
        return False, {}
    as_fast = settings.get("tokenizer_class") == "TokenizersBackend"
    as_fast = as_fast and (directory / "tokenizer.json").is_file()
    extra = settings.get("extra_special_tokens")
    if not isinstance(extra, list):
        return as_fast, {}
    additional = list(settings.get("additional_special_tokens") or [])
    additional += [token for token in extra if token not in additional]
    return as_fast, {"additional_special_tokens": additional, "extra_special_tokens": {}}


def _fast_tokenizer(directory: Path, **keywords: Any) -> Any:
    """The tokenizer of a transformers 5 save, loaded under 4.x by the name 4.x has for it (its
    note that the file names another class is this very case, and is kept quiet)."""
    from transformers import PreTrainedTokenizerFast

    with transformers_errors_only():
        return PreTrainedTokenizerFast.from_pretrained(directory, local_files_only=True, **keywords)


@contextmanager
def transformers_errors_only() -> Iterator[None]:
    """transformers logs only its errors inside, and at the caller's verbosity after."""
    from transformers.utils import logging

    before = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(before)


def load_tokenizer(directory: Path, trust_remote_code: bool) -> Any:
    """The model's fast tokenizer, as its files set it up."""
    from transformers import AutoTokenizer

    own_code = _tokenizer_code(directory)
    if own_code and not trust_remote_code:
        raise ModelLoadError(
            f"the tokenizer in {str(directory)!r} names its own code ({own_code}), which "
            "das_assert runs only when asked; without it transformers would load a built-in "
            "tokenizer class, another tokenizer than the checkpoint defines. Pass "
            "--trust-remote-code (the command line) or load_model's trust_remote_code in a "
            "pytest_das_load_model hook (pytest) if you trust the code, or remove auto_map's "
            "AutoTokenizer entry to use the built-in class"
        )
    try:
        as_fast, keywords = _as_saved_by_transformers_5(directory)
        if as_fast:
            tokenizer = _fast_tokenizer(directory, **keywords)
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                directory, local_files_only=True, trust_remote_code=trust_remote_code, **keywords
            )
    except Exception as exc:  # the tokenizers library raises a bare Exception on a bad file
        fix = (
            "if you trust its code, pass --trust-remote-code (the command line) or load_model's "
            "trust_remote_code in a pytest_das_load_model hook (pytest)"
            if "trust_remote_code" in str(exc)
            else "re-save it next to the model with tokenizer.save_pretrained(dir)"
        )
        if not _utf8(str(directory)):  # the tokenizers library takes UTF-8 paths only
            fix = "name the folder in UTF-8, or link it from a path in UTF-8 (ln -s)"
        elif not any(p.is_file() for name in TOKENIZER_FILES for p in Path(directory).glob(name)):
            # transformers' own text blames a missing library ("install sentencepiece")
            raise ModelLoadError(
                f"no tokenizer in {str(directory)!r}: it has none of {', '.join(TOKENIZER_FILES)}"
                "; copy the tokenizer's files beside the model's (tokenizer.save_pretrained(dir))"
            ) from None
        raise ModelLoadError(
            f"cannot load the tokenizer in {str(directory)!r}: {str(exc).rstrip('.')}; {fix}"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"the tokenizer in {str(directory)!r} is a slow tokenizer; das_assert needs a fast "
            "one (tokenizer.json) to map prompt slots to token positions"
        )
    # Left as loaded: das_assert pads its own batches (data._tokenize), so neither the padding
    # side nor a pad token is set here on the tokenizer a user's own code shares (das_model).
    return tokenizer


def tokenized(tokenizer: Any, texts: Any, **options: Any) -> Any:
    """``tokenizer(texts, **options)``, where a tokenizer that cannot encode a text (one with no
    unknown token, given a word outside its vocabulary) raises ``InvalidArgument`` naming the
    first such text and the tokenizer's own error, not a bare ``Exception`` from its library."""
    if hasattr(tokenizer, "_eventual_warn_about_too_long_sequence"):  # a transformers tokenizer
        # its own warning about a text longer than model_max_length came before das_assert's
        # error (data._check_fits_the_model), with another count: the error alone says it
        options.setdefault("verbose", False)
    try:
        return tokenizer(texts, **options)
    except Exception as error:
        failing = next((t for t in _each(texts) if not _encodes(tokenizer, t, options)), texts)
        if isinstance(failing, str) and not _utf8(failing):
            raise InvalidArgument(_not_utf8(failing)) from None
        raise InvalidArgument(
            f"the model's tokenizer cannot encode {_shown(failing)}: {type(error).__name__}: "
            f"{error}. Check its tokenizer.json (an unknown token for text outside the "
            "vocabulary, the normalizer) and what AutoTokenizer.from_pretrained(DIR) makes of "
            "that text"
        ) from error


def _not_utf8(text: str) -> str:
    """Why a text holding undecodable bytes (kept by Python as surrogates) reached the
    tokenizer: an argument or file read under a locale that is not UTF-8, not the tokenizer."""
    import locale

    at = next(i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff")
    return (
        f"a prompt text holds bytes that are not UTF-8 ({text[max(0, at - 20) : at + 1]!r}, "
        f"character {at}): a command-line argument or file decoded under the "
        f"{locale.getpreferredencoding(False)} locale, not the tokenizer; run with "
        "PYTHONUTF8=1 (or LC_ALL=C.UTF-8), or write the text as UTF-8"
    )


def _each(texts: Any) -> list[Any]:
    return list(texts) if isinstance(texts, (list, tuple)) else [texts]


def _encodes(tokenizer: Any, text: Any, options: dict[str, Any]) -> bool:
    try:
        tokenizer(text, **options)
    except Exception:
        return False
    return True


def _shown(text: Any) -> str:
    text = repr(text)
    return text if len(text) <= 160 else f"{text[:120]}...{text[-30:]} ({len(text)} characters)"
