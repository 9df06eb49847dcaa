"""Message types on the wire: text, bytes, JSON and raw events, both ways."""

from __future__ import annotations

import pytest
import trio

from trio_boca import App, Request, Response, WebSocket
from trio_boca.testing import TestClient

from .conftest import TIMEOUT, Transport


async def test_each_message_type_round_trips(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/types")
    async def types(ws: WebSocket) -> None:
        await ws.send_bytes(await ws.receive_bytes())
        await ws.send_json({"got": await ws.receive_json()})
        event = await ws.receive_event()
        assert event["type"] == "websocket.receive"
        await ws.send_text(f"event text: {event['text']}")

    @app.websocket_route("/raw", value_type="event")
    async def raw(ws: WebSocket) -> None:
        event = await ws.receive()
        await ws.send({"type": "websocket.send", "bytes": event["text"].encode()[::-1]})

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/types") as client:
                await client.send(b"\x00\xff")
                assert await client.receive_bytes() == b"\x00\xff"
                await client.send_json([1, "two"])
                assert await client.receive_json() == {"got": [1, "two"]}
                await client.send("hello")
                assert await client.receive_text() == "event text: hello"
            async with server.websocket("/raw") as client:
                await client.send("abc")
                assert await client.receive() == b"cba"


async def test_sending_the_wrong_kind_is_a_type_error_naming_it() -> None:
    app = App()

    @app.websocket_route("/wrong")
    async def wrong(ws: WebSocket) -> None:
        with pytest.raises(TypeError, match="text message must be str, not bytes"):
            await ws.send(b"not text")
        with pytest.raises(TypeError, match="binary message must be bytes, not str"):
            await ws.send_bytes("not bytes")  # type: ignore[arg-type]
        await ws.send("checked")

    @app.websocket_route("/wrong-event", send_type="event")
    async def wrong_event(ws: WebSocket) -> None:
        with pytest.raises(TypeError, match=r"an 'event' message must be an ASGI websocket\.send"):
            await ws.send({"type": "websocket.close"})
        await ws.send({"type": "websocket.send", "text": "checked"})

    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            for path in ("/wrong", "/wrong-event"):
                async with client.websocket(path) as ws:
                    assert await ws.receive() == "checked"


async def test_test_client_speaks_every_http_method() -> None:
    app = App()

    @app.route("/thing", methods=["PUT", "PATCH", "DELETE"])
    async def thing(req: Request, res: Response) -> None:
        res.text = req.method

    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            for call in (client.put, client.patch, client.delete):
                assert (await call("/thing")).text == call.__name__.upper()
