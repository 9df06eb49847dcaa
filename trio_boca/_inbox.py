"""The bounded queue between a connection's receive pump and its view."""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
from typing import Any

import trio

Message = MutableMapping[str, Any]


class ClientGone(Exception):
    """Raised by `Inbox.get` once the queue is drained and the client has left."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class Inbox:
    """Inbound messages waiting for the view, bounded in count and in size.

    The pump is the only producer. When the inbox is full the pump waits,
    which stops it calling the server's `receive()`, which makes the server
    stop reading the socket: backpressure all the way to the client's TCP
    window, and nothing is ever dropped. One message larger than `max_bytes`
    is still admitted when the inbox is empty, so a legal message can always
    get through; memory stays under `max_bytes` plus one message.

    Sizes count characters for text and bytes for binary: close enough to
    bound memory without encoding every message twice.
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._messages: deque[tuple[Message, int]] = deque()
        self._bytes = 0
        self._end: ClientGone | None = None
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._messages)

    def _admits(self, size: int) -> bool:
        if not self._messages:
            return True
        return len(self._messages) < self.max_messages and self._bytes + size <= self.max_bytes

    async def put(self, message: Message, size: int, patience: float) -> bool:
        """Queue `message`, waiting while the inbox is full.

        Returns False, without queueing, if the reader took nothing at all for
        `patience` seconds: the view has stopped reading. Any message taken
        restarts the clock, so a slow reader is never mistaken for a stalled one.
        """
        while not self._admits(size):
            with trio.move_on_after(patience) as waiting:
                await self._writable.park()
            if waiting.cancelled_caught:
                return False
        self._messages.append((message, size))
        self._bytes += size
        self._readable.unpark()
        return True

    def end(self, code: int, reason: str) -> None:
        """The client has left: once drained, `get` raises `ClientGone`."""
        self._end = ClientGone(code, reason)
        self._readable.unpark_all()

    async def get(self) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not self._messages:
            if self._end is not None:
                raise ClientGone(self._end.code, self._end.reason)
            await self._readable.park()
            parked = True
        # Take the message before yielding, so two readers never race for it.
        message, size = self._messages.popleft()
        self._bytes -= size
        self._writable.unpark()
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return message
