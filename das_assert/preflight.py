"""``das_assert check``: a model and its prompts looked over before any fit, in seconds.

What a long run would find out only after its first fit, or never: how a prompt reads and where
it is cut into tokens, which token each named position lands on, which tokens the answers are,
whether the model does the task (its accuracy with an interval, against the gate), and whether
das_assert's hooks and cached passes act on this model as they must (``engine_check``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from das_assert.data import tokenize
from das_assert.engine_check import check_engine
from das_assert.evaluate import base_answers
from das_assert.experiment import Experiment
from das_assert.metrics import beside, wilson_interval
from das_assert.models import LoadedModel
from das_assert.positions import parse_position
from das_assert.sites import Site

__all__ = ["CHECK_KIND", "DEFAULT_POSITIONS", "check_report", "preflight", "preflight_text"]

#: A ``check --json`` report's ``kind``: it holds no results, so ``compare`` refuses it by name.
CHECK_KIND = "das_assert check"

#: The positions shown when none are named: the answer's token and the amount's neighbours.
DEFAULT_POSITIONS = ("last", "after:amount", "amount.last", "before:amount")


def preflight(
    model: LoadedModel, experiment: Experiment, positions: Sequence[str], layers: Sequence[int]
) -> dict[str, Any]:
    """The look-over of ``model`` on ``experiment``'s test pairs (its prompt format, seed and
    n_test): the first base prompt, tokens and answers; each position, resolved on every
    prompt; the task accuracy; the engine check at each of ``layers`` x ``positions``.

    Raises:
        SiteError: a position the prompts do not have, or a layer the model lacks.
        EngineCheckFailed: the hooks do not act on this model as they must.
    """
    pairs = experiment.test_pairs()
    tokenized = tokenize(model, pairs)
    first = pairs[0].base
    length = int(tokenized.base.mask[0].sum())
    ids = tokenized.base.ids[0, :length].tolist()
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    unknown = getattr(model.tokenizer, "unk_token_id", None)
    resolved = {name: tokenized.at(parse_position(name)) for name in positions}
    shown = {}
    for name, at in resolved.items():
        index = int(at.base_position[0])
        shown[name] = {
            "index": index,
            "token": tokens[index],
            "context": tokens[max(0, index - 2) : index + 3],  # two tokens each side
            "context_start": max(0, index - 2),
        }
    fmt = experiment.fmt
    answers = {word: model.answer_id(first.text, word) for word in fmt.answers}
    any_position = next(iter(resolved.values()))
    right = int((base_answers(model.model, any_position) == any_position.base_label_ids).sum())
    n = len(pairs)
    low, high = wilson_interval(right, n)
    engine = []
    for layer in layers:
        for name, at in resolved.items():
            site = Site(layer, name)
            checked = check_engine(model.model, site.resolve(model.model), at)
            engine.append({"site": str(site), **checked.as_dict()})
    return {
        "model": model.describe(),  # as every report's: its fingerprint names the weights
        "data": experiment.data_record(),
        "seed": experiment.seed,
        "prompt": first.text,
        "tokens": tokens,
        "bos_token": getattr(model.tokenizer, "bos_token", None),
        # the tokenizer's unknown token, where the first prompt holds it: text the model cannot read
        "unknown_tokens": {
            "count": sum(i == unknown for i in ids) if unknown is not None else 0,
            "token": getattr(model.tokenizer, "unk_token", None),
        },
        "answers": {word: model.tokenizer.convert_ids_to_tokens(i) for word, i in answers.items()},
        "positions": shown,
        "task_accuracy": {
            "value": right / n,
            "ci": [low, high],
            "n": n,
            "gate": experiment.min_task_accuracy,
            "passed": right / n >= experiment.min_task_accuracy,
        },
        "engine_check": engine,
    }


def preflight_text(found: dict[str, Any]) -> str:
    """The look-over as the terminal shows it."""
    model, accuracy = found["model"], found["task_accuracy"]
    lines = [
        f"model: {model['path']} ({model['architecture']}, {model['n_layers']} layers, "
        f"d={model['hidden_size']}, {model['dtype']}, {model['device']})",
        f"the first test prompt (seed {found['seed']}), {len(found['tokens'])} tokens:",
        *(f"  | {line}".rstrip() for line in found["prompt"].split("\n")),
        _first_tokens_line(found),
        *_unknown_tokens_line(found),
        "answers, read after its last token: "
        + ", ".join(f"{word!r} -> token {token!r}" for word, token in found["answers"].items()),
        "positions (resolved on every test prompt; shown on this one):",
    ]
    width = max(len(name) for name in found["positions"])
    for name, where in found["positions"].items():
        around = " ".join(
            f"[{token!r}]" if where["context_start"] + i == where["index"] else repr(token)
            for i, token in enumerate(where["context"])
        )
        lines.append(f"  {name.ljust(width)}  token {where['index']:>3}  {around}")
    low, high = accuracy["ci"]
    verdict = "passes" if accuracy["passed"] else "FAILS"
    lines.append(
        f"task accuracy: {beside(accuracy['value'], accuracy['gate'])} (n={accuracy['n']}, "
        f"95% CI [{low:.3f}, {high:.3f}]); {verdict} the gate {accuracy['gate']}"
    )
    for row in found["engine_check"]:
        cached = (
            "runs whole prompts: " + row["why"]
            if row["whole_prompts"]
            else f"cached passes = plain ones (off by {row['cached_vs_plain']:.2g})"
        )
        lines.append(
            f"engine at {row['site']}: hooks reach the output (off by {row['output_swap']:.2g}); "
            f"{cached}; tolerance {row['tolerance']:.2g}"
        )
    return "\n".join(lines) + "\n"


#: How many of the prompt's first tokens ``check`` shows: enough to see its start token(s).
FIRST_TOKENS = 6


def _first_tokens_line(found: dict[str, Any]) -> str:
    """The prompt's first tokens, and how many times it starts with the tokenizer's BOS token,
    which the text above cannot show (a model trained with one reads a prompt without it, or
    with two, as another input)."""
    tokens, bos = found["tokens"], found.get("bos_token")
    shown = " ".join(repr(token) for token in tokens[:FIRST_TOKENS])
    more = " ..." if len(tokens) > FIRST_TOKENS else ""
    if bos is None:
        return f"its first tokens: {shown}{more} (this tokenizer has no BOS token)"
    leading = next((i for i, token in enumerate(tokens) if token != bos), len(tokens))
    start = "does not start with" if leading == 0 else "starts with"
    times = f" {leading} times" if leading > 1 else ""
    return f"its first tokens: {shown}{more} ({start} the BOS token {bos!r}{times})"


def _unknown_tokens_line(found: dict[str, Any]) -> list[str]:
    unknown = found.get("unknown_tokens") or {}
    if not unknown.get("count"):
        return []
    return [
        f"warning: {unknown['count']} of its tokens are the tokenizer's unknown token "
        f"{unknown['token']!r}, which the model cannot read: a character its vocabulary lacks, "
        "or a \\n typed as a backslash and an n"
    ]


def check_report(found: dict[str, Any]) -> dict[str, Any]:
    """``check --json``'s file: the look-over under the header every das_assert report has
    (``schema_version``, ``das_assert_version``, ``environment``), with ``kind`` saying what it
    is: no alignment was fitted, so it has no ``results``."""
    from das_assert import __version__
    from das_assert.report import environment
    from das_assert.store import SCHEMA_VERSION

    header = {"schema_version": SCHEMA_VERSION, "kind": CHECK_KIND}
    model_device = (found.get("model") or {}).get("device")
    return {
        **header,
        "das_assert_version": __version__,
        "environment": environment(model_device=model_device),
        **found,
    }
