"""Exception groups, flattened: Trio nurseries wrap errors; callers want the error.

A nursery raises an ExceptionGroup even for a single failure. Where one real
error (not a Cancelled) is all there is, callers of trio_boca get that error
itself, as they would from a plain function call.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in `exc`, with every group flattened away."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def sole_error(exc: BaseException) -> BaseException | None:
    """The one exception in `exc` that is not a `trio.Cancelled`, if there is one."""
    errors = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    return errors[0] if len(errors) == 1 else None


def split_errors(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """`exc` split into its plain errors and the rest (cancellation, KeyboardInterrupt...)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(Exception)
    return (exc, None) if isinstance(exc, Exception) else (None, exc)


@contextmanager
def plain_errors() -> Iterator[None]:
    """Re-raise a group holding one real error as that error."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = sole_error(group)
        if error is None:
            raise
        raise error from error.__cause__  # keep its own cause; drop the group as context
