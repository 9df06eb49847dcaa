"""Every deadline of every connection, kept by one task per server run.

A Trio cancel scope is the natural timer, but entering one costs several
microseconds, about as much as the rest of a WebSocket message: one around
each read and each write would cost a fifth of the server's speed. Yet the
deadlines are coarse (a write that takes 30 s, a client silent for 20 s), and
almost every operation finishes long before its deadline. So a connection
only writes down when its pending deadline falls, in plain fields, and one
task looks at all of them four times a second. What it finds overdue it
ends, synchronously, by aborting that connection's transport (which wakes
whatever waits on it with an error), or hands to a short task of the
server's own (a keepalive ping, which must write).
"""

from __future__ import annotations

from typing import Protocol

import trio

#: How often the timekeeper looks, in seconds: deadlines are kept this closely.
EVERY = 0.25


class Timed(Protocol):
    """A connection with deadlines."""

    def overdue(self, now: float) -> None:
        """Act on whatever deadline has passed by `now` (synchronously)."""


class Timekeeper:
    def __init__(self) -> None:
        self._watched: set[Timed] = set()

    def watch(self, timed: Timed) -> None:
        self._watched.add(timed)

    def forget(self, timed: Timed) -> None:
        self._watched.discard(timed)

    async def run(self) -> None:
        """Look at every deadline, every `EVERY` seconds, for ever."""
        while True:
            await trio.sleep(EVERY)
            now = trio.current_time()
            for timed in list(self._watched):
                timed.overdue(now)
