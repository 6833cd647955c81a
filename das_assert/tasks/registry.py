"""Causal models of your own for the price-tagging task, usable wherever a built-in one is.

A hypothesis file defines its causal model over the task's inputs ``lo``, ``hi`` and ``x``
(integer cents) and registers it once, at import; from then on its name works in
``das_session.align``, ``prompt_pairs``, das.yaml's thresholds and the command line
(``--causal-models FILE``):

>>> from das_assert import CausalModel, register_causal_model
>>> RIGHT = register_causal_model(
...     CausalModel(
...         name="doc_right_boundary",
...         inputs=("lo", "hi", "x"),
...         mechanisms={
...             "right": lambda x, hi: x <= hi,
...             "answer": lambda right, x, lo: right and x >= lo,
...         },
...         output="answer",
...     ),
...     intervened=("right",),
... )
>>> RIGHT
'doc_right_boundary'

Registration checks the model on a fixed set of probe inputs first, so a mechanism that raises or
an output that is not a boolean fails here, with the inputs that show it, not in a fixture.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from das_assert.causal import CausalModel
from das_assert.errors import InvalidArgument
from das_assert.tasks.price_tagging import CAUSAL_MODELS, INTERVENED_VARIABLES, sample_inputs

__all__ = [
    "BUILTIN_CAUSAL_MODELS",
    "import_causal_models",
    "register_causal_model",
    "user_model_digest",
]

#: das_assert's own causal models; their names cannot be registered again.
BUILTIN_CAUSAL_MODELS = frozenset(CAUSAL_MODELS)

_TASK_INPUTS = ("lo", "hi", "x")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_N_PROBES = 512
_probe_digests: dict[str, str] = {}
_registrations: list[str] = []  # every successful call, in order (a re-registration too)


def register_causal_model(model: CausalModel, intervened: Sequence[str]) -> str:
    """Make ``model`` a price-tagging hypothesis under ``model.name``; return that name.

    Args:
        model: a ``CausalModel`` whose inputs are ``lo``, ``hi`` and ``x`` (cents) and whose output
            is a boolean: the model's "Yes" (True) or "No" (False).
        intervened: the variables its alignment has a box for, in box order; a claim may name a
            subset of them (``variables=``).

    Registering the same name again (a module imported twice) is allowed only if the two models
    agree on every probe; a different model under a taken name is refused, so two hypothesis
    files cannot silently share one name and each other's cached alignments.

    Raises:
        InvalidArgument: a bad name or inputs, an intervened variable the model lacks or that
            cannot reach its output, or a mechanism that raises or answers non-booleans.
    """
    if not isinstance(model, CausalModel):
        raise InvalidArgument(
            f"register_causal_model takes a das_assert.CausalModel, not {type(model).__name__}"
        )
    name = model.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"causal model name {name!r} must be a Python identifier (letters, digits, _): it "
            "is a claim's name in das.yaml, where a dot starts a suffix (e.g. 'mine.control')"
        )
    if name in BUILTIN_CAUSAL_MODELS:
        raise InvalidArgument(
            f"{name!r} is one of das_assert's own causal models "
            f"({', '.join(sorted(BUILTIN_CAUSAL_MODELS))}); give yours another name"
        )
    if sorted(model.inputs) != sorted(_TASK_INPUTS):
        raise InvalidArgument(
            f"{name}: a price-tagging causal model reads exactly the inputs lo, hi and x (integer "
            f"cents: the bracket and the amount); it declares {', '.join(model.inputs) or 'none'}"
        )
    if isinstance(intervened, str):
        raise InvalidArgument(
            f"intervened must be a list of variable names, e.g. ({intervened!r},), not a string"
        )
    boxes = tuple(intervened)
    if len(set(boxes)) != len(boxes):
        raise InvalidArgument(f"intervened={list(boxes)} names a variable twice")
    model.check_intervenable(list(boxes))
    digest = _probe_digest(model, boxes)
    if name in _probe_digests and _probe_digests[name] != digest:
        raise InvalidArgument(
            f"a different causal model is already registered as {name!r} (the two disagree on "
            "some probe inputs, or intervene on other variables); give one of them another name"
        )
    CAUSAL_MODELS[name] = model
    INTERVENED_VARIABLES[name] = boxes
    _probe_digests[name] = digest
    _registrations.append(name)
    return name


def import_causal_models(paths: Sequence[str | Path]) -> list[str]:
    """Run each Python file in ``paths`` (which registers its causal models, e.g. a hypothesis
    file); return the names it added. The command line's ``--causal-models FILE``."""
    before = len(_registrations)
    for raw in paths:
        path = Path(raw)
        if path.suffix != ".py" or not path.is_file():
            problem = "is not a .py file" if path.is_file() else "does not exist"
            raise InvalidArgument(
                f"--causal-models {raw}: {problem}; give the Python file that calls "
                "register_causal_model (a hypothesis file will do)"
            )
        module_name = "das_assert_causal_models_" + re.sub(r"\W", "_", str(path.resolve()))
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None  # a .py file always has a spec and a loader
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except InvalidArgument:
            raise
        except Exception as exc:
            del sys.modules[module_name]
            raise InvalidArgument(
                f"--causal-models {raw}: importing it raised {type(exc).__name__}: {exc}"
            ) from exc
    added = list(dict.fromkeys(_registrations[before:]))
    if not added and paths:
        raise InvalidArgument(
            f"--causal-models {', '.join(map(str, paths))} registered no causal model; call "
            "das_assert.register_causal_model(...) at the file's top level"
        )
    return added


def user_model_digest(name: str) -> str | None:
    """A digest of a registered model's behaviour on the probes (None for a built-in one)."""
    return _probe_digests.get(name)


def _probe_digest(model: CausalModel, boxes: tuple[str, ...]) -> str:
    """Run the model on fixed probe pairs: refuse what would fail later, and fingerprint it."""
    rng = random.Random(20231)
    answers: list[bool] = []
    for _ in range(_N_PROBES):
        base, source = sample_inputs(rng), sample_inputs(rng)
        answers.append(_boolean_answer(model, base))
        answers.extend(_boolean_answer(model, base, source, variable) for variable in boxes)
    recipe = {"inputs": list(_TASK_INPUTS), "intervened": list(boxes), "answers": answers}
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def _boolean_answer(
    model: CausalModel,
    base: dict[str, int],
    source: dict[str, int] | None = None,
    variable: str | None = None,
) -> bool:
    """The output on ``base`` (with ``variable`` from ``source``), which must be a boolean."""
    where = f"on base {base}" + (f" with {variable!r} from source {source}" if variable else "")
    try:
        if source is None or variable is None:
            value = model.output_of(base)
        else:
            value = model.counterfactual(base, source, intervene=[variable])
    except InvalidArgument:
        raise
    except Exception as exc:  # the user's mechanism: say which inputs broke it
        raise InvalidArgument(
            f"{model.name}: computing {model.output!r} {where} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise InvalidArgument(
            f"{model.name}: the output {model.output!r} must be True or False (the model's Yes "
            f"or No), but {where} it is {value!r} ({type(value).__name__})"
        )
    return bool(value)
