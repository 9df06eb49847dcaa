"""One WebSocket connection, from handshake to close.

    connection task: Connection.run()
    └── connection nursery (under a server that hands messages over itself,
        through the trio_boca.direct extension, the server's own task is the
        reader: then there is no nursery, only the grace scope)
        ├── reader, always on: server receive() -> inbox (`Inbox`: bounded in
        │   messages and bytes). It sees the client leave, or the view stop
        │   reading: it records why, and cancels the view (or, the client
        │   gone, sets the grace). After the close it reads on until the
        │   server reports the disconnect, so the server can release the socket.
        └── the grace scope (`Connection.grace`)
            └── view(ws, **params), in the connection task itself
        then, whatever ended the view: one decision (`Ending`), one table
        (`CLOSINGS`), one shielded and bounded close, and the record

Who may do what, so that a connection's life fits in one head: only the
connection task (the view, then the exit path) changes the WebSocket's state
or writes to the wire. The reader and the server's stop only *record* why the
connection ends, each in a field of its own, and cancel the view.

Told or cancelled: a view whose client has left learns it in receive(), or
is cancelled `disconnect_grace` after it last left receive(). The rule lives
in `Connection._grace_from`; receive() and the reader's `left` are the only
places that apply it.

Why a reader always runs: under hypercorn a send to a departed client returns
silently, and hypercorn stops reading the socket once ten messages wait for
the app. Without somebody reading, a view that only sends would never learn
that its client left, and one that does not read would never see the close.
"""

from __future__ import annotations

import enum
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from ._direct import EXTENSION
from ._errors import leaves, sole_error, split_errors
from ._inbox import Inbox
from ._messages import Message
from .guards import Check, run_checks
from .metrics import RouteTally
from .websockets import WebSocket, WebSocketDisconnect, WebSocketState, chosen_close

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("trio_boca")
#: One line per WebSocket session (`trio-boca run --access-log`).
access_log = logging.getLogger("trio_boca.access")

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_OPEN = (WebSocketState.CONNECTING, WebSocketState.CONNECTED)

#: What the server's send raises when the transport is failing under us
#: (hypercorn closing on a client's protocol error, say): the client is gone;
#: the view did nothing wrong.
_TRANSPORT_ERRORS = (
    trio.BrokenResourceError,
    trio.BusyResourceError,
    trio.ClosedResourceError,
    OSError,  # ASGI 2.4: a send on a closed connection (trio_boca's server: ClientDisconnected)
)


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
    #: Longest wait for a close (or accept, or rejection) to go out, and for
    #: the server to report the disconnect after the view ended.
    close_timeout: float = 5.0
    #: Longest a send may take (a client that stopped reading): then the
    #: connection is aborted. Enforced where the server lets us (trio_boca's
    #: serve(); hypercorn on its own writes without a deadline).
    send_timeout: float = 30.0


class End(enum.Enum):
    """Why a connection ended."""

    RETURNED = "the view returned"
    CLIENT_LEFT = "the client left"
    BAD_INPUT = "the client sent what the route cannot read"
    STALLED = "the view stopped reading"
    KEEPALIVE = "the client did not answer a ping"
    WRITE_TIMEOUT = "the client stopped reading"
    FAILED = "the view raised"
    CODED_ERROR = "the view raised an exception that names its close code"
    SHUTDOWN = "the server is stopping"


class Ending(NamedTuple):
    """An end, with the code and reason that came with it (the client's, say)."""

    end: End
    code: int | None = None
    reason: str = ""


class Closing(NamedTuple):
    """How an end reaches the client and the log."""

    #: The close frame's code for an accepted connection (None: the ending's own).
    code: int | None
    #: The close frame's reason (None: the ending's own).
    reason: str | None
    #: The HTTP status for a handshake that was never answered.
    status: int
    #: How it is logged, once (0: not at all).
    level: int


#: The one table. Nothing goes on the wire to a client that has left, and a
#: departure is logged at WARNING instead when its code is not in the route's
#: `caught_close_codes`. docs/errors.md shows this table.
CLOSINGS: dict[End, Closing] = {
    End.RETURNED: Closing(1000, "", 403, 0),
    End.CLIENT_LEFT: Closing(1000, "", 403, logging.DEBUG),
    End.BAD_INPUT: Closing(None, None, 400, logging.WARNING),
    End.STALLED: Closing(
        1008, "message queue full: the server is not reading", 503, logging.WARNING
    ),
    End.KEEPALIVE: Closing(1011, "keepalive ping timeout", 503, logging.INFO),
    End.WRITE_TIMEOUT: Closing(1011, "", 503, logging.WARNING),
    End.FAILED: Closing(1011, "", 500, logging.ERROR),
    End.CODED_ERROR: Closing(None, None, 503, logging.WARNING),
    End.SHUTDOWN: Closing(1001, "server shutting down", 503, logging.DEBUG),
}


class Connections:
    """The WebSocket connections one server run has open, so a stop can end them.

    `serve()` makes one per run and installs it with `current`; connections
    started in that run's tasks find it there.
    """

    def __init__(self) -> None:
        self._open: set[Connection] = set()
        #: The server is stopping: every connection, and every new one, shuts down.
        self.going_away = False

    def add(self, connection: Connection) -> None:
        self._open.add(connection)
        if self.going_away:
            connection.shutdown()

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)

    def go_away(self) -> None:
        """Stop every view; each connection then closes with 1001."""
        self.going_away = True
        for connection in list(self._open):
            connection.shutdown()


#: The running server's connections, if it keeps track (plain hypercorn does not).
current: ContextVar[Connections | None] = ContextVar("trio_boca_connections", default=None)


class Connection:
    """One WebSocket connection: the view's task, its reader, and how it ends.

    The `WebSocket` a view holds talks to it through `receive`, `send`,
    `transmit`, `answered`, `bad_input`, `gone` and `departure`, nothing
    else.

    Each field has one writer:

    - `inbox`: the reader puts and ends, the view gets and closes (see `Inbox`);
    - `grace`, the view's cancel scope: cancelled by whoever ends the
      connection; its deadline is the grace rule (`_grace_from`);
    - `departure` and `_reader_end`: the reader;
    - `_receiving` and `_away_since`: `receive()`, in the view's tasks;
    - `_bad_input`, `_broken` and `_answer`: the view's calls (the view's
      tasks, then the exit path);
    - `_stopping`: the server, when it stops.
    """

    __slots__ = (
        "_answer",
        "_away_since",
        "_bad_input",
        "_broken",
        "_reader_end",
        "_receive",
        "_receiving",
        "_send",
        "_started",
        "_stopping",
        "departure",
        "grace",
        "inbox",
        "limits",
        "received",
        "sent",
        "tally",
        "ws",
    )

    def __init__(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
        limits: Limits,
        tally: RouteTally,
        **options: Any,
    ) -> None:
        self._receive = receive
        self._send = send
        self.limits = limits
        #: The route's counts (see `metrics.py`), and this connection's messages.
        self.tally = tally
        self.received = self.sent = 0
        self._started = trio.current_time()
        self.ws = WebSocket(scope, self, **options)
        self.inbox = Inbox(limits.inbox_messages, limits.inbox_bytes)
        #: The view runs in this scope. Cancelled by whoever ends the
        #: connection; its deadline, once the client has left, is the grace.
        self.grace = trio.CancelScope()
        #: The client's close code and reason, once it has left.
        self.departure: tuple[int, str] | None = None
        self._reader_end: Ending | None = None  # why the reader ended it, if it did
        self._receiving = 0  # view tasks inside receive()
        self._away_since = self._started  # when the last one left receive()
        self._bad_input: Ending | None = None  # the client sent what the route cannot read
        self._broken = False  # the transport failed under a send
        self._answer: int | None = None  # the handshake's answer, once it went out
        self._stopping = False  # the server's: it is stopping

    @property
    def gone(self) -> bool:
        """Nothing more goes on the wire: the client left, or the transport failed."""
        return self._broken or self.departure is not None

    # -- the connection task -------------------------------------------------

    async def run(
        self,
        view: Callable[..., Awaitable[None]],
        params: dict[str, Any],
        *,
        auto_accept: bool,
        checks: Iterable[Check] = (),
    ) -> BaseException | None:
        """Run the `checks`, then `view(ws, **params)`, then end the connection
        as its end calls for. A check that refuses (`ws.reject()`) ends it
        before the view runs.

        Returns the view's exception, once logged and answered (1011 or 500),
        so a test client can re-raise it. Cancellation from outside, and
        KeyboardInterrupt or SystemExit, are re-raised after the close.
        Whatever happens on the way out, the connection is counted and
        logged, and leaves the server's registry.
        """
        connections = current.get()
        outcome: BaseException | None = None
        ending = Ending(End.SHUTDOWN)  # if even the decision is never reached
        raised: BaseException | None = None
        direct = self.ws.scope.get("extensions", {}).get(EXTENSION)
        if direct is not None:  # the server hands us its messages itself
            direct.write_timeout = self.limits.send_timeout
            direct.close_timeout = self.limits.close_timeout
            direct.attach(self)

        async def live(nursery: trio.Nursery | None) -> None:
            nonlocal outcome, ending
            try:
                with self.grace:
                    if connections is not None:
                        connections.add(self)
                    if await run_checks(self.ws, checks):
                        if auto_accept:
                            await self.ws._accept_for_view()
                        await view(self.ws, **params)
            except BaseException as exc:  # every road out leads to the close below
                outcome = _ours_unwrapped(exc)
            finally:
                if connections is not None:
                    connections.discard(self)
            ending = self._conclude(outcome)
            try:
                await self._close(ending, outcome)
            finally:
                if nursery is None:
                    pass  # the server reads on after the close itself
                elif self._drains():
                    # The reader reads on until the server reports the
                    # disconnect, so it can release the socket.
                    nursery.cancel_scope.deadline = trio.current_time() + self.limits.close_timeout
                else:
                    nursery.cancel_scope.cancel()

        try:
            if direct is None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read)
                    await live(nursery)
            else:  # no reader of ours, so no nursery either
                await live(None)
        except BaseException as exc:  # the reader's, the exit path's, or from outside
            raised = exc
        finally:
            self._record(ending, outcome)
        # The process is stopping: that goes on up, bare, wherever it landed
        # (a server logs a group as the app's error, and swallows it).
        interrupt = _interrupt(outcome) or _interrupt(raised)
        if interrupt is not None:
            raise interrupt
        if raised is not None:
            raise raised  # cancellation from outside, during the close or the drain
        if outcome is None:
            return None
        _, unlogged = split_errors(outcome)
        if unlogged is not None:
            raise unlogged  # cancellation from outside
        return (sole_error(outcome) or outcome) if ending.end is End.FAILED else None

    def _conclude(self, outcome: BaseException | None) -> Ending:
        """Why the connection ended, all things considered: the one decision.

        The view's own exception comes first; then what the view's calls
        found (bad input), then what the reader found (the client left, the
        view stalled, the server ended it), then the server's stop.
        """
        parts = [] if outcome is None else leaves(outcome)
        errors = [e for e in parts if not isinstance(e, (trio.Cancelled, WebSocketDisconnect))]
        if any(not isinstance(e, Exception) for e in errors):
            return Ending(End.SHUTDOWN)  # KeyboardInterrupt, SystemExit: the process is stopping
        if errors:
            chosen = [chosen_close(e) for e in errors]
            if chosen[0] is not None and all(chosen):
                return Ending(End.CODED_ERROR, *chosen[0])
            return Ending(End.FAILED)
        recorded = self._bad_input or self._reader_end
        if recorded is not None:
            return recorded
        cancelled = self.grace.cancelled_caught or any(isinstance(e, trio.Cancelled) for e in parts)
        if cancelled and self._stopping:
            return Ending(End.SHUTDOWN)
        disconnects = [e for e in parts if isinstance(e, WebSocketDisconnect)]
        if disconnects and self.ws.connection_state is WebSocketState.CLOSED:
            return Ending(End.RETURNED)  # the echo of the view's own close, in another task
        if disconnects:
            return Ending(End.CLIENT_LEFT, disconnects[0].code, disconnects[0].reason)
        if cancelled:  # and not by us: the server is stopping without telling us
            return Ending(End.SHUTDOWN)
        return Ending(End.RETURNED)

    async def _close(self, ending: Ending, outcome: BaseException | None) -> None:
        """Answer what the view left unanswered as the table says; log it once."""
        closing = CLOSINGS[ending.end]
        code = ending.code if closing.code is None else closing.code
        reason = ending.reason if closing.reason is None else closing.reason
        assert code is not None
        state = self.ws.connection_state
        await self.ws._finish(code, reason, closing.status)
        if ending.end is End.WRITE_TIMEOUT:
            done = "aborted"
        elif state is WebSocketState.CONNECTING:
            done = f"answered {closing.status}"
        elif state is WebSocketState.CONNECTED:
            done = f"closed with {code}"
        else:
            done = "closed by the view"
        path = self.ws.scope["path"]
        if ending.end is End.FAILED:
            logger.error("WebSocket view for %r failed; %s", path, done, exc_info=outcome)
        elif ending.end is End.CLIENT_LEFT:
            caught = ending.code in self.ws.caught_close_codes
            logger.log(
                logging.DEBUG if caught else logging.WARNING,
                "WebSocket %r: the client left with %d%s",
                path,
                ending.code,
                f" ({ending.reason})" if ending.reason else "",
            )
        elif closing.level:
            why = reason or ending.end.value
            detail = f": {ending.reason}" if ending.reason and ending.reason != why else ""
            logger.log(closing.level, "WebSocket %r %s (%s)%s", path, done, why, detail)

    def _drains(self) -> bool:
        """Whether the reader must read on after the close: the server may
        still hold messages, and its report of the disconnect, for the app.

        hypercorn puts that report into the app's queue of ten and waits
        while the queue is full: were nobody reading, it would wait for ever,
        holding the socket, its tasks and every queued message. Only an
        accepted connection can have messages queued.
        """
        return self.departure is None and self.ws.connection_state is WebSocketState.CLOSED

    def _record(self, ending: Ending, outcome: BaseException | None) -> None:
        """Count how this connection ended, and write its access line."""
        tally = self.tally
        if self._answer == 101:
            tally.open -= 1
        elif self._answer is None and self.ws.connection_state is WebSocketState.CONNECTING:
            tally.handshakes[500] += 1  # left unanswered: the server answers 500
        code = self.ws.close_code
        if code is not None:
            tally.closes[code] += 1
        error = sole_error(outcome) if outcome is not None else None
        coded = ending.end is End.CODED_ERROR and error is not None
        tally.ends[type(error).__name__ if coded else ending.end.name.lower()] += 1
        if access_log.isEnabledFor(logging.INFO):
            client = self.ws.client
            access_log.info(
                "%s WebSocket %r %.3f s, closed %s, %d in, %d out",
                f"{client[0]}:{client[1]}" if client else "-",
                self.ws.scope["path"],
                trio.current_time() - self._started,
                "-" if code is None else code,
                self.received,
                self.sent,
            )

    # -- the reader: record why, and cancel ------------------------------------

    async def _read(self) -> None:
        """Server -> inbox, until the server reports the disconnect."""
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                await self.deliver(message)
            elif kind == "websocket.disconnect":
                # An int: a server may hand an IntEnum (wsproto's CloseReason).
                code, reason = int(message.get("code", 1005)), message.get("reason") or ""
                self.left(code, reason)
                return

    async def deliver(self, message: Message) -> None:
        """Queue a client's message for the view, waiting while the inbox is full.

        The wait is backpressure: while the reader waits it does not read the
        server, so the server stops reading the socket. If the view takes
        nothing for `stall_timeout`, it has stopped reading: the connection
        is ended with 1008, and what arrives after that close is dropped.
        """
        text, data = message.get("text"), message.get("bytes")
        size = len(text) if text is not None else len(data or b"")
        # Once stalled, wait for the view's last word (the 1008), then drop.
        stall = self.limits.stall_timeout if self._reader_end is None else math.inf
        if await self.inbox.put(message, size, stall):
            return
        if self.ws.connection_state not in _OPEN:
            return  # the view has said its last word: nothing it leaves unread is a stall
        detail = f"the view read nothing for {stall:g} s with {self.inbox.waiting} messages waiting"
        self._reader_end = Ending(End.STALLED, 1008, detail)
        self.grace.cancel()

    def left(self, code: int, reason: str, ended_by: str | None = None) -> None:
        """The connection is over on the client's side: it left with `code`
        and `reason`, or the server ended it (`ended_by`, one of
        `_direct.ENDINGS`). Tell the view, or cancel it.

        A view in receive() learns there, once what was queued is read, and
        finishes on its own: an `async for` loop then ends the same way
        whatever it was doing when the client left. So does a view that comes
        back to receive() within `disconnect_grace` of having left it, as
        often as it takes to read what was queued. A view away longer (it
        only sends, or waits on something else) is cancelled: see
        `_grace_from`, the one place that rule is kept.
        """
        self.departure = (code, reason)
        self.inbox.end()
        if self.ws.connection_state not in _OPEN:
            return  # the client answered our close or rejection
        if self._reader_end is None:
            end = End.CLIENT_LEFT if ended_by is None else End[ended_by.upper()]
            self._reader_end = Ending(end, code, reason)
        if not self._receiving:
            self._grace_from(self._away_since)

    def shutdown(self) -> None:
        """The server is stopping: end the view; the connection closes with 1001."""
        self._stopping = True
        self.grace.cancel()

    def _grace_from(self, away_since: float) -> None:
        """The grace rule. Once the client has left, a view away from
        receive() since `away_since` is cancelled `disconnect_grace` later,
        unless it comes back first; one in receive() has no deadline.

        Called when the client leaves with no view task in receive(), and
        when the last one leaves receive() having not yet learnt that the
        client left; receive() clears the deadline while a task waits in it.
        """
        self.grace.deadline = away_since + self.limits.disconnect_grace

    # -- the WebSocket's side --------------------------------------------------

    async def receive(self) -> Message | None:
        """The client's next message; None once it has left (or the view closed)
        and the inbox is drained."""
        self._receiving += 1
        if self.departure is not None:
            self.grace.deadline = math.inf  # waiting in receive(): it will be told
        message: Message | None = None
        told = False
        try:
            message = await self.inbox.get()
            told = message is None
        finally:
            self._receiving -= 1
            self._away_since = trio.current_time()
            # Away again, with the client gone and the news not yet heard.
            if self.departure is not None and not told and not self._receiving:
                self._grace_from(self._away_since)
        if message is not None:
            self.received += 1
            self.tally.messages_in += 1
        return message

    async def send(self, message: Message) -> None:
        """Send a data message; a no-op once the client is gone, as on a socket."""
        if self.gone:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._send(message)
        except _TRANSPORT_ERRORS:
            self._broken = True
        else:
            self.sent += 1
            self.tally.messages_out += 1

    async def transmit(self, *messages: Message, final: bool) -> bool:
        """Put what a state transition promises on the wire: the one path for
        accept, reject and close, whoever calls them. True if it went out.

        Shielded, since a cancelled send would leave the state claiming an
        answer the client never got; bounded by `close_timeout`, so a client
        that stopped reading cannot hold it. A server's send that fails, in
        any way, means this connection's transport is broken: nothing more
        is written to it, and the failure stays with this connection. Once
        the last word (`final`) is out, the inbox is closed and what still
        arrives is dropped.
        """
        try:
            return await self._transmit(messages)
        finally:
            if final:
                self.inbox.close()

    async def _transmit(self, messages: tuple[Message, ...]) -> bool:
        if self.gone:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return False
        deadline = trio.current_time() + self.limits.close_timeout
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            try:
                for message in messages:
                    await self._send(message)
            except _TRANSPORT_ERRORS:
                self._broken = True
            except Exception as exc:  # the server failed: still only this connection's
                self._broken = True
                logger.warning(
                    "WebSocket %r: the server failed to send %s; the connection is lost",
                    self.ws.scope["path"],
                    messages[0]["type"],
                    exc_info=exc,
                )
        if scope.cancelled_caught:
            self._broken = True
        return not self._broken

    def answered(self, status: int) -> None:
        """The handshake's answer went out: 101 (accepted), or an HTTP status."""
        self._answer = status
        self.tally.handshakes[status] += 1
        if status == 101:
            self.tally.open += 1

    def bad_input(self, code: int, reason: str) -> None:
        """The client sent what the route cannot read; the view closes with `code`."""
        if self._bad_input is None:
            self._bad_input = Ending(End.BAD_INPUT, code, reason)


def _interrupt(exc: BaseException | None) -> BaseException | None:
    """A KeyboardInterrupt or SystemExit in `exc`, if there is one."""
    if exc is None:
        return None
    for leaf in leaves(exc):
        if isinstance(leaf, (KeyboardInterrupt, SystemExit)):
            return leaf
    return None


def _ours_unwrapped(exc: BaseException) -> BaseException:
    """The view's exception, out of the group the connection's nursery put it in."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return exc.exceptions[0]
    return exc
