"""The app's ASGI lifespan: startup before serving, shutdown after."""

from __future__ import annotations

import logging
import math
from typing import Any

import trio

logger = logging.getLogger("trio_boca")

Message = dict[str, Any]


class StartupFailed(Exception):
    """The app's startup hooks failed; the server did not start."""


class Lifespan:
    """Runs the app's lifespan in a task of the caller's nursery.

    `state` is ASGI's lifespan state: the app keeps what it likes there, and
    each request's scope gets a shallow copy. An app that raises on the
    lifespan scope before answering does not speak the protocol; the
    server goes on without it, as ASGI says.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](1)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](math.inf)
        self._spoken = False  # the app answered once: it speaks the protocol

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._app_inbox.receive, self._app_outbox.send)
        except Exception as exc:
            if self._spoken:
                logger.error("the ASGI app's lifespan failed", exc_info=exc)
            else:
                logger.debug("the app does not run a lifespan (%r)", exc)
        finally:
            self._app_outbox.close()

    async def _exchange(self, event: str) -> Message | None:
        """Send `lifespan.<event>`; the app's answer, or None if it has none."""
        try:
            await self._to_app.send({"type": f"lifespan.{event}"})
            answer = await self._from_app.receive()
        except (trio.EndOfChannel, trio.BrokenResourceError):
            return None
        self._spoken = True
        return answer

    async def startup(self, nursery: trio.Nursery) -> None:
        """Run the startup; raises `StartupFailed` with the app's message."""
        nursery.start_soon(self._run)
        answer = await self._exchange("startup")
        if answer is not None and answer["type"] == "lifespan.startup.failed":
            raise StartupFailed(answer.get("message", "") or "the app's startup failed")

    async def shutdown(self) -> None:
        answer = await self._exchange("shutdown")
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            logger.error("the app's shutdown failed: %s", answer.get("message", ""))
        self._to_app.close()
