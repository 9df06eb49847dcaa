"""A bare WebSocket client that can do what polite clients never do.

trio-websocket always sends a close frame and valid frames; to test a client
that vanishes (a TCP close with no close frame, as when a phone loses its
signal), floods without reading, or breaks the protocol, we speak it by hand
with wsproto.
"""

from __future__ import annotations

import os
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate


class Rejected(Exception):
    """The server answered the handshake with an HTTP status instead."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers


class RawClient:
    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        #: The extensions the server accepted.
        self.extensions: list[Any] = []
        #: Bytes read since the handshake: what crossed the wire.
        self.received = 0

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str,
        *,
        local_address: str | None = None,
        headers: dict[str, str] | None = None,
        host: str | None = None,
        offer_deflate: bool = False,
    ) -> RawClient:
        """Open a WebSocket from `local_address` (another loopback address is
        another client), with extra `headers` (values sent as latin-1, so any
        byte can be sent) and any `Host`; raises `Rejected` if it is refused."""
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=local_address)
        ws = WSConnection(ConnectionType.CLIENT)
        extra = [(k.encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
        extensions = [PerMessageDeflate()] if offer_deflate else []
        request = Request(
            host=host or f"127.0.0.1:{port}",
            target=path,
            extra_headers=extra,
            extensions=extensions,
        )
        await stream.send_all(ws.send(request))
        while True:
            data = await stream.receive_some(65536)
            if not data:
                await stream.aclose()
                raise EOFError("the server closed during the handshake")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    client = cls(stream, ws)
                    client.extensions = list(event.extensions)
                    return client
                await stream.aclose()
                if isinstance(event, RejectConnection):
                    names = {k.decode().lower(): v.decode() for k, v in event.headers}
                    raise Rejected(event.status_code, names)
                raise AssertionError(f"handshake failed: {event!r}")

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(Message(data=text)))

    async def send_invalid_utf8(self) -> None:
        """A text frame whose payload is not UTF-8: a protocol error (RFC 6455, 8.1)."""
        payload = b"\xff\xfe\xfd"
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self.stream.send_all(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    async def _event(self) -> Event:
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.received += len(data)
            self.ws.receive_data(data)

    async def receive_text(self) -> str:
        while True:
            event = await self._event()
            if isinstance(event, TextMessage):
                return event.data

    async def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            event = await self._event()
            if isinstance(event, CloseConnection):
                return event.code

    async def drain(self) -> None:
        """Read and drop whatever the server sends, until it closes."""
        while await self.stream.receive_some(65536):
            pass

    async def ws_close(self, code: int = 1000) -> None:
        """Send a close frame with `code`, and read until the server's answer."""
        await self.stream.send_all(self.ws.send(CloseConnection(code=code)))
        await self.close_code()

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        await self.stream.aclose()
