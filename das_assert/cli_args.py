"""The parser of ``python -m das_assert``: its commands, their options and the checks across
them (its value types are ``arg_types``'). Imports argparse only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from das_assert.arg_types import (
    Once,
    cents,
    distinct,
    named_path,
    non_negative_int,
    pair_count,
    parse_fraction,
    parse_threshold,
    path_arg,
    positive_int,
    seed_int,
)
from das_assert.cli_parser import Parser, causal_model_files

__all__ = ["build_parser", "causal_model_files"]


class _Bracket(argparse.Action):
    """``--bracket LOW HIGH``: refused, in the dollars given, where LOW is above HIGH."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        low, high = values
        if low > high:
            parser.error(
                f"{option} {low / 100:.2f} {high / 100:.2f}: LOW is above HIGH; give the "
                f"bracket's low end first, {option} {high / 100:.2f} {low / 100:.2f}"
            )
        setattr(namespace, self.dest, values)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        type=named_path,
        metavar="PATH",
        help="local Hugging Face model directory, or 'embedded' (default: $DAS_MODEL, as for "
        "pytest's --das-model, else embedded)",
    )
    group.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="the model's weights (the rotation is always float32; default float32)",
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    group.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="e.g. 'auto' to spread a large model over GPUs (needs accelerate)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model directory's own Python code (off by default)",
    )


def _hypothesis_name(text: str) -> str:
    from das_assert.errors import InvalidArgument
    from das_assert.tasks.price_tagging import causal_model

    try:
        causal_model(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} On the command line, name its file with --causal-models FILE"
        ) from None
    return text


def _add_data_args(
    parser: argparse.ArgumentParser,
    *,
    hypothesis_required: bool,
    seed_default: int | None = 0,
    seed_help: str = "data, initialisation and training",
    claims: bool = True,
    gate_help: str = "below this task accuracy the run is an input error, exit 2 (default 0.8)",
) -> None:
    from das_assert.tasks.price_tagging import CAUSAL_MODELS, NUMBER_STYLES

    group = parser.add_argument_group("task and data")
    group.add_argument(
        "--task", default="price_tagging", choices=("price_tagging",), help="the task (one so far)"
    )
    group.add_argument(
        "--hypothesis",
        required=hypothesis_required,
        type=_hypothesis_name,
        metavar="NAME",
        help=f"the causal model whose variable is aligned: {', '.join(sorted(CAUSAL_MODELS))}, "
        "or one of yours (--causal-models FILE)",
    )
    group.add_argument(
        "--causal-models",
        action="append",
        default=[],
        type=named_path,
        metavar="FILE",
        help="a Python file that registers causal models of your own (a hypothesis file will "
        "do); their names become --hypothesis choices. Repeatable",
    )
    group.add_argument(
        "--variables",
        nargs="+",
        action=Once,
        metavar="VAR",
        help="intervene only on these variables (default: all of the hypothesis)",
    )
    group.add_argument(
        "--n-test",
        type=pair_count,
        default=500,
        metavar="N",
        help="test pairs (default %(default)s)",
    )
    group.add_argument("--seed", type=seed_int, default=seed_default, metavar="S", help=seed_help)
    group.add_argument(
        "--template",
        "--instruction",
        dest="template",
        metavar="TEXT",
        help="the instruction, with {low} {high} {yes} {no} slots (default: the paper's); the "
        "JSON's data.instruction (data.template is the wrapper around it: --prompt-template)",
    )
    group.add_argument(
        "--prompt-template",
        metavar="TEXT",
        help="the wrapper the model reads prompts in, with {instruction} and {amount} slots, or "
        "'chat': its tokenizer's chat template (default: Alpaca's; the JSON's data.template)",
    )
    # The prompt options default to None, read as the defaults below by cli_common.prompt_format:
    # evaluate takes what the command line leaves out from the alignment file.
    group.add_argument("--prefix", metavar="TEXT", help="irrelevant context before it")
    group.add_argument(
        "--answers",
        nargs=2,
        metavar=("TRUE", "FALSE"),
        help="the answer words (default: Yes No)",
    )
    group.add_argument(
        "--numbers", choices=NUMBER_STYLES, help="how amounts are written (default: plain)"
    )
    group.add_argument(
        "--bracket",
        nargs=2,
        type=cents,
        action=_Bracket,
        metavar=("LOW", "HIGH"),
        help="fix the bracket, in dollars, e.g. --bracket 5.49 8.49",
    )
    group.add_argument(
        "--min-task-accuracy",
        type=parse_fraction,
        default=0.8,
        metavar="P",
        help=gate_help,
    )
    if claims:
        group.add_argument(
            "--threshold",
            type=parse_threshold,
            metavar="P",
            help="claim IIA >= P: exit 1 unless the verdict is 'aligned'",
        )
    group.add_argument("--json", type=path_arg, metavar="OUT", help="write the JSON report here")


def _add_training_args(group: argparse._ArgumentGroup, *, n_train: int) -> None:
    """The site's component and the fit's settings, shared by ``fit`` and ``search``."""
    group.add_argument(
        "--component",
        default="block_output",
        choices=("block_output", "block_input"),
        help="the block's output or input (default block_output)",
    )
    group.add_argument("--method", default="boundless", help="boundless, das:K, full or noop")
    group.add_argument(
        "--n-train",
        type=pair_count,
        default=n_train,
        metavar="N",
        help=f"training pairs per fit (default {n_train})",
    )
    group.add_argument("--epochs", type=positive_int, default=3, help="default 3")
    group.add_argument(
        "--batch-size", type=positive_int, default=32, help="pairs per step; bounds memory (32)"
    )
    group.add_argument(
        "--lr-rotation", type=float, default=1e-3, help="Adam's rate for the rotation (1e-3)"
    )
    group.add_argument(
        "--lr-boundary", type=float, default=1e-2, help="Adam's rate for the boxes (1e-2)"
    )
    group.add_argument(
        "--boundary-penalty",
        type=float,
        default=1.0,
        help="weight of the box width, per 4096 coordinates (default 1.0)",
    )
    group.add_argument(
        "--temperature",
        type=float,
        nargs=2,
        default=(50.0, 0.1),
        metavar=("START", "END"),
        help="the boxes' sigmoid temperature, annealed linearly from START to END over the "
        "optimizer steps (default 50 0.1)",
    )
    group.add_argument("--progress", action="store_true", help="show a progress bar per fit")


def _add_restarts_arg(group: Any) -> None:
    group.add_argument(
        "--restarts",
        type=positive_int,
        default=1,
        metavar="K",
        help="fit K times (each cell of a search), at fit seeds --seed to --seed+K-1 on the same "
        "pairs, and keep the fit with the best IIA on development pairs; default 1",
    )


def _add_dir_arg(parser: Any, default: Path, what: str, pytest_option: str) -> None:
    parser.add_argument(
        "--dir",
        type=path_arg,
        default=default,
        help=f"the {what} directory (pytest's {pytest_option}; default %(default)s)",
    )


def build_parser(description: str = "") -> argparse.ArgumentParser:
    # the console script names itself; python -m runs __main__.py
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    parser = Parser(
        prog="das-assert" if invoked == "das-assert" else "python -m das_assert",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser("fit", help="learn one alignment and score it")
    _add_model_args(fit)
    _add_data_args(fit, hypothesis_required=True)
    site = fit.add_argument_group("site and method")
    site.add_argument("--layer", type=int, required=True, help="decoder block (negative: from end)")
    site.add_argument(
        "--position",
        default="last",
        metavar="NAME",
        help="last, last-K, amount.last, after:amount, ... (default: last)",
    )
    _add_training_args(site, n_train=2000)
    _add_restarts_arg(site)
    site.add_argument(
        "--save",
        type=path_arg,
        metavar="FILE",
        help="save the alignment (safetensors) for 'evaluate --alignment'",
    )

    search = commands.add_parser(
        "search", help="fit every cell of a layer x position grid; report where IIA is highest"
    )
    _add_model_args(search)
    _add_data_args(search, hypothesis_required=True)
    grid = search.add_argument_group("grid and method")
    grid.add_argument(
        "--layers",
        type=int,
        nargs="+",
        required=True,
        action=distinct("layer"),
        metavar="L",
        help="decoder blocks, e.g. --layers 0 1 2 3 (negative: from the end)",
    )
    grid.add_argument(
        "--positions",
        nargs="+",
        default=["last"],
        action=distinct("position"),
        metavar="NAME",
        help="e.g. --positions last after:amount amount.last (default: last)",
    )
    _add_training_args(grid, n_train=1500)
    _add_restarts_arg(grid)
    grid.add_argument(
        "--joint-cells-mib",
        type=non_negative_int,
        default=0,
        metavar="MIB",
        help="train a position's layers together while their copies of a batch's KV cache fit "
        "MIB (on a GPU: 1.7x faster for a 7 x 2 grid at Llama-7B's shape on an H200; no gain "
        "on CPU). Default 0: each cell alone",
    )
    grid.add_argument(
        "--png",
        type=path_arg,
        metavar="OUT",
        help="save the grid's heatmap here (needs matplotlib)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="score a saved alignment on fresh pairs",
        description="Score a saved alignment without training. A prompt option left out takes "
        "the alignment's own (the prompts it was fitted on, as its file records them), not the "
        "default shown below, which is fit's; a note names each one given that differs.",
    )
    _add_model_args(evaluate)
    # Fresh pairs by default: the seed the alignment was trained with draws its test pairs
    # (seed 0's test pairs are seed 100003's training pairs).
    _add_data_args(
        evaluate,
        hypothesis_required=False,
        seed_default=None,
        seed_help="the pairs' seed (default: the alignment's own, so its test pairs)",
    )
    evaluate.add_argument(
        "--alignment",
        type=path_arg,
        required=True,
        metavar="FILE",
        help="a file saved by 'fit --save' or a baseline's .safetensors",
    )
    evaluate.add_argument(
        "--drawn-brackets",
        action="store_true",
        help="draw each prompt's bracket, where the alignment was fitted on a fixed one "
        "(--bracket: another fixed one)",
    )

    compare = commands.add_parser(
        "compare", help="compare two saved baselines or JSON reports; exit 1 on a regression"
    )
    compare.add_argument("old", type=path_arg, metavar="OLD", help="baseline or report (JSON)")
    compare.add_argument("new", type=path_arg, metavar="NEW", help="baseline or report (JSON)")
    compare.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="EXPR",
        help="iia:0.05 (absolute drop; a negative claim's rise) or iia:5%% (relative); also "
        "transfer, task_accuracy, normalized_iia, lead (IIA minus the no-op's); repeatable",
    )
    compare.add_argument(
        "--markdown",
        type=path_arg,
        metavar="OUT",
        help="also write the table as Markdown (e.g. $GITHUB_STEP_SUMMARY)",
    )

    listing = commands.add_parser(
        "baselines", help="list the saved baselines per model, and folders that hold none"
    )
    _add_dir_arg(listing, Path("hypotheses/baselines"), "baseline", "--das-baseline-dir")
    listing.add_argument("--model", metavar="KEY", help="only this model's (its das.yaml key)")
    listing.add_argument("--json", type=path_arg, metavar="OUT", help="also write it as JSON")
    listing.add_argument(
        "--prune",
        action="store_true",
        help="delete the folders that hold no baseline: reservations abandoned over a day ago "
        "(or dated a day ahead) and alignment folders whose JSON is gone, where they hold only "
        "das_assert's files",
    )

    cache = commands.add_parser(
        "cache", help="list the alignment cache's entries per model; prune what is not used"
    )
    _add_dir_arg(cache, Path(".das_assert/cache"), "cache", "--das-cache-dir")
    cache.add_argument(
        "--prune-stale",
        action="store_true",
        help="delete the entries no run of this das_assert reads (another version, fit "
        "revision or key, or unreadable); either prune also deletes the locks of entries that "
        "are gone",
    )
    cache.add_argument(
        "--prune-unused",
        type=positive_int,
        metavar="DAYS",
        help="delete the entries neither written nor read for DAYS days",
    )
    cache.add_argument("--dry-run", action="store_true", help="name what would be deleted")
    cache.add_argument("--json", type=path_arg, metavar="OUT", help="also write it as JSON")

    check = commands.add_parser(
        "check",
        help="look a model over before any fit: its prompt, tokens, positions, answers, task "
        "accuracy, and whether das_assert's hooks and cached passes act on it as they must",
    )
    _add_model_args(check)
    _add_data_args(
        check,
        hypothesis_required=False,
        seed_help="the prompts' seed",
        claims=False,
        gate_help="the task gate: below this task accuracy check exits 1 (default 0.8)",
    )
    check.set_defaults(n_test=200)
    looked = check.add_argument_group("where to look")
    looked.add_argument(
        "--positions",
        nargs="+",
        action=distinct("position"),
        metavar="NAME",
        help="the positions to resolve (default: last after:amount amount.last before:amount)",
    )
    looked.add_argument(
        "--layers",
        type=int,
        nargs="+",
        action=distinct("layer"),
        metavar="L",
        help="the blocks to run the engine check at (default: the middle one)",
    )

    train = commands.add_parser("train-embedded", help="retrain the embedded model from scratch")
    train.add_argument(
        "--out", type=path_arg, required=True, metavar="DIR", help="the model directory to write"
    )
    train.add_argument("--seed", type=seed_int, default=0, help="deterministic from it (default 0)")
    train.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="steps of the first training phase (default: the recipe's); the focus phase "
        "that follows keeps its own length",
    )
    return parser
