"""The plugin's side of the fuzz tests: the hypothesis profiles that das fuzz tests (and only
they) run under, and the message for a fuzz test whose every variant was rejected."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "PROFILES",
    "apply_fuzz_profile",
    "register_profiles",
    "runnable",
    "too_many_rejected",
]


#: Hypothesis profiles of the fuzz tests. Each example evaluates a frozen alignment on 400 pairs,
#: so the CI gate does not shrink a failure (a shrink can cost ten times the examples drawn).
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {"max_examples": 6, "derandomize": True, "shrink": False},
    "dev": {"max_examples": 20},
    "thorough": {"max_examples": 200},
}


def register_profiles() -> None:
    from hypothesis import HealthCheck, Phase, settings

    for name, values in PROFILES.items():
        values = dict(values)
        phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
        if values.pop("shrink", True):
            # Not Phase.explain: it reruns variations of the failing example, each an
            # evaluation of hundreds of pairs, to say which parts of it matter; minutes.
            phases += [Phase.shrink]
        if "derandomize" not in values and not _database_writable():
            # a read-only checkout: hypothesis warns that it cannot keep examples there, and
            # where warnings are errors every fuzz test failed (``ci`` keeps none)
            from hypothesis.database import InMemoryExampleDatabase

            values["database"] = InMemoryExampleDatabase()
        settings.register_profile(
            f"das-{name}",
            # on hypothesis' defaults, not on the profile loaded now: with CI set in the
            # environment hypothesis loads its own "ci" profile, derandomized with no database,
            # and dev and thorough would draw the same examples every run
            parent=settings.get_profile("default"),
            deadline=None,
            # the das fixture is shared by the examples of one test on purpose: it only records
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            phases=phases,
            **values,
        )


def _database_writable() -> bool:
    """Whether hypothesis can keep its examples where it would (``.hypothesis/`` under the
    working directory, or ``$HYPOTHESIS_STORAGE_DIRECTORY``)."""
    # as hypothesis finds it; asking hypothesis would warn of storage used at plugin start-up
    directory = Path(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY", ".hypothesis")).absolute()
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    return existing is not None and os.access(existing, os.W_OK)


#: The settings a das fuzz test had before this plugin gave it its profile, and whether the
#: plugin applied them (the test had no ``@settings`` of its own).
_BEFORE = "_das_assert_settings_before_profile"


def apply_fuzz_profile(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the das fuzz tests the chosen profile, and only them: the user's other hypothesis
    tests keep their own settings. A fuzz test with its own ``@settings``, or a run with
    ``--hypothesis-profile``, keeps what the user chose, but for what every das fuzz test needs
    (``runnable``). ``--hypothesis-verbosity`` and ``--hypothesis-explain`` apply on top of the
    das profile. A run whose tests import no hypothesis has no fuzz test: hypothesis, about a
    second to import, is not imported for it."""
    from das_assert.plugin_report import is_das_test  # which imports this module

    if "hypothesis" not in sys.modules:
        return
    from hypothesis import Phase, Verbosity, settings

    register_profiles()
    profile = settings.get_profile(f"das-{config.getoption('das_profile') or 'ci'}")
    if config.getoption("hypothesis_seed", None) is not None and profile.derandomize:
        profile = settings(profile, derandomize=False)  # derandomize would ignore the seed
    if verbosity := config.getoption("hypothesis_verbosity", None):
        profile = settings(profile, verbosity=Verbosity[verbosity])
    if config.getoption("hypothesis_explain", None) and Phase.explain not in profile.phases:
        profile = settings(profile, phases=(*profile.phases, Phase.explain))
    for item in items:
        test: Any = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        if not is_das_test(item) or not getattr(test, "is_hypothesis_test", False):
            continue
        if hasattr(test, _BEFORE):
            # given a profile by an earlier run in this process (pytest.main() twice: the
            # module is imported once): back to what the test had
            test._hypothesis_internal_use_settings, applied = getattr(test, _BEFORE)
            if applied:
                del test._hypothesis_internal_settings_applied
            delattr(test, _BEFORE)
        own = hasattr(test, "_hypothesis_internal_settings_applied")
        setattr(test, _BEFORE, (test._hypothesis_internal_use_settings, not own))
        if own or config.getoption("hypothesis_profile", None):
            test._hypothesis_internal_use_settings = runnable(
                test._hypothesis_internal_use_settings
            )
        else:
            settings(profile)(test)


def runnable(chosen: Any) -> Any:
    """``chosen`` (hypothesis settings) with what a das fuzz test needs whatever else is set:
    no deadline (an example evaluates hundreds of pairs in seconds, and its rerun, served
    from the session's memo, in a millisecond, which hypothesis calls unreliable timing), and
    the function-scoped-fixture and too-slow health checks off (the ``das`` fixture records
    every example of its test on purpose)."""
    from hypothesis import HealthCheck, settings

    needed = {HealthCheck.function_scoped_fixture, HealthCheck.too_slow}
    suppressed = [
        *chosen.suppress_health_check,
        *sorted(needed - set(chosen.suppress_health_check), key=str),
    ]
    return settings(chosen, deadline=None, suppress_health_check=suppressed)


def too_many_rejected(
    item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]
) -> str | None:
    """The message for a fuzz test whose every variant was rejected, or most of them where
    hypothesis's health check stopped it for filtering: hypothesis reports either as a health
    check or as unsatisfiable, which says nothing about the model. Suppressing that check is
    not advised: hypothesis would then try up to a thousand variants, each gated on the
    model's task accuracy."""
    from hypothesis.errors import FailedHealthCheck, Unsatisfiable

    if not excinfo.errisinstance((FailedHealthCheck, Unsatisfiable)):
        return None
    tried = [json.loads(str(value)) for key, value in item.user_properties if key == "das_fuzz"]
    rejected = [record for record in tried if record["status"].startswith("rejected")]
    if not rejected:
        return None
    if len(rejected) == len(tried):
        head = [
            f"every prompt variant drawn was rejected ({len(tried)} of {len(tried)}), so no "
            "alignment was tested: the model fails the task under them, or they cannot be "
            "written for its tokenizer."
        ]
    elif (
        2 * len(rejected) > len(tried)  # else the test's own filters may have tripped it
        and excinfo.errisinstance(FailedHealthCheck)
        and "filter" in str(excinfo.value)
    ):
        head = [
            f"{len(rejected)} of {len(tried)} prompt variants drawn were rejected, and "
            "hypothesis's health check stopped the test for filtering out too many: the model "
            "fails the task under most of them, or they cannot be written for its tokenizer."
        ]
    else:
        return None
    lines = [
        *head,
        *rejection_reasons([record["status"] for record in rejected]),
        "Draw variants the model can do (give a part its value to fix it, or its default "
        'to keep it unchanged: prompt_variants(answers=("Yes", "No"))), '
        "or lower --das-min-task-accuracy if the gate is too strict for this model.",
    ]
    return "\n".join(lines)


#: a number standing alone: 0.762, 289, 1e-06 (not a part of a version such as 4.57.1)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.]\d)")


def rejection_reasons(statuses: list[str]) -> list[str]:
    """One line per cause of rejection, commonest first: reasons that differ only in their
    numbers (a task accuracy, a prompt's length) are one cause, each number shown as the range
    it took (nine lines of "a prompt of 287 ... 289 tokens" were one cause)."""
    causes: dict[str, list[list[str]]] = {}
    for status in statuses:
        reason = status.removeprefix("rejected: ").split(" (")[0]
        causes.setdefault(_NUMBER.sub("\0", reason), []).append(_NUMBER.findall(reason))
    lines = []
    for cause, numbers in sorted(causes.items(), key=lambda c: -len(c[1])):
        words = cause.split("\0")
        spans = [_span(values) for values in zip(*numbers, strict=True)]
        text = "".join(word + span for word, span in zip(words, [*spans, ""], strict=True))
        lines.append(f"  {len(numbers)} x {text}")
    return lines


def _span(values: tuple[str, ...]) -> str:
    low, high = min(values, key=float), max(values, key=float)
    return low if float(low) == float(high) else f"{low}-{high}"
