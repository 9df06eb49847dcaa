"""The `WebSocket` a view receives: its state machine and its API.

The state machine covers what the *application* has done with the socket:

    CONNECTING --accept()--> CONNECTED --close()--> CLOSED
    CONNECTING --reject()--> REJECTED

Every transition goes through `WebSocket._transition`, so every misuse gets
the same kind of error: a `RuntimeError` that names the state it happened in;
and what a transition promises the client goes out through one shielded,
bounded step of the connection (`Connection.transmit`).

The *client* leaving is a separate fact (`client_gone`), not a state: it can
happen at any instant, and letting it change which calls are legal would turn
programming errors into races. Once the client is gone, `accept`, `send`,
`close` and `reject` still follow the state machine but put nothing on the
wire (there is nobody to hear it, just as with a real socket), and `receive`
raises `WebSocketDisconnect` once queued messages are drained.

Only the view's own task changes the state: the connection's other task and
the server record why the connection ends and cancel the view instead (see
`_connection.py`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import trio

from ._messages import BadMessage, Message, MessageType, decode, encode, encode_headers
from .datastructures import ScopeView

if TYPE_CHECKING:
    from types import TracebackType


#: Close codes that mean "the client went away without anything being wrong".
#: 1005 is a close frame without a code; 1006 is what hypercorn reports for
#: *every* client-initiated close, clean or not (hypercorn #127), and what any
#: server reports for a dropped TCP connection: a phone going into a tunnel is
#: ordinary life for a server, not an error to log.
DEFAULT_CAUGHT_CLOSE_CODES = frozenset({1000, 1001, 1005, 1006})

# Codes a server may put in a close frame (RFC 6455 section 7.4). 1005, 1006
# and 1015 are reserved for reporting, never sent; 1010 is for clients only.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})

#: A view that sends and never receives yields at least this often: see `send`.
SENDS_PER_YIELD = 16


class WebSocketDisconnect(Exception):
    """The connection ended: the client left, or the server closed it on bad input.

    `code` and `reason` are those of the close. Raised by `receive()` and its
    relatives; caught by `async with ws:` and `async for` when the code is in
    the route's `caught_close_codes`.
    """

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"WebSocket closed with code {self.code}" + (
            f": {self.reason}" if self.reason else ""
        )


class WebSocketState(enum.Enum):
    """What the application has done with a `WebSocket`: its `connection_state`.

    `CONNECTING` until the handshake is answered, by accepting (`CONNECTED`)
    or refusing it (`REJECTED`); an accepted connection is `CLOSED` once the
    application closes it. The client leaving is not a state, since it can
    happen at any instant: see `WebSocket.client_gone`.
    """

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"


_CONNECTING, _CONNECTED = WebSocketState.CONNECTING, WebSocketState.CONNECTED

_TRANSITIONS = {
    ("accept", _CONNECTING): _CONNECTED,
    ("reject", _CONNECTING): WebSocketState.REJECTED,
    ("close", _CONNECTED): WebSocketState.CLOSED,
}

_HINTS = {
    ("accept", _CONNECTED): "it is already accepted",
    ("close", _CONNECTING): "refuse a handshake with reject()",
    ("close", WebSocketState.CLOSED): "it is already closed; use ensure_closed() when unsure",
    ("reject", _CONNECTED): (
        "reject() refuses a handshake; end an accepted connection with close(), "
        "or declare the route with auto_accept=False to decide before accepting"
    ),
    ("send", _CONNECTING): "accept() it first",
    ("receive", _CONNECTING): "accept() it first",
}


class Link(Protocol):
    """What a `WebSocket` asks of the connection under it (`Connection`; for a
    mounted app's handshake, the door that runs the App's checks)."""

    @property
    def gone(self) -> bool: ...
    @property
    def departure(self) -> tuple[int, str] | None: ...
    async def transmit(self, *messages: Message, final: bool) -> bool: ...
    def answered(self, status: int) -> None: ...
    async def receive(self) -> Message | None: ...
    async def send(self, message: Message) -> None: ...
    def bad_input(self, code: int, reason: str) -> None: ...


class WebSocket(ScopeView):
    """One WebSocket connection, as seen by a view.

    Created by the framework; a view gets it as its first argument.

    A call the connection's state does not allow (sending before `accept()`,
    closing twice) raises `RuntimeError` naming the state and what to do
    instead. An argument that cannot go on the wire raises `ValueError` (a
    close code reserved by the protocol, say), or `TypeError` for a message
    of the wrong type. Once the client has left, receiving raises
    `WebSocketDisconnect`, after what it sent before leaving has been read,
    while sending does nothing: a view that is not receiving is cancelled
    instead. `async for message in ws` ends (`StopAsyncIteration`) when the
    client leaves with one of the route's `caught_close_codes`.
    """

    def __init__(
        self,
        scope: Message,
        connection: Link,
        *,
        receive_type: MessageType = "text",
        send_type: MessageType = "text",
        caught_close_codes: Iterable[int] = DEFAULT_CAUGHT_CLOSE_CODES,
    ) -> None:
        self.scope = scope
        self.receive_type = receive_type
        self.send_type = send_type
        self.caught_close_codes = frozenset(caught_close_codes)
        self.connection_state = WebSocketState.CONNECTING
        self._connection = connection
        # The code and reason the view closed with, if it closed first.
        self._closed_with: tuple[int, str] | None = None
        # True from the framework's automatic accept until the view accepts.
        self._auto_accepted = False
        # Sends since the last receive(): see send().
        self._sends_in_a_row = 0

    # -- what the view can read (and url, headers, query_params, path_params,
    # client: see ScopeView) ------------------------------------------------

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in the order it listed them."""
        return list(self.scope.get("subprotocols", ()))

    @property
    def state(self) -> dict[str, Any]:
        """Per-connection state shared with the server (the ASGI scope's `state`)."""
        state: dict[str, Any] = self.scope.setdefault("state", {})
        return state

    @property
    def client_gone(self) -> bool:
        """True once the client has left, or its connection failed under us."""
        return self._connection.gone

    @property
    def close_code(self) -> int | None:
        """The close code, once either side has closed (whichever closed first)."""
        closed = self._closed_with or self._connection.departure
        return None if closed is None else closed[0]

    @property
    def close_reason(self) -> str | None:
        """The close reason, once either side has closed (whichever closed first)."""
        closed = self._closed_with or self._connection.departure
        return None if closed is None else closed[1]

    def __repr__(self) -> str:
        return f"<WebSocket {self.url.path} {self.connection_state.value}>"

    # -- the state machine ---------------------------------------------------

    def _transition(self, action: str) -> None:
        try:
            self.connection_state = _TRANSITIONS[action, self.connection_state]
        except KeyError:
            self._refuse(action)

    def _refuse(self, action: str) -> NoReturn:
        state = self.connection_state
        hint = _HINTS.get((action, state))
        raise RuntimeError(
            f"cannot {action}() a WebSocket in state {state.value}" + (f": {hint}" if hint else "")
        )

    # -- handshake -----------------------------------------------------------

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Accept the handshake, optionally choosing one of the client's subprotocols.

        On a route with `auto_accept=True` the framework has accepted already;
        the view's first `accept()` without arguments is then a no-op, so code
        written for views that accept by hand keeps working (as `async with ws:`
        does). Anything more is an error: accepting twice, or asking for a
        subprotocol or headers the automatic accept could not send.

        Raises `ValueError` if `subprotocol` is not one the client offered (or
        a header is not Latin-1), and `RuntimeError`, naming the state, once
        the handshake has been answered. A view already cancelled (the server
        is stopping, say) gets `trio.Cancelled` instead of a connection, and
        the handshake is refused.
        """
        if self._auto_accepted and self.connection_state is _CONNECTED:
            self._auto_accepted = False
            if subprotocol is None and headers is None:
                await trio.lowlevel.checkpoint()
                return
            raise RuntimeError(
                "cannot accept() a WebSocket in state CONNECTED: the route accepted it "
                "already; declare it with auto_accept=False to choose a subprotocol or headers"
            )
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(
                f"subprotocol {subprotocol!r} was not offered by the client "
                f"(offered: {self.subprotocols})"
            )
        # A view already told to stop (the server is stopping, say) must not
        # begin a conversation: the handshake is then refused instead.
        await trio.lowlevel.checkpoint_if_cancelled()
        accept = {
            "type": "websocket.accept",
            "subprotocol": subprotocol,
            "headers": encode_headers(headers),
        }
        self._transition("accept")
        if await self._connection.transmit(accept, final=False):
            self._connection.answered(101)

    async def reject(
        self,
        status: int = 403,
        *,
        body: bytes | str = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Refuse the handshake with an HTTP response instead of a WebSocket.

        The client sees `status`, `headers` and `body` when the server offers
        ASGI's `websocket.http.response` extension (hypercorn does); on other
        servers it sees a bare 403.

        Raises `ValueError` for a `status` outside 400-599 (or a header that
        is not Latin-1), and `RuntimeError`, naming the state, once the
        handshake has been answered: end an accepted connection with `close()`.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"reject() takes an HTTP error status (400-599), not {status}")
        content = body.encode() if isinstance(body, str) else bytes(body)
        raw_headers = encode_headers(headers)
        if (status == 403 and not content and not raw_headers) or not self._can_respond():
            # ASGI's own way: close before accept is answered with 403.
            self._transition("reject")
            if await self._connection.transmit(
                {"type": "websocket.close", "code": 1000}, final=True
            ):
                self._connection.answered(403)
            return
        names = {name for name, _ in raw_headers}
        if content and b"content-type" not in names:
            raw_headers.append((b"content-type", b"text/plain; charset=utf-8"))
        raw_headers.append((b"content-length", str(len(content)).encode()))
        self._transition("reject")
        if await self._connection.transmit(
            {"type": "websocket.http.response.start", "status": status, "headers": raw_headers},
            {"type": "websocket.http.response.body", "body": content},
            final=True,
        ):
            self._connection.answered(status)

    def _can_respond(self) -> bool:
        return "websocket.http.response" in self.scope.get("extensions", {})

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with `code` and `reason`.

        Raises `ValueError` unless `code` is one a server may send (1000-1003,
        1007-1009, 1011-1014, or 3000-4999 for the application's own) and
        `reason` fits in 123 bytes of UTF-8. Raises `RuntimeError` if the
        connection was never accepted (refuse a handshake with `reject()`) or is
        closed already; `ensure_closed()` closes only when needed. The close
        frame goes out shielded from cancellation, within the app's
        `close_timeout`.
        """
        if not _sendable(code):
            raise ValueError(f"{code} is not a close code a server may send")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason must fit in 123 bytes of UTF-8")
        self._transition("close")
        if self.close_code is None:
            self._closed_with = (code, reason)
        await self._connection.transmit(
            {"type": "websocket.close", "code": code, "reason": reason}, final=True
        )

    async def ensure_closed(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection unless that is already done, whatever its state.

        A handshake still waiting for an answer is rejected (403); a connection
        closed or rejected already is left as it is. It raises no
        `RuntimeError`, only the `ValueError` of `close()` for a `code` or
        `reason` that cannot be sent, and only when it does close.
        """
        if self.connection_state is _CONNECTED:
            await self.close(code, reason)
        elif self.connection_state is _CONNECTING:
            await self.reject()
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    # -- messages ------------------------------------------------------------

    async def receive_event(self) -> Message:
        """The next raw ASGI `websocket.receive` event, whatever the route's types.

        Raises as `receive()` does, except that no event is unreadable.
        """
        event: Message = await self._receive_as("event")
        return event

    async def receive(self) -> Any:
        """The next message, decoded as the route's `receive_type` says.

        Raises `WebSocketDisconnect` with the client's close code and reason
        once it has left and everything it sent before has been read. A
        message the route cannot decode (a binary frame to a `"text"` route,
        invalid JSON) is the client's error: the connection is closed with
        1003 or 1007, and this raises `WebSocketDisconnect` with that code.
        Raises `RuntimeError`, naming the state, unless the connection is
        accepted and not closed.
        """
        return await self._receive_as(self.receive_type)

    async def receive_text(self) -> str:
        """The next message, which must be text, whatever the route's `receive_type`.

        A binary frame closes the connection with 1003 and raises
        `WebSocketDisconnect` with that code; so does every call once the
        client has left (with its code) and what it sent has been read.
        Raises `RuntimeError`, naming the state, unless the connection is
        accepted and not closed.
        """
        text: str = await self._receive_as("text")
        return text

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary, whatever the route's `receive_type`.

        A text frame closes the connection with 1003 and raises
        `WebSocketDisconnect` with that code; so does every call once the
        client has left (with its code) and what it sent has been read.
        Raises `RuntimeError`, naming the state, unless the connection is
        accepted and not closed.
        """
        data: bytes = await self._receive_as("bytes")
        return data

    async def receive_json(self) -> Any:
        """The next message, text or binary, decoded as JSON.

        Invalid JSON closes the connection with 1007 and raises
        `WebSocketDisconnect` with that code; so does every call once the
        client has left (with its code) and what it sent has been read.
        Raises `RuntimeError`, naming the state, unless the connection is
        accepted and not closed.
        """
        return await self._receive_as("json")

    async def _receive_as(self, kind: Any) -> Any:
        # The one place every receive goes through.
        if self.connection_state is not _CONNECTED:
            if kind is _ITERATING and self.connection_state is WebSocketState.CLOSED:
                # Another of the view's tasks closed it: the loop is over,
                # whether this task was waiting in receive() or not.
                await trio.lowlevel.checkpoint()
                return _END
            self._refuse("receive")
        self._sends_in_a_row = 0
        event = await self._connection.receive()
        if event is None:
            code, reason = self.close_code or 1005, self.close_reason or ""
            if kind is _ITERATING and code in self.caught_close_codes:
                return _END  # async for ends: no exception but StopAsyncIteration
            raise WebSocketDisconnect(code, reason)
        try:
            return decode(event, self.receive_type if kind is _ITERATING else kind)
        except BadMessage as bad:
            # The client broke the protocol this route speaks: end this one
            # connection, say why, and let the view unwind.
            # (Another of the view's tasks may have closed it meanwhile.)
            self._connection.bad_input(bad.code, bad.reason)
            await self.ensure_closed(bad.code, bad.reason)
            raise WebSocketDisconnect(bad.code, bad.reason) from None

    async def send(self, value: Any) -> None:
        """Send `value`, encoded as the route's `send_type` says.

        Raises `TypeError` for a value that type cannot carry, and
        `RuntimeError`, naming the state, unless the connection is accepted and
        not closed. Once the client has left, it sends nothing and does not
        raise: a view learns of the departure from `receive()`, or by being
        cancelled.
        """
        await self._send_event(encode(value, self.send_type))

    async def send_text(self, text: str) -> None:
        """Send `text` as a text frame, whatever the route's `send_type`.

        Raises `TypeError` if it is not a `str`, and `RuntimeError`, naming the
        state, unless the connection is accepted and not closed. Once the
        client has left, it sends nothing (see `send()`).
        """
        await self._send_event(encode(text, "text"))

    async def send_bytes(self, data: bytes) -> None:
        """Send `data` as a binary frame, whatever the route's `send_type`.

        Raises `TypeError` unless it is `bytes`, `bytearray` or `memoryview`,
        and `RuntimeError`, naming the state, unless the connection is accepted
        and not closed. Once the client has left, it sends nothing (see
        `send()`).
        """
        await self._send_event(encode(data, "bytes"))

    async def send_json(self, value: Any) -> None:
        """Send `value` as JSON in a text frame, whatever the route's `send_type`.

        Raises `TypeError` for a value JSON cannot encode (`ValueError` for
        one that contains itself), and `RuntimeError`, naming the state, unless
        the connection is accepted and not closed. Once the client has left, it
        sends nothing (see `send()`).
        """
        await self._send_event(encode(value, "json"))

    async def _send_event(self, event: Message) -> None:
        # hypercorn's send yields (and so lets other tasks run, and honours
        # cancellation) while its stream is open, but returns at once after it
        # closed: a view doing nothing but send() would then starve the reader
        # that is to tell it the client left, and spin the event loop. So every
        # SENDS_PER_YIELD sends with no receive() between them start with a
        # full checkpoint; an echo loop, receiving in between, never pays.
        self._sends_in_a_row += 1
        if self._sends_in_a_row >= SENDS_PER_YIELD:
            self._sends_in_a_row = 0
            await trio.lowlevel.checkpoint()
        # No await between the state check and the server's send: a close
        # from another of the view's tasks can never slip in between the two.
        if self.connection_state is not _CONNECTED:
            self._refuse("send")
        await self._connection.send(event)

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Any:
        """Messages until the client leaves with one of `caught_close_codes`."""
        message = await self._receive_as(_ITERATING)
        if message is _END:
            raise StopAsyncIteration
        return message

    # -- async with ws: --------------------------------------------------------

    async def __aenter__(self) -> WebSocket:
        if self.connection_state is not _CONNECTED:
            await self.accept()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            await self.ensure_closed()
            return False
        if isinstance(exc, WebSocketDisconnect):
            await self.ensure_closed()
            return exc.code in self.caught_close_codes
        if isinstance(exc, Exception):
            await self.ensure_closed(*(chosen_close(exc) or (1011, "")))
        # Cancellation and KeyboardInterrupt pass through untouched: the
        # connection's own exit path closes with the code they call for.
        return False

    # -- called by the connection --------------------------------------------

    async def _accept_for_view(self) -> None:
        await self.accept()
        self._auto_accepted = True

    async def _finish(self, code: int, reason: str, status: int) -> None:
        """Answer whatever the view left unanswered, as its end calls for.

        A handshake refused with a status other than 403 needs the server's
        denial-response extension; without it the handshake is left
        unanswered and the server answers 500 itself.
        """
        if self.connection_state is _CONNECTED:
            await self.close(code, reason)
        elif self.connection_state is _CONNECTING:
            if status == 403:
                await self.reject()
            elif self._can_respond():
                await self.reject(status, body=HTTPStatus(status).phrase)


def _sendable(code: int) -> bool:
    return code in _SENDABLE_CODES or 3000 <= code <= 4999


def chosen_close(exc: BaseException) -> tuple[int, str] | None:
    """The close code and reason an exception chooses for itself, if valid.

    An exception with an int `close_code` (and optionally a `reason`) that
    escapes a view closes the socket with them, as an expected end rather
    than a crash: how broadcast's SlowSubscriber (1008) reaches the client.
    """
    code = getattr(exc, "close_code", None)
    reason = str(getattr(exc, "reason", ""))
    if isinstance(code, int) and _sendable(code) and len(reason.encode()) <= 123:
        return code, reason
    return None


# `_receive_as` kinds beyond the message types: an `async for` step.
_ITERATING: Any = object()
_END = object()
