"""One WebSocket connection, with websockets' Sans-I/O protocol.

    connection task: WebSocketConnection.run(), the reader
    ├── the app, in a task of its own (for a trio_boca App: the view)
    └── the reader, in the connection task: bytes -> protocol -> messages ->
        the app (straight into its inbox, through the trio_boca.direct
        extension, or else into the queue its receive() reads)

websockets' `ServerProtocol` checks the handshake, parses and writes frames,
answers pings, runs the closing handshake and enforces the message size and
compression; this module adds the I/O and what the protocol leaves to its
user: assembling fragmented messages and checking their UTF-8, the keepalive
and every deadline (through the server's timekeeper), and ASGI.

The request head was parsed by h11, once. The protocol is made in the OPEN
state and asked only to `accept()` that request: it checks the handshake and
negotiates compression, and returns the response, which is sent when the app
accepts. Its parser therefore starts with frames: a request never goes
through two parsers.

Writers: the app's task (its messages, the accept, the close) and the reader
(pongs and close echoes the protocol queues), and, for a keepalive ping, a
short task of the server's. They take turns (`Turns`), and each writes what
the protocol has queued in order.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import math
import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import h11
import trio
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState, PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol

from .._direct import EXTENSION, Sink
from .._inbox import Inbox
from ._transport import ClientDisconnected, Turns

if TYPE_CHECKING:
    from ._http import HTTPConnection

logger = logging.getLogger("trio_boca")
access_log = logging.getLogger("trio_boca.access")

Message = MutableMapping[str, Any]

#: Most bytes a client may send before its handshake is answered: they are
#: held until the app accepts (RFC 6455 says a client waits, not all do).
EARLY_LIMIT = 65536
#: The queue behind an app's receive() (apps that do not take the extension).
QUEUE_MESSAGES = 16
QUEUE_BYTES = 1 << 22

# What the app has done with the connection: HANDSHAKE, then ACCEPTED and
# CLOSED, or REFUSED.
HANDSHAKE, ACCEPTED, CLOSED, REFUSED = "HANDSHAKE", "ACCEPTED", "CLOSED", "REFUSED"


class _Protocol(ServerProtocol):
    """websockets' server protocol, which lets a client close between the
    fragments of a message.

    RFC 6455 (5.4) lets control frames come between fragments, and a close
    ends the connection, the unfinished message with it; websockets instead
    fails the connection with 1002 ("incomplete fragmented message"), where
    Autobahn's case 7.1.5 expects the closing handshake to complete.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None  # the unfinished message is dropped
        super().recv_frame(frame)


class WebSocketConnection:
    """The server's side of one WebSocket: its reader, and the app's receive and send."""

    __slots__ = (
        "_bad",
        "_close_deadline",
        "_connect_sent",
        "_decoder",
        "_delivering",
        "_denial",
        "_ended_by",
        "_fragments",
        "_pinged_at",
        "_quiet_reads",
        "_quiet_since",
        "_response",
        "_started_at",
        "_target",
        "_turns",
        "_wake",
        "close_timeout",
        "config",
        "departure",
        "h11",
        "protocol",
        "queue",
        "request",
        "run_",
        "sink",
        "state",
        "transport",
        "write_timeout",
    )

    def __init__(self, http: HTTPConnection, request: h11.Request) -> None:
        self.run_ = http.run_
        self.config = http.run_.config
        self.transport = http.transport
        self.h11: h11.Connection | None = http.h11  # until the handshake is answered
        self.request: h11.Request | None = request  # until the scope is made
        self._target = request.target.decode("latin-1")
        extensions = None
        if self.config.compression:
            extensions = [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True, client_no_context_takeover=True
                )
            ]
        self.protocol = _Protocol(
            state=State.OPEN, extensions=extensions, max_size=self.config.max_message_size
        )
        #: The app's side: HANDSHAKE until it answers, then ACCEPTED, then
        #: CLOSED; or REFUSED.
        self.state = HANDSHAKE
        #: Behind receive(), for an app without a sink; made when first needed.
        self.queue: Inbox | None = None
        self.sink: Sink | None = None
        #: How the connection ended on the client's side: code, reason, ended_by.
        self.departure: tuple[int, str, str | None] | None = None
        #: Set by the app (trio_boca's connection) before it accepts.
        self.write_timeout = self.config.write_timeout
        self.close_timeout = self.config.close_timeout
        self._turns = Turns()
        self._wake = trio.CancelScope()  # the reader, waiting for the app's answer
        self._connect_sent = False
        self._denial: Message | None = None
        self._fragments: bytearray | None = None  # of a fragmented message
        self._decoder: Any = None  # of a fragmented text message
        self._delivering = False
        self._bad: tuple[int, str] | None = None  # our own failure of the connection
        self._ended_by: str | None = None
        self._close_deadline = math.inf
        self._quiet_reads = -1
        self._quiet_since = 0.0
        self._pinged_at: float | None = None
        self._started_at = trio.current_time()
        self._response: Response | None = None  # the 101, until the app answers

    # -- the connection task -----------------------------------------------------

    async def run(self) -> None:
        scope = self._scope()
        if self._response is None or self._response.status_code != 101:
            await self._refuse_handshake()
            return
        self.run_.websockets.add(self)
        self.run_.timekeeper.watch(self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve, scope)
                await self._read()
        finally:
            self.run_.timekeeper.forget(self)
            self.run_.websockets.discard(self)

    def _scope(self) -> dict[str, Any]:
        """Check the handshake (websockets' accept()), and the app's scope.

        What only the handshake needs (h11's request, its headers as
        websockets reads them) is dropped here: an idle connection keeps
        only its scope.
        """
        assert self.request is not None
        request, self.request = self.request, None
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
        self._response = self.protocol.accept(Request(self._target, headers))
        scope = self.run_.scope("websocket", request, self.transport)
        scope["scheme"] = "wss" if self.transport.secure else "ws"
        scope["subprotocols"] = [
            p.strip()
            for value in headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")
            if p.strip()
        ]
        scope["extensions"] = {"websocket.http.response": {}, EXTENSION: self}
        return scope

    def _queue(self) -> Inbox:
        """The queue behind receive(), for an app that attached no sink."""
        if self.queue is None:
            self.queue = Inbox(QUEUE_MESSAGES, QUEUE_BYTES)
            if self.departure is not None:
                self.queue.end()
        return self.queue

    async def _refuse_handshake(self) -> None:
        response = self._response
        assert response is not None
        body = (response.body or b"").decode(errors="replace").strip()
        self.run_.notes.note(
            "websocket handshake",
            "refused a WebSocket handshake from %s with %d: %s",
            _client(self.transport.client),
            response.status_code,
            body,
        )
        with contextlib.suppress(ClientDisconnected):
            await self.transport.write(response.serialize(), self.close_timeout)

    async def _read(self) -> None:
        """Read the client until its side of the connection is over, then say so."""
        assert self.h11 is not None
        early, _ = self.h11.trailing_data
        held = bytearray(early)
        with self._wake:  # until the app answers the handshake
            while self.state is HANDSHAKE:
                data = await self.transport.read()
                if not data:
                    self._left(1006, "", None)
                    return
                held += data
                if len(held) > EARLY_LIMIT:
                    reason = "data before the handshake was answered"
                    self.transport.abort(reason)
                    self._left(1002, reason, "bad_input")
                    return
        if self.state is REFUSED or self.state is HANDSHAKE:
            # Refused (or the app ended without an answer): nothing more to
            # read. An app that accepted and closed at once is CLOSED by
            # now, and its client's close is still to be read.
            return
        if held:
            self.protocol.receive_data(bytes(held))
            await self._events()
        protocol = self.protocol
        while protocol.state is not State.CLOSED:
            data = await self.transport.read()
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            await self._events()
            if self.departure is None and (
                not data or protocol.close_rcvd is not None or protocol.parser_exc is not None
            ):
                self._left(*self._how_it_ended())  # no more messages: the app hears it now
            if not data:
                break
            if protocol.close_expected() and self._close_deadline == math.inf:
                self._close_deadline = trio.current_time() + self.close_timeout
        self._left(*self._how_it_ended())

    async def _events(self) -> None:
        """Hand the app what the protocol parsed; write what it queued (pongs, echoes)."""
        for frame in self.protocol.events_received():
            if not isinstance(frame, Frame):
                continue  # the handshake is behind us: only frames come
            opcode = frame.opcode
            if opcode is Opcode.CLOSE:
                self._fragments, self._decoder = None, None
            elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    await self._message(opcode, bytes(frame.data))
                else:
                    # One buffer, not a list of fragments: what a message
                    # holds is its size, however finely the client cuts it.
                    self._fragments = bytearray(frame.data)
                    self._decoder = None
                    if opcode is Opcode.TEXT:
                        self._decoder = codecs.getincrementaldecoder("utf-8")()
                        if not self._text_ok(frame.data, final=False):
                            break
            elif opcode is Opcode.CONT:
                if self._fragments is None:
                    continue  # the protocol refuses a stray continuation: never here
                self._fragments += frame.data
                if self._decoder is not None and not self._text_ok(frame.data, frame.fin):
                    break
                if frame.fin:
                    data = bytes(self._fragments)
                    self._fragments = None
                    text = self._decoder is not None
                    self._decoder = None
                    await self._message(Opcode.TEXT if text else Opcode.BINARY, data)
        if self.protocol.writes:  # pongs, close echoes: rarely anything
            with contextlib.suppress(ClientDisconnected):  # the next read says so
                await self._flush(self.write_timeout, checkpoint=False)

    def _text_ok(self, data: bytes | bytearray | memoryview, final: bool) -> bool:
        """Check a fragment's UTF-8 as it comes: a bad one fails the connection at once."""
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError:
            self._fail(1007, "invalid UTF-8 in a text message")
            return False
        return True

    async def _message(self, opcode: Opcode, data: bytes) -> None:
        if opcode is Opcode.TEXT:
            try:
                message: Message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self._delivering = True  # backpressure: the keepalive waits meanwhile
        try:
            if self.sink is not None:
                await self.sink.deliver(message)
            else:
                await self._queue().put(message, len(data), math.inf)
        finally:
            self._delivering = False

    def _fail(self, code: int, reason: str) -> None:
        if self._bad is None:
            self._bad = (code, reason)
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)

    def _how_it_ended(self) -> tuple[int, str, str | None]:
        aborted = self.transport.aborted
        if aborted == "write_timeout":
            return 1006, f"a write did not complete within {self.write_timeout:g} s", aborted
        if self._ended_by == "keepalive":
            return 1006, f"no pong within {self.config.ping_timeout:g} s of a ping", "keepalive"
        if self._bad is not None:
            return (*self._bad, "bad_input")
        failure = self.protocol.parser_exc
        if isinstance(failure, PayloadTooBig):
            limit = self.config.max_message_size
            return 1009, f"message over max_message_size ({limit})", "bad_input"
        if failure is not None and not isinstance(failure, EOFError):
            sent = self.protocol.close_sent
            code = sent.code if sent is not None else 1002
            return code, str(failure), "bad_input"
        received = self.protocol.close_rcvd
        if received is not None:
            return int(received.code), received.reason, None
        return 1006, "", None

    def _left(self, code: int, reason: str, ended_by: str | None) -> None:
        """The client's side is over: tell the app, once."""
        if self.departure is not None:
            return
        self.departure = (code, reason, ended_by)
        if ended_by is not None and ended_by != "bad_input" and self.sink is None:
            self.run_.notes.note(ended_by, "WebSocket %r: %s", self._target, reason)
        if self.sink is not None:
            self.sink.left(code, reason, ended_by)
        elif self.queue is not None:
            self.queue.end()

    # -- the app's task ------------------------------------------------------------

    async def _serve(self, scope: Message) -> None:
        try:
            await self.run_.app(scope, self.receive, self.send)
        except Exception as exc:
            logger.error("the ASGI app failed on WebSocket %r", scope["path"], exc_info=exc)
        finally:
            if self.queue is not None:
                self.queue.close()
            try:
                if self.state is HANDSHAKE:
                    await self._deny(500, [], b"")
                elif self.state is ACCEPTED:
                    await self.send({"type": "websocket.close", "code": 1011})
            except ClientDisconnected:
                pass
            self._wake.cancel()
            self._log()

    def attach(self, sink: Sink) -> None:
        """The trio_boca.direct extension: messages go to `sink` from now on."""
        self.sink = sink
        if self.departure is not None:
            sink.left(*self.departure)
        elif self.run_.stopping:  # the stop came during the handshake
            sink.shutdown()

    def shutdown(self) -> None:
        """The server is stopping: the app closes (1001), or the server does for it."""
        if self.sink is not None:
            self.sink.shutdown()
        elif self.state is ACCEPTED and self.departure is None:
            self.run_.spawn(self._going_away)

    async def _going_away(self) -> None:
        with contextlib.suppress(ClientDisconnected, RuntimeError):
            await self.send(
                {"type": "websocket.close", "code": 1001, "reason": "server shutting down"}
            )

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            await trio.lowlevel.checkpoint()
            return {"type": "websocket.connect"}
        # A waiting message is returned without a checkpoint (see _http.Exchange.receive).
        queue = self._queue()
        try:
            message = queue.get_nowait()
        except trio.WouldBlock:
            message = await queue.get()
        if message is not None:
            return message
        code, reason, _ = self.departure or (1006, "", None)
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.state is ACCEPTED:
            if kind == "websocket.send":
                if self.departure is not None:
                    raise ClientDisconnected("the client is gone")
                text = message.get("text")
                try:
                    if text is not None:
                        self.protocol.send_text(text.encode())
                    else:
                        self.protocol.send_binary(bytes(message["bytes"]))
                except InvalidState:
                    raise ClientDisconnected("the connection is closing") from None
                await self._flush(self.write_timeout)
                return
            if kind == "websocket.close":
                self.state = CLOSED
                if self.protocol.state is State.OPEN and self.departure is None:
                    code, reason = int(message.get("code", 1000)), message.get("reason") or ""
                    refused = None
                    try:
                        self.protocol.send_close(code, reason)
                    except ProtocolError as exc:  # a code or reason no close frame may carry
                        refused = exc
                        self.protocol.send_close(1011, "")
                    self._close_deadline = trio.current_time() + self.close_timeout
                    await self._flush(self.close_timeout)
                    if refused is not None:
                        raise ValueError(
                            f"websocket.close with code {code} and a reason of "
                            f"{len(reason.encode())} bytes cannot go on the wire ({refused}); "
                            "the connection was closed with 1011"
                        )
                else:
                    await trio.lowlevel.checkpoint()
                return
        elif self.state is HANDSHAKE:
            if kind == "websocket.accept":
                await self._accept(message)
                return
            if kind == "websocket.close":
                await self._deny(403, [], b"")
                return
            if kind == "websocket.http.response.start" and self._denial is None:
                self._denial = message
                await trio.lowlevel.checkpoint()
                return
            if kind == "websocket.http.response.body" and self._denial is not None:
                status = int(self._denial["status"])
                headers = [(bytes(k), bytes(v)) for k, v in self._denial.get("headers", ())]
                await self._deny(status, headers, bytes(message.get("body", b"")))
                return
        raise RuntimeError(f"ASGI message {kind!r} is not allowed in state {self.state}")

    async def _accept(self, message: Message) -> None:
        response, self._response, self.h11 = self._response, None, None
        assert response is not None
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
            self.protocol.subprotocol = subprotocol
        for name, value in message.get("headers") or ():
            response.headers[bytes(name).decode("latin-1")] = bytes(value).decode("latin-1")
        self.state = ACCEPTED
        self._wake.cancel()  # the reader turns to frames, with what it held
        if self.departure is not None:
            raise ClientDisconnected("the client left before the handshake was answered")
        await self._write(response.serialize(), self.close_timeout)
        if self.run_.stopping and self.sink is None:  # accepted after the stop began
            self.run_.spawn(self._going_away)

    async def _deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Refuse the handshake with an HTTP response (ASGI's denial extension)."""
        self.state = REFUSED
        self._wake.cancel()
        if self.departure is not None:
            await trio.lowlevel.checkpoint()
            return
        headers = [
            (k, v) for k, v in headers if k.lower() not in (b"connection", b"content-length")
        ]
        headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        connection, self.h11, self._response = self.h11, None, None
        assert connection is not None
        data = connection.send(h11.Response(status_code=status, headers=headers)) or b""
        if body:
            data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        await self._write(data, self.close_timeout)

    # -- writing --------------------------------------------------------------------

    async def _flush(self, timeout: float, *, checkpoint: bool = True) -> None:
        """Write what the protocol has queued, in order, within `timeout`."""
        if checkpoint:
            # Before anything is taken from the protocol: a cancelled send
            # must not lose what another writer queued.
            await trio.lowlevel.checkpoint_if_cancelled()
        await self._turns.take()
        try:
            chunks = self.protocol.data_to_send()
            data = b"".join(chunk for chunk in chunks if chunk is not SEND_EOF)
            if data:
                await self.transport.write(data, timeout)
            if chunks and chunks[-1] is SEND_EOF:
                await self.transport.send_eof()
        finally:
            self._turns.give()

    async def _write(self, data: bytes, timeout: float) -> None:
        await self._turns.take()
        try:
            await self.transport.write(data, timeout)
        finally:
            self._turns.give()

    # -- deadlines (the server's timekeeper) ------------------------------------

    def overdue(self, now: float) -> None:
        if now >= self._close_deadline:
            self.transport.abort("the closing handshake did not complete in time")
            return
        config = self.config
        reads = self.transport.reads
        if (
            not config.ping_interval
            or self.state is not ACCEPTED
            or self._delivering
            or reads != self._quiet_reads
        ):
            self._quiet_reads, self._quiet_since, self._pinged_at = reads, now, None
            return
        if self._pinged_at is None:
            if now - self._quiet_since >= config.ping_interval:
                self._pinged_at = now
                self.run_.spawn(self._ping)
        elif config.ping_timeout and now - self._pinged_at >= config.ping_timeout:
            self._ended_by = "keepalive"
            self._close_deadline = math.inf
            self.run_.spawn(self._keepalive_failed)

    async def _ping(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_ping(os.urandom(4))
            with contextlib.suppress(ClientDisconnected):
                await self._flush(self.config.ping_timeout or self.write_timeout)

    async def _keepalive_failed(self) -> None:
        """No answer to a ping: say so (1011), briefly, then cut the connection."""
        if self.protocol.state is State.OPEN:
            self.protocol.fail(1011, "keepalive ping timeout")
        with trio.move_on_after(min(1.0, self.close_timeout)):
            with contextlib.suppress(ClientDisconnected):
                await self._flush(self.close_timeout)
        self.transport.abort("keepalive")

    def _log(self) -> None:
        if access_log.isEnabledFor(logging.INFO) and self.sink is None:
            code = self.departure[0] if self.departure else "-"
            access_log.info(
                "%s WebSocket %r %.3f s, closed %s",
                _client(self.transport.client),
                self._target,
                trio.current_time() - self._started_at,
                code,
            )

    def __deepcopy__(self, memo: dict[int, Any]) -> WebSocketConnection:
        # An extension handle is an identity: a middleware that deep-copies
        # the scope (hypercorn's proxy fix does) must hand on the same one.
        return self


def _client(address: tuple[str, int] | None) -> str:
    return "-" if address is None else f"{address[0]}:{address[1]}"
