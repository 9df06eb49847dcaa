"""URL patterns and route matching, shared by HTTP and WebSocket routes.

A pattern is a path with `{name}` or `{name:converter}` segments:
`/chat/{room}`, `/items/{id:int}`, `/files/{rest:path}`. Patterns are compiled
once, when the route is declared, so a typo fails at import time rather than
on the first request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class Converter:
    regex: str
    convert: Callable[[str], Any]


CONVERTERS: dict[str, Converter] = {
    "str": Converter(r"[^/]+", str),
    "int": Converter(r"[0-9]+", int),
    "float": Converter(r"[0-9]+(?:\.[0-9]+)?", float),
    "uuid": Converter(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        uuid.UUID,
    ),
    "path": Converter(r".*", str),
}

_PARAM = re.compile(r"{([^{}]*)}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

E = TypeVar("E")


class Pattern:
    """A compiled URL pattern."""

    def __init__(self, pattern: str) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern {pattern!r} must start with '/'")
        self.pattern = pattern
        self.converters: dict[str, Converter] = {}
        regex, shape, pos = "^", "", 0
        for match in _PARAM.finditer(pattern):
            literal = pattern[pos : match.start()]
            regex += re.escape(literal)
            shape += literal
            name, _, kind = match.group(1).partition(":")
            kind = kind or "str"
            if not _NAME.match(name):
                raise ValueError(f"route pattern {pattern!r}: {name!r} is not a parameter name")
            if kind not in CONVERTERS:
                known = ", ".join(CONVERTERS)
                raise ValueError(
                    f"route pattern {pattern!r}: unknown converter {kind!r} (known: {known})"
                )
            if name in self.converters:
                raise ValueError(f"route pattern {pattern!r}: parameter {name!r} appears twice")
            self.converters[name] = CONVERTERS[kind]
            regex += f"(?P<{name}>{CONVERTERS[kind].regex})"
            shape += "{" + kind + "}"
            pos = match.end()
        rest = pattern[pos:]
        if "{" in rest or "}" in rest:
            raise ValueError(f"route pattern {pattern!r} has an unbalanced brace")
        self.regex = re.compile(regex + re.escape(rest))
        # Two patterns with the same shape match exactly the same paths.
        self.shape = shape + rest

    def match(self, path: str) -> dict[str, Any] | None:
        found = self.regex.fullmatch(path)  # exactly: `$` would allow a final newline
        if found is None:
            return None
        return {
            name: self.converters[name].convert(value) for name, value in found.groupdict().items()
        }

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


@dataclass
class Router(Generic[E]):
    """An ordered list of (pattern, endpoint) pairs for one kind of route."""

    kind: str
    routes: list[tuple[Pattern, E]] = field(default_factory=list)

    def add(self, pattern: str, endpoint: E) -> None:
        compiled = Pattern(pattern)
        for existing, _ in self.routes:
            if existing.shape == compiled.shape:
                raise ValueError(
                    f"{self.kind} route {pattern!r} duplicates route {existing.pattern!r}"
                )
        self.routes.append((compiled, endpoint))

    def find(self, pattern: str) -> E | None:
        """The endpoint declared with exactly this pattern, if any."""
        for existing, endpoint in self.routes:
            if existing.pattern == pattern:
                return endpoint
        return None

    def match(self, path: str) -> tuple[E, dict[str, Any]] | None:
        for pattern, endpoint in self.routes:
            params = pattern.match(path)
            if params is not None:
                return endpoint, params
        return None
