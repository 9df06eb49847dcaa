"""The server's side of one ASGI WebSocket connection, played by hand.

For tests that must see exactly what the app takes from the server and what
it sends back, or make the server misbehave as hypercorn does: a bounded
queue whose `disconnect` blocks while it is full, a send that fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio

Message = dict[str, Any]


def websocket_scope(path: str) -> Message:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        "state": {},
        "extensions": {"websocket.http.response": {}},
    }


class Server:
    """Runs `app` on one WebSocket connection to `path`.

    `queue` bounds the messages waiting for the app, as hypercorn's
    `max_app_queue_size` does (10); `math.inf` never blocks. `taken` counts
    the messages the app has taken; `sent` holds what it sent. `fail_send`,
    when set, is raised by the app's next send.
    """

    def __init__(self, app: Any, path: str = "/", *, queue: float = math.inf) -> None:
        self.app = app
        self.scope = websocket_scope(path)
        self._to_app, self._app_receive = trio.open_memory_channel[Message](queue)
        self.taken = 0
        self.sent: list[Message] = []
        self.fail_send: Callable[[], BaseException] | None = None
        self.done = trio.Event()
        self.changed = trio.Event()

    async def run(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
        finally:
            self.done.set()

    async def _receive(self) -> Message:
        message = await self._app_receive.receive()
        self.taken += 1
        return message

    async def _send(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_send is not None:
            raise self.fail_send()
        self.sent.append(message)
        self.changed.set()
        self.changed = trio.Event()

    async def put(self, message: Message) -> None:
        """Hand the app a message, waiting while the queue is full (as hypercorn does)."""
        await self._to_app.send(message)

    async def text(self, text: str) -> None:
        await self.put({"type": "websocket.receive", "text": text})

    async def disconnect(self, code: int = 1006) -> None:
        await self.put({"type": "websocket.disconnect", "code": code})

    def burst(self, *texts: str, code: int = 1000) -> None:
        """Messages and then the departure, all queued at once, as one TCP
        read that carries them all hands them to the app."""
        for text in texts:
            self._to_app.send_nowait({"type": "websocket.receive", "text": text})
        self._to_app.send_nowait({"type": "websocket.disconnect", "code": code})

    async def connect(self) -> None:
        await self.put({"type": "websocket.connect"})

    async def wait_for(self, kind: str) -> Message:
        """The first message of type `kind` the app sends."""
        while True:
            for message in self.sent:
                if message["type"] == kind:
                    return message
            await self.changed.wait()

    def close_code(self) -> int | None:
        for message in self.sent:
            if message["type"] == "websocket.close":
                return int(message.get("code", 1000))
        return None
