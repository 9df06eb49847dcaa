"""The `WebSocket` a view receives: its state machine and its API.

The state machine covers what the *application* has done with the socket:

    CONNECTING --accept()--> CONNECTED --close()--> CLOSED
    CONNECTING --reject()--> REJECTED

Every transition goes through `WebSocket._transition`, so every misuse gets
the same kind of error: a `RuntimeError` that names the state it happened in.

The *client* leaving is a separate fact (`client_gone`), not a state: it can
happen at any instant, and letting it change which calls are legal would turn
programming errors into races. Once the client is gone, `accept`, `send`,
`close` and `reject` still follow the state machine but put nothing on the
wire (there is nobody to hear it, just as with a real socket), and `receive`
raises `WebSocketDisconnect` once queued messages are drained.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import trio

from ._inbox import ClientGone, Inbox, Message
from .datastructures import ScopeView

if TYPE_CHECKING:
    from types import TracebackType

MessageType = Literal["text", "bytes", "json", "event"]
MESSAGE_TYPES: tuple[MessageType, ...] = ("text", "bytes", "json", "event")

#: Close codes that mean "the client went away without anything being wrong".
#: 1005 is a close frame without a code; 1006 is what hypercorn reports for
#: *every* client-initiated close, clean or not (hypercorn #127), and what any
#: server reports for a dropped TCP connection: a phone going into a tunnel is
#: ordinary life for a server, not an error to log.
DEFAULT_CAUGHT_CLOSE_CODES = frozenset({1000, 1001, 1005, 1006})

# Codes a server may put in a close frame (RFC 6455 section 7.4). 1005, 1006
# and 1015 are reserved for reporting, never sent; 1010 is for clients only.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})


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
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"


_CONNECTING, _CONNECTED = WebSocketState.CONNECTING, WebSocketState.CONNECTED
_CLOSED, _REJECTED = WebSocketState.CLOSED, WebSocketState.REJECTED

#: See WebSocket._send_event.
SENDS_PER_YIELD = 16

_TRANSITIONS = {
    ("accept", _CONNECTING): _CONNECTED,
    ("reject", _CONNECTING): _REJECTED,
    ("close", _CONNECTED): _CLOSED,
}

_HINTS = {
    ("accept", _CONNECTED): "it is already accepted",
    ("close", _CONNECTING): "refuse a handshake with reject()",
    ("close", _CLOSED): "it is already closed; use ensure_closed() when unsure",
    ("reject", _CONNECTED): (
        "reject() refuses a handshake; end an accepted connection with close(), "
        "or declare the route with auto_accept=False to decide before accepting"
    ),
    ("send", _CONNECTING): "accept() it first",
    ("receive", _CONNECTING): "accept() it first",
}


class _BadMessage(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class WebSocket(ScopeView):
    """One WebSocket connection, as seen by a view.

    Created by the framework; a view gets it as its first argument.
    """

    def __init__(
        self,
        scope: MutableMapping[str, Any],
        inbox: Inbox,
        send: Callable[[Message], Awaitable[None]],
        *,
        receive_type: MessageType = "text",
        send_type: MessageType = "text",
        caught_close_codes: Iterable[int] = DEFAULT_CAUGHT_CLOSE_CODES,
        close_timeout: float = 5.0,
    ) -> None:
        self.scope = scope
        self.receive_type = receive_type
        self.send_type = send_type
        self.caught_close_codes = frozenset(caught_close_codes)
        self.connection_state = WebSocketState.CONNECTING
        #: True once the client has left (or the server saw the socket drop).
        self.client_gone = False
        #: The close code and reason, once either side has closed.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._inbox = inbox
        self._send = send
        self._close_timeout = close_timeout
        # True once the view has been told, by receive(), that the client left;
        # a pump waiting to see it makes the Event.
        self._told = False
        self._told_event: trio.Event | None = None
        # True from the framework's automatic accept until the view accepts.
        self._auto_accepted = False
        # True while _close_on_the_way_out holds a shield around our sends.
        self._shielded = False
        # Sends since the last receive(): see _send_event.
        self._sends_in_a_row = 0
        inbox.on_disconnect = self._client_left

    # -- what the view can read (and url, headers, query_params, path_params,
    # client: see ScopeView) ------------------------------------------------

    @property
    def subprotocols(self) -> list[str]:
        return list(self.scope.get("subprotocols", ()))

    @property
    def state(self) -> dict[str, Any]:
        """Per-connection state shared with the server (the ASGI scope's `state`)."""
        state: dict[str, Any] = self.scope.setdefault("state", {})
        return state

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
        raw_headers = _encode_headers(headers)
        self._transition("accept")
        if self.client_gone:
            return
        # Shielded, so a cancelled view never leaves hypercorn half-accepted;
        # no deadline, since nothing can hold a handshake's answer back.
        with trio.CancelScope(shield=True):
            await self._send(
                {"type": "websocket.accept", "subprotocol": subprotocol, "headers": raw_headers}
            )

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
        """
        if not 400 <= status <= 599:
            raise ValueError(f"reject() takes an HTTP error status (400-599), not {status}")
        content = body.encode() if isinstance(body, str) else bytes(body)
        raw_headers = _encode_headers(headers)
        plain = status == 403 and not content and not raw_headers
        if plain or "websocket.http.response" not in self.scope.get("extensions", {}):
            # ASGI's own way: close before accept is answered with 403.
            self._transition("reject")
            await self._send_for_transition({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        names = {name for name, _ in raw_headers}
        if content and b"content-type" not in names:
            raw_headers.append((b"content-type", b"text/plain; charset=utf-8"))
        raw_headers.append((b"content-length", str(len(content)).encode()))
        self._transition("reject")
        await self._send_for_transition(
            {"type": "websocket.http.response.start", "status": status, "headers": raw_headers},
            {"type": "websocket.http.response.body", "body": content},
        )

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with `code` and `reason`.

        Raises RuntimeError if it was already closed; see `ensure_closed`.
        """
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"{code} is not a close code a server may send")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason must fit in 123 bytes of UTF-8")
        self._transition("close")
        if not self.client_gone:
            self.close_code, self.close_reason = code, reason
        await self._send_for_transition({"type": "websocket.close", "code": code, "reason": reason})

    async def _send_for_transition(self, *events: Message) -> None:
        """Put on the wire what a transition just promised.

        Shielded, and bounded by `close_timeout`: were the send cancelled, the
        state would say the handshake was answered, or the connection closed,
        while the client heard nothing. Nothing is sent to a departed client.
        """
        if self.client_gone:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._shielded:  # inside _close_on_the_way_out: shielded already
            for event in events:
                await self._send(event)
            return
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._close_timeout
            for event in events:
                await self._send(event)

    async def ensure_closed(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection unless that is already done; never raises.

        A handshake still waiting for an answer is rejected (403).
        """
        if self.connection_state is _CONNECTED:
            await self.close(code, reason)
        elif self.connection_state is _CONNECTING:
            await self.reject()
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _close_on_the_way_out(
        self, code: int, reason: str = "", *, refuse_with: int = 403
    ) -> None:
        """Close, or refuse a pending handshake with `refuse_with`; never raises.

        Used when a view is leaving, possibly because it was cancelled: the
        close must still go out, so it is shielded, but a client that stopped
        reading must not hold us past `close_timeout`. A status other than 403
        needs the server's denial-response extension; without it the handshake
        is left unanswered and the server answers 500 itself.
        """
        if self.client_gone:  # nothing goes on the wire: settle the state, no I/O
            if self.connection_state is _CONNECTED:
                self._transition("close")
            elif self.connection_state is _CONNECTING:
                self._transition("reject")
            return
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._close_timeout
            self._shielded = True
            try:
                await self._settle(code, reason, refuse_with)
            finally:
                self._shielded = False

    async def _settle(self, code: int, reason: str, refuse_with: int) -> None:
        if self.connection_state is not _CONNECTING:
            await self.ensure_closed(code, reason)
        elif refuse_with == 403:
            await self.reject()
        elif "websocket.http.response" in self.scope.get("extensions", {}):
            await self.reject(refuse_with, body=HTTPStatus(refuse_with).phrase)

    # -- messages ------------------------------------------------------------

    async def receive_event(self) -> Message:
        """The next raw ASGI `websocket.receive` event."""
        event: Message = await self._receive_as("event")
        return event

    async def receive(self) -> Any:
        """The next message, decoded as the route's `receive_type` says."""
        return await self._receive_as(self.receive_type)

    async def receive_text(self) -> str:
        text: str = await self._receive_as("text")
        return text

    async def receive_bytes(self) -> bytes:
        data: bytes = await self._receive_as("bytes")
        return data

    async def receive_json(self) -> Any:
        return await self._receive_as("json")

    async def _receive_as(self, kind: Any) -> Any:
        # The one place every receive goes through; kept shallow on purpose,
        # since an idle connection holds this stack of frames while it waits.
        if self.connection_state is not _CONNECTED:
            self._refuse("receive")
        self._sends_in_a_row = 0
        event = await self._inbox.get()
        if isinstance(event, ClientGone):
            self._was_told()
            if kind is _ITERATING and event.code in self.caught_close_codes:
                return _END  # async for ends: no exception but StopAsyncIteration
            raise WebSocketDisconnect(event.code, event.reason)
        try:
            return _decode(event, self.receive_type if kind is _ITERATING else kind)
        except _BadMessage as bad:
            # The client broke the protocol this route speaks: end this one
            # connection, say why, and let the view unwind.
            await self._close_on_the_way_out(bad.code, bad.reason)
            raise WebSocketDisconnect(bad.code, bad.reason) from None

    async def send(self, value: Any) -> None:
        """Send `value`, encoded as the route's `send_type` says."""
        await self._send_event(_encode(value, self.send_type))

    async def send_text(self, text: str) -> None:
        await self._send_event(_encode(text, "text"))

    async def send_bytes(self, data: bytes) -> None:
        await self._send_event(_encode(data, "bytes"))

    async def send_json(self, value: Any) -> None:
        await self._send_event(_encode(value, "json"))

    async def _send_event(self, event: Message) -> None:
        # hypercorn's send yields (and so honours cancellation) while its
        # stream is open, but returns at once after it closed: a view doing
        # nothing but send() could then never be cancelled and would spin the
        # event loop. So every SENDS_PER_YIELD sends with no receive() between
        # them start with a full checkpoint; before the send, so a cancelled
        # call sends nothing. An echo loop, receiving in between, never pays.
        self._sends_in_a_row += 1
        if self._sends_in_a_row >= SENDS_PER_YIELD:
            self._sends_in_a_row = 0
            await trio.lowlevel.checkpoint()
        # No await between the state check and the server's send: a close
        # from another task can then never slip in between the two.
        if self.connection_state is not _CONNECTED:
            self._refuse("send")
        if self.client_gone:
            await trio.lowlevel.checkpoint()
            return
        await self._send(event)

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
            await self._close_on_the_way_out(1000)
            return exc.code in self.caught_close_codes
        if isinstance(exc, Exception):
            await self._close_on_the_way_out(1011)
        # Cancellation and KeyboardInterrupt pass through untouched: the
        # connection's own exit path closes with the code they call for.
        return False

    # -- called by the connection --------------------------------------------

    def _was_told(self) -> None:
        self._told = True
        if self._told_event is not None:
            self._told_event.set()

    async def _accept_for_view(self) -> None:
        await self.accept()
        self._auto_accepted = True

    def _client_left(self, code: int, reason: str) -> None:
        self.client_gone = True
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._inbox.end(code, reason)


def _encode_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


# `_receive_as` kinds beyond the message types: an `async for` step.
_ITERATING: Any = object()
_END = object()


def _decode(event: Message, kind: MessageType) -> Any:
    if kind == "event":
        return event
    text, data = event.get("text"), event.get("bytes")
    if kind == "text":
        if text is None:
            raise _BadMessage(1003, "expected a text message, got binary")
        return text
    if kind == "bytes":
        if data is None:
            raise _BadMessage(1003, "expected a binary message, got text")
        return data
    try:
        return json.loads(text if text is not None else (data or b""))
    except ValueError as exc:
        raise _BadMessage(1007, f"invalid JSON: {exc}"[:123]) from None


def _encode(value: Any, kind: MessageType) -> Message:
    if kind == "text":
        if not isinstance(value, str):
            raise TypeError(f"a text message must be str, not {type(value).__name__}")
        return {"type": "websocket.send", "text": value}
    if kind == "bytes":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"a binary message must be bytes, not {type(value).__name__}")
        return {"type": "websocket.send", "bytes": bytes(value)}
    if kind == "json":
        return {"type": "websocket.send", "text": json.dumps(value)}
    if not (isinstance(value, Mapping) and value.get("type") == "websocket.send"):
        raise TypeError("an 'event' message must be an ASGI websocket.send event (a dict)")
    return dict(value)
