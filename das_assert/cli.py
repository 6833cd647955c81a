"""Command line: ``python -m das_assert fit | evaluate | search | compare | train-embedded``.

Exit codes: 0 ok; 1 a claim failed (verdict not ``aligned`` when ``--threshold`` is given);
2 a usage or input error, with a message that names the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from das_assert.errors import DasError

__all__ = ["main"]


def _cents(text: str) -> int:
    try:
        cents = float(text) * 100
        value = round(cents)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like 2.51") from None
    if abs(cents - value) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text!r} has more than two decimals; amounts are cents")
    if not 0 <= value <= 999:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0.00..9.99")
    return value


def parse_fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in [0, 1]")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return int(text)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="embedded",
        metavar="PATH",
        help="local Hugging Face model directory, or 'embedded' (default)",
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


def _add_data_args(parser: argparse.ArgumentParser, *, hypothesis_required: bool) -> None:
    from das_assert.tasks.price_tagging import CAUSAL_MODELS, NUMBER_STYLES

    group = parser.add_argument_group("task and data")
    group.add_argument(
        "--task", default="price_tagging", choices=("price_tagging",), help="the task (one so far)"
    )
    group.add_argument(
        "--hypothesis",
        required=hypothesis_required,
        choices=sorted(CAUSAL_MODELS),
        help="the causal model whose variable is aligned",
    )
    group.add_argument(
        "--variables",
        nargs="+",
        metavar="VAR",
        help="intervene only on these variables (default: all of the hypothesis)",
    )
    group.add_argument(
        "--n-test", type=positive_int, default=500, metavar="N", help="test pairs (default 500)"
    )
    group.add_argument(
        "--seed", type=int, default=0, metavar="S", help="data, initialisation and training"
    )
    group.add_argument(
        "--template",
        metavar="TEXT",
        help="instruction with {low} {high} {yes} {no} slots (default: the paper's)",
    )
    group.add_argument("--prefix", default="", metavar="TEXT", help="irrelevant context before it")
    group.add_argument(
        "--answers",
        nargs=2,
        default=("Yes", "No"),
        metavar=("TRUE", "FALSE"),
        help="the answer words (default: Yes No)",
    )
    group.add_argument(
        "--numbers", default="plain", choices=NUMBER_STYLES, help="how amounts are written"
    )
    group.add_argument(
        "--bracket",
        nargs=2,
        type=_cents,
        metavar=("LOW", "HIGH"),
        help="fix the bracket, e.g. --bracket 5.49 8.49",
    )
    group.add_argument(
        "--min-task-accuracy",
        type=parse_fraction,
        default=0.8,
        metavar="P",
        help="below this task accuracy the run is an input error (default 0.8)",
    )
    group.add_argument(
        "--threshold",
        type=parse_fraction,
        metavar="P",
        help="claim IIA >= P: exit 1 unless the verdict is 'aligned'",
    )
    group.add_argument("--json", type=Path, metavar="OUT", help="write the JSON report here")


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
        type=positive_int,
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
    group.add_argument("--progress", action="store_true", help="show a progress bar per fit")


def _distinct(kind: str) -> type[argparse.Action]:
    """An argparse action for a list that refuses repeated entries (one cell each)."""

    class Distinct(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                parser.error(f"{option}: {kind} {', '.join(repeated)} given twice; list each once")
            setattr(namespace, self.dest, values)

    return Distinct


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m das_assert",
        description=__doc__,
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
    site.add_argument(
        "--save",
        type=Path,
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
        action=_distinct("layer"),
        metavar="L",
        help="decoder blocks, e.g. --layers 0 1 2 3 (negative: from the end)",
    )
    grid.add_argument(
        "--positions",
        nargs="+",
        default=["last"],
        action=_distinct("position"),
        metavar="NAME",
        help="e.g. --positions last after:amount amount.last (default: last)",
    )
    _add_training_args(grid, n_train=1500)
    grid.add_argument(
        "--png", type=Path, metavar="OUT", help="save the grid's heatmap here (needs matplotlib)"
    )

    evaluate = commands.add_parser("evaluate", help="score a saved alignment on fresh pairs")
    _add_model_args(evaluate)
    _add_data_args(evaluate, hypothesis_required=False)
    evaluate.add_argument(
        "--alignment",
        type=Path,
        required=True,
        metavar="FILE",
        help="a file saved by 'fit --save' or a baseline's .safetensors",
    )

    compare = commands.add_parser(
        "compare", help="compare two saved baselines or JSON reports; exit 1 on a regression"
    )
    compare.add_argument("old", type=Path, metavar="OLD", help="baseline or report (JSON)")
    compare.add_argument("new", type=Path, metavar="NEW", help="baseline or report (JSON)")
    compare.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="EXPR",
        help="iia:0.05 (absolute drop) or iia:5%% (relative drop); repeatable",
    )
    compare.add_argument(
        "--markdown",
        type=Path,
        metavar="OUT",
        help="also write the table as Markdown (e.g. $GITHUB_STEP_SUMMARY)",
    )

    train = commands.add_parser("train-embedded", help="retrain the embedded model from scratch")
    train.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the model directory to write"
    )
    train.add_argument("--seed", type=int, default=0, help="deterministic from it (default 0)")
    train.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="steps of the first training phase (default: the recipe's); the focus phase "
        "that follows keeps its own length",
    )
    return parser


def _format(args: argparse.Namespace) -> Any:
    from das_assert.tasks.price_tagging import PriceFormat

    fmt = PriceFormat(answers=tuple(args.answers), prefix=args.prefix, numbers=args.numbers)
    return fmt.with_(instruction=args.template) if args.template else fmt


def _experiment(args: argparse.Namespace, site: Any, hypothesis: str, n_train: int) -> Any:
    from das_assert.experiment import Experiment

    return Experiment(
        hypothesis=hypothesis,
        site=site,
        variables=tuple(args.variables) if args.variables else None,
        n_train=n_train,
        n_test=args.n_test,
        seed=args.seed,
        fmt=_format(args),
        bracket=tuple(args.bracket) if args.bracket else None,
        threshold=args.threshold,
        min_task_accuracy=args.min_task_accuracy,
    )


def _load(args: argparse.Namespace) -> Any:
    from das_assert.models import load_model

    return load_model(
        args.model,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
    )


def _finish(args: argparse.Namespace, model: Any, record: dict[str, Any], summary: str) -> int:
    from das_assert.report import build_report, write_report

    print(summary)
    if record.get("verdict"):
        print(f"verdict: {record['verdict']} ({record['verdict_reason']})")
    if args.json:
        write_report(args.json, build_report(model.describe(), [record]))
        print(f"report: {args.json}")
    return 0 if record.get("verdict") in (None, "aligned") else 1


def _fit_config(args: argparse.Namespace) -> Any:
    from das_assert.fit import FitConfig

    return FitConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_rotation=args.lr_rotation,
        lr_boundary=args.lr_boundary,
        boundary_penalty=args.boundary_penalty,
        seed=args.seed,
        progress=args.progress,
    )


def _cmd_fit(args: argparse.Namespace) -> int:
    from das_assert.experiment import run_experiment
    from das_assert.sites import Site
    from das_assert.store import save_alignment

    site = Site(args.layer, args.position, args.component)
    experiment = _experiment(args, site, args.hypothesis, args.n_train)
    config = _fit_config(args)
    model = _load(args)
    # The block's own number, not -1: reports and saved alignments name the block it was.
    site = Site(site.resolve(model.model).layer, args.position, args.component)
    experiment = _experiment(args, site, args.hypothesis, args.n_train)
    result = run_experiment(model, experiment, config)
    record = result.to_dict()
    if args.save:
        manifest = {k: record[k] for k in ("hypothesis", "variable", "seed", "n_train", "fit")}
        manifest.update(site=str(site), model=model.fingerprint, iia=record["iia"])
        save_alignment(args.save, result.fitted.interchange, manifest)
        print(f"alignment: {args.save}")
    return _finish(args, model, record, result.summary())


def _cmd_search(args: argparse.Namespace) -> int:
    from das_assert.errors import InvalidArgument
    from das_assert.experiment import run_experiment
    from das_assert.report import build_report, write_report
    from das_assert.search import grid_table, save_heatmap, search
    from das_assert.sites import Site

    if args.png is not None:  # refused before the grid is trained, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InvalidArgument(
                "--png needs matplotlib: pip install 'das_assert[plots]', or drop --png"
            ) from None
    config = _fit_config(args)
    model = _load(args)
    blocks: dict[int, int] = {}  # a bad cell fails here, not after the cells before it trained
    for layer in args.layers:
        for position in args.positions:
            block = Site(layer, position, args.component).resolve(model.model).layer
        if blocks.setdefault(block, layer) != layer:
            raise InvalidArgument(
                f"--layers {blocks[block]} and {layer} are the same block of this model "
                f"({block}); list each block once"
            )
    layers = list(blocks)  # each block's own number, as fit reports it

    def align(hypothesis: str, site: Site) -> Any:
        return run_experiment(model, _experiment(args, site, hypothesis, args.n_train), config)

    grid = search(
        align,
        args.hypothesis,
        layers=layers,
        positions=args.positions,
        component=args.component,
    )
    print(grid_table(grid))
    best = grid.results[grid.best()]
    record = best.to_dict()
    records = [result.to_dict() for result in grid.results.values()]
    if args.json:
        report = build_report(model.describe(), records)
        report["search"] = grid.to_dict()
        write_report(args.json, report)
    if args.png:
        save_heatmap(grid, args.png, title=f"{args.hypothesis} on {model.name}: IIA per cell")
        print(f"heatmap: {args.png}")
    print(f"best: {best.summary()}")
    if record.get("verdict"):
        print(f"verdict of the best cell: {record['verdict']} ({record['verdict_reason']})")
    if args.json:
        print(f"report: {args.json}")
    return 0 if record.get("verdict") in (None, "aligned") else 1


def _saved_fit_config(path: Path, saved: dict[str, Any]) -> Any:
    """The FitConfig an alignment was trained with, from its manifest's ``fit``."""
    from dataclasses import fields

    from das_assert.errors import AlignmentFileError
    from das_assert.fit import FitConfig

    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise AlignmentFileError(
            f"alignment file {str(path)!r} was trained with settings this das_assert does not "
            f"know ({', '.join(unknown)}): it comes from a newer version; upgrade das_assert"
        )
    if "temperature" in saved:
        saved = {**saved, "temperature": tuple(saved["temperature"])}
    return FitConfig(**saved)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from das_assert.errors import InvalidArgument
    from das_assert.experiment import run_experiment
    from das_assert.fit import FittedAlignment
    from das_assert.sites import parse_site
    from das_assert.store import load_alignment
    from das_assert.tasks.price_tagging import INTERVENED_VARIABLES

    model = _load(args)
    interchange, manifest = load_alignment(
        args.alignment,
        hidden_size=model.config.hidden_size,
        require=("site", "hypothesis", "fit"),
    )
    interchange.to(model.input_device)
    site = parse_site(manifest["site"])
    hypothesis = args.hypothesis or manifest["hypothesis"]
    if hypothesis not in INTERVENED_VARIABLES:
        raise InvalidArgument(
            f"{args.alignment} names the hypothesis {hypothesis!r}, which this das_assert does "
            f"not know; pass --hypothesis, one of {', '.join(sorted(INTERVENED_VARIABLES))}"
        )
    boxes = INTERVENED_VARIABLES[hypothesis]
    if interchange.n_variables != len(boxes):
        raise InvalidArgument(
            f"{args.alignment} has {interchange.n_variables} box(es), for "
            f"{manifest['hypothesis']}; {hypothesis} needs {len(boxes)} ({', '.join(boxes)}). "
            "Evaluate it under a hypothesis with as many variables, or fit one for this one"
        )
    if not args.variables and hypothesis == manifest["hypothesis"] and manifest.get("variable"):
        args.variables = manifest["variable"].split("+")  # the variables it was trained on
    experiment = _experiment(args, site, hypothesis, int(manifest.get("n_train", 2)))
    config = _saved_fit_config(args.alignment, manifest["fit"])
    fitted = FittedAlignment(
        interchange, site.resolve(model.model), config, experiment.n_train, 0.0, from_cache=True
    )
    result = run_experiment(model, experiment, config, fitted=fitted)
    return _finish(args, model, result.to_dict(), result.summary())


def _cmd_train_embedded(args: argparse.Namespace) -> int:
    from das_assert.embedded.train import TrainConfig, train_embedded

    cfg = TrainConfig(seed=args.seed)
    if args.steps:
        cfg = TrainConfig(seed=args.seed, steps=args.steps)
    log = train_embedded(args.out, cfg)
    print(json.dumps({k: v for k, v in log.items() if k != "history"}, indent=1))
    return 0


def _iia_with_interval(record: dict[str, Any]) -> str:
    """``0.830 [0.802, 0.854] n=800``, or the IIA alone where a record lacks the rest."""
    ci, n = record.get("iia_ci"), record.get("n_test")
    if ci is None or n is None:
        return f"{record['iia']:.3f}"
    return f"{record['iia']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] n={n}"


def _cmd_compare(args: argparse.Namespace) -> int:
    from das_assert.baseline import load_baseline
    from das_assert.compare import parse_compare_fail
    from das_assert.errors import InvalidArgument
    from das_assert.store import atomic_write_bytes

    checks = [parse_compare_fail(expr) for expr in args.fail]
    old, new = load_baseline(args.old)["entries"], load_baseline(args.new)["entries"]
    if not old and not new:  # an empty table would read as "no regression"
        raise InvalidArgument(f"neither {args.old} nor {args.new} holds a result to compare")
    lines = [
        "| claim | site (old -> new) | IIA old (95% CI, n) | IIA new (95% CI, n) | Δ | result |",
        "|---|---|---|---|---|---|",
    ]
    regressed = 0
    for key in sorted(set(old) | set(new)):
        if key not in new or key not in old:
            where = "missing in NEW" if key not in new else "new in NEW"
            lines.append(f"| {key} | | | | | {where} |")
            regressed += key not in new
            continue
        a, b = old[key], new[key]
        failures = [message for check in checks if (message := check.check(b, a))]
        if a.get("data") and b.get("data") and a["data"] != b["data"]:
            changed = sorted(k for k in a["data"] if a["data"][k] != b["data"].get(k))
            failures.append(f"ran on other prompts ({', '.join(changed)} differ): not comparable")
        if a.get("passed") is True and b.get("passed") is False:
            failures.append(
                f"the claim held in OLD and fails in NEW (verdict {b.get('verdict')}, expected "
                f"{b.get('expected_verdict')})"
            )
        regressed += bool(failures)
        site_a, site_b = a["site"]["canonical"], b["site"]["canonical"]
        site = site_a if site_a == site_b else f"{site_a} -> {site_b} (drift)"
        lines.append(
            f"| {key} | `{site}` | {_iia_with_interval(a)} | {_iia_with_interval(b)} | "
            f"{b['iia'] - a['iia']:+.3f} | {'; '.join(failures) or 'ok'} |"
        )
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.markdown:
        atomic_write_bytes(args.markdown, table.encode())
    print(f"{regressed} regression(s)" if regressed else "no regression")
    return 1 if regressed else 0


COMMANDS = {
    "fit": _cmd_fit,
    "search": _cmd_search,
    "evaluate": _cmd_evaluate,
    "compare": _cmd_compare,
    "train-embedded": _cmd_train_embedded,
}


_OUTPUT_FILES = ("json", "save", "png", "markdown")  # each command's files to write


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output path that cannot be written before any work, not after it: a file
    where a directory is (or in its way), or a directory where a file is to be written."""
    from das_assert.errors import InvalidArgument

    wanted = [(f"--{name}", getattr(args, name, None)) for name in _OUTPUT_FILES]
    wanted = [(flag, Path(path)) for flag, path in wanted if path is not None]
    directory = getattr(args, "out", None)  # train-embedded writes a model directory
    for flag, path in [*wanted, *([("--out", Path(directory))] if directory else [])]:
        if flag != "--out" and path.is_dir():
            raise InvalidArgument(f"{flag} {path} is a directory; name a file inside it")
        if flag == "--out" and path.exists() and not path.is_dir():
            raise InvalidArgument(f"--out {path} is a file; name a directory for the model")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise InvalidArgument(f"{flag} {path}: {parent} is a file, not a directory")
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_outputs(args)
        return COMMANDS[args.command](args)
    except DasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every artifact is written to a temporary file and renamed: none is left half-written.
        print("interrupted: nothing was saved", file=sys.stderr)
        return 130
