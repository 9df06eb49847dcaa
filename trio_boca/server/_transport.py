"""One TCP (or TLS) connection's byte stream, with its deadlines and its abort."""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import trio

#: The most one read takes from the socket.
READ_SIZE = 65536
#: Writes that need not wait are not checkpoints; one in this many is.
WRITES_PER_YIELD = 16


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
        "_drained",
        "_fd",
        "_socket",
        "_unyielded",
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
        #: The socket's descriptor, for writes that need not wait (plain TCP).
        self._fd = None if secure else self._socket.fileno()
        self._unyielded = 0
        self._drained = True  # the last read emptied the socket
        self.client = _address(self._socket.getpeername())
        self.server = _address(self._socket.getsockname())
        self.read_deadline = math.inf
        self.write_deadline = math.inf
        #: Reads so far: the timekeeper tells a silent client by it.
        self.reads = 0
        #: Why the transport was aborted, once it was.
        self.aborted: str | None = None

    async def read(self) -> bytes:
        """The next bytes from the client; b"" once it has closed, or is gone.

        Over plain TCP, when the last read emptied the socket (the usual case:
        a client waits for the answer before it says more), it first waits
        until the socket is readable and then reads once, rather than trying
        a read it expects to fail, as Trio's `receive_some` does: one system
        call less per message. After a read that filled the buffer, it reads
        at once (one checkpoint in `WRITES_PER_YIELD`, so a flood lets others run).
        """
        if self._fd is None:
            return await self._read_stream()
        try:
            if self._drained:
                await trio.lowlevel.wait_readable(self._socket)
            else:
                self._unyielded += 1
                if self._unyielded >= WRITES_PER_YIELD:
                    self._unyielded = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
            while True:
                fd = self._fd  # afresh after every wait: an abort clears it
                if fd is None:
                    return b""
                try:
                    data = os.read(fd, READ_SIZE)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self._socket)
        except _GONE:  # closed under the wait: an abort
            return b""
        except OSError:  # reset by the peer
            return b""
        self._drained = len(data) < READ_SIZE
        self.reads += 1
        return data

    async def _read_stream(self) -> bytes:
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

        Over plain TCP the bytes are first offered to the socket at once,
        and when it takes them all (the usual case: its buffer has room),
        that is the whole write, with no trip through the scheduler; one
        such write in `WRITES_PER_YIELD` is a checkpoint, so that an app
        that only writes still lets others run. Only a socket that is full
        waits, through Trio, with the deadline.
        """
        if self._fd is not None and self.aborted is None:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # the client is gone (EPIPE, ECONNRESET)
                raise ClientDisconnected(str(exc)) from exc
            if sent == len(data):
                self._unyielded += 1
                if self._unyielded >= WRITES_PER_YIELD:  # a loop of writes lets others run
                    self._unyielded = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return
            data = data[sent:]
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
        self._fd = None  # closed: its number may soon be another socket's
        self._socket.close()

    async def aclose(self) -> None:
        self._fd = None
        if isinstance(self.stream, trio.SocketStream):
            self._socket.close()  # what aclose() does, without its cancel scope
            await trio.lowlevel.checkpoint()
        else:
            await trio.aclose_forcefully(self.stream)


def _address(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


class Turns:
    """Writers of one connection take turns, first come first served.

    A `trio.StrictFIFOLock` does the same, at 340 bytes per connection and
    0.7 us per turn (it keeps its parking lot's deadlock bookkeeping), on
    the path of every message: measured, that was a tenth of the budget of
    an idle connection. The lot here is made only when two writers meet.
    """

    __slots__ = ("_taken", "_waiting")

    def __init__(self) -> None:
        self._taken = False
        self._waiting: trio.lowlevel.ParkingLot | None = None

    async def take(self) -> None:
        """Wait for the turn: a checkpoint only when someone else has it.

        Cancelled while waiting, the turn is not taken.
        """
        if not self._taken:
            self._taken = True
            return
        if self._waiting is None:
            self._waiting = trio.lowlevel.ParkingLot()
        await self._waiting.park()  # woken by give(), which hands the turn over

    def give(self) -> None:
        """Hand the turn to the first waiting writer, or free it."""
        if self._waiting:
            self._waiting.unpark()
        else:
            self._taken = False
