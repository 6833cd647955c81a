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

Registration checks the model on fixed probe inputs first (sampled, and on and around each bound),
so a mechanism that raises there or an output that is not a boolean fails here, with the inputs
that show it, not in a fixture; one that raises elsewhere fails where pairs are drawn, also with
its inputs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import random
import re
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from das_assert.causal import CausalModel
from das_assert.errors import InvalidArgument
from das_assert.tasks.price_tagging import (
    CAUSAL_MODELS,
    INTERVENED_VARIABLES,
    causal_answer,
    describe_inputs,
    sample_inputs,
)

__all__ = [
    "BUILTIN_CAUSAL_MODELS",
    "causal_model_manifest",
    "defined_otherwise",
    "import_causal_models",
    "register_causal_model",
]

#: das_assert's own causal models; their names cannot be registered again.
BUILTIN_CAUSAL_MODELS = frozenset(CAUSAL_MODELS)

_TASK_INPUTS = ("lo", "hi", "x")
_DEFAULT_NAME = CausalModel.__dataclass_fields__["name"].default
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_N_RANDOM_PROBES = 512


@dataclass(frozen=True)
class _Registration:
    identity: str  # the mechanisms' code and the intervened variables
    behaviour: str  # the answers on the probes
    where: str  # file:line of the register_causal_model call
    model: Any = None  # the CausalModel registered: a result made before a redefinition has it


_registered: dict[str, _Registration] = {}
_registrations: list[str] = []  # every successful call, in order (a re-registration too)
_definitions: list[tuple[str, _Registration]] = []  # and what each registered


def register_causal_model(
    model: CausalModel, intervened: Sequence[str], *, replace: bool = False
) -> str:
    """Make ``model`` a price-tagging hypothesis under ``model.name``; return that name.

    Args:
        model: a ``CausalModel`` whose inputs are ``lo``, ``hi`` and ``x`` (cents) and whose output
            is a boolean: the model's "Yes" (True) or "No" (False).
        intervened: the variables its alignment has a box for, in box order; a claim may name a
            subset of them (``variables=``).
        replace: redefine a name registered before with other mechanisms (a notebook re-running
            the cell that defines it). Without it that is an error, so two hypothesis files cannot
            share one name and run each other's mechanisms.

    The same definition registered again (its module imported twice) is accepted as it is.

    Raises:
        InvalidArgument: a bad name or inputs, an intervened variable the model lacks or that
            cannot reach its output, a mechanism that raises or answers non-booleans on the probe
            inputs, or a name registered before with other mechanisms.
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
    if name == _DEFAULT_NAME:
        raise InvalidArgument(
            f"the causal model has no name= (it is called {name!r}, CausalModel's default): "
            "name it, e.g. CausalModel(name='upper_half', ...); the name is its claims' in "
            "das.yaml and the reports"
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
    if isinstance(intervened, (set, frozenset)) and len(intervened) > 1:
        # the order given is the boxes' order, and a set's changes with PYTHONHASHSEED
        raise InvalidArgument(
            f"intervened={intervened!r} must be a list in box order, e.g. "
            f"{tuple(sorted(intervened))!r}: a set has no order, so each run would lay the "
            "boxes out differently"
        )
    boxes: tuple[Any, ...]  # checked to be names below
    try:
        boxes = tuple(intervened)
    except TypeError:
        boxes = (intervened,)
    if not boxes or not all(isinstance(box, str) for box in boxes):
        raise InvalidArgument(
            f"intervened={intervened!r} must be a list of the model's variable names, e.g. "
            "('left',)"
        )
    if len(set(boxes)) != len(boxes):
        raise InvalidArgument(f"intervened={list(boxes)} names a variable twice")
    model.check_intervenable(list(boxes))
    registration = _Registration(
        identity=_identity(model, boxes),
        behaviour=_probe_digest(model, boxes),
        where=_call_site(sys._getframe(1)),
        model=model,
    )
    before = _registered.get(name)
    same = before is not None and (
        (before.identity, before.behaviour) == (registration.identity, registration.behaviour)
        or before.where == registration.where  # the same call, run again: a module re-imported
    )
    if before is not None and not same and not replace:
        raise InvalidArgument(
            f"{name!r} is already registered, by {_shown(before.where)}, with other mechanisms or "
            "intervened variables; give one of them another name, or pass replace=True to "
            "redefine it (a notebook re-running its cell)"
        )
    CAUSAL_MODELS[name] = model
    INTERVENED_VARIABLES[name] = boxes
    _registered[name] = registration
    _registrations.append(name)
    _definitions.append((name, registration))
    return name


def _call_site(frame: Any) -> str:
    """Where a registration comes from: ``file:line`` of the call, and where a helper function
    made it, of each caller up to the module that ran it (``helpers.py:5 <- test_a.py:3``;
    from inside a fixture, through pytest's own frames). Two files calling one helper, however
    deep, are then two places, not the same call run again."""
    places: list[str] = []
    while frame is not None and len(places) < 64:  # up to the module that ran it
        places.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        if frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back
    return " <- ".join(places)


def _shown(where: str) -> str:
    """A registration's place for a message: the call, and the module that made it."""
    places = where.split(" <- ")
    return places[0] if len(places) == 1 else f"{places[0]} <- ... <- {places[-1]}"


def import_causal_models(paths: Sequence[str | Path]) -> list[str]:
    """Run each Python file in ``paths`` (which registers its causal models, e.g. a hypothesis
    file), its folder on ``sys.path`` as pytest puts it; return the names registered. The
    command line's ``--causal-models FILE``."""
    from das_assert.sites import ATTENTION_NAMES, BLOCK_PATHS

    before = len(_registrations)
    layouts = dict(BLOCK_PATHS), dict(ATTENTION_NAMES)
    for raw in paths:
        _run_models_file(Path(raw))
    added = list(dict.fromkeys(_registrations[before:]))
    # a file that registers a model's decoder-block layout instead, as a conftest.py would
    if not added and paths and layouts == (dict(BLOCK_PATHS), dict(ATTENTION_NAMES)):
        raise InvalidArgument(
            f"causal models file {', '.join(map(str, paths))} registered no causal model; call "
            "das_assert.register_causal_model(...) at the file's top level"
        )
    return added


def _run_models_file(path: Path) -> None:
    if path.suffix != ".py" or not path.is_file():
        problem = (
            "is a directory"
            if path.is_dir()
            else "is not a .py file"
            if path.is_file()
            else "does not exist"
        )
        raise InvalidArgument(
            f"causal models file {path}: {problem}; give the Python file that calls "
            "register_causal_model (a hypothesis file will do)"
        )
    module_name = "das_assert_causal_models_" + re.sub(r"\W", "_", str(path.resolve()))
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None  # a .py file always has a spec and a loader
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # its own imports (``from helpers import ...``) work as in pytest
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except InvalidArgument as exc:
        del sys.modules[module_name]
        raise InvalidArgument(f"causal models file {path}: {exc}") from exc
    except BaseException as exc:  # pytest.skip and sys.exit at module level too
        del sys.modules[module_name]
        raise InvalidArgument(
            f"causal models file {path}: importing it raised {type(exc).__name__}: {exc}"
        ) from exc


def causal_model_manifest(name: str, causal: Any = None) -> dict[str, str]:
    """What a saved alignment records of its causal model: ``causal_model``, a digest of a
    registered one's mechanisms, boxes and answers on the probes, and of its answers alone with
    the Python that compiled the mechanisms (their bytecode is another on another Python), so
    that ``evaluate`` and a frozen run can say when the definition changed since; {} for a
    built-in one. ``causal``: the CausalModel a result was made with, where ``name`` may have
    been registered again since (else the definition registered now)."""
    registration = _registered.get(name)
    if causal is not None:
        registration = next(
            (r for n, r in reversed(_definitions) if n == name and r.model is causal),
            registration,
        )
    if registration is None:
        return {}
    both = f"{registration.identity}/{registration.behaviour}"
    return {
        "causal_model": hashlib.sha256(both.encode()).hexdigest()[:16],
        "causal_model_answers": hashlib.sha256(registration.behaviour.encode()).hexdigest()[:16],
        "causal_model_python": _PYTHON,
    }


_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def defined_otherwise(manifest: dict[str, Any], name: str) -> bool:
    """Whether causal model ``name`` is defined otherwise now than when the alignment of
    ``manifest`` was saved: by its code and answers on the same Python, by its answers alone
    on another (a file saved on 3.11 and evaluated on 3.12 was "trained under another
    definition")."""
    now = causal_model_manifest(name)
    if manifest.get("causal_model_python", _PYTHON) != _PYTHON and manifest.get(
        "causal_model_answers"
    ):
        return manifest["causal_model_answers"] != now.get("causal_model_answers")
    return manifest.get("causal_model") != now.get("causal_model")


def _identity(model: CausalModel, boxes: tuple[str, ...]) -> str:
    """The mechanisms' code (bytecode, constants, names, defaults, closed-over values) and the
    boxes: the same source imported twice has the same identity, an edited one another."""
    parts: list[str] = [model.output, ",".join(model.inputs), ",".join(boxes)]
    for name in sorted(model.mechanisms):
        parts.append(f"{name}={_mechanism_text(model.mechanisms[name])}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # an object's default repr: another each process


def _mechanism_text(function: Any, depth: int = 0) -> str:
    """What defines a mechanism, the same in every process: a function's code, defaults and
    closed-over values; a ``functools.partial``'s function and arguments; a callable object's
    ``__call__`` and state; else its type and repr, memory addresses left out."""
    code = getattr(function, "__code__", None)
    if code is not None:
        closure = [cell.cell_contents for cell in getattr(function, "__closure__", None) or ()]
        defaults = _repr(getattr(function, "__defaults__", None))
        text = f"{_code_text(code)}|{defaults}|{_repr(closure)}"
    elif isinstance(function, functools.partial) and depth < _DEPTH:
        keywords = sorted(function.keywords.items())
        inner = _mechanism_text(function.func, depth + 1)
        text = f"partial({inner}|{_repr(function.args)}|{_repr(keywords)})"
    elif hasattr(type(function).__call__, "__code__") and depth < _DEPTH:
        state = sorted(vars(function).items()) if hasattr(function, "__dict__") else None
        call = _mechanism_text(type(function).__call__, depth + 1)
        text = f"{type(function).__qualname__}({call}|{_repr(state)})"
    else:
        text = f"{type(function).__qualname__}:{function!r}"
    return _ADDRESS.sub("", text)


_DEPTH = 8  # partials of partials


def _code_text(code: types.CodeType) -> str:
    """Bytecode, names and constants, nested functions' code included, without addresses."""
    consts = [_code_text(c) if isinstance(c, types.CodeType) else _repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}"


def _repr(value: Any, depth: int = 0) -> str:
    """``repr``, but a set's elements in sorted order: a set of strings iterates in an order
    that PYTHONHASHSEED sets, another in every process."""
    if depth > _DEPTH:
        return repr(value)
    if type(value) in (set, frozenset) and value:
        inner = ", ".join(sorted(_repr(v, depth + 1) for v in value))
        return f"{{{inner}}}" if type(value) is set else f"frozenset({{{inner}}})"
    if type(value) is list:  # as repr writes them, so that no other definition changes
        return f"[{', '.join(_repr(v, depth + 1) for v in value)}]"
    if type(value) is tuple:
        parts = [_repr(v, depth + 1) for v in value]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
    if type(value) is dict:
        items = (f"{_repr(k, depth + 1)}: {_repr(v, depth + 1)}" for k, v in value.items())
        return f"{{{', '.join(items)}}}"
    return repr(value)


def _probes() -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    """Base and source inputs: the sampler's, then the edges it rarely draws (amounts on,
    next to and beyond a bound, brackets narrow, wide and at the ends of 0.00..9.99)."""
    rng = random.Random(20231)
    for _ in range(_N_RANDOM_PROBES):
        yield sample_inputs(rng), sample_inputs(rng)
    brackets = [(130, 855), (500, 550), (500, 501), (500, 500), (10, 990), (0, 999), (0, 0)]
    edges = []
    for lo, hi in brackets:
        for x in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 0, 999, (lo + hi) // 2):
            edges.append({"lo": lo, "hi": hi, "x": min(999, max(0, x))})
    for i, base in enumerate(edges):
        yield base, edges[(i * 7 + 3) % len(edges)]


def _probe_digest(model: CausalModel, boxes: tuple[str, ...]) -> str:
    """Run the model on the probes: refuse what would fail later, and fingerprint its answers."""
    answers: list[bool] = []
    changes = dict.fromkeys(boxes, 0)  # probes whose answer the variable's interchange changes
    probes = 0
    for base, source in _probes():
        probes += 1
        answer = _boolean_answer(model, base)
        answers.append(answer)
        for variable in boxes:
            changed = _boolean_answer(model, base, source, variable)
            answers.append(changed)
            changes[variable] += changed != answer
    if inert := [variable for variable, count in changes.items() if count == 0]:
        raise InvalidArgument(
            f"{model.name}: taking {', '.join(map(repr, inert))} from a source changes the answer "
            f"on none of the {probes} probe pairs (sampled, and on and around each bound), so no "
            "pair could tell an alignment of it from doing nothing (its IIA is the no-op's); "
            "intervene on a variable the answer depends on"
        )
    recipe = {"inputs": list(_TASK_INPUTS), "intervened": list(boxes), "answers": answers}
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


_NUMPY_BOOL_NAMES = ("bool", "bool_")  # numpy 2 names its boolean scalar "bool", numpy 1 "bool_"


def _is_boolean(value: object) -> bool:
    kind = type(value)
    return isinstance(value, bool) or (
        kind.__module__ == "numpy" and kind.__name__ in _NUMPY_BOOL_NAMES
    )


def _boolean_answer(
    model: CausalModel,
    base: dict[str, int],
    source: dict[str, int] | None = None,
    variable: str | None = None,
) -> bool:
    """The output on ``base`` (with ``variable`` from ``source``), which must be a boolean."""
    value = causal_answer(model, base, source, variable)
    if not _is_boolean(value):
        raise InvalidArgument(
            f"{model.name}: the output {model.output!r} must be True or False (the model's Yes "
            f"or No), but {describe_inputs(base, source, variable)} it is {value!r} "
            f"({type(value).__name__})"
        )
    return bool(value)
