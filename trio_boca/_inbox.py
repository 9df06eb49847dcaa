"""A connection's inbox: the client's messages, from the reader to the view.

It serves trio_boca's connections, and trio_boca's server as the queue behind
an app's ASGI `receive()`. Two parties, each with its own fields, so that
who changed what is never in doubt:

- **the reader** (one task: the connection's reader, or the server's own
  task for the connection) `put`s messages and says when no more will come
  (`end`); it alone writes `_put_bytes` and `_ended`;
- **the view** (any of its tasks) `get`s them, and says when it will read
  no more (`close`, its last word); it alone writes `_taken_bytes` and
  `_closed`.

The inbox is bounded twice, in messages and in bytes (one message larger
than the byte budget still fits when the inbox is empty). A reader that
finds it full waits, and while it waits it does not read the socket: that
is the backpressure that reaches the client's TCP window. Nothing is ever
dropped while the view may still read it; what arrives after the view's
last word is dropped, since nobody will.
"""

from __future__ import annotations

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from ._messages import Message


class Inbox:
    __slots__ = (
        "_arrival",
        "_closed",
        "_ended",
        "_items",
        "_max_bytes",
        "_max_items",
        "_put_bytes",
        "_room",
        "_taken_bytes",
    )

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        # A list, not a deque: an empty deque takes 600 bytes, and an inbox
        # holds at most a few dozen messages, most often none.
        self._items: list[tuple[Message, int]] = []
        self._put_bytes = 0  # the reader's
        self._ended = False  # the reader's: nothing more will come
        self._taken_bytes = 0  # the view's
        self._closed = False  # the view's: it will read no more
        self._arrival = ParkingLot()  # view tasks waiting for a message
        self._room: ParkingLot | None = None  # the reader, waiting for room (rare)

    @property
    def waiting(self) -> int:
        """How many messages wait to be read."""
        return len(self._items)

    # -- the reader's side -------------------------------------------------------

    def _full_for(self, size: int) -> bool:
        queued = self._put_bytes - self._taken_bytes
        return len(self._items) >= self._max_items or (
            queued > 0 and queued + size > self._max_bytes
        )

    async def put(self, message: Message, size: int, patience: float) -> bool:
        """Queue `message` (`size` characters or bytes), waiting while the inbox is full.

        Returns False if the view took nothing for `patience` seconds: it
        has stopped reading. Any message it takes restarts the clock. After
        the view's last word the message is dropped, and this returns True.
        """
        while self._full_for(size) and not self._closed:
            if self._room is None:
                self._room = ParkingLot()
            with trio.move_on_after(patience) as waiting:
                await self._room.park()
            if waiting.cancelled_caught:
                return False
        if not self._closed:
            self._items.append((message, size))
            self._put_bytes += size
            self._arrival.unpark()
        return True

    def end(self) -> None:
        """No more messages will come: once the queued ones are read, `get` returns None."""
        self._ended = True
        self._arrival.unpark_all()

    # -- the view's side ---------------------------------------------------------

    async def get(self) -> Message | None:
        """The next message; None once the inbox has ended (or is closed) and is empty.

        Always a checkpoint; a message is never lost to a cancellation.
        """
        await checkpoint_if_cancelled()
        parked = False
        while not self._items:
            if self._ended or self._closed:
                if not parked:
                    await cancel_shielded_checkpoint()
                return None
            await self._arrival.park()
            parked = True
        message, size = self._items.pop(0)
        self._taken_bytes += size
        if self._room:
            self._room.unpark()
        if not parked:
            await cancel_shielded_checkpoint()
        return message

    def get_nowait(self) -> Message | None:
        """The next message if one waits, without a checkpoint; None once
        the inbox has ended (or is closed) and is empty.

        Raises `trio.WouldBlock` if it is empty and may still fill. For a
        server's ASGI `receive()`: Starlette looks for a queued disconnect by
        calling it in a cancelled scope, where a checkpoint would raise.
        """
        if not self._items:
            if self._ended or self._closed:
                return None
            raise trio.WouldBlock
        message, size = self._items.pop(0)
        self._taken_bytes += size
        if self._room:
            self._room.unpark()
        return message

    def close(self) -> None:
        """The view will read no more: drop what waits, and what still arrives."""
        self._closed = True
        self._items.clear()
        self._arrival.unpark_all()
        if self._room:
            self._room.unpark_all()
