"""Score an alignment on held-out pairs: IIA with a hard mask, and the baselines of the same run.

For every test pair three forward passes share one source activation: the base run (gives task
accuracy and the no-op baseline), the run with the learned intervention under a hard mask (IIA),
and the run with a random rotation of the learned width (the random-rotation baseline). A
prediction is the argmax over the full vocabulary at the last prompt token, as the paper scores.
"""

from __future__ import annotations

import hashlib
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from das_assert import sharing
from das_assert.arg_types import MAX_SEED
from das_assert.data import EncodedPairs, PromptPair
from das_assert.engine_check import check_finite_logits
from das_assert.errors import InvalidArgument, OutOfDeviceMemory, PreconditionFailed
from das_assert.featurizers import Interchange
from das_assert.fit import FittedAlignment
from das_assert.kv_cache import allocation_failed, prefix_caching_works
from das_assert.metrics import Gap, Verdict, beside, paired_gap, verdict, wilson_interval
from das_assert.model_state import measured_as_frozen, model_version
from das_assert.prefix_store import PrefixStore, first_layer_needed
from das_assert.runner import BaseRun, answer_logits, shared_source_vectors, tail_blocks
from das_assert.transfer import to_device
from das_assert.values import is_integer

__all__ = ["Evaluation", "base_answers", "evaluate"]


@dataclass
class Evaluation:
    """Predictions of one alignment on one set of test pairs, and the counts behind its IIA."""

    def __repr__(self) -> str:
        low, high = wilson_interval(self.successes, self.n)
        controls = ", ".join(f"{name}={value:.3f}" for name, value in self.baselines().items())
        return (
            f"Evaluation(iia={self.iia:.3f}, n={self.n}, ci95=[{low:.3f}, {high:.3f}], "
            f"{controls}, task_accuracy={self.task_accuracy:.3f})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    test: EncodedPairs
    predicted: torch.Tensor  # (n,) token ids under the intervention
    base_predicted: torch.Tensor  # (n,) token ids of the plain base run
    random_predicted: torch.Tensor  # (n,) token ids under the random-rotation control
    eval_seconds: float
    batch_size: int = 64  # pairs per forward pass (halved from the asked size after an OOM)

    @property
    def n(self) -> int:
        return len(self.test)

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.test.label_ids

    @property
    def successes(self) -> int:
        return int(self.correct.sum())

    @property
    def iia(self) -> float:
        return self.successes / self.n

    @property
    def task_accuracy(self) -> float:
        return int((self.base_predicted == self.test.base_label_ids).sum()) / self.n

    def baselines(self) -> dict[str, float]:
        labels = self.test.label_ids
        majority = float(torch.unique(labels, return_counts=True)[1].max()) / self.n
        return {
            "noop": int((self.base_predicted == labels).sum()) / self.n,
            "majority": majority,
            "random_rotation": int((self.random_predicted == labels).sum()) / self.n,
        }

    def gap(self, baseline: str) -> Gap:
        """IIA's lead over ``baseline`` (``noop`` or ``random_rotation``) on these pairs, with the
        95 % interval of a difference of paired proportions."""
        runs = {"noop": self.base_predicted, "random_rotation": self.random_predicted}
        if baseline not in runs:
            raise InvalidArgument(f"no paired baseline {baseline!r}; one of {', '.join(runs)}")
        mine, theirs = self.correct, runs[baseline] == self.test.label_ids
        return paired_gap(
            only_iia=int((mine & ~theirs).sum()),
            only_baseline=int((~mine & theirs).sum()),
            both=int((mine & theirs).sum()),
            n=self.n,
        )

    def changed_labels(self) -> dict[str, int]:
        """``{"correct", "n"}`` over the pairs whose label differs from the base's own: the part
        of IIA that leaving the run alone cannot earn, the number to read where most labels never
        change (a claim on the output variable, a narrow bracket)."""
        pairs, correct = self.test.pairs, self.correct.tolist()
        changed = [i for i, pair in enumerate(pairs) if pair.expected != pair.base_expected]
        return {"correct": int(sum(bool(correct[i]) for i in changed)), "n": len(changed)}

    def verdict(
        self,
        threshold: float,
        *,
        controls: tuple[str, ...] = ("noop", "random_rotation"),
        margin: float = 0.05,
        collapsed: bool = False,
    ) -> Verdict:
        """``metrics.verdict`` on these pairs: IIA's interval against ``threshold``, its lead over
        each of ``controls`` against ``margin``, whether enough labels change to tell, and
        whether the intervention keeps the model answering (``off_answers``)."""
        off = self.off_answers()
        return verdict(
            iia_ci=wilson_interval(self.successes, self.n),
            iia=self.iia,
            threshold=threshold,
            gaps={name: self.gap(name) for name in controls},
            margin=margin,
            collapsed=collapsed,
            changed=(self.changed_labels()["n"], self.n),
            off_answers=(off["intervened"], off["base"], self.n),
        )

    def off_answers(self) -> dict[str, int]:
        """How many predictions are none of the test pairs' answer words (a broken hook or engine
        answers "Please" or "#"): under the intervention, in the plain run, under the random
        rotation."""
        answers = torch.unique(torch.cat([self.test.label_ids, self.test.base_label_ids]))
        runs = {
            "intervened": self.predicted,
            "base": self.base_predicted,
            "random_rotation": self.random_predicted,
        }
        return {name: int((~torch.isin(run, answers)).sum()) for name, run in runs.items()}

    def subset(self, keep: Callable[[PromptPair], bool]) -> Evaluation:
        """This evaluation restricted to the pairs for which ``keep(pair)`` is true: each pair's
        passes do not depend on the others, so no forward pass is rerun."""
        rows = torch.tensor([i for i, pair in enumerate(self.test.pairs) if keep(pair)])
        if rows.numel() == 0:
            raise InvalidArgument("subset: no pair of this evaluation passes the filter")
        return Evaluation(
            test=self.test.select(rows),
            predicted=self.predicted[rows],
            base_predicted=self.base_predicted[rows],
            random_predicted=self.random_predicted[rows],
            eval_seconds=self.eval_seconds,
            batch_size=self.batch_size,
        )

    def iia_by_variable(self) -> dict[int, tuple[int, int]]:
        """``variable index -> (correct, n)``."""
        out = {}
        for k in sorted(set(self.test.variable_index.tolist())):
            rows = self.test.variable_index == k
            out[k] = (int(self.correct[rows].sum()), int(rows.sum()))
        return out

    def failing_indices(self) -> list[int]:
        """Failing pairs, simplest first: shortest prompts, then smallest inputs."""
        pairs = self.test.pairs
        failing = [i for i in range(self.n) if not bool(self.correct[i])]

        def simplicity(i: int) -> tuple[int, str]:
            pair = pairs[i]
            return len(pair.base.text) + len(pair.source.text), str(sorted(pair.inputs.items()))

        return sorted(failing, key=simplicity)

    def pair_records(self, tokenizer: Any) -> list[dict[str, Any]]:
        """One JSON-ready record per pair, enough to recompute by hand the IIA, the baselines and
        the task accuracy, and the paired counts of IIA's leads over the no-op and the random
        rotation: each pair's counterfactual and factual answer, and what the intervention, the
        plain base run and the random rotation predicted."""
        names = tokenizer.convert_ids_to_tokens
        expected = names(self.test.label_ids.tolist())
        predicted = names(self.predicted.tolist())
        base_expected = names(self.test.base_label_ids.tolist())
        base_predicted = names(self.base_predicted.tolist())
        random_predicted = names(self.random_predicted.tolist())
        records = []
        for i, pair in enumerate(self.test.pairs):
            records.append(
                {
                    "base_prompt": pair.base.text,
                    "source_prompt": pair.source.text,
                    "base_position": int(self.test.base_position[i]),
                    "source_position": int(self.test.source_position[i]),
                    "variable_index": int(self.test.variable_index[i]),
                    "expected": expected[i],
                    "predicted": predicted[i],
                    "correct": bool(self.correct[i]),
                    "base_expected": base_expected[i],
                    "base_predicted": base_predicted[i],
                    "random_predicted": random_predicted[i],
                }
            )
        return records


def _check_evaluation_arguments(seed: object, batch_size: object) -> None:
    """One clear error for a seed or batch size of the wrong kind (a seed given as a string
    failed at the random-rotation control, after the whole intervened pass)."""
    if not is_integer(seed) or not 0 <= int(seed) <= MAX_SEED:  # type: ignore[call-overload]
        raise InvalidArgument(f"seed={seed!r}: use an integer 0 to {MAX_SEED}")
    if not is_integer(batch_size) or int(batch_size) < 1:  # type: ignore[call-overload]
        raise InvalidArgument(f"batch_size={batch_size!r}: a number of pairs, at least 1")


def _check_known_answers(known: object, n: int) -> None:
    """``known_base_answers`` is ``base_answers`` of the test pairs: an integer tensor (n,) (one
    too long was cut short silently; a list or one too short failed deep in the evaluation)."""
    if not isinstance(known, torch.Tensor):
        what = type(known).__name__
    elif tuple(known.shape) != (n,) or known.dtype.is_floating_point or known.dtype.is_complex:
        what = f"a {known.dtype} tensor of shape {tuple(known.shape)}"
    else:
        return
    raise InvalidArgument(
        f"known_base_answers is {what}; give base_answers(model, test): one answer token per "
        f"test pair, an integer tensor of shape ({n},)"
    )


@torch.no_grad()
def evaluate(
    model: Any,
    alignment: FittedAlignment,
    test: EncodedPairs,
    *,
    seed: int = 0,
    batch_size: int = 64,
    prefix_cache: bool = True,
    prefix_store_bytes: int = 2**30,
    min_task_accuracy: float | None = None,
    known_base_answers: torch.Tensor | None = None,
) -> Evaluation:
    """Evaluate ``alignment`` on ``test`` with a hard mask, with the baselines of the same run.

    Inside a ``sharing()`` block the base run's answers are computed once per set of test prompts
    (they do not depend on the site), and in a search's block the test prompts' prefix KV cache is
    shared by every cell at the same position; elsewhere each batch runs its own prefix once.
    ``known_base_answers`` (``base_answers`` of ``test``, already run) are used as they are.

    A batch that runs out of GPU memory is not the end: the evaluation starts again at half the
    batch, down to one pair (each pair's passes do not depend on the others in its batch).

    With ``min_task_accuracy`` the base run of each batch comes first, and the evaluation stops
    with ``PreconditionFailed`` as soon as the base prompts answered wrongly so far put the task
    accuracy below the gate whatever the remaining ones do: the source pass and the intervened
    passes of a model that cannot do the task are never run. An evaluation that passes the gate
    is the one it would have been without it.
    """
    _check_evaluation_arguments(seed, batch_size)
    if known_base_answers is not None:
        _check_known_answers(known_base_answers, len(test))
    started = time.perf_counter()
    while True:
        try:
            # A learned rotation is formed once for the evaluation, not once per batch.
            with torch.nn.utils.parametrize.cached(), measured_as_frozen(model):
                evaluation = _evaluate(
                    model,
                    alignment,
                    test,
                    seed=seed,
                    batch_size=batch_size,
                    prefix_cache=prefix_cache,
                    prefix_store_bytes=prefix_store_bytes,
                    min_task_accuracy=min_task_accuracy,
                    known=known_base_answers,
                )
        except RuntimeError as caught:
            # out of memory outside the forward passes, which say so themselves: the random
            # rotation at a wide site, a d x d matrix whatever the batch (it read as a bug)
            if not allocation_failed(caught):
                raise
            d = alignment.interchange.d
            raise OutOfDeviceMemory(
                f"out of memory at {alignment.site.site} outside the model's passes "
                f"({textwrap.shorten(str(caught), 200)}): the rotations are {d} x {d} matrices "
                "whatever the batch size; give the process more memory (on a GPU, free its "
                "memory or use a larger one)",
                batch_size,
            ) from None
        except OutOfDeviceMemory as exc:
            if batch_size <= 1:
                raise OutOfDeviceMemory(
                    f"out of memory evaluating one pair at a time at {alignment.site.site} "
                    f"({exc}); on a GPU, spread the model over several with device_map='auto' "
                    "(--device-map auto); on the CPU, give the process more memory",
                    1,
                ) from None
            batch_size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        evaluation.eval_seconds = time.perf_counter() - started
        return evaluation


def _evaluate(
    model: Any,
    alignment: FittedAlignment,
    test: EncodedPairs,
    *,
    seed: int,
    batch_size: int,
    prefix_cache: bool,
    prefix_store_bytes: int,
    min_task_accuracy: float | None = None,
    known: torch.Tensor | None = None,
) -> Evaluation:
    """``evaluate`` at one batch size (``evaluate`` sets ``eval_seconds``, retries included)."""
    site = alignment.site
    interchange = alignment.interchange
    prefix_cache = prefix_cache and prefix_caching_works(model, test.base_ids.shape[1])
    widths = interchange.hard_widths()
    empty = not any(widths)  # a collapsed box swaps nothing: it is exactly the base run
    key = _base_answers_key(model, test) if sharing.active() and known is None else None
    known = sharing.lookup(key, owners=(model,)) if key else known
    if empty and known is not None:  # nothing left to run: every pass is the base run
        if min_task_accuracy is not None:
            wrong = int((known != test.base_label_ids).sum())
            _check_gate(wrong, len(test), len(test), min_task_accuracy)
        return Evaluation(test, known, known, known, 0.0, batch_size)
    # The sources and the random-rotation control, made once the first batch passed the gate.
    intervening: tuple[torch.Tensor, Interchange] | None = None
    store = (
        PrefixStore.shared(
            model,
            test,
            batch_size=batch_size,
            max_bytes=prefix_store_bytes,
            blocks=tail_blocks(model, [site], test),
            first_layer=first_layer_needed(model, [site], test),
        )
        if prefix_cache and sharing.prefix_stores_active()
        else None
    )
    predicted, base_predicted, random_predicted = [], [], []
    seen = wrong = 0  # base prompts run so far, and how many of them were answered wrongly
    for index in test.batches(batch_size):
        run = BaseRun(model, site, test, index, prefix_cache=prefix_cache, prefix_store=store)
        base = known[index] if known is not None else _answered(model, run.logits())
        base_predicted.append(base)
        if min_task_accuracy is not None:
            seen += len(index)
            wrong += int((base != test.base_label_ids[index]).sum())
            _check_gate(wrong, seen, len(test), min_task_accuracy)
        if empty:  # an oracle test checks that an empty box gives the base run bit for bit
            predicted.append(base)
            random_predicted.append(base)
            continue
        if intervening is None:
            control = Interchange.random_rotation(interchange.d, widths, seed=seed + 1)
            control.to(model.get_input_embeddings().weight.device)
            intervening = shared_source_vectors(model, site, test, batch_size=batch_size), control
        sources, control = intervening
        source = sources[to_device(index, sources.device)]
        variables = test.variable_index[index]
        predicted.append(run.logits(_hard_mix(interchange, source, variables)).argmax(-1).cpu())
        random_predicted.append(run.logits(_hard_mix(control, source, variables)).argmax(-1).cpu())
    answers = torch.cat(base_predicted)
    if key is not None and known is None:
        sharing.remember(key, answers, owners=(model,), outermost=True)
    return Evaluation(
        test=test,
        predicted=torch.cat(predicted),
        base_predicted=answers,
        random_predicted=torch.cat(random_predicted),
        eval_seconds=0.0,
        batch_size=batch_size,
    )


@torch.no_grad()
def base_answers(model: Any, test: EncodedPairs, *, batch_size: int = 64) -> torch.Tensor:
    """The answer token (n,) the model predicts for each test pair's base prompt, unintervened,
    on the CPU. Inside a ``sharing()`` block it runs once per ``model_version`` (the weights
    and the hooks on the model) and set of base prompts: a claim's task-accuracy precondition
    and every evaluation of the same test prompts (each cell of a search) read the one run."""
    key = _base_answers_key(model, test) if sharing.active() else None
    known = sharing.lookup(key, owners=(model,)) if key else None
    if known is not None:
        return known
    with measured_as_frozen(model):  # a fuzz variant's gate and ``check`` call it directly
        answers = torch.cat(
            [
                _answered(model, answer_logits(model, None, test, index))
                for index in test.batches(batch_size)
            ]
        )
    if key is not None:
        sharing.remember(key, answers, owners=(model,), outermost=True)
    return answers


def _answered(model: Any, logits: torch.Tensor) -> torch.Tensor:
    """The model's own answers from its ``logits``, refused where any is not finite: an answer
    read from NaN (an overflow in float16 on some prompts) was scored as a wrong one, which
    lowered task accuracy and every IIA with nothing said."""
    check_finite_logits(model, logits, len(logits))
    return logits.argmax(-1).cpu()


def _check_gate(wrong: int, seen: int, n: int, gate: float) -> None:
    """Raise ``PreconditionFailed`` once ``wrong`` base answers make accuracy >= ``gate``
    impossible, however the ``n - seen`` prompts still to run are answered."""
    best = (n - wrong) / n  # exact, as Evaluation.task_accuracy and the precondition count
    if best >= gate:
        return
    right = seen - wrong
    counted = f"{right} of {n}" if seen == n else f"{right} of the first {seen} of {n}"
    raise PreconditionFailed(
        f"task accuracy {'' if seen == n else 'at most '}{beside(best, gate)} ({counted} base "
        f"prompts answered correctly; gate {gate}): the model does not do the task on these prompts"
    )


def _base_answers_key(model: Any, test: EncodedPairs) -> tuple[Any, ...]:
    """The base run's answers depend on the weights and the base prompts, not on the site."""
    digest = hashlib.sha256()
    for tensor in (test.base_ids, test.base_mask, test.base_last):
        digest.update(tensor.cpu().numpy().tobytes())
    return ("base_answers", model_version(model), digest.hexdigest())


def _hard_mix(
    interchange: Interchange, source: torch.Tensor, variables: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda base: interchange(base, source, variables, hard=True)
