"""The same /echo endpoint many ways: accept, echo every message until the client leaves.

Four are ASGI apps (`APPS`); `trio_websocket` and `websockets_trio` are bare
handlers of those libraries' own servers, which bench/serve.py serves
without an ASGI server. (The Trio ceiling, with no library, is bench/ceiling.py.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

App = Callable[..., Any]


def raw() -> App:
    """A hand-written ASGI app: the floor every framework is measured against."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await send(
                {
                    "type": "websocket.send",
                    "text": message.get("text"),
                    "bytes": message.get("bytes"),
                }
            )

    return app


def trio_boca() -> App:
    from trio_boca import App, WebSocket

    app = App()

    @app.websocket_route("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


def starlette() -> App:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/echo", echo)])


def quart_trio() -> App:
    from quart import websocket
    from quart_trio import QuartTrio

    app = QuartTrio(__name__)

    @app.websocket("/echo")
    async def echo() -> None:
        while True:
            await websocket.send(await websocket.receive())

    return app


def trio_websocket() -> Callable[[Any], Awaitable[None]]:
    """What a Trio user writes with trio-websocket alone: a handler, no ASGI, no framework."""
    from trio_websocket import ConnectionClosed

    async def echo(request: Any) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    return echo


def websockets_trio() -> Callable[[Any], Awaitable[None]]:
    """What a Trio user writes with websockets' own Trio server: a handler."""

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    return echo


APPS: dict[str, Callable[[], App]] = {
    "raw": raw,
    "trio_boca": trio_boca,
    "starlette": starlette,
    "quart-trio": quart_trio,
}
