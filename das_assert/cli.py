"""Command line: ``python -m das_assert check | fit | evaluate | search | compare | baselines |
cache | train-embedded``.

Exit codes: 0 ok; 1 a claim failed (verdict not ``aligned`` when ``--threshold`` is given,
``compare`` found a regression, or ``check`` found the model below the task gate); 2 a usage or
input error, with a message that names the fix;
3 an unexpected error (a bug to report, not a failed claim); 130 interrupted (Ctrl-C); 143
stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from das_assert.cli_args import build_parser, causal_model_files
from das_assert.cli_common import experiment_of, finish, load, prompt_format
from das_assert.cli_outputs import (
    ReaderMayLeave,
    check_outputs,
    existing_outputs,
    named_outputs,
    note_earlier_outputs,
)
from das_assert.errors import DasError
from das_assert.termination import TerminatedError, term_as_interrupt

__all__ = ["main"]


def _fit_config(args: argparse.Namespace) -> Any:
    from das_assert.fit_config import FitConfig

    return FitConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_rotation=args.lr_rotation,
        lr_boundary=args.lr_boundary,
        boundary_penalty=args.boundary_penalty,
        temperature=tuple(args.temperature),
        seed=args.seed,
        progress=args.progress,
        joint_cells_mib=getattr(args, "joint_cells_mib", 0),  # search only
    )


def _cmd_fit(args: argparse.Namespace) -> int:
    from das_assert.alignment_file import save_alignment
    from das_assert.restarts import run_restarts
    from das_assert.saved import alignment_manifest
    from das_assert.sites import Site

    site = Site(args.layer, args.position, args.component)
    experiment = experiment_of(args, site, args.hypothesis, args.n_train)
    config = _fit_config(args)
    model = load(args)
    # layer=-1 is recorded and saved as the block it is (run_experiment: Site.in_blocks_of)
    experiment = replace(experiment, fmt=prompt_format(args, model))
    result = run_restarts(model, experiment, config, args.restarts)
    record = result.to_dict()
    if args.save:
        save_alignment(
            args.save, result.fitted.interchange, alignment_manifest(result), follow_link=True
        )
        print(f"alignment: {args.save}")
    return finish(args, model, record, result.summary())


def _cmd_search(args: argparse.Namespace) -> int:
    from das_assert.errors import InvalidArgument
    from das_assert.experiment import check_site
    from das_assert.grid_checks import check_distinct_tokens, distinct_blocks
    from das_assert.positions import check_distinct_positions
    from das_assert.report import build_report, write_report
    from das_assert.restarts import check_restarts, run_restarts
    from das_assert.search import grid_table, save_heatmap, search
    from das_assert.sites import Site

    if args.png is not None:  # refused before the grid is trained, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InvalidArgument(
                "--png needs matplotlib: pip install 'das_assert[plots]', or drop --png"
            ) from None
    check_distinct_positions(args.positions, "--positions")  # as parsed: last is last-0
    config = _fit_config(args)
    check_restarts(args.restarts, config)
    model = load(args)
    # each block's own number, as fit reports it
    layers = distinct_blocks(model, args.layers, args.positions, args.component, "--layers")
    sample = experiment_of(args, Site(layers[0], args.positions[0]), args.hypothesis, 2, model)
    pairs = sample.pairs(min(args.n_train, 256), sample.seed)
    check_distinct_tokens(model, pairs, args.positions, "--positions")

    def align(hypothesis: str, site: Site) -> Any:
        experiment = experiment_of(args, site, hypothesis, args.n_train, model)
        return run_restarts(model, experiment, config, args.restarts)

    def check(hypothesis: str, site: Site) -> None:
        check_site(model, experiment_of(args, site, hypothesis, args.n_train, model))

    grid = search(
        align,
        args.hypothesis,
        layers=layers,
        positions=args.positions,
        component=args.component,
        check=check,
    )
    print(grid_table(grid))
    chosen = grid.results[grid.best()]
    best = grid.best_confirmed()  # judged on fresh pairs, not on the pairs that chose it
    record = best.to_dict()
    records = [result.to_dict() for result in grid.results.values()]
    if args.png:  # before the report: a run that exits 2 leaves no report of its own
        save_heatmap(grid, args.png, title=f"{args.hypothesis} on {model.name}: IIA per cell")
        print(f"heatmap: {args.png}")
    if args.json:
        report = build_report(model.describe(), records)
        report["search"] = grid.to_dict()
        write_report(args.json, report)
    print(f"best: {chosen.summary()}")
    print(f"best, on fresh pairs: {best.summary()}")
    if record.get("verdict"):
        print(f"verdict of the best cell: {record['verdict']} ({record['verdict_reason']})")
    if args.json:
        print(f"report: {args.json}")
    return 0 if record.get("verdict") in (None, "aligned") else 1


def _cmd_train_embedded(args: argparse.Namespace) -> int:
    from das_assert.embedded.train import TrainConfig, train_embedded

    cfg = TrainConfig(seed=args.seed)
    if args.steps:
        cfg = TrainConfig(seed=args.seed, steps=args.steps)
    log = train_embedded(args.out, cfg)
    print(json.dumps({k: v for k, v in log.items() if k != "history"}, indent=1))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from das_assert.baseline import load_baseline
    from das_assert.compare import compare_entries, count_line, parse_compare_fail
    from das_assert.errors import InvalidArgument
    from das_assert.md_text import plain
    from das_assert.rounding import ROUNDING_EFFECT, rounding_differences
    from das_assert.store import write_markdown

    checks = [parse_compare_fail(expr) for expr in args.fail]
    sides = {
        "OLD": (args.old, load_baseline(args.old, what="OLD (a baseline or report)")),
        "NEW": (args.new, load_baseline(args.new, what="NEW (a baseline or report)")),
    }
    old, new = (payload["entries"] for _, payload in sides.values())
    if not old and not new:  # an empty table would read as "no regression"
        raise InvalidArgument(f"neither {args.old} nor {args.new} holds a result to compare")
    notes = []  # printed, and under the Markdown table: a job summary shows no stdout
    for side, (path, payload) in sides.items():
        recorded = payload.get("run")
        run = recorded if isinstance(recorded, dict) else {}
        why = run.get("setup_error") or f"pytest exit {run.get('exit_code')}"
        if "exit_status" in run and run["exit_status"] is None:  # the plugin's, at a run's start
            why = "it stopped before it wrote its report: killed, or the write failed"
        if not payload["entries"] and side == "OLD":  # every claim of NEW would pass as new
            stopped = f": its run did not complete ({why})" if run.get("complete") is False else ""
            raise InvalidArgument(f"OLD {path} holds no result to compare with{stopped}")
        if run.get("complete") is False:
            notes.append(f"note: {side} {path} is from a run that did not complete ({why})")
    (_, old_payload), (_, new_payload) = sides.values()
    if differs := rounding_differences(old_payload, new_payload, here="NEW"):
        notes.append(f"note: OLD {args.old} was made with {differs}: {ROUNDING_EFFECT}")
    print(*notes, sep="\n", end="\n" if notes else "")
    table, counts = compare_entries(old, new, checks)
    print(table, end="")
    line = count_line(counts)
    if not checks and line == "no regression":  # a drop of 0.3 read as none
        line = "no regression checked (no --fail given: IIA drops are shown, not judged)"
    if args.markdown:
        below = "".join(f"\n{plain(text)}\n" for text in [*notes, line])
        write_markdown(args.markdown, table + below)
    print(line)
    return 1 if any(counts.values()) else 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    from das_assert.baseline_list import baseline_listing, listing_text
    from das_assert.store import atomic_write_json

    listing = baseline_listing(args.dir, model=args.model)
    if args.prune:
        from das_assert.baseline_prune import prune_listing, pruned_text

        pruned = prune_listing(listing)
        print(pruned_text(pruned), end="")
        listing = {**baseline_listing(args.dir, model=args.model), "pruned": pruned}
    print(listing_text(listing), end="")
    if args.json:
        atomic_write_json(
            args.json, _listing_file("das_assert baselines", listing), follow_link=True
        )
    return 0


def _listing_file(kind: str, listing: dict[str, Any]) -> dict[str, Any]:
    """A listing's ``--json`` file, under the header every das_assert report has (its times are
    UTC, as printed)."""
    from das_assert import __version__
    from das_assert.store import SCHEMA_VERSION

    header = {"schema_version": SCHEMA_VERSION, "kind": kind, "das_assert_version": __version__}
    return {**header, **listing}


def _cmd_cache(args: argparse.Namespace) -> int:
    from das_assert.cache_admin import cache_listing, listing_text, prune_cache, pruned_text
    from das_assert.store import atomic_write_json

    pruned: dict[str, Any] = {}
    if args.prune_stale or args.prune_unused is not None:
        removed = prune_cache(
            args.dir,
            stale=args.prune_stale,
            unused_days=args.prune_unused,
            dry_run=args.dry_run,
        )
        print(pruned_text(removed, args.dry_run), end="")
        pruned = {"pruned": removed, "dry_run": args.dry_run}
    elif args.dry_run:
        print("note: --dry-run names what --prune-stale or --prune-unused would delete")
    listing = {**cache_listing(args.dir), **pruned}  # what is left
    print(listing_text(listing), end="")
    if args.json:
        atomic_write_json(args.json, _listing_file("das_assert cache", listing), follow_link=True)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from das_assert.grid_checks import distinct_blocks
    from das_assert.positions import check_distinct_positions
    from das_assert.preflight import DEFAULT_POSITIONS, check_report, preflight, preflight_text
    from das_assert.sites import Site
    from das_assert.store import atomic_write_json

    positions = args.positions or list(DEFAULT_POSITIONS)
    check_distinct_positions(positions, "--positions")  # as parsed: last is last-0
    hypothesis = args.hypothesis or "left_boundary"
    model = load(args)
    layers = [model.config.num_hidden_layers // 2]
    if args.layers:  # -1 shown as the block it is, as fit and search show it
        layers = distinct_blocks(model, args.layers, positions, "block_output", "--layers")
    experiment = experiment_of(args, Site(layers[0], positions[0]), hypothesis, 2, model)
    found = preflight(model, experiment, positions, layers)
    print(preflight_text(found), end="")
    if args.json:
        atomic_write_json(args.json, check_report(found), follow_link=True)
        print(f"report: {args.json}")
    return 0 if found["task_accuracy"]["passed"] else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from das_assert.cli_evaluate import cmd_evaluate

    return cmd_evaluate(args)


COMMANDS = {
    "fit": _cmd_fit,
    "search": _cmd_search,
    "evaluate": _cmd_evaluate,
    "compare": _cmd_compare,
    "baselines": _cmd_baselines,
    "cache": _cmd_cache,
    "check": _cmd_check,
    "train-embedded": _cmd_train_embedded,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # before the parser is built: their names are --hypothesis choices
        files = causal_model_files(argv)
        if files:
            from das_assert.tasks.registry import import_causal_models

            import_causal_models(files)
    except DasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        note_earlier_outputs(named_outputs(argv))
        return 2
    parser = build_parser(__doc__ or "")
    try:
        args = parser.parse_args(argv)
        if getattr(args, "causal_models", files) != files:  # e.g. --causal-model, abbreviated
            parser.error("write --causal-models in full: it is read before the other options")
    except SystemExit as exc:  # a usage error: a report there is still an earlier run's
        if exc.code not in (0, None):
            note_earlier_outputs(named_outputs(argv))
        raise
    stdout, sys.stdout = sys.stdout, ReaderMayLeave(sys.stdout)
    before = existing_outputs(args)
    restore_sigterm = term_as_interrupt()  # a CI timeout's SIGTERM: as Ctrl-C, said and noted
    try:
        check_outputs(args)
        return COMMANDS[args.command](args)
    except DasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        note_earlier_outputs(before)
        return 2
    except KeyboardInterrupt as exc:
        # Every artifact is written to a temporary file and renamed: none is left half-written.
        terminated = isinstance(exc, TerminatedError)
        print(
            f"interrupted{' by SIGTERM' * terminated}: no file was left half-written",
            file=sys.stderr,
        )
        note_earlier_outputs(before)
        return 143 if terminated else 130  # as the shell counts 128 + the signal
    except Exception:  # a bug (or a model das_assert does not handle): not a failed claim
        import traceback

        traceback.print_exc()
        print(
            "error: das_assert stopped on an unexpected error (above); no file was left "
            "half-written. Please report it with the command line",
            file=sys.stderr,
        )
        note_earlier_outputs(before)
        return 3
    finally:
        sys.stdout = stdout
        restore_sigterm()
