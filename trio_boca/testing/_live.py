"""A real server for tests: trio_boca's own (or hypercorn's Trio worker) on a loopback port."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Literal

import trio

from .._running import Running
from ..datastructures import Headers
from ..server import Address, serve
from ..websockets import WebSocketDisconnect
from ._session import ClientWebSocket, WebSocketRejected, open_nursery


class LiveServer(Running):
    """Serve `app` on a free loopback port, inside the test, over real sockets.

    ::

        async with LiveServer(app) as server:
            async with server.websocket("/echo") as ws:
                ...

    By default the app runs as `app.serve()` runs it in production, on
    trio_boca's own server (`trio_boca.server.serve`), and `max_message_size`,
    `ping_interval`, `ping_timeout`, `compression`, `proxy_headers`,
    `forwarded_allow_ips`, `ssl_context` and `idle_timeout` are `serve()`'s
    (pings are off unless asked for: a test rarely wants them). `plain=True`
    runs hypercorn's Trio worker, unpatched, as `hypercorn --worker-class
    trio app:app` would; extra keyword arguments then set hypercorn `Config`
    attributes (`graceful_timeout`, say).

    WebSocket sessions are real trio-websocket clients (install
    `trio_boca[testing]`) with the same API as the in-process TestClient's.

    Raises `ValueError` for `plain=True` with `proxy_headers` (plain
    hypercorn has none), and `TypeError` for hypercorn settings without
    `plain=True`. Entering
    raises `ModuleNotFoundError` if trio-websocket is not installed,
    `StartupFailed` if the app's startup hooks fail (hypercorn's own error
    with `plain=True`), and `RuntimeError` if this server is in use already.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        plain: bool = False,
        shutdown_timeout: float = 1.0,
        max_message_size: int | None = None,
        ping_interval: float = 0,
        ping_timeout: float = 0,
        compression: bool | None = None,
        proxy_headers: bool | Literal["x-forwarded", "forwarded"] = False,
        forwarded_allow_ips: str = "127.0.0.1,::1",
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float | None = None,
        **hypercorn_config: Any,
    ) -> None:
        if plain and proxy_headers:
            raise ValueError("proxy_headers is trio_boca's serve(); plain hypercorn has none")
        if hypercorn_config and not plain:
            raise TypeError(
                f"{', '.join(hypercorn_config)}: hypercorn settings, for plain=True only"
            )
        self.app = app
        self.plain = plain
        self.host = host
        self.port = 0
        self.secure = ssl_context is not None
        self.shutdown_timeout = shutdown_timeout
        self.options: dict[str, Any] = {
            "max_message_size": max_message_size,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "proxy_headers": proxy_headers,
            "forwarded_allow_ips": forwarded_allow_ips,
            "ssl_context": ssl_context,
        }
        if compression is not None:
            self.options["compression"] = compression
        if idle_timeout is not None:
            self.options["idle_timeout"] = idle_timeout
        self.hypercorn_config = hypercorn_config

    @property
    def address(self) -> Address:
        """Where the server listens (`.url`, `.ws_url`)."""
        return Address(self.host, self.port, self.secure)

    @property
    def url(self) -> str:
        """The base HTTP URL, e.g. `http://127.0.0.1:35921` (`https://` over TLS)."""
        return self.address.url

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        require_client()  # before serving: fail where the test starts, not mid-test
        async with open_nursery() as nursery:
            run: Any
            if self.plain:
                from .. import _hypercorn

                config = _hypercorn.make_config(
                    self.host, 0, self.shutdown_timeout, **self.hypercorn_config
                )
                if self.options["max_message_size"] is not None:
                    config.websocket_max_message_size = self.options["max_message_size"]
                config.ssl_context = self.options["ssl_context"]
                run = partial(_hypercorn.serve, self.app, config)
            else:
                options = {k: v for k, v in self.options.items() if v is not None}
                run = partial(
                    serve,
                    self.app,
                    self.host,
                    0,
                    shutdown_timeout=self.shutdown_timeout,
                    **options,
                )
            address: Address = await nursery.start(run)
            self.port = address.port
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()  # a graceful stop: see serve()

    def websocket(
        self,
        path: str,
        *,
        subprotocols: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        disconnect_timeout: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> AbstractAsyncContextManager[LiveWebSocket]:
        """Connect a real WebSocket client to `path` (which may carry a query);
        over TLS, `ssl_context` is the client's (the one that trusts the server).

        Raises as `connect_websocket()` does (`WebSocketRejected` for a refused
        handshake, say)."""
        return connect_websocket(
            self.address.ws_url + path,
            subprotocols=subprotocols,
            headers=headers,
            connect_timeout=connect_timeout,
            disconnect_timeout=disconnect_timeout,
            ssl_context=ssl_context,
        )


@asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    subprotocols: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 5.0,
    disconnect_timeout: float = 2.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[LiveWebSocket]:
    """Connect a real WebSocket client (trio-websocket) to `url`, e.g. `ws://host:port/path`.

    A `wss://` URL connects over TLS, checked with `ssl_context` (by default
    the system's trusted authorities). The session has the in-process test
    client's API. The TCP stream is opened
    and closed here, not by trio-websocket: 0.12.2 leaves its socket open when
    the handshake is refused or the server closes first.

    Entering raises `ValueError` unless `url` is a `ws://` or `wss://` URL
    with a host, `ModuleNotFoundError` if trio-websocket is not installed,
    `OSError` if the connection cannot be made, `trio.TooSlowError` if
    connecting or the handshake takes longer than `connect_timeout`, and
    `WebSocketRejected` (with the status, headers and body) if the server
    refuses the handshake. Leaving closes the connection, waiting at most
    `disconnect_timeout` for the server's answer.
    """
    from urllib.parse import urlsplit

    require_client()
    from trio_websocket import ConnectionRejected, wrap_client_stream

    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or parts.hostname is None:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    secure = parts.scheme == "wss"
    host, port = parts.hostname, parts.port or (443 if secure else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query

    try:
        async with open_nursery() as nursery:
            stream: trio.abc.Stream
            with trio.fail_after(connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
            try:
                with trio.fail_after(connect_timeout):
                    if secure:
                        context = ssl_context or ssl.create_default_context()
                        stream = trio.SSLStream(stream, context, server_hostname=host)
                        await stream.do_handshake()
                    connection = await wrap_client_stream(
                        nursery,
                        stream,
                        parts.netloc,
                        path,
                        subprotocols=list(subprotocols),
                        extra_headers=[
                            (k.encode(), v.encode()) for k, v in (headers or {}).items()
                        ],
                    )
                try:
                    yield LiveWebSocket(connection)
                finally:
                    with trio.move_on_after(disconnect_timeout) as cleanup:
                        cleanup.shield = True
                        await connection.aclose()
            finally:
                await trio.aclose_forcefully(stream)
    except ConnectionRejected as exc:  # raised in trio-websocket's reader task
        headers_ = Headers.from_raw(exc.headers or ())
        raise WebSocketRejected(exc.status_code, headers_, exc.body or b"") from None


def require_client() -> None:
    """Raise `ModuleNotFoundError` naming the extra if trio-websocket is missing.

    It is an optional dependency (the `testing` extra): a plain ImportError
    deep in a test's nursery would not say what to install.
    """
    try:
        import trio_websocket  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(
            "LiveServer and connect_websocket need trio-websocket: "
            'pip install "trio_boca[testing]"',
            name="trio_websocket",
        ) from None


class LiveWebSocket(ClientWebSocket):
    """A trio-websocket client connection with the test client's API."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.subprotocol = connection.subprotocol

    async def send(self, data: str | bytes) -> None:
        from trio_websocket import ConnectionClosed

        try:
            await self._connection.send_message(data)
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def receive(self) -> str | bytes:
        from trio_websocket import ConnectionClosed

        try:
            message: str | bytes = await self._connection.get_message()
        except ConnectionClosed as exc:
            raise self._closed(exc) from None
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        await self._connection.aclose(code, reason or None)

    def _closed(self, exc: Any) -> WebSocketDisconnect:
        self.close_code = int(exc.reason.code)
        self.close_reason = exc.reason.reason or ""
        return WebSocketDisconnect(self.close_code, self.close_reason)
