"""Failure messages: claim, numbers, site, the simplest failing pair, how to reproduce."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from das_assert.metrics import bracketed, threshold_text, wilson_interval

__all__ = ["by_variable_lines", "failure_message", "indent", "reproduce_line", "runnable_nodeid"]


def indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def by_variable_lines(evaluation: Any, names: tuple[str, ...]) -> list[str]:
    """One line per intervened variable of a multi-variable claim (none for one variable): which
    of them fails, by missing the answers that must change or by changing those that must not."""
    present = set(evaluation.test.variable_index.tolist())
    if len(present) < 2:
        return []
    lines = []
    for k in sorted(present):
        name = names[k] if k < len(names) else str(k)
        part = evaluation.subset(lambda pair, k=k: pair.variable_index == k)
        changed = part.changed_labels()
        kept = part.successes - changed["correct"]
        must_change = (
            f"{changed['correct']} of the {changed['n']} answers that must change did"
            if changed["n"]
            else "no answer must change"
        )
        low, high = wilson_interval(part.successes, part.n)
        lines.append(
            f"  {name:<10} IIA {part.iia:.3f} (n={part.n}, 95% CI [{low:.3f}, {high:.3f}]), no-op "
            f"{part.baselines()['noop']:.3f}: {must_change}, {kept} of the "
            f"{part.n - changed['n']} that must stay did"
        )
    return lines


def failure_message(
    result: Any,
    *,
    claim: str,
    expect: str,
    verdict: Any,
    nodeid: str,
    session: Any,
    regressed: bool = False,
) -> str:
    """A multi-line message in the style of Hypothesis's falsifying examples (``regressed``: it
    fails its baseline too, which no ``--das-inconclusive`` excuses)."""
    exp = result.experiment
    ev = result.evaluation
    low, high = result.iia_ci
    b = result.baselines
    wanted = ">=" if expect == "aligned" else "<"
    lines = [
        f"claim {claim!r}: IIA {wanted} {threshold_text(exp.threshold, 3)} for "
        f"{exp.hypothesis}:{exp.variable} "
        f"-> verdict {verdict.outcome} ({verdict.reason})",
        f"  site       {exp.site}  ->  {result.fitted.site.module_path} "
        f"({result.model.name}, {result.model.dtype}, {result.model.device})",
        f"  eval       {ev.successes}/{ev.n} pairs correct, IIA {result.iia:.3f}, "
        f"95% CI {bracketed(low, high, exp.threshold)}, seed={exp.seed}",
        f"  baselines  no-op {b['noop']:.3f}, majority {b['majority']:.3f}, random rotation "
        f"{b['random_rotation']:.3f}, task accuracy {ev.task_accuracy:.3f}",
        f"  alignment  boundary {result.boundary_text()} of {result.fitted.interchange.d} "
        f"rotated dims" + (" (collapsed)" if result.collapsed else ""),
        *by_variable_lines(ev, result.variable_names),
    ]
    failing = ev.failing_indices() if expect == "aligned" else []
    if failing:
        i = failing[0]
        pair = ev.test.pairs[i]
        tokens = result.model.tokenizer.convert_ids_to_tokens
        lines += [
            f"  simplest failing pair (1 of {len(failing)}), variable "
            f"{pair.inputs.get('variable', ev.test.variable_index[i].item())!r}:",
            f"    base   {pair.inputs.get('base')}",
            indent(pair.base.text.strip()),
            f"    source {pair.inputs.get('source')}",
            indent(pair.source.text.strip()),
            f"    intervened answer {tokens(int(ev.predicted[i]))!r}, causal model expects "
            f"{pair.expected!r} (base alone answers {tokens(int(ev.base_predicted[i]))!r})",
        ]
    if verdict.outcome == "inconclusive":
        treat = (
            " (it fails its baseline too, which --das-inconclusive does not excuse)"
            if regressed
            else ", or choose how to treat it with --das-inconclusive=fail|xfail|pass"
        )
        lines.append(f"  inconclusive: {_more_pairs(result, verdict, session)}{treat}")
    lines.append(reproduce_line(result, nodeid, session))
    return "\n".join(lines)


def _more_pairs(result: Any, verdict: Any, session: Any) -> str:
    """How an inconclusive claim gets the pairs that would decide it, where its n comes from."""
    exp, n = result.experiment, result.evaluation.n
    if verdict.untestable:
        return "draw pairs whose labels change (more of these will not decide)"
    if getattr(result, "test_pairs", "test") == "given":
        return f"judge it on more pairs (now the {n} given to judged_on)"
    yaml_n = getattr(getattr(session, "settings", None), "n_test", None)
    where = "in das.yaml" if yaml_n == exp.n_test else "where the test sets it (n_test= of align)"
    if n < exp.n_test:  # on_variable: the pairs that intervene on this variable alone
        return f"raise n_test (now {exp.n_test}, of which {n} intervene on {exp.variable}) {where}"
    return f"raise n_test (now {n}) {where}"


def reproduce_line(result: Any, nodeid: str, session: Any) -> str:
    """A failure's last line: the command that reruns it, with every non-default das option."""
    options = getattr(session, "reproduce_options", "")
    if "--das-model=" not in options and result.model.name != "embedded":
        options += f" --das-model={shlex.quote(result.model.name)}"
    # The run's seed: one a test sets in code (align(..., seed=3)) stays in its code.
    seed = getattr(session, "seed", result.experiment.seed)
    threads = getattr(session, "reproduce_threads", "")
    return f"  reproduce: {threads}pytest {shlex.quote(nodeid)} --das-seed={seed}{options}"


def runnable_nodeid(node: Any) -> str:
    """``node``'s id with its file as a path from where pytest was started, for a line to paste:
    node ids are relative to the rootdir, which a run started in a subdirectory (``cd hypotheses
    && pytest``) or elsewhere (``pytest /abs/path/hypotheses``) is not in."""
    nodeid = node.nodeid
    config = getattr(node, "config", None)
    if config is None:
        return nodeid
    from das_assert.plugin_options import shown_path

    file, sep, rest = nodeid.partition("::")
    path = os.path.normpath(Path(config.rootpath) / file)
    return shown_path(path, Path(config.invocation_params.dir)) + sep + rest
