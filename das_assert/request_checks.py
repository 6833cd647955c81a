"""What a hypothesis file hands the ``das`` fixture's assertions, checked before any work.

Each check raises one ``InvalidArgument`` that names what was passed and what is expected, in
place of an ``AttributeError`` from deep inside the engine, or a number reported under the
wrong claim (a Mid-point Distance result asserted as ``claim="left_boundary"``).
"""

from __future__ import annotations

from typing import Any

from das_assert.errors import InvalidArgument

__all__ = [
    "check_align_arguments",
    "check_claim",
    "check_das_yaml_site",
    "check_fit_changes",
    "check_pairs",
    "check_result",
    "check_variant",
    "refuse_unknown_keywords",
]


def check_result(result: Any, call: str) -> None:
    """``result`` is an ``AlignmentResult`` (what ``das_session.align`` returns)."""
    from das_assert.alignment_result import AlignmentResult

    if not isinstance(result, AlignmentResult):
        raise InvalidArgument(
            f"das.{call} takes the result of das_session.align(...) (or a search's "
            f"best_confirmed()), not {type(result).__name__}"
        )


def check_claim(claim: Any, result: Any) -> None:
    """``claim`` is a name, and one named after a causal model names ``result``'s: by
    convention a claim is its causal model's name, with a suffix for another claim on it."""
    from das_assert.tasks.price_tagging import CAUSAL_MODELS

    if not isinstance(claim, str) or not claim:
        raise InvalidArgument(f"claim={claim!r}: a claim is its das.yaml entry's name, a string")
    named = claim.split(".")[0]
    hypothesis = result.experiment.hypothesis
    if named in CAUSAL_MODELS and named != hypothesis:
        raise InvalidArgument(
            f"claim {claim!r} names the causal model {named!r}, but the result is an alignment of "
            f"{hypothesis!r} (das_session.align({hypothesis!r}, ...)): align {named!r}, or "
            f"claim {hypothesis!r}"
        )


def check_variant(variant: Any) -> None:
    """``variant`` is a ``PromptVariant``, such as one ``prompt_variants()`` drew."""
    from das_assert.strategies import PromptVariant

    if isinstance(variant, PromptVariant):
        return
    if hasattr(variant, "example") and hasattr(variant, "filter"):  # a hypothesis strategy
        raise InvalidArgument(
            "das.assert_robust takes one drawn variant, not a strategy: decorate the test with "
            "@given(variant=prompt_variants()) and pass variant"
        )
    raise InvalidArgument(
        f"das.assert_robust takes a PromptVariant (from das_assert.strategies, e.g. "
        f"PromptVariant(bracket=(100, 500))), not {type(variant).__name__} {variant!r}"
    )


def check_pairs(pairs: Any, result: Any) -> None:
    """``pairs`` is a non-empty list of ``PromptPair`` labelled by ``result``'s causal model,
    for variables its alignment has a box for (``prompt_pairs(hypothesis, ...)``)."""
    from das_assert.data import PromptPair

    hypothesis = result.experiment.hypothesis
    made = (  # the claim's causal model, variables and prompt format (the model's wrapper)
        "make them with result.experiment.pairs(n, seed, bracket=..., edit=...)"
    )
    if not isinstance(pairs, list | tuple) or not pairs:
        raise InvalidArgument(f"pairs must be a non-empty list of PromptPair: {made}")
    if not all(isinstance(pair, PromptPair) for pair in pairs):
        raise InvalidArgument(f"pairs must be PromptPair objects: {made}")
    model = result.experiment.causal  # as made: the name may be registered again since
    boxes = result.variable_names
    head, _, tail = result.experiment.fmt.wrapper_parts()
    for pair in pairs:
        index = pair.variable_index
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(boxes):
            # -1 took the last box, silently; past the last, an IndexError
            raise InvalidArgument(
                f"a pair's variable_index is {index!r}, but {hypothesis}'s alignment has "
                f"{len(boxes)} box(es), 0 to {len(boxes) - 1} ({', '.join(boxes)}): {made}"
            )
        if not all(
            p.text.startswith(head) and p.text.endswith(tail) for p in (pair.base, pair.source)
        ):
            raise InvalidArgument(
                "these pairs are not written in the wrapper the alignment was trained in (its "
                f"data.template, this model's prompt_template in das.yaml): {made}"
            )
        said = pair.base_expected, pair.expected
        if pair.answers and not set(said) <= set(pair.answers):
            raise InvalidArgument(
                f"a pair answers {said}, which are not its format's answer words "
                f"{tuple(pair.answers)!r}: the labels are edited; {made}"
            )
        inputs = pair.inputs
        if not inputs:  # built by hand: no causal inputs to label them again by
            continue
        variable = inputs.get("variable")
        if variable not in boxes:
            raise InvalidArgument(
                f"these pairs intervene on {variable!r}, but {hypothesis}'s alignment has a box "
                f"for each of {list(boxes)}: {made}"
            )
        factual = model.output_of(inputs["base"])
        intervened = model.counterfactual(inputs["base"], inputs["source"], intervene=[variable])
        if (intervened != factual) != (pair.expected != pair.base_expected):
            raise InvalidArgument(
                f"these pairs are labelled by another causal model than {hypothesis!r} (base "
                f"{inputs['base']}, source {inputs['source']}): {made}"
            )
        if pair.answers and said != tuple(pair.answers[not v] for v in (factual, intervened)):
            raise InvalidArgument(
                f"these pairs answer {said} where {hypothesis}'s outputs are "
                f"{(bool(factual), bool(intervened))}, but their format answers "
                f"{pair.answers!r} (the true one first; base {inputs['base']}): the labels are "
                f"swapped or edited; {made}"
            )


def check_align_arguments(site: Any, config: Any) -> None:
    """``das_session.align``'s site is a das.yaml name or a ``Site``; its config a FitConfig."""
    from das_assert.fit_config import FitConfig
    from das_assert.sites import Site

    if not isinstance(site, str | Site):
        raise InvalidArgument(
            f"site={site!r} ({type(site).__name__}): name a das.yaml site ('boundary'), write "
            "one out ('block_output[layer=0, pos=last]') or pass a Site"
        )
    if config is not None and not isinstance(config, FitConfig):
        raise InvalidArgument(
            f"config= takes a FitConfig, not {type(config).__name__} {config!r}: write "
            "config=das_session.fit_config(epochs=..., ...)"
        )


def check_fit_changes(changes: dict[str, Any]) -> None:
    """``das_session.fit_config``'s keywords are FitConfig's fields."""
    from dataclasses import fields

    from das_assert.errors import did_you_mean
    from das_assert.fit_config import FitConfig

    known = [f.name for f in fields(FitConfig)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise InvalidArgument(
            f"fit_config() has no setting {', '.join(unknown)}; settings: {', '.join(known)}."
            + did_you_mean(unknown[0], known)
        )


def check_das_yaml_site(session: Any, name: str, experiment: Any) -> None:
    """das.yaml's site ``name``, asked for by ``experiment``: a layer ``session``'s model lacks,
    or a position its default prompt lacks, means das.yaml is for another model or prompt, and
    stops the run once (``SiteNotInModel``). A position that only this claim's own prompts lack
    fails its test alone (``DasSession._align_one``)."""
    from das_assert.errors import DasError, SiteError, SiteNotInModel
    from das_assert.experiment import check_site

    try:
        experiment.site.resolve(session.model.model)
        if name not in session.sites_checked:
            try:
                default = session.experiment(experiment.hypothesis, name)
            except DasError:  # none without this claim's changes: its own prompts decide
                default = None
            if default is not None:
                try:
                    check_site(session.model, default)
                except SiteError:
                    if default.data_record() != experiment.data_record():
                        return  # a slot of this claim's own prompt (prefix.last): it decides
                    raise
            session.sites_checked.add(name)
    except SiteError as exc:
        entry = f"models.{session.settings.key}.sites.{name}"
        raise SiteNotInModel(
            f"{session.settings.source}: {entry} = {session.settings.sites[name]!r}: {exc}; fix "
            f"the site, or check that the entry is this model's ({session.model.name})"
        ) from None


def refuse_unknown_keywords(call: str, unknown: dict[str, Any], known: tuple[str, ...]) -> None:
    """``das.<call>(..., treshold=0.7)``: one error naming the keywords there are, where
    Python's own TypeError (with a traceback into the plugin) names only the typo."""
    from das_assert.errors import did_you_mean

    if unknown:
        name = sorted(unknown)[0]
        raise InvalidArgument(
            f"das.{call}() takes no keyword {name!r}; it takes {', '.join(known)}."
            + did_you_mean(name, known)
        )
