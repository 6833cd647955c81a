"""What ``import das_assert`` offers: lazy names, and the same names to a type checker."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import das_assert


def _type_checking_imports() -> dict[str, str]:
    """``name -> module`` of the imports under ``if TYPE_CHECKING:`` in das_assert/__init__.py."""
    tree = ast.parse(Path(das_assert.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_a_type_checker_sees_every_lazy_name_from_its_module() -> None:
    # py.typed was shipped while every top-level name was Any to mypy: the README's
    # `from das_assert import FitConfig` accepted FitConfig(epochs="three").
    assert _type_checking_imports() == das_assert._EXPORTS


def test_every_lazy_name_loads_from_the_module_it_names() -> None:
    for name, module in das_assert._EXPORTS.items():
        assert getattr(das_assert, name) is getattr(importlib.import_module(module), name)


def test_help_and_tab_completion_list_the_public_names() -> None:
    # the names are imported on first use: dir() and help(das_assert) listed none of them
    import pydoc

    assert set(das_assert.__all__) <= set(dir(das_assert))
    assert "run_experiment" in pydoc.render_doc(das_assert)


def test_the_signature_type_checkers_read_for_experiment_is_its_fields() -> None:
    # Experiment takes its site as text too (README writes it so), which its field's type
    # (Site) does not say: mypy --strict refused README's example. The __init__ written for
    # type checkers alone must name every field __init__ takes, with the same defaults.
    import ast
    import dataclasses
    import inspect

    from das_assert import experiment

    tree = ast.parse(inspect.getsource(experiment.Experiment))
    (init,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    written = {
        arg.arg: None if default is None else ast.literal_eval(default)
        for arg, default in zip(init.args.kwonlyargs, init.args.kw_defaults, strict=True)
    }
    fields = {
        f.name: None if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(experiment.Experiment)
        if f.init
    }
    assert written.keys() == fields.keys()
    assert {k: v for k, v in written.items() if v is not Ellipsis} == {
        k: v for k, v in fields.items() if written[k] is not Ellipsis
    }


def test_what_a_public_function_or_method_returns_is_public_too() -> None:
    # load_model and load_fitted returned LoadedModel and FittedAlignment, which a caller could
    # annotate only through their private modules (also Evaluation, Verdict, PromptPair)
    import inspect
    import re
    import sys

    public = [getattr(das_assert, name) for name in das_assert._EXPORTS]
    callables = [obj for obj in public if inspect.isfunction(obj)]
    for cls in (obj for obj in public if inspect.isclass(obj)):
        own = (f for name, f in vars(cls).items() if not name.startswith("_"))
        callables += [f for f in own if inspect.isfunction(f)]
    ours = {  # every class das_assert defines, by name (annotations are strings here)
        name: obj
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("das_assert")
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == module_name
    }
    returned = {
        name
        for function in callables
        for name in re.findall(r"[A-Za-z_]\w*", str(function.__annotations__.get("return", "")))
        if name in ours
    }
    assert {"LoadedModel", "AlignmentResult"} <= returned  # the check reads the annotations
    assert returned - set(das_assert.__all__) == set()
