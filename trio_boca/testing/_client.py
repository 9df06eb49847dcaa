"""An in-process test client: the app runs in the test's own nursery.

No threads, no sockets: the client plays the ASGI server's part through Trio
memory channels, and keeps the server's rules where the real server is right
(403 for a close before accept, 500 for a handshake left unanswered, 1011 for
an app that ends without closing, an error for a message out of turn), so a
test that passes here also passes over a socket.
"""

from __future__ import annotations

import contextlib
import enum
import json as json_module
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import trio

from .._messages import Message
from .._running import Running
from ..app import RAISE_EXCEPTIONS
from ..datastructures import Headers
from ..websockets import WebSocketDisconnect
from ._session import ClientWebSocket, WebSocketRejected, open_nursery

ASGIApp = Any  # any ASGI 3 callable: (scope, receive, send) -> Awaitable[None]

_NO_JSON: Any = object()

#: Like a server's per-connection queue (hypercorn's is 10): a test that floods
#: a view which does not read feels backpressure, as it would over a socket.
_TO_APP_BUFFER = 16


class TestClient(Running):
    """Run `app` inside the caller's nursery and talk to it.

    ::

        async with TestClient(app) as client:
            async with client.websocket("/echo") as ws:
                await ws.send("hi")
                assert await ws.receive() == "hi"

    With `raise_server_exceptions` (the default), an exception raised by a
    view is re-raised in the test, after the client has seen what a real
    client would (1011, or HTTP 500 before accept). Lifespan events are sent
    on entry and exit.

    Entering raises `RuntimeError` if the app's startup fails (with the
    app's message), or if this client is in use already. `websocket()`
    needs the client entered; `request()` and its shorthands do not.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        app: ASGIApp,
        *,
        raise_server_exceptions: bool = True,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> None:
        self.app = app
        self.raise_server_exceptions = raise_server_exceptions
        self.client = client
        self._nursery: trio.Nursery | None = None
        # The lifespan's state, of which each request gets a copy, as ASGI says.
        self._state: dict[str, Any] = {}

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        async with open_nursery() as nursery:
            lifespan = _Lifespan(self.app)
            await lifespan.start(nursery)
            self._state = lifespan.state
            self._nursery = nursery
            try:
                yield
            except BaseException:
                nursery.cancel_scope.cancel()  # don't wait on views of a failed test
                raise
            else:
                await lifespan.stop()
            finally:
                self._nursery = None
                self._state = {}

    def _scope(self, kind: str, path: str, headers: Mapping[str, str] | None) -> dict[str, Any]:
        path, _, query = path.partition("?")
        raw_headers = [(b"host", b"testserver")]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        return {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "ws" if kind == "websocket" else "http",
            "http_version": "1.1",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": raw_headers,
            "client": self.client,
            "server": ("testserver", 80),
            "state": dict(self._state),
            "extensions": {RAISE_EXCEPTIONS: self.raise_server_exceptions},
        }

    def websocket(
        self,
        path: str,
        *,
        subprotocols: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> TestWebSocket:
        """Open a WebSocket to `path` (which may carry a query string).

        Use it as `async with client.websocket(path) as ws:`. Entering raises
        `WebSocketRejected` if the app refuses the handshake (a close before
        accept is a 403, no answer at all a 500), or, with
        `raise_server_exceptions`, the view's own exception. Raises
        `RuntimeError` unless the client is entered
        (`async with TestClient(app) as client:`).
        """
        if self._nursery is None:
            raise RuntimeError("use the TestClient as `async with TestClient(app) as client:`")
        scope = self._scope("websocket", path, headers)
        scope["subprotocols"] = list(subprotocols)
        scope["extensions"]["websocket.http.response"] = {}
        return TestWebSocket(self.app, scope, self._nursery)

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | str | Iterable[bytes] | None = None,
        json: Any = _NO_JSON,
        headers: Mapping[str, str] | None = None,
    ) -> TestResponse:
        """Send one HTTP request to the app; the same keywords as httpx.

        `content` given as an iterable of bytes is sent in chunks, without a
        content-length, as a streaming client would. With
        `raise_server_exceptions`, an exception raised by the view is raised
        here, in place of the 500 response.
        """
        headers = dict(headers or {})
        chunks: list[bytes]
        if json is not _NO_JSON:
            chunks = [json_module.dumps(json).encode()]
            headers.setdefault("content-type", "application/json")
        elif content is None or isinstance(content, (bytes, str)):
            chunks = [content.encode() if isinstance(content, str) else content or b""]
        else:
            chunks = list(content)
        if len(chunks) == 1:
            headers.setdefault("content-length", str(len(chunks[0])))
        exchange = _HTTPExchange(chunks)
        scope = self._scope("http", path, headers)
        scope["method"] = method.upper()
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if self.raise_server_exceptions:
                raise
        return exchange.response()

    async def get(self, path: str, **options: Any) -> TestResponse:
        """Send a GET request to `path`; the keywords and errors are `request()`'s."""
        return await self.request("GET", path, **options)

    async def head(self, path: str, **options: Any) -> TestResponse:
        """Send a HEAD request to `path`; the keywords and errors are `request()`'s."""
        return await self.request("HEAD", path, **options)

    async def post(self, path: str, **options: Any) -> TestResponse:
        """Send a POST request to `path`; the keywords and errors are `request()`'s."""
        return await self.request("POST", path, **options)

    async def put(self, path: str, **options: Any) -> TestResponse:
        """Send a PUT request to `path`; the keywords and errors are `request()`'s."""
        return await self.request("PUT", path, **options)

    async def patch(self, path: str, **options: Any) -> TestResponse:
        """Send a PATCH request to `path`; the keywords and errors are `request()`'s."""
        return await self.request("PATCH", path, **options)

    async def delete(self, path: str, **options: Any) -> TestResponse:
        """Send a DELETE request to `path`; the keywords and errors are `request()`'s."""
        return await self.request("DELETE", path, **options)


@dataclass
class TestResponse:
    """An HTTP response from the app, with httpx's names."""

    __test__ = False

    status_code: int
    headers: Headers
    content: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8; `UnicodeDecodeError` if it is not."""
        return self.content.decode()

    def json(self) -> Any:
        """The body decoded as JSON; `ValueError` if it is not JSON."""
        return json_module.loads(self.content)


class _HTTPExchange:
    """The server's side of one in-process HTTP request."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        #: How many body chunks the app asked for: a test can see it stop early.
        self.chunks_read = 0
        self._status: int | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._complete = trio.Event()

    async def receive(self) -> Message:
        if self.chunks_read < len(self._chunks):
            self.chunks_read += 1
            more = self.chunks_read < len(self._chunks)
            await trio.lowlevel.checkpoint()
            return {
                "type": "http.request",
                "body": self._chunks[self.chunks_read - 1],
                "more_body": more,
            }
        await self._complete.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()
        if message["type"] == "http.response.start":
            if self._status is not None:
                raise RuntimeError("http.response.start sent twice")
            self._status = message["status"]
            self._headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            if self._status is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            self._body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._complete.set()
        else:
            raise RuntimeError(f"ASGI message {message['type']!r} is not an HTTP response message")

    def response(self) -> TestResponse:
        if self._status is None:  # the app ended without answering, as a server sees it
            return TestResponse(500, Headers([]), b"")
        return TestResponse(self._status, Headers.from_raw(self._headers), b"".join(self._body))


class _Server(enum.Enum):
    """What the app has done with the connection, as a server tracks it."""

    HANDSHAKE = "HANDSHAKE"
    CONNECTED = "CONNECTED"
    RESPONSE = "RESPONSE"
    CLOSED = "CLOSED"


_ALLOWED = {
    _Server.HANDSHAKE: {
        "websocket.accept": _Server.CONNECTED,
        "websocket.close": _Server.CLOSED,
        "websocket.http.response.start": _Server.RESPONSE,
    },
    _Server.CONNECTED: {"websocket.send": _Server.CONNECTED, "websocket.close": _Server.CLOSED},
    _Server.RESPONSE: {"websocket.http.response.body": _Server.RESPONSE},
    _Server.CLOSED: {},
}


class TestWebSocket(ClientWebSocket):
    """A test's end of an in-process WebSocket; use it as an async context manager.

    Its API is `ClientWebSocket`'s. Entering sends the handshake and raises
    `WebSocketRejected` if the app refuses it; leaving closes with 1000,
    unless the test closed already, and waits for the view to end. Once the
    connection has closed, `send()` and `receive()` raise
    `WebSocketDisconnect`. With `raise_server_exceptions`, a view's
    exception is re-raised in the test: from entering, from `receive()` once
    the client has seen the 1011, or else on leaving the block (unless the
    block raised). An ASGI message the app sends out of turn (a send before
    accept, say) raises `RuntimeError` in the app, as a server's would, and
    reaches the test the same way.
    """

    __test__ = False

    def __init__(self, app: ASGIApp, scope: dict[str, Any], nursery: trio.Nursery) -> None:
        self._app = app
        self._scope = scope
        self._nursery = nursery
        self._raise = bool(scope["extensions"][RAISE_EXCEPTIONS])
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](_TO_APP_BUFFER)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](math.inf)
        self._server = _Server.HANDSHAKE
        self._client_closed = False
        self._done = trio.Event()
        self._error: BaseException | None = None
        self._error_raised = False

    # -- the server's side -------------------------------------------------------

    async def _run_app(self) -> None:
        try:
            await self._app(self._scope, self._app_inbox.receive, self._app_send)
        except Exception as exc:
            self._error = exc
        finally:
            self._app_inbox.close()
            self._app_outbox.close()
            self._done.set()

    async def _app_send(self, message: Message) -> None:
        # Like hypercorn: the state is checked and the message taken before
        # the first await, so sends and closes from two tasks keep their order.
        if self._client_closed:
            await trio.lowlevel.checkpoint()
            return  # like a server: sends after the client left go nowhere
        kind = message["type"]
        following = _ALLOWED[self._server].get(kind)
        if following is None:
            raise RuntimeError(
                f"ASGI message {kind!r} is not allowed in state {self._server.value}"
            )
        if kind == "websocket.http.response.body" and not message.get("more_body", False):
            following = _Server.CLOSED
        self._server = following
        self._app_outbox.send_nowait(message)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _from_server(self) -> Message | None:
        """The app's next message, or None once it has ended."""
        try:
            return await self._from_app.receive()
        except trio.EndOfChannel:
            return None

    def _failure(self) -> BaseException | None:
        """The app's exception, once, if the test asked for it."""
        if self._error is None or not self._raise or self._error_raised:
            return None
        self._error_raised = True
        return self._error

    # -- handshake ---------------------------------------------------------------

    async def __aenter__(self) -> TestWebSocket:
        self._nursery.start_soon(self._run_app)
        await self._to_app.send({"type": "websocket.connect"})
        message = await self._from_server()
        if message is not None and message["type"] == "websocket.accept":
            self.subprotocol = message.get("subprotocol")
            self.accept_headers = Headers.from_raw(message.get("headers") or [])
            return self
        rejection = await self._read_rejection(message)
        # The handshake is over; like a server, tell the app, and let it end.
        self._client_closed = True
        with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
            self._to_app.send_nowait({"type": "websocket.disconnect", "code": 1000})
        await self._done.wait()
        raise self._failure() or rejection

    async def _read_rejection(self, message: Message | None) -> WebSocketRejected:
        if message is None:
            return WebSocketRejected(500, Headers([]), b"")
        if message["type"] == "websocket.close":
            return WebSocketRejected(403, Headers([]), b"")
        body = b""
        start = message
        while True:
            part = await self._from_server()
            if part is None:
                break
            body += part.get("body", b"")
            if not part.get("more_body", False):
                break
        return WebSocketRejected(start["status"], Headers.from_raw(start.get("headers", [])), body)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._client_closed:
            await self._leave(1000, "")
        await self._done.wait()
        failure = self._failure()
        if failure is not None and exc is None:
            raise failure

    # -- messages ----------------------------------------------------------------

    async def send(self, data: str | bytes) -> None:
        if self.close_code is not None or self._client_closed:
            raise WebSocketDisconnect(self.close_code or 1006, self.close_reason or "")
        key = "text" if isinstance(data, str) else "bytes"
        try:
            await self._to_app.send({"type": "websocket.receive", key: data})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise WebSocketDisconnect(self.close_code or 1006, self.close_reason or "") from None

    async def receive(self) -> str | bytes:
        if self.close_code is None:
            message = await self._from_server()
            if message is not None and message["type"] == "websocket.send":
                text = message.get("text")
                return text if text is not None else bytes(message["bytes"])
            if message is None:
                # What hypercorn does when an app ends without closing.
                self.close_code, self.close_reason = 1011, ""
            else:
                self.close_code = int(message.get("code", 1000))
                self.close_reason = message.get("reason") or ""
            # Answer the close frame, as a client does, so the app sees the end.
            await self._leave(1000, "")
            if self.close_code == 1011:
                await self._done.wait()
                failure = self._failure()
                if failure is not None:
                    raise failure
        raise WebSocketDisconnect(self.close_code, self.close_reason or "")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._client_closed:
            await trio.lowlevel.checkpoint()
            return
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        await self._leave(code, reason)

    async def _leave(self, code: int, reason: str) -> None:
        self._client_closed = True
        # The app may have finished already; then there is nobody to tell.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._to_app.send(
                {"type": "websocket.disconnect", "code": code, "reason": reason}
            )


class _Lifespan:
    """Runs the app's lifespan protocol, if the app speaks it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](1)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](math.inf)
        self._supported = True
        self._started = False
        #: What the app keeps for its requests (ASGI's lifespan state).
        self.state: dict[str, Any] = {}

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self._app(scope, self._app_inbox.receive, self._app_outbox.send)
        except Exception:
            # Servers read an app that raises on the lifespan scope as one that
            # does not support it, and go on without; so do we. A failure
            # after startup is the app's to report.
            if self._started:
                raise
        finally:
            self._app_outbox.close()

    async def _exchange(self, event: str) -> None:
        await self._to_app.send({"type": f"lifespan.{event}"})
        try:
            reply = await self._from_app.receive()
        except trio.EndOfChannel:
            self._supported = False  # the app ended: it does not do lifespan
            return
        if reply["type"] == f"lifespan.{event}.failed":
            raise RuntimeError(f"lifespan {event} failed: {reply.get('message', '')}")
        self._started = True

    async def start(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._run)
        await self._exchange("startup")

    async def stop(self) -> None:
        if self._supported:
            await self._exchange("shutdown")
