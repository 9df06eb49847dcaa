"""One WebSocket connection from handshake to close.

    connection nursery
    ├── view cancel scope
    │   └── view(ws, **params)         reads the server itself while in receive()
    └── pump, while the view stays away from receive(): server -> inbox;
        on disconnect, tell the view or cancel it
    leaving the scope, by any road -> one close, with the code that road calls for

The pump is what lets a view that only sends, or waits on something else,
learn that its client left: somebody must keep reading the server's queue,
or a disconnect is never seen (hypercorn never fails a send, and stops reading
the socket once ten messages wait unread). See `_inbox.py` for when it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from ._errors import leaves
from ._inbox import Message
from .websockets import WebSocket, WebSocketDisconnect, WebSocketState

logger = logging.getLogger("trio_boca")

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_CONNECTING, _CONNECTED = WebSocketState.CONNECTING, WebSocketState.CONNECTED
_OPEN = (_CONNECTING, _CONNECTED)


@dataclass(frozen=True)
class Limits:
    """Per-connection knobs; see docs/messages.md, "Backpressure and limits"."""

    #: Most messages waiting unread in a connection's inbox.
    inbox_messages: int = 64
    #: Most characters or bytes waiting unread (one larger message still fits).
    inbox_bytes: int = 1 << 20
    #: With the inbox full, how long the view may take nothing before the
    #: connection is closed with 1008: it has stopped reading.
    stall_timeout: float = 5.0
    #: How long a view may be away from receive(), counted from when it left,
    #: and still be told rather than cancelled when its client leaves.
    disconnect_grace: float = 0.1
    #: Longest wait for the close frame to go out when a view ends.
    close_timeout: float = 5.0


class Connections:
    """The WebSocket connections one server run has open, so a stop can end them.

    `serve()` makes one per run and installs it with `current`; connections
    started in that run's tasks find it there.
    """

    def __init__(self) -> None:
        self._scopes: dict[WebSocket, trio.CancelScope] = {}
        self.going_away = False

    def go_away(self) -> None:
        """Cancel every view; each connection then closes with 1001."""
        self.going_away = True
        for scope in self._scopes.values():
            scope.cancel()


#: The running server's connections, if it keeps track (plain hypercorn does not).
current: ContextVar[Connections | None] = ContextVar("trio_boca_connections", default=None)


async def run_connection(
    ws: WebSocket,
    view: Callable[..., Awaitable[None]],
    params: dict[str, Any],
    *,
    auto_accept: bool,
    limits: Limits,
) -> BaseException | None:
    """Run `view(ws, **params)` and close the connection when it ends.

    The connection's nursery holds the view and, while the view stays away
    from receive(), its pump; the nursery's cancel scope is the view's. Returns
    the exception the view failed with, after logging it and closing with
    1011 (or answering 500), so the caller may re-raise it in tests.
    Cancellation from outside (server shutdown) is re-raised after the client
    has been sent 1001.
    """
    connections = current.get()  # None when not under serve(): nobody will ask
    inbox = ws._inbox
    outcome: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            scope = nursery.cancel_scope
            if connections is not None:
                connections._scopes[ws] = scope
                if connections.going_away:
                    scope.cancel()
            inbox.start_pump = partial(nursery.start_soon, _pump, ws, scope, limits)
            inbox.mark_away()  # until the view first calls receive()
            if auto_accept:
                await ws._accept_for_view()
            await view(ws, **params)
            scope.cancel()  # the view is done: so is its pump
    except BaseException as exc:
        outcome = _unwrapped(exc)
    finally:
        inbox.forget()
        if connections is not None:
            connections._scopes.pop(ws, None)
    going_away = connections is not None and connections.going_away
    failure = await _finish(
        ws, outcome, cancelled_for_leaving=inbox.cancelled_view, going_away=going_away
    )
    if outcome is not None and not isinstance(outcome, Exception):
        raise outcome
    return failure


def _unwrapped(exc: BaseException) -> BaseException:
    """The view's own exception, out of the group the nursery put it in."""
    parts = leaves(exc)
    return parts[0] if len(parts) == 1 else exc


async def _pump(ws: WebSocket, view_scope: trio.CancelScope, limits: Limits) -> None:
    """Read for a view that stays away from receive(), until it comes back."""
    inbox = ws._inbox
    try:
        while True:
            message = await inbox.receive_from_server()
            kind = message["type"]
            if kind == "websocket.receive":
                if ws.connection_state is not _CONNECTED:
                    continue  # sent before the client saw our close: nobody wants it
                text, data = message.get("text"), message.get("bytes")
                size = len(text) if text is not None else len(data or b"")
                if not await inbox.put(message, size, limits.stall_timeout):
                    await _close_for_stall(ws, view_scope, limits)
                    return
                if inbox.waiting:
                    return  # the view is back in receive(): it reads for itself
            elif kind == "websocket.disconnect":
                ws._client_left(message.get("code", 1005), message.get("reason") or "")
                if ws.connection_state in _OPEN:
                    await _tell_or_cancel(ws, view_scope, limits)
                return  # otherwise the client acknowledged our close or rejection
    finally:
        inbox.pump_stopped()


async def _tell_or_cancel(ws: WebSocket, view_scope: trio.CancelScope, limits: Limits) -> None:
    """The client left while the view was away from receive().

    A view that comes back to receive() within `disconnect_grace` of leaving
    it is told, and finishes on its own: `async for` loops then end the same
    way whatever they were doing when the client left. A view away longer
    (it only sends, or waits on something else) is cancelled.
    """
    since = ws._inbox.away_since
    deadline = (since if since is not None else trio.current_time()) + limits.disconnect_grace
    if not ws._told:
        told = ws._told_event = trio.Event()
        with trio.move_on_at(max(deadline, trio.current_time())):
            await told.wait()
    if not ws._told:
        ws._inbox.cancelled_view = True
        view_scope.cancel()


async def _close_for_stall(ws: WebSocket, view_scope: trio.CancelScope, limits: Limits) -> None:
    logger.warning(
        "closing WebSocket %s with 1008: the view read nothing for %.1f s with %d messages waiting",
        ws.scope["path"],
        limits.stall_timeout,
        ws._inbox.queued(),
    )
    await ws._close_on_the_way_out(1008, "message queue full: the server is not reading")
    ws._inbox.cancelled_view = True
    view_scope.cancel()


async def _finish(
    ws: WebSocket,
    outcome: BaseException | None,
    *,
    cancelled_for_leaving: bool,
    going_away: bool,
) -> BaseException | None:
    """Log how the view ended, then close with the code that road calls for.

    Each road gives a close code for an accepted connection and an HTTP
    status for a handshake still unanswered. An exception with a `close_code`
    attribute (and a `reason`) chooses its own code.
    """
    path = ws.scope["path"]
    failure: BaseException | None = None
    parts = [] if outcome is None else leaves(outcome)
    disconnects = [e for e in parts if isinstance(e, WebSocketDisconnect)]
    errors = [e for e in parts if not isinstance(e, (WebSocketDisconnect, trio.Cancelled))]
    if disconnects:
        _log_departure(ws, disconnects[0].code, disconnects[0].reason)
    elif cancelled_for_leaving and ws.client_gone:
        _log_departure(ws, ws.close_code or 1005, ws.close_reason or "")
    coded = [e for e in errors if isinstance(getattr(e, "close_code", None), int)]
    if errors and len(coded) == len(errors):
        # Exceptions that say how to close (broadcast's SlowSubscriber, say):
        # an expected end, not a crash.
        code, reason, status = coded[0].close_code, str(getattr(coded[0], "reason", "")), 503  # type: ignore[attr-defined]
        logger.warning("WebSocket %s closed with %d: %s", path, code, reason)
    elif errors:
        answered = "answered 500" if ws.connection_state is _CONNECTING else "closed with 1011"
        logger.error("WebSocket view for %s failed; %s", path, answered, exc_info=outcome)
        code, reason, status = 1011, "", 500
        failure = outcome
    elif len(disconnects) < len(parts) or (going_away and not ws.client_gone):
        # Cancelled from outside, or by Connections.go_away: the server is stopping.
        logger.debug("WebSocket %s cancelled by the server stopping; closing with 1001", path)
        code, reason, status = 1001, "server shutting down", 503
    else:  # returned, cancelled because the client left, or told it left
        code, reason, status = 1000, "", 403
    await ws._close_on_the_way_out(code, reason, refuse_with=status)
    return failure


def _log_departure(ws: WebSocket, code: int, reason: str) -> None:
    if code in ws.caught_close_codes:
        logger.debug("client left %s with %d", ws.scope["path"], code)
    else:
        logger.warning(
            "WebSocket %s closed with %d%s",
            ws.scope["path"],
            code,
            f" ({reason})" if reason else "",
        )
