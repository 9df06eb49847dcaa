"""Who may connect: what a WebSocket handshake passes before it is accepted.

In order, for every WebSocket route:

0. **a well-formed compression offer** (under servers other than trio_boca's
   own, which negotiates with websockets itself). A `Sec-WebSocket-Extensions` header
   whose permessage-deflate offer breaks RFC 7692, or quotes a parameter's
   value, is refused with 400. Quoting is legal, but no browser or client
   library does it, and hypercorn's parser (wsproto) fails on it, as on any
   malformed offer, inside the app's accept: the client then got no answer
   at all and the connection was lost.
1. **the origin** (`allowed_origins`). Browsers send cookies with a WebSocket
   handshake to any site, and CORS does not apply to WebSockets: without a
   check, any page on the web could open a socket to the app as its visitor
   (cross-site WebSocket hijacking). So the server checks `Origin` itself.
2. **the connection limits** (`max_connections`, `max_connections_per_client`).
3. **the checks**: the app's (`@app.websocket_check`), then the route's
   (`checks=`), async functions that refuse with `ws.reject(status, body=...)`.

The first two are decided from the scope alone, before the connection runs;
a refused handshake still lives a connection's life (its view only rejects),
so it ends like any other. Refusals are counted, and logged at WARNING at
most once a second per reason, so a flood cannot flood the log.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._direct import EXTENSION
from ._ratelimit import OncePerSecond

if TYPE_CHECKING:
    from .websockets import WebSocket

logger = logging.getLogger("trio_boca")

#: An async check run before a WebSocket is accepted; it refuses with `ws.reject()`.
Check = Callable[["WebSocket"], Awaitable[None]]

#: Seconds a client refused for the connection limits is told to wait.
RETRY_AFTER = 5

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTTP_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


class OriginPolicy:
    """Which `Origin` header a handshake may carry.

    `None` allows the same origin only: the scheme, host and port the client
    asked for (its `Host` header, or the forwarded host and scheme when proxy
    headers are trusted). `["*"]` allows any. Otherwise the list names the
    allowed origins, such as `"https://app.example.com"`; a handshake must
    carry one of them exactly, as browsers write it (lowercase, no default
    port, no trailing slash). A handshake without `Origin` (not a browser's)
    is allowed: the check protects browsers' users, whose browsers always
    send it.
    """

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        if isinstance(allowed, str):
            raise TypeError(f"allowed_origins takes a list of origins, not the string {allowed!r}")
        self.origins = None if allowed is None else frozenset(map(_normalized, allowed))

    def refuses(self, scope: Mapping[str, Any]) -> str | None:
        """Why this handshake's origin is refused, or None if it is allowed."""
        origin = _header(scope, b"origin")
        if origin is None or (self.origins is not None and "*" in self.origins):
            return None
        allowed = {_same_origin(scope)} if self.origins is None else self.origins
        return None if origin in allowed else origin

    def __str__(self) -> str:
        if self.origins is None:
            return "the same origin only"
        if "*" in self.origins:
            return "any origin"
        return ", ".join(sorted(self.origins))


class Census:
    """The open WebSocket connections, in all and per client address, against the limits.

    Per client means per address as the app sees it: after proxy headers,
    when those are trusted. Connections already open are never affected by
    a limit; only new handshakes are refused. HTTP requests are not counted.
    """

    def __init__(self, max_connections: int | None, max_per_client: int | None) -> None:
        for name, value in (
            ("max_connections", max_connections),
            ("max_connections_per_client", max_per_client),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, or None for no limit")
        self.max_connections = max_connections or math.inf
        self.max_per_client = max_per_client or math.inf
        self.open = 0
        self.per_client: Counter[str] = Counter()

    def enter(self, client: str) -> str | None:
        """Count a new connection from `client`, or say which limit refuses it."""
        if self.open >= self.max_connections:
            return "max_connections"
        if self.per_client[client] >= self.max_per_client:
            return "max_connections_per_client"
        self.open += 1
        self.per_client[client] += 1
        return None

    def leave(self, client: str) -> None:
        self.open -= 1
        self.per_client[client] -= 1
        if not self.per_client[client]:
            del self.per_client[client]


class Refusals(OncePerSecond):
    """Refused handshakes: counted by reason, logged at most once a second each."""

    def __init__(self) -> None:
        super().__init__(logger)

    def record(self, reason: str, message: str) -> None:
        self.note(reason, "%s", message)


@dataclass(frozen=True)
class Refusal:
    """How a handshake is refused: the view its connection runs instead."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    async def __call__(self, ws: WebSocket) -> None:
        await ws.reject(self.status, body=self.body, headers=self.headers)


class Guard:
    """The app's door: the origin policy and the connection limits."""

    def __init__(
        self,
        allowed_origins: Iterable[str] | None,
        max_connections: int | None,
        max_connections_per_client: int | None,
    ) -> None:
        self.origins = OriginPolicy(allowed_origins)
        self.census = Census(max_connections, max_connections_per_client)
        self.refusals = Refusals()

    def admit(self, scope: Mapping[str, Any], route_origins: OriginPolicy | None) -> Refusal | None:
        """Count this handshake as an open connection, or say how to refuse it.

        An admitted connection must be `release`d when it ends.
        """
        path = scope["path"]
        # trio_boca's own server negotiates with websockets itself; under any
        # other server, a malformed offer is refused here (see the module docs).
        negotiated = EXTENSION in scope.get("extensions", {})
        problem = None if negotiated else deflate_offer_problem(scope)
        if problem is not None:
            self.refusals.record(
                "extensions",
                f"WebSocket {path!r}: refused a handshake from {_client(scope)!r} with a "
                f"malformed Sec-WebSocket-Extensions header: {problem}",
            )
            return Refusal(400, f"malformed Sec-WebSocket-Extensions: {problem}")
        policy = self.origins if route_origins is None else route_origins
        origin = policy.refuses(scope)
        if origin is not None:
            setting = (
                "the allowed_origins of this route (or mount)"
                if route_origins
                else "App(allowed_origins=...), or to this route's (or mount's) own"
            )
            self.refusals.record(
                "origin",
                f"WebSocket {path!r}: refused a handshake from origin {origin!r}, which is not "
                f"allowed ({policy}); add it to {setting} to allow it",
            )
            return Refusal(403, f"origin not allowed: {origin}")
        limit = self.census.enter(_client(scope))
        if limit is not None:
            self.refusals.record(
                limit,
                f"WebSocket {path!r}: refused a handshake from {_client(scope)!r}: {limit} reached",
            )
            who = "" if limit == "max_connections" else " from this address"
            return Refusal(503, f"too many connections{who}", (("retry-after", str(RETRY_AFTER)),))
        return None

    def release(self, scope: Mapping[str, Any]) -> None:
        """An admitted connection has ended."""
        self.census.leave(_client(scope))


def deflate_offer_problem(scope: Mapping[str, Any]) -> str | None:
    """What is wrong with the handshake's permessage-deflate offer, if anything.

    The offer is read by websockets' parser and checked with its
    permessage-deflate negotiation (RFC 7692), the library our own server
    negotiates with; offers of other extensions are a server's to ignore.
    """
    values = [
        bytes(value).decode("latin-1")
        for name, value in scope.get("headers", ())
        if name == b"sec-websocket-extensions"
    ]
    if not values or not any("permessage-deflate" in value.lower() for value in values):
        return None
    from websockets.exceptions import InvalidHandshake
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    from websockets.headers import parse_extension

    factory = ServerPerMessageDeflateFactory()
    for value in values:
        try:
            offers = parse_extension(value)
            for name, params in offers:
                if name == factory.name:
                    factory.process_request_params(params, [])
        except InvalidHandshake as exc:
            return str(exc)
        if '"' in value and any(name == factory.name for name, _ in offers):
            return "quoted parameter values are not accepted"
    return None


def _normalized(origin: str) -> str:
    """An allowed origin as browsers write it; ValueError if it is not one."""
    if origin == "*":
        return origin
    if origin == "null":
        raise ValueError(
            "'null' is the origin of sandboxed pages and local files on any site: "
            "allowing it allows them all; use ['*'] if that is what you mean"
        )
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        port = -1
    extra = parts.path or parts.query or parts.fragment or parts.username or parts.password
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or extra or port == -1:
        raise ValueError(
            f"{origin!r} is not an origin: write scheme, host and port only, "
            "e.g. 'https://app.example.com' or 'http://127.0.0.1:8000'"
        )
    if not parts.hostname.isascii():
        raise ValueError(f"{origin!r}: write the host as browsers send it, in punycode (xn--...)")
    host = parts.hostname
    if ":" in host:  # IPv6, as browsers write it: compressed, lowercase
        host = ipaddress.IPv6Address(host).compressed
    return _serialized(parts.scheme, host, port)


def _serialized(scheme: str, host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    keep_port = port is not None and port != _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}" + (f":{port}" if keep_port else "")


def _same_origin(scope: Mapping[str, Any]) -> str:
    """The origin of the address the client asked for."""
    scheme = _HTTP_SCHEMES.get(str(scope.get("scheme", "ws")).lower(), "http")
    host = _header(scope, b"host")
    if host is None:
        server = scope.get("server") or ("", None)
        return _serialized(scheme, str(server[0]), server[1])
    try:
        parts = urlsplit(f"//{host}")
        return _serialized(scheme, parts.hostname or "", parts.port)
    except ValueError:  # not a host and port: no origin is that of a malformed Host
        return ""


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _client(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def run_checks(ws: WebSocket, checks: Iterable[Check]) -> bool:
    """Run the checks until one refuses the handshake; False if one did.

    A check that leaves the WebSocket in any state but CONNECTING or
    REJECTED (it accepted, say) raises `RuntimeError` naming the state.
    """
    from .websockets import WebSocketState

    for check in checks:
        await check(ws)
        state = ws.connection_state
        if state is WebSocketState.REJECTED:
            return False
        if state is not WebSocketState.CONNECTING:
            name = getattr(check, "__qualname__", check)
            raise RuntimeError(
                f"check {name} left the WebSocket in state {state.value}: "
                "a check may only refuse a handshake, with reject()"
            )
    return True
