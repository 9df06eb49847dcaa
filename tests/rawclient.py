"""A bare WebSocket client that can do what polite clients never do.

trio-websocket always sends a close frame; to test a client that vanishes
(a TCP close with no close frame, as when a phone loses its signal) we speak
the protocol by hand with wsproto.
"""

from __future__ import annotations

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage


class RawClient:
    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws

    @classmethod
    async def connect(cls, port: int, path: str) -> RawClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
        while True:
            ws.receive_data(await stream.receive_some(65536))
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return cls(stream, ws)
                raise AssertionError(f"handshake failed: {event!r}")

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(Message(data=text)))

    async def receive_text(self) -> str:
        while True:
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    return event.data
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.ws.receive_data(data)

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        await self.stream.aclose()
