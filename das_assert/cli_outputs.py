"""The command line's files and stdout: every output path checked before any work, outputs
left from an earlier run named after a failed one, and stdout that outlives its reader."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "ReaderMayLeave",
    "check_outputs",
    "existing_outputs",
    "named_outputs",
    "note_earlier_outputs",
]

_OUTPUT_FILES = ("json", "save", "png", "markdown")  # each command's files to write
_INPUT_FILES = ("alignment", "old", "new")  # files a command reads, never to be overwritten


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output path that cannot be written before any work, not after it: a file
    where a directory is (or in its way), a directory where a file is to be written, a place
    this process may not write, an input it would overwrite, a file in the baseline directory
    the command reads, or two outputs at one path."""
    from das_assert.errors import InvalidArgument
    from das_assert.store import output_path_problem

    outputs = [  # (flag, path, written as a directory?)
        (f"--{name}", Path(path), False)
        for name in _OUTPUT_FILES
        if (path := getattr(args, name, None)) is not None
    ]
    if (directory := getattr(args, "out", None)) is not None:  # train-embedded's model dir
        _check_new_model_dir(Path(directory))
        outputs.append(("--out", Path(directory), True))
    inputs = {  # resolved path: how the command line named it
        Path(path).resolve(): "--alignment" if name == "alignment" else name.upper()
        for name in _INPUT_FILES
        if (path := getattr(args, name, None)) is not None
    }
    for path in getattr(args, "causal_models", None) or ():
        inputs[Path(path).resolve()] = "a --causal-models file"
    # the baselines command's baseline directory (cache's --dir is the cache: a listing there
    # is harmless, its entries are .safetensors files)
    baselines = getattr(args, "dir", None) if args.command == "baselines" else None
    written: dict[Path, str] = {}
    for flag, path, is_directory in outputs:
        if baselines is not None and path.resolve().is_relative_to(Path(baselines).resolve()):
            # as pytest refuses a report there: one named NNNN_x.json would become "latest"
            raise InvalidArgument(
                f"{flag} {path} is inside the baseline directory {baselines}, where baselines "
                "and their alignments are kept; name a file elsewhere"
            )
        problem = output_path_problem(path, directory=is_directory)
        if problem:
            raise InvalidArgument(f"{flag} {path}{problem}")
        where = path.resolve()
        if where in inputs:
            raise InvalidArgument(
                f"{flag} {path} is also {inputs[where]}, which this command reads: writing it "
                "would destroy the input; name another file"
            )
        if where in written:
            raise InvalidArgument(f"{flag} and {written[where]} both name {path}; name two files")
        written[where] = flag


def _check_new_model_dir(out: Path) -> None:
    """train-embedded writes a whole model directory: never over the shipped one or any other."""
    from das_assert.embedded.train import refuse_a_full_directory
    from das_assert.errors import InvalidArgument
    from das_assert.models import EMBEDDED_MODEL_DIR

    if out.resolve() == EMBEDDED_MODEL_DIR.resolve():
        raise InvalidArgument(
            f"--out {out} is the shipped embedded model; name a new directory (compare the "
            "result with it, or point $DAS_MODEL at it)"
        )
    try:
        refuse_a_full_directory(out)
    except FileExistsError as exc:
        raise InvalidArgument(f"--out {exc}, so no model is overwritten") from None


def existing_outputs(args: argparse.Namespace) -> dict[Path, int]:
    """The output files asked for that exist already, with their modification times: regular
    files that are not also the command's inputs (a directory, a device or an input refused as
    an output is no earlier run's output)."""
    inputs = {
        Path(path).resolve()
        for name in _INPUT_FILES
        if (path := getattr(args, name, None)) is not None
    }
    found = {}
    for name in _OUTPUT_FILES:
        if (path := getattr(args, name, None)) is not None and Path(path).resolve() not in inputs:
            found.update(_regular_file_times([path]))
    return found


def named_outputs(argv: list[str]) -> dict[Path, int]:
    """``existing_outputs`` read from the command line itself, for a run the parser stops
    (a bad value, an unknown option): ``--json FILE`` and ``--json=FILE`` as written, and as
    argparse also takes them, abbreviated (``--js FILE``)."""
    paths = []
    for i, token in enumerate(argv):
        flag, equals, value = token.partition("=")
        if not flag.startswith("--") or len(flag) < 3:
            continue
        if any(name.startswith(flag[2:]) for name in _OUTPUT_FILES):
            if equals:
                paths.append(value)
            elif i + 1 < len(argv):
                paths.append(argv[i + 1])
    return _regular_file_times(paths)


def _regular_file_times(paths: list[str]) -> dict[Path, int]:
    """The modification time of each of ``paths`` that is a regular file."""
    found = {}
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            if Path(path).is_file():
                found[Path(path)] = Path(path).stat().st_mtime_ns
    return found


def note_earlier_outputs(before: dict[Path, int]) -> None:
    """After a failed run, name each output file that is still an earlier run's: a CI step that
    uploads it would otherwise publish old results as this run's."""
    for path, mtime in before.items():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime_ns == mtime:
                print(
                    f"note: {path} was not written by this run; it is left as it was (an "
                    "earlier run's output, if any)",
                    file=sys.stderr,
                )


class ReaderMayLeave:
    """stdout that stops printing, not the command, once its reader has gone (``... | head``)
    or it cannot be written (a full disk, stdout closed): the files asked for (--json, --save,
    --markdown) are still written, and the exit code is the command's own; a stdout that fails
    otherwise than a reader leaving says so once on stderr."""

    def __init__(self, stream: Any) -> None:
        if stream is None:  # started with stdout closed (>&-): printing goes nowhere
            import os

            stream = open(os.devnull, "w")  # the process's stdout until it exits
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        return self._call("write", self._encodable(text)) or len(text)

    def _encodable(self, text: str) -> str:
        """``text`` with what stdout's encoding cannot take written as escapes (``\\u0394``),
        as pytest writes it: under an ASCII or Latin-1 locale one such character (compare's
        Δ, a SentencePiece token's ▁) otherwise silenced the whole output."""
        encoding = getattr(self._stream, "encoding", None)
        if not isinstance(encoding, str) or getattr(self._stream, "errors", "strict") != "strict":
            return text
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            return text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:  # an encoding Python does not know: left to the stream
            pass
        return text

    def flush(self) -> None:
        self._call("flush")

    def _call(self, name: str, *args: Any) -> Any:
        if self._gone:
            return None
        try:
            return getattr(self._stream, name)(*args)
        except (OSError, ValueError) as error:  # a reader gone, a full disk, a closed file
            self._gone = True
            if not isinstance(error, BrokenPipeError) and sys.stderr is not None:
                with contextlib.suppress(OSError, ValueError):  # stderr on the same full disk
                    print(
                        f"note: stdout could not be written ({error}); nothing more is printed "
                        "there, and the files asked for are still written",
                        file=sys.stderr,
                    )
            try:  # what is still buffered goes nowhere at exit, not into a second error
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            except (OSError, ValueError):
                pass
            return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
