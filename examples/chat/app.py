"""Chat rooms: a page at /, rooms at /ws/{room}, fan-out through a Broadcast.

    trio-boca run examples.chat.app:app                        # one process
    CHAT_BROADCAST=redis://127.0.0.1:6379/0 \\
        trio-boca run examples.chat.app:app --workers 2        # many, via Redis

Open http://127.0.0.1:8000/ in two browser windows and talk.

The page's stylesheet, script and icon are plain files in `static/`, served
by Starlette's `StaticFiles` mounted at /static (it runs on Trio through
anyio): caching headers, ETags and ranges come with it.

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
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.staticfiles import StaticFiles

from trio_boca import App, Broadcast, Request, Response, WebSocket
from trio_boca.broadcast import BroadcastUnavailable, Subscription

HERE = Path(__file__).parent
app = App()
# StaticFiles answers a missing file by raising Starlette's HTTPException,
# which a Starlette app turns into a 404; mounted on its own, it gets the
# middleware that does that.
app.mount("/static", ExceptionMiddleware(StaticFiles(directory=HERE / "static")))
broadcast = Broadcast(os.environ.get("CHAT_BROADCAST", "memory://"))
PAGE = (HERE / "page.html").read_text()


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


# Browsers that ignore the page's <link rel="icon"> ask for /favicon.ico.
ICON = (HERE / "static" / "icon.svg").read_bytes()


@app.route("/favicon.ico")
async def favicon(req: Request, res: Response) -> None:
    res.content = ICON
    res.headers["content-type"] = "image/svg+xml"
    res.headers["cache-control"] = "public, max-age=86400"
