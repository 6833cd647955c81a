"""Measure the embedded model and write its model card (accuracies, mechanism heatmaps, sha256).

    python -m das_assert.embedded.measure --model das_assert/embedded/price_tagger

Runs the task-accuracy families and a layer x position Boundless DAS search for each of the four
causal models, saves one heatmap PNG per causal model beside the weights, and writes ``card.json``
and ``README.md``. Deterministic for a given seed; takes some minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from das_assert.embedded.card import SHIPPED_FILES, accuracy_by_family, file_digests, write_card

HYPOTHESES = ("left_boundary", "left_and_right_boundary", "midpoint_distance", "bracket_identity")
POSITIONS = ("low.last", "before:amount", "amount.last", "after:amount", "last-1", "last")
ACCURACY_SEED = 1


def search_all(
    model: Any, *, layers: list[int], n_train: int, n_test: int, epochs: int, seed: int
) -> dict[str, Any]:
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit_config import FitConfig
    from das_assert.search import search

    config = FitConfig(epochs=epochs, seed=seed)

    def align(hypothesis: str, site: Any) -> Any:
        experiment = Experiment(
            hypothesis=hypothesis, site=site, n_train=n_train, n_test=n_test, seed=seed
        )
        result = run_experiment(model, experiment, config)
        print(f"{hypothesis:<24} {result.summary()}", flush=True)
        return result

    return {h: search(align, h, layers=layers, positions=list(POSITIONS)) for h in HYPOTHESES}


def _markdown_grid(grid: dict[str, Any]) -> str:
    head = "| layer | " + " | ".join(f"`{p}`" for p in grid["positions"]) + " |"
    rule = "|---" * (len(grid["positions"]) + 1) + "|"
    rows = [
        f"| {layer} | " + " | ".join(f"{v:.2f}" for v in row) + " |"
        for layer, row in zip(grid["layers"], grid["iia"], strict=True)
    ]
    return "\n".join([head, rule, *rows])


def _findings(grids: dict[str, dict[str, Any]]) -> str:
    """What the search says, in words computed from the numbers."""
    lines = []
    for hypothesis, grid in grids.items():
        values = sorted(v for row in grid["iia"] for v in row)
        floor = values[len(values) // 2]  # most cells sit at the no-op level
        best = grid["best"]
        above = [
            f"layer {layer} `{pos}`"
            for layer, row in zip(grid["layers"], grid["iia"], strict=True)
            for pos, value in zip(grid["positions"], row, strict=True)
            if value >= floor + 0.05
        ]
        lines.append(
            f"- **{hypothesis}**: best {best['iia']:.3f} at layer {best['layer']} "
            f"`{best['position']}`; cells at least 0.05 above the grid's median "
            f"({floor:.3f}, the no-op level): " + (", ".join(above) if above else "none") + "."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from das_assert.errors import DasError
    from das_assert.models import load_model, resolve_model_path
    from das_assert.search import save_heatmap

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-test", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        args.model = resolve_model_path(args.model)
    except DasError as exc:
        parser.error(str(exc))
    if not (args.model / "training_log.json").is_file():  # read for the card, after the search
        parser.error(
            f"--model {args.model}: no training_log.json there; this measures a model that "
            "`python -m das_assert train-embedded --out DIR` wrote, for its model card"
        )
    started = time.perf_counter()
    model = load_model(args.model)
    accuracy = accuracy_by_family(model, seed=ACCURACY_SEED)
    print(json.dumps({k: round(v["accuracy"], 4) for k, v in accuracy.items()}), flush=True)
    layers = list(range(model.config.num_hidden_layers))
    grids = search_all(
        model,
        layers=layers,
        n_train=args.n_train,
        n_test=args.n_test,
        epochs=args.epochs,
        seed=args.seed,
    )
    for hypothesis, grid in grids.items():
        save_heatmap(
            grid,
            args.model / f"heatmap_{hypothesis}.png",
            title=f"{hypothesis}: IIA (hard mask, n={args.n_test})",
        )
    log = json.loads((args.model / "training_log.json").read_bytes())
    card = {
        "schema_version": 1,
        "command": retrain_command(log["config"]),
        "train_config": log["config"],
        "parameters": log["parameters"],
        "train_seconds": log["seconds"],
        "accuracy_seed": ACCURACY_SEED,
        "accuracy": accuracy,
        "search": {
            "n_train": args.n_train,
            "n_test": args.n_test,
            "epochs": args.epochs,
            "seed": args.seed,
            "grids": {h: g.to_dict(include_pairs=False) for h, g in grids.items()},  # a card
        },
        "sha256": file_digests(args.model),
        "measure_seconds": round(time.perf_counter() - started, 1),
    }
    if check := carried_retrain_check(args.model, card["sha256"]):
        card["retrain_check"] = check
    write_card(args.model, card, render_readme(card))
    print(f"card written in {card['measure_seconds']} s")
    return 0


def retrain_command(config: dict[str, Any]) -> str:
    """The ``train-embedded`` command that trains these weights again (``--steps`` where the
    first phase was not the recipe's length)."""
    from das_assert.embedded.train import TrainConfig

    command = f"python -m das_assert train-embedded --out DIR --seed {config['seed']}"
    steps = config.get("steps", TrainConfig().steps)
    return command + (f" --steps {steps}" if steps != TrainConfig().steps else "")


def carried_retrain_check(directory: Path, digests: dict[str, str]) -> dict[str, Any] | None:
    """The existing card's record of a retrain that reproduced these weights (written by hand
    after a timed ``train-embedded`` run), kept when the card is measured again; dropped when
    the weights it vouched for are not the ones there now."""
    try:
        old = json.loads((Path(directory) / "card.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or not isinstance(old.get("retrain_check"), dict):
        return None
    same = (old.get("sha256") or {}).get("model.safetensors") == digests.get("model.safetensors")
    return old["retrain_check"] if same else None


def _retrain_sentence(card: dict[str, Any]) -> str:
    check = card.get("retrain_check")
    if not check:
        return ""
    same = "matched" if check["sha256_matches"] else "did NOT match"
    return (
        f" Rerun alone on that machine on {check['date']}, the command took "
        f"{check['seconds'] / 60:.1f} minutes and its `model.safetensors` {same} the sha256 below."
    )


def render_readme(card: dict[str, Any]) -> str:
    """The human-readable model card."""
    from das_assert.embedded.recipe import __doc__ as recipe_doc

    cfg = card["train_config"]
    acc_rows = "\n".join(
        f"| {family} | {r['n']} | {r['accuracy']:.3f} | [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] |"
        for family, r in card["accuracy"].items()
    )
    grids = card["search"]["grids"]
    best = {h: g["best"] for h, g in grids.items()}
    best_rows = "\n".join(
        f"| {h} | {b['layer']} | `{b['position']}` | {b['iia']:.3f} |" for h, b in best.items()
    )
    sections = "\n\n".join(
        f"### {h}\n\n![{h}](heatmap_{h}.png)\n\n{_markdown_grid(g)}" for h, g in grids.items()
    )
    files = "\n".join(f"- `{name}`: `{card['sha256'][name]}`" for name in SHIPPED_FILES)
    return f"""# price_tagger: the embedded stand-in for Alpaca-7B

**A stand-in, trained from scratch.** This is not Alpaca. It is a {cfg["num_hidden_layers"]}-layer,
{cfg["hidden_size"]}-wide `LlamaForCausalLM` ({card["parameters"]:,} parameters: RMSNorm, rotary
positions, SwiGLU, tied embeddings) trained only on the price-tagging task in the Alpaca
"instruction with input" template, so that das_assert's hypotheses have a real model to run on
where Alpaca-7B cannot be downloaded. It loads like any Hugging Face model directory:
`AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)`.

## Reproduce

```
{card["command"]}
```

{cfg["steps"]} steps of batch {cfg["batch_size"]}, AdamW lr {cfg["lr"]} with
{cfg["warmup_steps"]} warm-up steps and cosine decay, then {cfg["focus_steps"]} focus steps at lr
{cfg["focus_lr"]}; {cfg["threads"]} CPU threads. It took {card["train_seconds"] / 60:.0f} minutes
here, on a 2-core machine shared with other jobs.{_retrain_sentence(card)} Cross-entropy on the
answer token only. Deterministic for a given seed, thread count and torch version.

That determinism is bitwise, and the recipe leans on it: whether a run learns to compare the cents
depends on float rounding. The same recipe with the template's shared preamble computed once per
batch (the same loss and gradients up to rounding, at half the cost per step) ended at 0.9315 on
the 2,000 default prompts of the table below. On 3,000 more, every error (207) was on one of the
600 amounts that share the nearest bound's dollar digit; none of the other 2,400 was wrong. Four
more variants with that faster step also stalled (best accuracy on 1,000 validation prompts in
brackets): a longer focus phase (0.932 after 1,000 of its 1,500 steps), a third of the amounts
given a bound's dollar digit (0.775 after 1,700 steps), and a constant learning rate with the
paraphrases (0.897 after 2,000 steps) and without them (0.894 after 2,500). These shipped weights
are the run that got past it.

## Data recipe
{recipe_doc}
## Task accuracy (fresh prompts, seed {card["accuracy_seed"]}; argmax over the full vocabulary)

| family | n | accuracy | 95% CI |
|---|---|---|---|
{acc_rows}

## What Boundless DAS finds in it

A layer x position search per causal model: one alignment per cell,
{card["search"]["n_train"]} training pairs, {card["search"]["epochs"]} epochs, IIA with a hard
mask on {card["search"]["n_test"]} fresh pairs (seed {card["search"]["seed"]}). Positions are
named on each prompt's tokens (`amount.last` is the amount's last digit, `after:amount` the
word "dollars", `last` the final newline after "### Response:").

| causal model | best layer | best position | IIA |
|---|---|---|---|
{best_rows}

{_findings(grids)}

Unlike Alpaca, where the paper found Left Boundary at 0.90 on the newline after "dollars" in middle
layers, this model keeps nothing decodable as `amount >= low` at any token before the last: it reads
the digits from the final token by attention and decides there, from layer 0 on. Its Left Boundary
alignment is real but weaker (about 0.79, against a no-op of about 0.67), and Mid-point Distance and
Bracket Identity stay at or below the no-op level everywhere. The hypothesis files state exactly
these claims.

{sections}

## Files

{files}
"""


if __name__ == "__main__":
    raise SystemExit(main())
