"""HTTP/1.1 on one connection, with h11: requests in turn, until it closes or upgrades.

    connection task: HTTPConnection.run()
    ├── for each request: a nursery
    │   ├── the app, in a task of its own: scope, receive (the body), send
    │   └── the connection task: reads the body into the request's inbox, then
    │       watches for the client leaving, until the app is done
    └── an upgrade to WebSocket: the connection becomes a WebSocketConnection

h11 parses and frames every message; this module adds the I/O and the rules
h11 leaves to its user: the request-head size limit (h11 bounds only a head
that has not yet arrived whole), refusing ambiguous framing (request
smuggling), `Expect: 100-continue`, HEAD, and the idle timeout, kept by the
server's timekeeper.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import h11
import trio

from .._inbox import Inbox
from ._transport import ClientDisconnected, Transport
from ._websocket import WebSocketConnection

if TYPE_CHECKING:
    from ._serving import Run

logger = logging.getLogger("trio_boca")
access_log = logging.getLogger("trio_boca.access")

Message = MutableMapping[str, Any]


#: What an upgraded connection keeps in place of its h11 connection, which
#: went to the WebSocket: one shared, never used, instead of 900 bytes each.
_UPGRADED = h11.Connection(h11.SERVER)


class Refused(Exception):
    """A request this server will not serve: answered with `status`, then closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HTTPConnection:
    """One client connection, speaking HTTP/1.1 until it closes or upgrades."""

    __slots__ = (
        "busy",
        "h11",
        "run_",
        "transport",
    )

    def __init__(self, run: Run, transport: Transport) -> None:
        self.run_ = run
        self.transport = transport
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=run.config.max_header_size)
        #: A request is being served: a stop lets it finish.
        self.busy = False

    async def run(self) -> None:
        config = self.run_.config
        try:
            while not self.run_.stopping:
                self.busy = False
                self.transport.read_deadline = trio.current_time() + config.idle_timeout
                event = await self._next_event(head=True)
                self.transport.read_deadline = math.inf
                if not isinstance(event, h11.Request):
                    self._timed_out()
                    return  # the client closed (or went silent: the timekeeper closed it)
                self.busy = True
                _check(event, config.max_header_size)
                if _upgrades_to_websocket(event):
                    if event.method != b"GET":  # RFC 6455, 4.1
                        raise Refused(400, "a WebSocket handshake must be a GET request")
                    websocket = WebSocketConnection(self, event)
                    del event  # the request's head: only until the scope is made
                    self.h11 = _UPGRADED  # the real one is the WebSocket's now
                    await websocket.run()
                    return
                keep = await self._exchange(event)
                if not keep or self.h11.our_state is not h11.DONE:
                    return
                if self.h11.their_state is not h11.DONE:
                    return  # the app answered before the body came: not worth reading
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint, str(exc))
        except Refused as refused:
            await self._refuse(refused.status, refused.reason)
        except ClientDisconnected:
            pass

    def _timed_out(self) -> None:
        """Say why a connection waiting for a request was closed, if it was cut."""
        if self.transport.aborted != "read_timeout":
            return
        if not self.h11.trailing_data[0]:
            # Nothing of a request came: an idle keep-alive connection, or a
            # silent socket. Routine for a server; said at DEBUG only.
            logger.debug("closed a silent connection from %s", _client(self.transport.client))
            return
        self.run_.notes.note(
            "slow request head",
            "closed a connection from %s: its request head did not arrive within %g s "
            "of its first byte",
            _client(self.transport.client),
            self.run_.config.idle_timeout,
        )

    async def _next_event(self, head: bool = False) -> Any:
        """h11's next event, reading as it needs; a partial head gets one more
        `idle_timeout` from its first byte, and no more. The end of the stream
        (the client left, or a deadline cut it) is `h11.ConnectionClosed`,
        wherever it falls: in the middle of a message it is not bad input."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.transport.read()
            if not data:
                return h11.ConnectionClosed()  # h11 keeps what came of a message
            if head and self.h11.their_state is h11.IDLE:
                self.transport.read_deadline = trio.current_time() + self.run_.config.idle_timeout
                head = False  # extended once, at the head's first bytes
            self.h11.receive_data(data)

    async def _refuse(self, status: int, reason: str) -> None:
        """Answer a request this server will not serve, and close."""
        if self.transport.aborted is not None:
            return
        self.run_.notes.note(
            f"http {status}",
            "refused a request from %s with %d: %s",
            _client(self.transport.client),
            status,
            reason,
        )
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{reason}\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            data = self.h11.send(h11.Response(status_code=status, headers=headers))
            data = (data or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            data += self.h11.send(h11.EndOfMessage()) or b""
            await self.transport.write(data, self.run_.config.close_timeout)
        except (h11.LocalProtocolError, ClientDisconnected):
            pass

    # -- one request ----------------------------------------------------------

    async def _exchange(self, request: h11.Request) -> bool:
        """Serve one request; False if the connection must close after it."""
        exchange = Exchange(self, request)
        scope = self.run_.scope("http", request, self.transport)
        scope["method"] = request.method.decode("ascii")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(exchange.serve, scope)
            await exchange.feed()
        exchange.log()
        return exchange.keep_alive


class Exchange:
    """One request and its response: the app's `receive` and `send`."""

    __slots__ = (
        "bad_body",
        "body",
        "complete",
        "connection",
        "done",
        "go_on",
        "h11",
        "head",
        "head_sent",
        "headers",
        "keep_alive",
        "request",
        "sent",
        "started_at",
        "status",
        "transport",
    )

    def __init__(self, connection: HTTPConnection, request: h11.Request) -> None:
        self.connection = connection
        self.h11 = connection.h11
        self.transport = connection.transport
        self.request = request
        self.head = request.method == b"HEAD"
        #: The body, as ASGI messages: filled by the connection task.
        self.body = Inbox(2, 1 << 16)
        #: Cancelled when the app is done: the connection task stops watching.
        self.done = trio.CancelScope()
        #: Set when the app first asks for the body, or is done.
        self.go_on = trio.Event()
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_sent = False
        self.complete = False
        self.sent = 0
        self.keep_alive = True
        #: Why the body could not be read (malformed chunks), as status and reason.
        self.bad_body: tuple[int, str] | None = None
        self.started_at = trio.current_time()

    # -- the connection task's side ---------------------------------------------

    async def feed(self) -> None:
        """The body into the inbox, then watch for the client leaving."""
        connection = self.connection
        config = connection.run_.config
        if self.h11.they_are_waiting_for_100_continue:
            await self.go_on.wait()  # the client sends the body once told to
            if self.done.cancel_called:
                self.keep_alive = False
                return
        try:
            while True:
                self.transport.read_deadline = trio.current_time() + config.idle_timeout
                event = await connection._next_event()
                self.transport.read_deadline = math.inf
                if isinstance(event, h11.Data):
                    chunk = {"type": "http.request", "body": bytes(event.data), "more_body": True}
                    await self.body.put(chunk, len(event.data), math.inf)
                elif isinstance(event, h11.EndOfMessage):
                    await self.body.put({"type": "http.request", "body": b""}, 0, math.inf)
                    break
                else:  # the client left half-way
                    self.body.end()
                    self.keep_alive = False
                    return
                if self.done.cancel_called:
                    self.keep_alive = False  # the app is done with a body still coming
                    return
        except h11.RemoteProtocolError as exc:  # a malformed body: the app sees the end
            self.bad_body = (exc.error_status_hint, str(exc))
            self.body.end()
            self.keep_alive = False
            return
        self.transport.read_deadline = math.inf
        with self.done:  # until the app is done: does the client leave?
            data = await self.transport.read()
            if data:
                self.h11.receive_data(data)  # a pipelined request: h11 keeps it
            else:
                self.body.end()
                self.keep_alive = False

    # -- the app's side ------------------------------------------------------------

    async def serve(self, scope: Message) -> None:
        run = self.connection.run_
        try:
            await run.app(scope, self.receive, self.send)
        except Exception as exc:
            logger.error(
                "the ASGI app failed on %s %r", scope["method"], scope["path"], exc_info=exc
            )
        finally:
            self.done.cancel()
            self.go_on.set()
            self.body.close()
            if not self.complete:
                await self._unfinished()

    async def _unfinished(self) -> None:
        """The app ended without completing its response: 500, or cut."""
        self.keep_alive = False
        if self.head_sent or self.transport.aborted is not None:
            self.transport.abort("the app ended in the middle of its response")
            return
        if self.bad_body is not None:  # the app was told the body ended: the client erred
            self.status = self.bad_body[0]
            await self.connection._refuse(*self.bad_body)
            return
        self.status, self.headers = 500, [(b"content-length", b"0")]
        with contextlib.suppress(ClientDisconnected, h11.LocalProtocolError):
            await self.send({"type": "http.response.body", "body": b""})

    async def receive(self) -> Message:
        if self.complete:
            await trio.lowlevel.checkpoint()
            return {"type": "http.disconnect"}
        if not self.go_on.is_set():
            self.go_on.set()
            if self.h11.they_are_waiting_for_100_continue:
                data = self.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
                await self.transport.write(data or b"", self.connection.run_.config.write_timeout)
        # A waiting message is returned without a checkpoint: Starlette looks
        # for a disconnect by calling receive() in a cancelled scope.
        try:
            message = self.body.get_nowait()
        except trio.WouldBlock:
            message = await self.body.get()
        return message if message is not None else {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("http.response.start sent twice")
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            await trio.lowlevel.checkpoint()
            return
        if kind != "http.response.body":
            raise RuntimeError(f"ASGI message {kind!r} is not an HTTP response message")
        if self.status is None:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self.complete:
            raise RuntimeError("http.response.body sent after the response was complete")
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        data = b""
        if not self.head_sent:
            response = h11.Response(status_code=self.status, headers=self.headers)
            data = self.h11.send(response) or b""
            self.head_sent = True
        if body and not self.head:
            data += self.h11.send(h11.Data(data=body)) or b""
            self.sent += len(body)
        if not more:
            data += self.h11.send(h11.EndOfMessage()) or b""
            self.complete = True
        if self.transport.aborted is not None:
            raise ClientDisconnected("the client is gone")
        if data:
            await self.transport.write(data, self.connection.run_.config.write_timeout)
        else:
            await trio.lowlevel.checkpoint()

    def log(self) -> None:
        if access_log.isEnabledFor(logging.INFO):
            request = self.request
            access_log.info(
                '%s "%s %s HTTP/%s" %s %d %.3f s',
                _client(self.transport.client),
                request.method.decode("ascii"),
                request.target.decode("latin-1"),
                request.http_version.decode("ascii"),
                self.status or "-",
                self.sent,
                trio.current_time() - self.started_at,
            )


def _check(request: h11.Request, max_header_size: int) -> None:
    """What h11 leaves to its user: a head too large, framing two ways."""
    size = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
    if size > max_header_size:
        raise Refused(431, f"request head over {max_header_size} bytes")
    # (h11 refuses two different Content-Lengths itself, and merges equal ones.)
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise Refused(400, "both Content-Length and Transfer-Encoding")


def _upgrades_to_websocket(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


def _client(address: tuple[str, int] | None) -> str:
    return "-" if address is None else f"{address[0]}:{address[1]}"


def path_of(target: bytes) -> tuple[str, bytes, bytes]:
    """ASGI's `path`, `raw_path` and `query_string` of a request target."""
    raw_path, _, query = target.partition(b"?")
    return unquote(raw_path.decode("latin-1")), raw_path, query
