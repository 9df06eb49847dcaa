"""Log lines a client can cause, at most once a second each, with a count.

A flood (of refused handshakes, slow headers, accept failures) must not
become a flood of log lines: the first of a kind is written at once, the
next ones within the same second are only counted, and the count rides on
the next line written.

Shared by the door (`guards.py`) and the server; it imports neither.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter


class OncePerSecond:
    """Writes each kind of line (`key`) to `logger` at most once a second."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self.logger = logger
        self.level = level
        #: How many of each kind were noted, logged or not.
        self.counts: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def note(
        self, key: str, message: str, *args: object, exc_info: BaseException | None = None
    ) -> None:
        self.counts[key] += 1
        now = time.monotonic()  # not Trio's clock: this outlives any one Trio run
        if now - self._logged_at.get(key, -math.inf) < 1:
            self._unlogged[key] += 1
            return
        self._logged_at[key] = now
        more = self._unlogged.pop(key, 0)
        suffix = f" (and {more} more since the last such line)" if more else ""
        self.logger.log(self.level, message + "%s", *args, suffix, exc_info=exc_info)
