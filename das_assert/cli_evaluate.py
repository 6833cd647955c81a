"""``das_assert evaluate --alignment FILE``: a saved alignment scored again without training, on
the claim, seed and prompts it was fitted with unless the command line names others."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from das_assert.cli_common import experiment_of, finish, load
from das_assert.errors import InvalidArgument

__all__ = ["cmd_evaluate"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from das_assert.alignment_file import transfer_note, transfer_of
    from das_assert.experiment import run_experiment
    from das_assert.saved import load_saved
    from das_assert.tasks.price_tagging import INTERVENED_VARIABLES
    from das_assert.tasks.registry import defined_otherwise

    if args.drawn_brackets and args.bracket is not None:  # before the model loads
        raise InvalidArgument("give --bracket LOW HIGH or --drawn-brackets, not both")
    model = load(args)
    fitted, manifest = load_saved(args.alignment, model)
    site = fitted.site.site  # as the file names it
    hypothesis = args.hypothesis or manifest["hypothesis"]
    if hypothesis not in INTERVENED_VARIABLES:
        raise InvalidArgument(
            f"{args.alignment} names the hypothesis {hypothesis!r}, which this das_assert does "
            f"not know; pass --hypothesis, one of {', '.join(sorted(INTERVENED_VARIABLES))}, "
            "or --causal-models FILE with the file that registers it"
        )
    boxes = INTERVENED_VARIABLES[hypothesis]
    if fitted.interchange.n_variables != len(boxes):
        raise InvalidArgument(
            f"{args.alignment} has {fitted.interchange.n_variables} box(es), for "
            f"{manifest['hypothesis']}; {hypothesis} needs {len(boxes)} ({', '.join(boxes)}). "
            "Evaluate it under a hypothesis with as many variables, or fit one for this one"
        )
    trained_seed = int(manifest.get("seed", 0))
    if args.seed is None:  # the alignment's own seed: its test pairs, never its training pairs
        args.seed = trained_seed
    if hypothesis != manifest["hypothesis"]:
        print(
            f"note: {args.alignment} was trained for {manifest['hypothesis']}; scored here "
            f"under {hypothesis}"
        )
    elif defined_otherwise(manifest, hypothesis):
        print(
            f"note: {args.alignment} was trained under another definition of {hypothesis} (its "
            "mechanisms or intervened variables have changed since); scored here under this one"
        )
    recorded = _take_recorded_prompts(args, manifest)
    trained = manifest["variable"].split("+") if manifest.get("variable") else []
    if hypothesis == manifest["hypothesis"] and trained:
        args.variables = args.variables or trained  # the variables it was trained on
        if untrained := [v for v in args.variables if v not in trained]:
            print(
                f"note: {args.alignment} was trained on {'+'.join(trained)} alone; the box of "
                f"{', '.join(untrained)} never trained (no pair swapped it), so its IIA here "
                "measures an untrained box"
            )
    experiment = experiment_of(args, site, hypothesis, fitted.n_train, model)
    _note_other_prompts(args.alignment, recorded, experiment.data_record())
    # At another seed, its test pairs stay apart from the pairs it was fitted on (its seed's
    # training stream), not only from the seed given's: run_experiment keeps them so
    result = run_experiment(model, experiment, fitted.config, fitted=fitted)
    if "restarts" in manifest:  # the best of several fits when saved: the report says so
        saved_as = {**manifest["restarts"], "from_file": str(args.alignment)}
        result = replace(result, restarts=saved_as)
    record = result.to_dict()
    trained_on = manifest.get("model")
    transfer = transfer_of(manifest, model.fingerprint)  # True: its fit settings are another's
    record["alignment"] = {
        "file": str(args.alignment),
        "trained_on": trained_on,
        "transfer": transfer,
        "trained_dtype": manifest.get("dtype"),  # None: saved before files recorded it
    }
    if manifest.get("dtype") not in (None, model.dtype):
        print(
            f"note: {args.alignment} was fitted in {manifest['dtype']}; scored here in "
            f"{model.dtype} (--dtype {manifest['dtype']} scores it as it was fitted)"
        )
    if note := transfer_note(args.alignment, manifest, model.fingerprint):  # before the numbers
        print(f"note: {note}")
    return finish(args, model, record, result.summary())


def _take_recorded_prompts(args: argparse.Namespace, manifest: dict[str, Any]) -> Any:
    """Fill the prompt options the command line left out with those the alignment was fitted
    on (its manifest's ``data``), and return them; None, with a note, for a file saved before
    alignment files recorded them (its wrapper alone, where it was not Alpaca's)."""
    recorded = manifest.get("data")
    if recorded is None:
        if args.prompt_template is None:
            args.prompt_template = manifest.get("prompt_template")
        print(
            f"note: {args.alignment} does not record the prompts it was fitted on (saved before "
            "alignment files did): scored on the command line's prompts"
        )
        return None
    taken = {
        "template": recorded["instruction"],
        "answers": tuple(recorded["answers"]),
        "prefix": recorded["prefix"],
        "numbers": recorded["numbers"],
        "prompt_template": recorded["template"],  # a chat template as it was resolved
        "bracket": tuple(recorded["bracket"]) if recorded["bracket"] else None,
    }
    if args.drawn_brackets:
        del taken["bracket"]
    for option, value in taken.items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    args.suffix = recorded["suffix"]  # no option of its own
    return recorded


def _note_other_prompts(path: str, recorded: Any, scored: dict[str, Any]) -> None:
    """Say which of the prompt settings the command line changed from the alignment's own."""
    if recorded is None:
        return
    changed = [
        f"{name} {_shown(name, recorded[name])} there, {_shown(name, scored[name])} here"
        for name in scored
        if name in recorded and recorded[name] != scored[name]
    ]
    if changed:
        print(f"note: {path} was fitted on other prompts ({'; '.join(changed)}): scored on these")


def _shown(name: str, value: Any) -> str:
    """A prompt setting as the command line gives it: a bracket in dollars, or drawn."""
    if name == "bracket":
        return "drawn per prompt" if value is None else "-".join(f"{c / 100:.2f}" for c in value)
    return repr(value)
