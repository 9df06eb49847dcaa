"""One WebSocket connection, from handshake to close.

    connection task: Connection.run()
    └── connection nursery; its cancel scope is the view's
        ├── reader, always on: server receive() -> inbox (a bounded memory channel);
        │   sees the client leave, or the view stop reading: records why, cancels
        └── view(ws, **params), in the connection task itself
        then, whatever ended the view: one decision (`Ending`), one table
        (`CLOSINGS`), one shielded and bounded close, and a bounded read of the
        server until it reports the disconnect, so it can release the socket

Who may do what, so that a connection's life fits in one head: only the
connection task (the view, then the exit path) changes the WebSocket's state
or writes to the wire. The reader and the server's stop only *record* why the
connection ends (the first record wins) and cancel the view.

Why a reader always runs: under hypercorn a send to a departed client returns
silently, and hypercorn stops reading the socket once ten messages wait for
the app. Without somebody reading, a view that only sends would never learn
that its client left, and one that does not read would never see the close.
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from ._errors import leaves, sole_error, split_errors
from ._hypercorn import ENDED_BY, write_deadline
from ._messages import Message
from .guards import Check
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
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError)


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
        self.going_away = False

    def add(self, connection: Connection) -> None:
        self._open.add(connection)
        if self.going_away:
            connection.stop(Ending(End.SHUTDOWN))

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)

    def go_away(self) -> None:
        """Stop every view; each connection then closes with 1001."""
        self.going_away = True
        for connection in list(self._open):
            connection.stop(Ending(End.SHUTDOWN))


#: The running server's connections, if it keeps track (plain hypercorn does not).
current: ContextVar[Connections | None] = ContextVar("trio_boca_connections", default=None)


class Connection:
    """One WebSocket connection: the view's task, its reader, and how it ends.

    The `WebSocket` a view holds talks to it through `receive`, `send`,
    `transmit`, `bad_input`, `gone` and `departure`, nothing else.
    """

    __slots__ = (
        "_inbox",
        "_inbox_in",
        "_left_at",
        "_moved",
        "_queued",
        "_receive",
        "_receiving",
        "_room",
        "_scope",
        "_send",
        "_started",
        "_told",
        "departure",
        "end",
        "gone",
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
        #: Why the connection ends, once that is known.
        self.end: Ending | None = None
        #: The client's close code and reason, once it has left.
        self.departure: tuple[int, str] | None = None
        #: Nothing more goes on the wire: the client left, or the transport failed.
        self.gone = False
        self._inbox_in, self._inbox = trio.open_memory_channel[tuple[Message, int]](
            limits.inbox_messages
        )
        self._queued = 0  # characters or bytes in the inbox
        self._room: trio.Event | None = None  # the reader waits for the view to take some
        self._receiving = 0  # view tasks inside receive()
        self._left_at = trio.current_time()  # when the view last left receive()
        self._told = False  # the view has learnt, from receive(), that the client left
        self._moved: trio.Event | None = None  # once it left: the view entered or left receive()
        self._scope: trio.CancelScope | None = None  # the connection nursery's: the view's

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
        """
        connections = current.get()
        outcome: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                # The view runs in the nursery's own scope: cancelling the
                # view stops the reader too, which by then has nothing to do.
                self._scope = nursery.cancel_scope
                if connections is not None:
                    connections.add(self)
                nursery.start_soon(self._read)
                if await self._admitted(checks):
                    if auto_accept:
                        await self.ws._accept_for_view()
                    await view(self.ws, **params)
                nursery.cancel_scope.cancel()  # the view is done: so is its reader
        except BaseException as exc:  # every road out leads to the close below
            outcome = _ours_unwrapped(exc)
        finally:
            if connections is not None:
                connections.discard(self)
        self.end = self._conclude(outcome)
        accepted = self.ws.connection_state in (WebSocketState.CONNECTED, WebSocketState.CLOSED)
        await self._close(self.end, outcome)
        await self._drain()
        self._record(accepted, outcome)
        if outcome is None:
            return None
        _, unlogged = split_errors(outcome)
        if unlogged is not None:
            raise unlogged  # cancellation from outside, KeyboardInterrupt, SystemExit
        return (sole_error(outcome) or outcome) if self.end.end is End.FAILED else None

    async def _admitted(self, checks: Iterable[Check]) -> bool:
        """Run the checks until one refuses the handshake; False if one did."""
        for check in checks:
            await check(self.ws)
            state = self.ws.connection_state
            if state is WebSocketState.REJECTED:
                return False
            if state is not WebSocketState.CONNECTING:
                name = getattr(check, "__qualname__", check)
                raise RuntimeError(
                    f"check {name} left the WebSocket in state {state.value}: "
                    "a check may only refuse a handshake, with reject()"
                )
        return True

    def _conclude(self, outcome: BaseException | None) -> Ending:
        """Why the connection ended, all things considered: the one decision."""
        parts = [] if outcome is None else leaves(outcome)
        errors = [e for e in parts if not isinstance(e, (trio.Cancelled, WebSocketDisconnect))]
        if any(not isinstance(e, Exception) for e in errors):
            return Ending(End.SHUTDOWN)  # KeyboardInterrupt, SystemExit: the process is stopping
        if errors:
            chosen = [chosen_close(e) for e in errors]
            if chosen[0] is not None and all(chosen):
                return Ending(End.CODED_ERROR, *chosen[0])
            return Ending(End.FAILED)
        if self.end is not None:
            return self.end
        disconnects = [e for e in parts if isinstance(e, WebSocketDisconnect)]
        if disconnects and self.ws.connection_state is WebSocketState.CLOSED:
            return Ending(End.RETURNED)  # the echo of the view's own close, in another task
        if disconnects:
            return Ending(End.CLIENT_LEFT, disconnects[0].code, disconnects[0].reason)
        if parts:  # cancelled, and not by us: the server is stopping without telling us
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

    def _record(self, accepted: bool, outcome: BaseException | None) -> None:
        """Count how this connection ended, and write its access line."""
        assert self.end is not None
        tally = self.tally
        if accepted:
            tally.open -= 1
        elif self.ws.connection_state is WebSocketState.CONNECTING:
            tally.handshakes[500] += 1  # left unanswered: the server answers 500
        code = self.ws.close_code
        if code is not None:
            tally.closes[code] += 1
        error = sole_error(outcome) if outcome is not None else None
        coded = self.end.end is End.CODED_ERROR and error is not None
        tally.ends[type(error).__name__ if coded else self.end.end.name.lower()] += 1
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

    def answered(self, status: int) -> None:
        """The handshake was answered: 101 (accepted), or an HTTP status."""
        self.tally.handshakes[status] += 1
        if status == 101:
            self.tally.open += 1

    async def _drain(self) -> None:
        """Read the server until it reports the disconnect, dropping what arrives.

        hypercorn puts the disconnect into the app's queue of ten; were the
        queue full with nobody reading, it would wait there for ever, holding
        the socket, its tasks and every queued message. Only an accepted
        connection can have messages queued. Bounded by `close_timeout`.
        """
        if self.departure is not None or self.ws.connection_state is not WebSocketState.CLOSED:
            return
        with trio.move_on_after(self.limits.close_timeout):
            while (await self._receive())["type"] != "websocket.disconnect":
                pass

    # -- other tasks: record why, and cancel ---------------------------------

    def stop(self, ending: Ending) -> None:
        """End the connection for `ending`: record it (unless an end is known) and
        cancel the view. All that a task other than the connection's may do."""
        if self.end is None:
            self.end = ending
        assert self._scope is not None  # stop() is only called on a running connection
        self._scope.cancel()

    async def _read(self) -> None:
        """Server -> inbox, for as long as the view runs."""
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                # Once the view has closed, nothing it leaves unread is a stall.
                if not await self._queue(message) and self.ws.connection_state in _OPEN:
                    waiting = self._inbox_in.statistics().current_buffer_used
                    stall = self.limits.stall_timeout
                    detail = (
                        f"the view read nothing for {stall:g} s with {waiting} messages waiting"
                    )
                    self.stop(Ending(End.STALLED, 1008, detail))
                    return
            elif kind == "websocket.disconnect":
                # An int: a server may hand an IntEnum (wsproto's CloseReason).
                code, reason = int(message.get("code", 1005)), message.get("reason") or ""
                ended_by = message.get(ENDED_BY)  # the server ended it: why
                if ended_by is not None and self.end is None:
                    self.end = Ending(End[ended_by.upper()], code, reason)
                await self._client_left(code, reason)
                return

    async def _queue(self, message: Message) -> bool:
        """Put `message` in the inbox, waiting while it is full.

        The wait is backpressure: while the reader waits it does not read the
        server, so the server stops reading the socket. Returns False if the
        view took nothing for `stall_timeout`; any message taken restarts the
        clock. Once the view has said its last word, messages are dropped.
        """
        text, data = message.get("text"), message.get("bytes")
        size = len(text) if text is not None else len(data or b"")
        limits = self.limits
        try:
            while self._queued and self._queued + size > limits.inbox_bytes:
                room = self._room = trio.Event()
                with trio.move_on_after(limits.stall_timeout) as waiting:
                    await room.wait()
                if waiting.cancelled_caught:
                    return False
            try:
                self._inbox_in.send_nowait((message, size))
            except trio.WouldBlock:
                with trio.move_on_after(limits.stall_timeout) as waiting:
                    await self._inbox_in.send((message, size))
                if waiting.cancelled_caught:
                    return False
            self._queued += size
        except trio.BrokenResourceError:
            pass  # the view has closed the connection: nobody will read it
        return True

    async def _client_left(self, code: int, reason: str) -> None:
        """Tell the view, or cancel it.

        A view in receive() learns there, once what was queued is read, and
        finishes on its own: an `async for` loop then ends the same way
        whatever it was doing when the client left. So does a view that comes
        back to receive() within `disconnect_grace` of having left it, as
        often as it takes to read what was queued. A view away longer (it
        only sends, or waits on something else) is cancelled.
        """
        self.departure = (code, reason)
        self.gone = True
        self._inbox_in.close()  # receive() reports the departure once the inbox is drained
        if self.ws.connection_state not in _OPEN:
            return  # the client answered our close or rejection
        if self.end is None:
            self.end = Ending(End.CLIENT_LEFT, code, reason)
        if self._receiving and not self._inbox.statistics().current_buffer_used:
            return  # waiting in receive() with nothing queued: closing the inbox told it
        while not self._told and self.ws.connection_state in _OPEN:
            moved = self._moved = trio.Event()
            if self._receiving:
                await moved.wait()  # it takes a queued message, or learns
                continue
            with trio.move_on_at(self._left_at + self.limits.disconnect_grace):
                await moved.wait()
            if not moved.is_set() and self.ws.connection_state in _OPEN:
                self.stop(self.end)
                return

    # -- the WebSocket's side --------------------------------------------------

    async def receive(self) -> Message | None:
        """The client's next message; None once it has left (or the view closed)
        and the inbox is drained."""
        self._receiving += 1
        if self._moved is not None:
            self._moved.set()
        try:
            message, size = await self._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._told = True
            # A closed channel raises without a schedule point; a view that
            # calls receive() again and again must still let others run.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return None
        finally:
            self._receiving -= 1
            self._left_at = trio.current_time()
            if self._moved is not None:
                self._moved.set()
        self._queued -= size
        if self._room is not None:
            self._room.set()
        self.received += 1
        self.tally.messages_in += 1
        return message

    async def send(self, message: Message) -> None:
        """Send a data message; a no-op once the client is gone, as on a socket."""
        if self.gone:
            await trio.lowlevel.checkpoint()
            return
        token = write_deadline.set(trio.current_time() + self.limits.send_timeout)
        try:
            await self._send(message)
        except _TRANSPORT_ERRORS:
            self.gone = True
        else:
            self.sent += 1
            self.tally.messages_out += 1
        finally:
            write_deadline.reset(token)

    async def transmit(self, *messages: Message, final: bool) -> None:
        """Put what a state transition promises on the wire: the one path for
        accept, reject and close, whoever calls them.

        Shielded, since a cancelled send would leave the state claiming an
        answer the client never got; bounded by `close_timeout`, so a client
        that stopped reading cannot hold it. After the last word (`final`)
        the inbox is closed and what still arrives is dropped.
        """
        if final:
            self._inbox.close()
            self._queued = 0
            if self._room is not None:
                self._room.set()
        if self.gone:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        deadline = trio.current_time() + self.limits.close_timeout
        token = write_deadline.set(deadline)  # the server's write too, where it lets us
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            try:
                for message in messages:
                    await self._send(message)
            except _TRANSPORT_ERRORS:
                self.gone = True
            finally:
                write_deadline.reset(token)
        if scope.cancelled_caught:
            self.gone = True

    def bad_input(self, code: int, reason: str) -> None:
        """The client sent what the route cannot read; the view closes with `code`."""
        if self.end is None:
            self.end = Ending(End.BAD_INPUT, code, reason)


def _ours_unwrapped(exc: BaseException) -> BaseException:
    """The view's exception, out of the group the connection's nursery put it in."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return exc.exceptions[0]
    return exc
