"""Other ASGI apps under a path prefix of an App: `app.mount("/legacy", other)`.

Which app serves a request: the App's own routes first (of the request's
kind, whatever the method), then the mount with the longest prefix that
matches whole path segments (`/static` serves `/static` and `/static/app.js`,
never `/staticky`), else 404.

The mounted app gets the scope as ASGI says a mounted app should (as
Starlette's `Mount` does): `root_path` grows by the prefix, `path` stays the
whole path, so the app finds its own part as `path[len(root_path):]` and
can still build absolute URLs.

A WebSocket handshake to a mounted app passes the App's door first, as one
to a route does: the origin policy, the connection limits and the App's
checks (see `guards`), then the mount's own checks. Only then does the
mounted app see `websocket.connect`. Security settings have no side
entrance. What passes after that is the mounted app's own: its accept, its
messages, its close.

Lifespan is not forwarded: see `App.mount`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import trio

from ._connection import Connection, Limits
from ._messages import Message
from .guards import Check, OriginPolicy, run_checks
from .websockets import WebSocket

if TYPE_CHECKING:
    from .guards import Guard
    from .metrics import RouteTally

logger = logging.getLogger("trio_boca")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def route_path(scope: Scope) -> str:
    """The part of the path an app routes on: the path past its `root_path`."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


@dataclass(frozen=True)
class Mount:
    """One mounted app."""

    #: The prefix without its trailing slash: "" for the root.
    prefix: str
    app: ASGIApp
    #: The mount's origin policy; None: the App's.
    origins: OriginPolicy | None
    #: The mount's checks, run after the App's (if `app_checks`).
    checks: tuple[Check, ...]
    app_checks: bool

    @property
    def pattern(self) -> str:
        """How the mount is named in the metrics and the logs."""
        return f"{self.prefix}/{{path:path}}"

    def covers(self, path: str) -> bool:
        prefix = self.prefix
        return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")

    def scope_for(self, scope: Scope) -> Scope:
        """The mounted app's scope: the prefix moves into `root_path`."""
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + self.prefix
        return child


class Mounts:
    """The App's mounted apps, longest prefix first."""

    def __init__(self) -> None:
        self._mounts: list[Mount] = []

    def add(self, mount: Mount) -> None:
        for existing in self._mounts:
            if existing.prefix == mount.prefix:
                raise ValueError(f"an app is already mounted at {mount.prefix or '/'!r}")
        self._mounts.append(mount)
        self._mounts.sort(key=lambda m: len(m.prefix), reverse=True)

    def match(self, path: str) -> Mount | None:
        for mount in self._mounts:
            if mount.covers(path):
                return mount
        return None


def normalized_prefix(prefix: str) -> str:
    """`/legacy/` -> `/legacy`, `/` -> ``; refuse what is not a plain path."""
    if not prefix.startswith("/"):
        raise ValueError(f"mount prefix {prefix!r} must start with '/'")
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"mount prefix {prefix!r} is a plain path: it takes no parameters")
    if "?" in prefix or "#" in prefix or "//" in prefix:
        raise ValueError(f"mount prefix {prefix!r} is not a path")
    return prefix.rstrip("/")


class Door:
    """A mounted app's WebSocket handshake while the App's checks run.

    The checks get a `WebSocket` as a route's checks do; under it, this
    stands where a `Connection` would. It can only refuse: a check that
    accepts, sends or receives gets `RuntimeError`, as on a route.
    """

    def __init__(self, send: Send, tally: RouteTally, close_timeout: float) -> None:
        self._send = send
        self._tally = tally
        self._close_timeout = close_timeout
        #: The handshake's answer, once it went out.
        self.answer: int | None = None
        self._broken = False

    @property
    def gone(self) -> bool:
        return self._broken

    @property
    def departure(self) -> tuple[int, str] | None:
        return None  # the door does not read: a departure is the mounted app's to see

    async def transmit(self, *messages: Message, final: bool) -> bool:
        if messages[0]["type"] == "websocket.accept":
            raise RuntimeError(
                "a check may only refuse a handshake, with reject(): the mounted app accepts"
            )
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._close_timeout):
            try:
                for message in messages:
                    await self._send(message)
                return True
            except Exception:  # the transport failed: the client is gone
                self._broken = True
        return False

    def answered(self, status: int) -> None:
        self.answer = status
        self._tally.handshakes[status] += 1

    async def receive(self) -> Message | None:
        raise RuntimeError("unreachable: a WebSocket in state CONNECTING does not receive")

    async def send(self, message: Message) -> None:
        raise RuntimeError("unreachable: a WebSocket in state CONNECTING does not send")

    def bad_input(self, code: int, reason: str) -> None:
        raise RuntimeError("unreachable: a WebSocket in state CONNECTING reads nothing")


async def pass_checks(ws: WebSocket, door: Door, checks: Iterable[Check]) -> bool:
    """Run the checks at a mounted app's door; False if one refused (and it is answered).

    A check that raises (or accepts) is the app's bug: logged, answered 500,
    and re-raised. Cancellation (the server stopping) answers 503 on its way.
    """
    try:
        return await run_checks(ws, checks)
    except Exception as exc:
        logger.error("WebSocket check for %r failed; answered 500", ws.scope["path"], exc_info=exc)
        await _answer(ws, door, 500)
        raise
    except BaseException:
        await _answer(ws, door, 503)
        raise


async def _answer(ws: WebSocket, door: Door, status: int) -> None:
    """Refuse a handshake no check answered, whatever state the check left."""
    if door.answer is not None:
        return
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        body = HTTPStatus(status).phrase.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        sent = await door.transmit(
            {"type": "websocket.http.response.start", "status": status, "headers": headers},
            {"type": "websocket.http.response.body", "body": body},
            final=True,
        )
    else:
        sent = await door.transmit({"type": "websocket.close", "code": 1000}, final=True)
        status = 403
    if sent:
        door.answered(status)


class Relay:
    """The mounted app's side of an admitted WebSocket: it gets the connect the
    door took, then the server's messages; what it says passes straight on.

    It counts, in the mount's tally, what a route's connection counts: the
    answer to the handshake, the open connections, the first close code and
    the messages.
    """

    def __init__(self, receive: Receive, send: Send, tally: RouteTally) -> None:
        self._receive = receive
        self._send = send
        self._tally = tally
        self._connect: Message | None = {"type": "websocket.connect"}
        self.accepted = False
        self._closed = False

    async def receive(self) -> Message:
        if self._connect is not None:
            message, self._connect = self._connect, None
            await trio.lowlevel.checkpoint()
            return message
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            self._tally.messages_in += 1
        elif kind == "websocket.disconnect":
            self._closed_with(int(message.get("code", 1005)))
        return message

    async def send(self, message: Message) -> None:
        await self._send(message)
        kind = message["type"]
        if kind == "websocket.send":
            self._tally.messages_out += 1
        elif kind == "websocket.accept":
            self.accepted = True
            self._tally.handshakes[101] += 1
            self._tally.open += 1
        elif kind == "websocket.close":
            if self.accepted:
                self._closed_with(int(message.get("code", 1000)))
            else:
                self._tally.handshakes[403] += 1
        elif kind == "websocket.http.response.start":
            self._tally.handshakes[int(message["status"])] += 1

    def _closed_with(self, code: int) -> None:
        if self.accepted and not self._closed:
            self._closed = True
            self._tally.closes[code] += 1

    def finish(self) -> None:
        """The mounted app returned (or raised): the connection is no longer open."""
        if self.accepted:
            self._tally.open -= 1


async def serve_websocket(
    mount: Mount,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    guard: Guard,
    app_checks: Iterable[Check],
    tally: RouteTally,
    limits: Limits,
) -> BaseException | None:
    """A WebSocket for a mounted app, whose `websocket.connect` was taken: the
    door, then the mounted app. Returns a check's exception, once answered."""
    child = mount.scope_for(scope)
    refusal = guard.admit(child, mount.origins)
    if refusal is not None:  # it lives a connection's life, as on a route
        await Connection(child, receive, send, limits, tally).run(refusal, {}, auto_accept=False)
        return None
    try:
        checks = (*(app_checks if mount.app_checks else ()), *mount.checks)
        if checks:
            door = Door(send, tally, limits.close_timeout)
            try:
                if not await pass_checks(WebSocket(child, door), door, checks):
                    return None
            except Exception as exc:
                return exc
        relay = Relay(receive, send, tally)
        try:
            await mount.app(child, relay.receive, relay.send)
        finally:
            relay.finish()
    finally:
        guard.release(child)
    return None
