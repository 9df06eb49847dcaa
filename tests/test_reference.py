"""docs/reference.md is generated from docstrings: every public name it lists
has one, for every public method, and each says what the method raises."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
TARGETS = re.findall(r"^::: (\S+)$", REFERENCE.read_text(), re.MULTILINE)
#: Targets shown without their members (a session class whose API is its base's).
WHOLE = set(
    re.findall(
        r"^::: (\S+)\n    options:\n      members: false$", REFERENCE.read_text(), re.MULTILINE
    )
)


def resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return getattr(resolve(module), name)


def documented(target: Any, members: bool) -> Iterator[tuple[str, Callable[..., Any]]]:
    """`target` and its public methods and properties, as the reference shows
    them: inherited from trio_boca's own classes, and each with a docstring of
    its own (an override does not inherit its base's there)."""
    yield target.__qualname__, target
    if not (inspect.isclass(target) and members):
        return
    seen = set()
    for cls in target.__mro__:
        if not cls.__module__.startswith("trio_boca"):
            continue
        for name, member in vars(cls).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(member, property):
                member = member.fget
            elif isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member):
                yield f"{target.__qualname__}.{name}", member


def raised(function: Callable[..., Any]) -> set[str]:
    """The exception classes a function raises by name in its own body."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError):
        return set()
    names = set()
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    # Its own statements only: a nested function or class raises on its own account.
    todo = list(ast.iter_child_nodes(tree.body[0]))
    while todo:
        node = todo.pop()
        if isinstance(node, nested):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id[0].isupper():
                names.add(exc.id)
            elif isinstance(exc, ast.Attribute) and exc.attr[0].isupper():
                names.add(exc.attr)
    return names


MEMBERS = sorted(
    {
        name: item
        for target in TARGETS
        for name, item in documented(resolve(target), target not in WHOLE)
    }.items()
)


def test_the_reference_lists_what_the_package_exports() -> None:
    import trio_boca
    import trio_boca.testing

    listed = {target.rsplit(".", 1)[1] for target in TARGETS}
    assert set(trio_boca.__all__) <= listed
    assert set(trio_boca.testing.__all__) <= listed


@pytest.mark.parametrize(("name", "member"), MEMBERS, ids=[name for name, _ in MEMBERS])
def test_each_public_name_says_what_it_does_and_raises(name: str, member: Any) -> None:
    doc = member.__doc__
    assert doc, f"{name} has no docstring, so the reference leaves it out"
    missing = {exc for exc in raised(member) if exc not in doc}
    assert not missing, f"{name} raises {sorted(missing)} without saying so"
