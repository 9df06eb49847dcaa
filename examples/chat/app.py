"""Chat rooms: a page at /, rooms at /ws/{room}, fan-out through a Broadcast.

    trio-boca run examples.chat.app:app                        # one process
    CHAT_BROADCAST=redis://127.0.0.1:6379/0 \\
        trio-boca run examples.chat.app:app --workers 2        # many, via Redis

Open http://127.0.0.1:8000/ in two browser windows and talk.

Each connection subscribes to its room and relays what the room says; what
the client says is published to the room. Join and leave notices are
published too. If the broadcast cannot keep up with a client, or loses
Redis, that client's socket is closed (1008, 1013) and the page reconnects.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import trio

from trio_boca import App, Broadcast, Request, Response, WebSocket
from trio_boca.broadcast import BroadcastUnavailable, Subscription

app = App()
broadcast = Broadcast(os.environ.get("CHAT_BROADCAST", "memory://"))
PAGE = (Path(__file__).parent / "page.html").read_text()


@app.on("startup")
async def start_broadcast() -> None:
    await app.nursery.start(broadcast.run)


@app.route("/")
async def page(req: Request, res: Response) -> None:
    res.html = PAGE


@app.websocket_route("/ws/{room}", value_type="json", auto_accept=False)
async def chat(ws: WebSocket, room: str) -> None:
    name = (ws.query_params.get("name") or "").strip()[:32]
    if not name:
        await ws.reject(400, body="a name is required: /ws/{room}?name=...")
        return
    channel = f"chat:{room}"
    async with broadcast.subscribe(channel) as subscription:
        await ws.accept()
        await broadcast.publish(channel, {"type": "join", "name": name})
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(relay, subscription, ws)
                async for message in ws:
                    text = _text_of(message)
                    if text:
                        await broadcast.publish(
                            channel, {"type": "message", "name": name, "text": text}
                        )
                nursery.cancel_scope.cancel()
        finally:
            # Tell the room, even when this view was cancelled; briefly.
            with trio.move_on_after(1) as scope, contextlib.suppress(BroadcastUnavailable):
                scope.shield = True
                await broadcast.publish(channel, {"type": "leave", "name": name})


async def relay(subscription: Subscription, ws: WebSocket) -> None:
    async for message in subscription:
        await ws.send(message)


def _text_of(message: Any) -> str:
    if isinstance(message, dict):
        return str(message.get("text", "")).strip()[:500]
    return ""


# The page carries its icon inline (a data: URL), so loading it asks for
# nothing more; /favicon.ico answers whoever asks anyway, with the same picture.
ICON = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 64 64'>"
    "<rect width='64' height='64' rx='14' fill='#2563eb'/>"
    "<path d='M17 17h30a5 5 0 0 1 5 5v16a5 5 0 0 1-5 5H31l-10 8v-8h-4a5 5 0 0 1-5-5V22"
    "a5 5 0 0 1 5-5z' fill='#fff'/></svg>"
)


@app.route("/favicon.ico")
async def favicon(req: Request, res: Response) -> None:
    res.content = ICON.encode()
    res.headers["content-type"] = "image/svg+xml"
    res.headers["cache-control"] = "public, max-age=86400"
