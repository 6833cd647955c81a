"""What the CLI's commands share: the model, the claim and its prompts built from the parsed
options, and a command's last lines (its summary, verdict and JSON report)."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["experiment_of", "finish", "load", "prompt_format"]


def prompt_format(args: argparse.Namespace, model: Any = None) -> Any:
    """The prompt options as a PriceFormat; ``--prompt-template chat`` needs the ``model``'s
    tokenizer, and stays Alpaca's wrapper until it is loaded (the options checked before)."""
    from das_assert.prompt_templates import CHAT, resolve_prompt_template
    from das_assert.tasks.price_tagging import PriceFormat

    fmt = PriceFormat(
        answers=tuple(args.answers or ("Yes", "No")),
        prefix=args.prefix or "",
        numbers=args.numbers or "plain",
        suffix=getattr(args, "suffix", ""),  # no option: an alignment file's (cli_evaluate)
    )
    if args.template is not None:  # "" is refused by PriceFormat, not read as the default
        fmt = fmt.with_(instruction=args.template)
    written = args.prompt_template
    if written is None or (written == CHAT and model is None):
        return fmt
    return fmt.with_(template=resolve_prompt_template(written, getattr(model, "tokenizer", None)))


def experiment_of(
    args: argparse.Namespace, site: Any, hypothesis: str, n_train: int, model: Any = None
) -> Any:
    from das_assert.experiment import Experiment

    return Experiment(
        hypothesis=hypothesis,
        site=site,
        variables=tuple(args.variables) if args.variables else None,
        n_train=n_train,
        n_test=args.n_test,
        seed=args.seed,
        fmt=prompt_format(args, model),
        bracket=tuple(args.bracket) if args.bracket else None,
        threshold=getattr(args, "threshold", None),  # check has none
        min_task_accuracy=args.min_task_accuracy,
    )


def load(args: argparse.Namespace) -> Any:
    """The model of ``--model``, else ``$DAS_MODEL``, else the embedded one (as pytest's)."""
    from das_assert.arg_types import empty_model_variable
    from das_assert.errors import DasError, InvalidArgument
    from das_assert.models import load_model

    from_environment = args.model is None and os.environ.get("DAS_MODEL")
    if args.model is None and (empty := empty_model_variable()):
        raise InvalidArgument(empty)
    try:
        return load_model(
            args.model if args.model is not None else from_environment or "embedded",
            dtype=args.dtype,
            device=args.device,
            device_map=args.device_map,
            trust_remote_code=args.trust_remote_code,
        )
    except DasError as exc:
        if not from_environment:
            raise
        note = f"the model path is $DAS_MODEL={from_environment!r}; --model overrides it"
        raise type(exc)(f"{exc} ({note})") from None


def finish(args: argparse.Namespace, model: Any, record: dict[str, Any], summary: str) -> int:
    from das_assert.report import build_report, write_report

    print(summary)
    if record.get("verdict"):
        print(f"verdict: {record['verdict']} ({record['verdict_reason']})")
    if args.json:
        write_report(args.json, build_report(model.describe(), [record]))
        print(f"report: {args.json}")
    return 0 if record.get("verdict") in (None, "aligned") else 1
