"""A real server for tests: hypercorn's trio worker on a loopback port."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ..datastructures import Headers
from ..websockets import WebSocketDisconnect
from ._session import ClientWebSocket, WebSocketRejected


class LiveServer:
    """Serve `app` with hypercorn on `host`, on a free port, inside the test.

    ::

        async with LiveServer(app) as server:
            async with server.websocket("/echo") as ws:
                ...

    WebSocket sessions are real trio-websocket clients (install
    `trio_boca[testing]`) with the same API as the in-process TestClient's.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", **config: Any) -> None:
        self.app = app
        self.config = Config()
        self.config.bind = [f"{host}:0"]
        self.config.graceful_timeout = 1.0
        self.config.accesslog = None
        for name, value in config.items():
            setattr(self.config, name, value)
        self.host = host
        self.port = 0
        self._stop = trio.Event()
        self._nursery_manager = trio.open_nursery()

    @property
    def url(self) -> str:
        """The base HTTP URL, e.g. `http://127.0.0.1:35921`."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> LiveServer:
        nursery = await self._nursery_manager.__aenter__()
        try:
            run = partial(serve, self.app, self.config, shutdown_trigger=self._stop.wait)
            bound: list[str] = await nursery.start(run)
        except BaseException as exc:
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self.port = int(bound[0].rsplit(":", 1)[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._stop.set()
        return await self._nursery_manager.__aexit__(exc_type, exc, tb)

    def websocket(
        self,
        path: str,
        *,
        subprotocols: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        disconnect_timeout: float = 2.0,
    ) -> LiveWebSocket:
        """Connect a real WebSocket client to `path` (which may carry a query)."""
        return LiveWebSocket(
            f"ws://{self.host}:{self.port}{path}",
            subprotocols=list(subprotocols),
            headers=[(k.encode(), v.encode()) for k, v in (headers or {}).items()],
            connect_timeout=connect_timeout,
            disconnect_timeout=disconnect_timeout,
        )


class LiveWebSocket(ClientWebSocket):
    """A trio-websocket client with the test client's API."""

    def __init__(self, url: str, **options: Any) -> None:
        from trio_websocket import open_websocket_url

        self._manager = open_websocket_url(
            url,
            subprotocols=options["subprotocols"],
            extra_headers=options["headers"],
            connect_timeout=options["connect_timeout"],
            disconnect_timeout=options["disconnect_timeout"],
        )
        self._connection: Any = None

    async def __aenter__(self) -> LiveWebSocket:
        from trio_websocket import ConnectionRejected

        try:
            self._connection = await self._manager.__aenter__()
        except ConnectionRejected as exc:
            raise WebSocketRejected(
                exc.status_code, Headers.from_raw(exc.headers or ()), exc.body or b""
            ) from None
        self.subprotocol = self._connection.subprotocol
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = await self._manager.__aexit__(exc_type, exc, tb)
        return result

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
        await self._connection.aclose(code, reason or None)

    def _closed(self, exc: Any) -> WebSocketDisconnect:
        self.close_code = int(exc.reason.code)
        self.close_reason = exc.reason.reason or ""
        return WebSocketDisconnect(self.close_code, self.close_reason)
