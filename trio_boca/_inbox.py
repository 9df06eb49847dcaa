"""Who reads a connection's messages from the server, and where they wait.

A view in `receive()` reads the server's queue itself: the fast path, no
extra task and no extra task switch per message. But somebody must also read
while the view is *not* in `receive()` (it only sends, or waits on something
else), or the client's departure would never be seen (hypercorn never fails a
send, and stops reading the socket once ten messages wait unread). That is
the pump's job: a task of the connection's nursery, started for a view that
has stayed away from `receive()` for a tick (`AWAY_TICK`), which reads into
the bounded inbox until the view comes back.

One watchdog per Trio run notices the views that stay away. It wakes once a
tick, and only while some view is away: an idle server costs nothing, and a
busy one costs a dictionary update per message instead of a task switch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Message = MutableMapping[str, Any]

#: How long a view may stay away from receive() before a pump reads for it.
AWAY_TICK = 0.05


class ClientGone:
    """What `Inbox.get` returns once the queue is drained and the client has left.

    Returned, not raised: the normal end of a connection should not cost a
    traceback, and the caller decides what it means for the view.
    """

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Inbox:
    """Inbound messages for the view, bounded in count and in size.

    When a pump reads, a full inbox makes it wait, which stops it calling the
    server's `receive()`, which makes the server stop reading the socket:
    backpressure all the way to the client's TCP window, and nothing is ever
    dropped. One message larger than `max_bytes` is still admitted when the
    inbox is empty, so a legal message can always get through; memory stays
    under `max_bytes` plus one message. Sizes count characters for text and
    bytes for binary: close enough to bound memory without encoding twice.
    """

    __slots__ = (
        "_bytes",
        "_end",
        "_messages",
        "_readable",
        "_watchdog",
        "_writable",
        "away_since",
        "cancelled_view",
        "max_bytes",
        "max_messages",
        "on_disconnect",
        "pumping",
        "receive_from_server",
        "start_pump",
        "waiting",
    )

    def __init__(
        self,
        receive: Callable[[], Awaitable[Message]],
        max_messages: int,
        max_bytes: int,
    ) -> None:
        self.receive_from_server = receive
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        #: Called with (code, reason) when a direct read finds the client gone.
        self.on_disconnect: Callable[[int, str], None] = self.end
        #: Starts a pump in the connection's nursery (set by the connection).
        self.start_pump: Callable[[], object] = lambda: None
        #: A pump is reading for the view.
        self.pumping = False
        #: The pump cancelled the view: its client left, or it stopped reading.
        self.cancelled_view = False
        #: View tasks inside get().
        self.waiting = 0
        #: When the view last left receive(), for as long as it stays away.
        self.away_since: float | None = None
        self._end: ClientGone | None = None
        # The queue exists only once a pump has run: a view that reads for
        # itself never needs it, and an idle connection should cost little.
        self._messages: deque[tuple[Message, int]] | None = None
        self._bytes = 0
        self._readable: trio.lowlevel.ParkingLot | None = None
        self._writable: trio.lowlevel.ParkingLot | None = None
        self._watchdog = _watchdog()

    def queued(self) -> int:
        """How many messages wait in the inbox."""
        return len(self._messages or ())

    # -- the view's side ---------------------------------------------------------

    async def get(self) -> Message | ClientGone:
        # Runs for every message: its bookkeeping is a few attribute and
        # dictionary operations, written out rather than called.
        self.waiting += 1
        if self.away_since is not None:
            self.away_since = None
            self._watchdog.away.pop(self, None)
        try:
            while True:
                if self._messages:
                    await trio.lowlevel.checkpoint_if_cancelled()
                    message, size = self._messages.popleft()
                    self._bytes -= size
                    assert self._writable is not None
                    self._writable.unpark()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return message
                if self._end is not None:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return self._end
                if self.pumping:
                    assert self._readable is not None
                    await self._readable.park()
                    continue
                message = await self.receive_from_server()
                kind = message["type"]
                if kind == "websocket.receive":
                    return message
                if kind == "websocket.disconnect":
                    self.on_disconnect(message.get("code", 1005), message.get("reason") or "")
        finally:
            self.waiting -= 1
            if not self.waiting and self._end is None:
                self.mark_away()

    def mark_away(self) -> None:
        """The view is not receiving: if it stays away, a pump will read for it."""
        self.away_since = now = trio.current_time()
        watchdog = self._watchdog
        if watchdog._parked:
            watchdog._wake.unpark()
        watchdog.away[self] = now

    def forget(self) -> None:
        """The connection is over: no pump is wanted any more."""
        self.start_pump = lambda: None
        self._watchdog.away.pop(self, None)

    def begin_pump(self) -> None:
        """Have a pump read for the view, unless one already does."""
        if self.pumping:
            return
        self.pumping = True
        self._prepare()
        self.start_pump()

    def _prepare(self) -> tuple[deque[tuple[Message, int]], trio.lowlevel.ParkingLot]:
        """The queue and its parking lots, made on first use."""
        if self._messages is None:
            self._messages = deque()
            self._readable = trio.lowlevel.ParkingLot()
            self._writable = trio.lowlevel.ParkingLot()
        assert self._writable is not None
        return self._messages, self._writable

    # -- the pump's side ---------------------------------------------------------

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
        messages, writable = self._prepare()
        while not self._admits(size):
            with trio.move_on_after(patience) as waiting:
                await writable.park()
            if waiting.cancelled_caught:
                return False
        messages.append((message, size))
        self._bytes += size
        assert self._readable is not None
        self._readable.unpark()
        return True

    def end(self, code: int, reason: str) -> None:
        """The client has left: once drained, `get` raises `ClientGone`."""
        self._end = ClientGone(code, reason)
        if self._readable is not None:
            self._readable.unpark_all()
        self.forget()

    def pump_stopped(self) -> None:
        """Wake view tasks waiting on the pump, so they read for themselves."""
        self.pumping = False
        if self._readable is not None:
            self._readable.unpark_all()


class _Watchdog:
    """Starts a pump for every view that stays away from receive() for a tick."""

    def __init__(self) -> None:
        self.away: dict[Inbox, float] = {}
        self._wake = trio.lowlevel.ParkingLot()
        self._parked = False

    async def run(self) -> None:
        quiet_ticks = 0
        while True:
            # Park only after a second with nobody away: a busy server keeps
            # the watchdog ticking, rather than waking it for every connection.
            quiet_ticks = quiet_ticks + 1 if not self.away else 0
            if quiet_ticks > 1 / AWAY_TICK:
                self._parked = True
                try:
                    await self._wake.park()
                finally:
                    self._parked = False
                quiet_ticks = 0
            await trio.sleep(AWAY_TICK)
            now = trio.current_time()
            for inbox, since in list(self.away.items()):
                if now - since >= AWAY_TICK:
                    del self.away[inbox]
                    inbox.begin_pump()


_WATCHDOG: trio.lowlevel.RunVar[_Watchdog] = trio.lowlevel.RunVar("trio_boca_watchdog")


def _watchdog() -> _Watchdog:
    """This Trio run's watchdog, started on first use as a system task."""
    try:
        return _WATCHDOG.get()
    except LookupError:
        watchdog = _Watchdog()
        _WATCHDOG.set(watchdog)
        trio.lowlevel.spawn_system_task(watchdog.run, name="trio_boca watchdog")
        return watchdog
