"""Read-only views of what arrives in an ASGI scope: URL, headers, query string.

They are built lazily from the raw scope, so a connection that never looks at
its headers never pays for decoding them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl


class _MultiDict(Mapping[str, str]):
    """A read-only mapping where a key may occur several times.

    Indexing gives the *last* value for a key, as a browser's form handling
    would; `getlist` gives them all, in order.
    """

    __slots__ = ("_items", "_last")

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)
        self._last = {self._key(k): v for k, v in self._items}

    @staticmethod
    def _key(key: str) -> str:
        return key

    def getlist(self, key: str) -> list[str]:
        """Every value of `key`, in the order they came; empty if there is none."""
        key = self._key(key)
        return [v for k, v in self._items if self._key(k) == key]

    def __getitem__(self, key: str) -> str:
        return self._last[self._key(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._last

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class Headers(_MultiDict):
    """Request headers; names are case-insensitive and come back lower-cased."""

    __slots__ = ()

    @staticmethod
    def _key(key: str) -> str:
        return key.lower()

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Headers from ASGI's `(name, value)` byte pairs, decoded as Latin-1 as HTTP's are."""
        return cls((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)


class QueryParams(_MultiDict):
    """The decoded query string (`?a=1&a=2&b=` keeps blank values)."""

    __slots__ = ()

    @classmethod
    def from_query_string(cls, query_string: bytes) -> QueryParams:
        """Parse a raw query string; `+` is a space and percent-escapes are UTF-8."""
        return cls(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


@dataclass(frozen=True)
class URL:
    """The URL a request or connection was made to."""

    scheme: str
    netloc: str
    path: str
    query: str

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> URL:
        """The URL an ASGI scope was made to.

        The host is the `Host` header's, else the server's address; the path
        includes the scope's `root_path`.
        """
        scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
        server = scope.get("server")
        netloc = ""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                netloc = value.decode("latin-1")
                break
        else:
            if server is not None:
                host, port = server[0], server[1]
                netloc = host if port is None else f"{host}:{port}"
        path = scope.get("root_path", "") + scope["path"]
        return cls(scheme, netloc, path, scope.get("query_string", b"").decode("latin-1"))

    def __str__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.netloc}{self.path}{query}"


class ScopeView:
    """What an ASGI scope says about a request or a WebSocket, read on demand."""

    scope: MutableMapping[str, Any]

    @property
    def url(self) -> URL:
        """The URL the client asked for: scheme, host, path and query string."""
        return URL.from_scope(self.scope)

    @property
    def headers(self) -> Headers:
        """The headers the client sent; names are case-insensitive."""
        return Headers.from_raw(self.scope.get("headers", ()))

    @property
    def query_params(self) -> QueryParams:
        """The query string, decoded; a name may occur more than once (see `getlist`)."""
        return QueryParams.from_query_string(self.scope.get("query_string", b""))

    @property
    def path_params(self) -> dict[str, Any]:
        """What the route's pattern captured, converted: `{id:int}` gives an `int`."""
        params: dict[str, Any] = self.scope.get("path_params", {})
        return params

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies the client sent, by name (the first, if a name repeats).

        Parsed by Werkzeug, leniently: a malformed cookie (set by another app
        on the same domain, say) is skipped, and the others are kept. Bytes
        that are not UTF-8 are replaced with U+FFFD.
        """
        from werkzeug.http import parse_cookie  # on first use: Werkzeug takes ~50 ms to import

        raw = b"; ".join(
            bytes(value) for name, value in self.scope.get("headers", ()) if name == b"cookie"
        )
        # Werkzeug takes a WSGI string (UTF-8 bytes read as latin-1), and
        # raises on bytes that are not UTF-8: repair those first.
        header = raw.decode("utf-8", "replace").encode().decode("latin-1")
        return dict(parse_cookie(header))

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's `(host, port)`, or None if the server does not say.

        Behind a proxy whose headers the server trusts, it is the address the
        proxy reports.
        """
        client = self.scope.get("client")
        return None if client is None else (client[0], client[1])
