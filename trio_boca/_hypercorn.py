"""The one place trio_boca reaches into hypercorn.

Two things the ASGI interface of hypercorn 0.18 cannot give us:

1. **The client's close code and reason.** hypercorn reads the client's close
   frame and answers it, then tells the app 1006 with no reason (hypercorn
   #127). We note the code and reason as hypercorn answers the frame, and
   put them into the `websocket.disconnect` event it sends the app.
2. **A bounded shutdown.** hypercorn writes with a shielded `send_all`, so a
   client that stopped reading can hold its connection, and with it the
   server, past any cancellation. We keep the streams of live connections so
   `serve()` can close them once its shutdown deadline passes: a blocked
   write then fails instead of waiting forever, and the connection ends.

Both act only in tasks started inside `adapted()`, which only trio_boca's own
entry points enter (a ContextVar marks them): an app served by plain
`hypercorn app:app`, even in the same process, sees hypercorn unchanged. And
both are installed only on the hypercorn versions they were checked against
(`CHECKED`); tests fail loudly if a new version changes what they rely on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import version
from typing import Any

import trio

logger = logging.getLogger("trio_boca")

CHECKED = ("0.18.",)


class Live:
    """The streams of the connections one `serve()` has open."""

    def __init__(self) -> None:
        self.streams: set[Any] = set()

    async def abort(self) -> int:
        """Close every stream still open; returns how many there were."""
        streams = list(self.streams)
        for stream in streams:
            await trio.aclose_forcefully(stream)
        return len(streams)


_live: ContextVar[Live | None] = ContextVar("trio_boca_hypercorn_live", default=None)
_installed: bool | None = None


def supported() -> bool:
    return version("hypercorn").startswith(CHECKED)


@contextmanager
def adapted() -> Iterator[Live]:
    """Run hypercorn within this block with both adaptations, where supported."""
    install()
    live = Live()
    token = _live.set(live)
    try:
        yield live
    finally:
        _live.reset(token)


def install() -> bool:
    """Install the adaptations once; False if this hypercorn was not checked."""
    global _installed
    if _installed is None:
        _installed = supported()
        if _installed:
            _patch()
        else:
            logger.warning(
                "hypercorn %s is not one trio_boca was checked against (%s): WebSocket "
                "views see close codes as hypercorn reports them, and shutdown waits "
                "for every write to finish",
                version("hypercorn"),
                ", ".join(v + "x" for v in CHECKED),
            )
    return _installed


def _patch() -> None:
    from hypercorn.protocol.events import Request
    from hypercorn.protocol.ws_stream import WSStream
    from hypercorn.trio.tcp_server import TCPServer
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection

    send_wsproto_event = WSStream._send_wsproto_event
    handle = WSStream.handle
    run = TCPServer.run

    async def _send_wsproto_event(self: Any, event: Any) -> None:
        # hypercorn answers a client's close frame with the same code and
        # reason, in state REMOTE_CLOSING: the one moment both are at hand.
        if (
            _live.get() is not None
            and isinstance(event, CloseConnection)
            and self.connection.state is ConnectionState.REMOTE_CLOSING
        ):
            self.trio_boca_client_close = (event.code, event.reason or "")
        await send_wsproto_event(self, event)

    async def _handle(self: Any, event: Any) -> None:
        await handle(self, event)
        if isinstance(event, Request) and self.app_put is not None and _live.get() is not None:
            put = self.app_put

            async def app_put(message: Any) -> None:
                close = getattr(self, "trio_boca_client_close", None)
                if message["type"] == "websocket.disconnect" and close is not None:
                    message = {**message, "code": close[0], "reason": close[1]}
                await put(message)

            self.app_put = app_put

    async def _run(self: Any) -> None:
        live = _live.get()
        if live is None:
            await run(self)
            return
        live.streams.add(self.stream)
        try:
            await run(self)
        finally:
            live.streams.discard(self.stream)

    WSStream._send_wsproto_event = _send_wsproto_event  # type: ignore[method-assign]
    WSStream.handle = _handle  # type: ignore[method-assign]
    TCPServer.run = _run  # type: ignore[method-assign]
