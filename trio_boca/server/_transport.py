"""One TCP (or TLS) connection's byte stream, with its deadlines and its abort."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import trio

#: The most one read takes from the socket.
READ_SIZE = 65536


class ClientDisconnected(OSError):
    """An app's `send()` once its client's connection is gone (as ASGI 2.4 says)."""


#: What a stream raises once the peer or an abort has closed it.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


class Transport:
    """The stream, the deadlines of what waits on it, and how to cut it.

    `read_deadline` and `write_deadline` are Trio times by which the read or
    write under way must be done (`math.inf`: none). The server's
    timekeeper calls `overdue()`, which aborts the transport: the socket is
    closed under whoever waits on it, who then finds it gone. `aborted`
    says why.
    """

    __slots__ = (
        "_socket",
        "aborted",
        "client",
        "read_deadline",
        "reads",
        "secure",
        "server",
        "stream",
        "write_deadline",
    )

    def __init__(self, stream: trio.abc.Stream, secure: bool) -> None:
        self.stream = stream
        self.secure = secure
        socket_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        assert isinstance(socket_stream, trio.SocketStream)
        self._socket = socket_stream.socket
        self.client = _address(self._socket.getpeername())
        self.server = _address(self._socket.getsockname())
        self.read_deadline = math.inf
        self.write_deadline = math.inf
        #: Reads so far: the timekeeper tells a silent client by it.
        self.reads = 0
        #: Why the transport was aborted, once it was.
        self.aborted: str | None = None

    async def read(self) -> bytes:
        """The next bytes from the client; b"" once it has closed, or is gone."""
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except _GONE:
            return b""
        self.reads += 1
        return bytes(data)

    async def write(self, data: bytes, timeout: float) -> None:
        """Write `data` within `timeout` seconds, or abort the connection.

        Raises `ClientDisconnected` if the connection is gone. A write
        cancelled while it waits for a slow client aborts the connection:
        half a message cannot be taken back. Only one task may write at a
        time: callers that could meet hold a lock.
        """
        self.write_deadline = trio.current_time() + timeout
        try:
            await self.stream.send_all(data)
        except _GONE as exc:
            raise ClientDisconnected(self.aborted or "the client is gone") from exc
        except BaseException:
            self.abort("a write was cancelled half-way")
            raise
        finally:
            self.write_deadline = math.inf

    async def send_eof(self) -> None:
        """Half-close: the client reads the end of the stream (TCP only)."""
        if isinstance(self.stream, trio.SocketStream):
            with contextlib.suppress(*_GONE):
                await self.stream.send_eof()
        else:
            await trio.lowlevel.checkpoint()

    def overdue(self, now: float) -> None:
        if now >= self.write_deadline:
            self.abort("write_timeout")
        elif now >= self.read_deadline:
            self.abort("read_timeout")

    def abort(self, why: str) -> None:
        """Cut the connection now: whoever waits on it finds it gone."""
        if self.aborted is None:
            self.aborted = why
        self._socket.close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _address(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None
