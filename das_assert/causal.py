"""High-level causal models: the hypotheses that an alignment is tested against.

A ``CausalModel`` has input variables, intermediate variables computed by mechanisms, and one
output variable. A mechanism is a plain function; its parameter names are its parents. An
interchange intervention on the high-level model is ``counterfactual(base, source, intervene=...)``:
run the model on ``base`` with the named variables set to the values they take on ``source``. The
label of every counterfactual pair comes from here, never from a hand-written table.

>>> cm = CausalModel(inputs=("x", "y"), mechanisms={"s": lambda x, y: x + y,
...                  "big": lambda s: s >= 10}, output="big")
>>> cm.counterfactual({"x": 1, "y": 2}, {"x": 9, "y": 9}, intervene=["s"])
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from das_assert.errors import InvalidArgument, KeywordsChecked, did_you_mean

__all__ = ["CausalModel", "MechanismFailed"]


class MechanismFailed(InvalidArgument):
    """A mechanism raised: names the variable it computes and what it raised."""

    def __init__(self, model: str, variable: str, error: BaseException) -> None:
        super().__init__(
            f"{model}: the mechanism of {variable!r} raised {type(error).__name__}: {error}"
        )
        self.variable = variable
        self.error = error


Values = Mapping[str, Any]


def _parents_of(name: str, function: Callable[..., Any]) -> tuple[str, ...]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError) as exc:  # builtins without a signature
        raise InvalidArgument(
            f"mechanism {name!r} has no inspectable signature; wrap it in a def or lambda "
            "whose parameter names are its parents"
        ) from exc
    parents = []
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidArgument(
                f"mechanism {name!r} takes *args/**kwargs; name each parent as a parameter"
            )
        parents.append(parameter.name)
    return tuple(parents)


@dataclass(frozen=True)
class CausalModel(KeywordsChecked):
    """A directed acyclic causal model with named variables.

    Args:
        inputs: the names of the input variables.
        mechanisms: ``name -> function``; the function's parameter names are its parents.
        output: the variable whose value the language model is expected to produce.
        name: a short name used in reports.

    Raises:
        InvalidArgument: on an unknown parent, a cycle, an unknown output, or a name that is both
            an input and a mechanism.
    """

    inputs: tuple[str, ...]
    mechanisms: Mapping[str, Callable[..., Any]]
    output: str
    name: str = "causal_model"
    parents: Mapping[str, tuple[str, ...]] = field(init=False, repr=False)
    order: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.inputs, str)
            or not isinstance(self.inputs, (tuple, list))
            or not all(isinstance(n, str) for n in self.inputs)
        ):
            raise InvalidArgument(
                f"{self.name}: inputs={self.inputs!r} must be a list of names, such as "
                "('lo', 'hi', 'x')"
            )
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.mechanisms, Mapping) or not all(
            isinstance(n, str) for n in self.mechanisms
        ):
            raise InvalidArgument(
                f"{self.name}: mechanisms={self.mechanisms!r} must map each variable's name to "
                "its function, such as {'s': lambda x, y: x + y}"
            )
        object.__setattr__(self, "mechanisms", dict(self.mechanisms))
        clash = sorted(set(self.inputs) & set(self.mechanisms))
        if clash:
            raise InvalidArgument(f"{clash} are declared both as inputs and as mechanisms")
        known = set(self.inputs) | set(self.mechanisms)
        parents = {name: _parents_of(name, fn) for name, fn in self.mechanisms.items()}
        for name, names in parents.items():
            for parent in names:
                if parent not in known:
                    raise InvalidArgument(
                        f"mechanism {name!r} takes parameter {parent!r}, but no variable "
                        f"{parent!r} is declared (declared: {', '.join(sorted(known))})."
                        + did_you_mean(parent, known)
                    )
        if self.output not in known:
            raise InvalidArgument(
                f"output {self.output!r} is not a declared variable "
                f"(declared: {', '.join(sorted(known))})." + did_you_mean(self.output, known)
            )
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "order", self._topological_order(parents))

    def _topological_order(self, parents: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done" or name in self.inputs:
                return
            if state.get(name) == "visiting":
                cycle = [*path[path.index(name) :], name]
                raise InvalidArgument(f"mechanisms form a cycle: {' -> '.join(cycle)}")
            state[name] = "visiting"
            for parent in parents[name]:
                visit(parent, [*path, name])
            state[name] = "done"
            order.append(name)

        for name in parents:
            visit(name, [])
        return tuple(order)

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable: inputs first, then mechanisms in evaluation order."""
        return self.inputs + self.order

    def ancestors(self, name: str) -> set[str]:
        """The variables that ``name`` depends on, directly or not."""
        found: set[str] = set()
        stack = list(self.parents.get(name, ()))
        while stack:
            parent = stack.pop()
            if parent not in found:
                found.add(parent)
                stack.extend(self.parents.get(parent, ()))
        return found

    def run(self, inputs: Values, *, fixed: Values | None = None) -> dict[str, Any]:
        """Compute every variable from ``inputs``, with the variables in ``fixed`` held fixed."""
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise InvalidArgument(f"{self.name}: inputs {missing} are missing from {dict(inputs)}")
        fixed = fixed or {}
        values: dict[str, Any] = {name: inputs[name] for name in self.inputs}
        values.update({k: v for k, v in fixed.items() if k in self.inputs})
        for name in self.order:
            if name in fixed:
                values[name] = fixed[name]
                continue
            try:
                values[name] = self.mechanisms[name](*(values[p] for p in self.parents[name]))
            except InvalidArgument:
                raise
            except Exception as exc:
                raise MechanismFailed(self.name, name, exc) from exc
        return values

    def output_of(self, inputs: Values) -> Any:
        """The output variable's value on ``inputs``."""
        return self.run(inputs)[self.output]

    def check_intervenable(self, intervene: Sequence[str]) -> None:
        """Raise unless every name in ``intervene`` is a variable that can reach the output."""
        if isinstance(intervene, str):
            raise InvalidArgument(
                f"intervene must be a list of names, not the string {intervene!r}"
            )
        if not intervene:
            raise InvalidArgument("intervene names no variable; name at least one")
        upstream = self.ancestors(self.output)
        for name in intervene:
            if name not in self.variables:
                raise InvalidArgument(
                    f"cannot intervene on {name!r}: {self.name} declares "
                    f"{', '.join(self.variables)}." + did_you_mean(name, self.variables)
                )
            if name != self.output and name not in upstream:
                raise InvalidArgument(
                    f"intervening on {name!r} cannot change the output {self.output!r} of "
                    f"{self.name}: it is not among its ancestors ({', '.join(sorted(upstream))})"
                )

    def counterfactual(self, base: Values, source: Values, *, intervene: Sequence[str]) -> Any:
        """The output on ``base`` with the variables in ``intervene`` taken from ``source``."""
        self.check_intervenable(intervene)
        source_values = self.run(source)
        return self.run(base, fixed={name: source_values[name] for name in intervene})[self.output]

    def __repr__(self) -> str:
        mechanisms = "; ".join(f"{n}({', '.join(self.parents[n])})" for n in self.order)
        return (
            f"CausalModel({self.name}: inputs={', '.join(self.inputs)}; {mechanisms}; "
            f"output={self.output})"
        )
