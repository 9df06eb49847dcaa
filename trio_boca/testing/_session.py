"""What a test holds once its WebSocket is open, in-process or over a socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._errors import plain_errors
from ..datastructures import Headers


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery that raises its one real error as itself, not in a group.

    A test that writes `pytest.raises(SomeError)` around a client block, or
    reads a failed assertion, wants the error, not an ExceptionGroup of one.
    """
    with plain_errors():
        async with trio.open_nursery() as nursery:
            yield nursery


class WebSocketRejected(Exception):
    """The server answered the handshake with an HTTP response instead."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(status, body)
        self.status = status
        self.headers = headers
        self.body = body

    def __str__(self) -> str:
        return f"handshake rejected with HTTP {self.status}" + (
            f": {self.body!r}" if self.body else ""
        )


class ClientWebSocket:
    """The client side of a test connection.

    `receive()` raises `trio_boca.WebSocketDisconnect(code, reason)` once the
    server has closed. `close_code` and `close_reason` say how the connection
    closed, whichever side began it.
    Subclasses provide `send`, `receive` and `close` (here they raise
    `NotImplementedError`); `receive_text()` and `receive_bytes()` raise
    `TypeError` for a message of the other kind.
    """

    #: The subprotocol the server chose, if any.
    subprotocol: str | None = None
    close_code: int | None = None
    close_reason: str | None = None

    async def send(self, data: str | bytes) -> None:
        """Send a text (`str`) or binary (`bytes`) message.

        Raises `WebSocketDisconnect` once the connection has closed. Here,
        `NotImplementedError`: subclasses send.
        """
        raise NotImplementedError

    async def receive(self) -> str | bytes:
        """The server's next message: `str` for a text frame, `bytes` for a binary one.

        Raises `WebSocketDisconnect(code, reason)` once the connection has
        closed, and on every call after. In-process, with
        `raise_server_exceptions`, a view that failed has its exception
        re-raised here instead, once the client has seen the 1011. Here,
        `NotImplementedError`: subclasses receive.
        """
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with `code` and `reason`; once closed, it does nothing.

        Here, `NotImplementedError`: subclasses close.
        """
        raise NotImplementedError

    async def send_json(self, value: Any) -> None:
        """Send `value` as JSON in a text message.

        Raises `TypeError` for a value JSON cannot encode, and
        `WebSocketDisconnect` once the connection has closed.
        """
        await self.send(json.dumps(value))

    async def receive_text(self) -> str:
        """The next message, which must be text.

        Raises `TypeError` for a binary message, and what `receive()` raises:
        `WebSocketDisconnect` once the connection has closed.
        """
        message = await self.receive()
        if not isinstance(message, str):
            raise TypeError(f"expected a text message, got {message!r}")
        return message

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary.

        Raises `TypeError` for a text message, and what `receive()` raises:
        `WebSocketDisconnect` once the connection has closed.
        """
        message = await self.receive()
        if not isinstance(message, bytes):
            raise TypeError(f"expected a binary message, got {message!r}")
        return message

    async def receive_json(self) -> Any:
        """The next message, text or binary, decoded as JSON.

        Raises `ValueError` if it is not JSON, and what `receive()` raises:
        `WebSocketDisconnect` once the connection has closed.
        """
        return json.loads(await self.receive())
