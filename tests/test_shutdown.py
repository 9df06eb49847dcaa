"""A server that stops closes open WebSockets with 1001, not a dropped socket."""

from __future__ import annotations

import trio

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca.testing import LiveServer

from .conftest import TIMEOUT


async def test_hypercorn_shutdown_closes_open_websockets_with_1001() -> None:
    app = App()
    finally_ran = trio.Event()

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        try:
            await trio.sleep_forever()
        finally:
            finally_ran.set()

    closes: list[WebSocketDisconnect] = []
    with trio.fail_after(TIMEOUT):
        # On leaving the block the server stops first; its graceful timeout runs
        # out with the connection still open, so hypercorn cancels the view.
        async with (
            trio.open_nursery() as nursery,
            LiveServer(app, plain=True, graceful_timeout=0.2) as server,
        ):
            connected = trio.Event()

            async def client() -> None:
                async with server.websocket("/wait") as ws:
                    connected.set()
                    try:
                        await ws.receive()
                    except WebSocketDisconnect as exc:
                        closes.append(exc)

            nursery.start_soon(client)
            await connected.wait()
    assert finally_ran.is_set()
    [closed] = closes
    assert (closed.code, closed.reason) == (1001, "server shutting down")
