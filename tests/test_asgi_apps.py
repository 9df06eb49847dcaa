"""Any ASGI 3 app on trio_boca's own server: a Starlette app (on Trio, through
anyio), HTTP and WebSocket, as users moving from FastAPI bring theirs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
from wsproto.events import CloseConnection

from trio_boca import WebSocketDisconnect
from trio_boca.testing import LiveServer

from .conftest import TIMEOUT
from .rawclient import RawClient

starlette = pytest.importorskip("starlette")


def starlette_echo(seen: list[str]) -> Any:
    """A Starlette WebSocket endpoint that echoes text; how it ended goes in `seen`."""
    from starlette.websockets import WebSocket

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except Exception as exc:
            seen.append(type(exc).__name__)

    return echo


def starlette_app(seen: list[str]) -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    async def hello(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(f"hello {request.query_params.get('name', '')}{body.decode()}")

    async def watch(request: Request) -> StreamingResponse:
        """Streams until the client leaves: Starlette's is_disconnected()
        calls receive() in a cancelled scope, so the server must hand it a
        waiting disconnect without a checkpoint."""

        async def ticks() -> AsyncIterator[bytes]:
            while not await request.is_disconnected():
                yield b"tick\n"
                await trio.sleep(0.02)
            seen.append("disconnected")

        return StreamingResponse(ticks())

    echo = starlette_echo(seen)

    return Starlette(
        routes=[
            Route("/", hello, methods=["GET", "POST"]),
            Route("/watch", watch),
            WebSocketRoute("/echo", echo),
        ]
    )


async def test_a_starlette_app_over_http_and_websocket() -> None:
    seen: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with LiveServer(starlette_app(seen)) as server:
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert (await http.get("/", params={"name": "trio"})).text == "hello trio"
                assert (await http.post("/", content=b"!")).text == "hello !"
            async with server.websocket("/echo") as ws:
                await ws.send("hi")
                assert await ws.receive() == "hi"
            with trio.fail_after(2):
                while "WebSocketDisconnect" not in seen:  # noqa: ASYNC110
                    await trio.sleep(0.01)


async def test_starlette_sees_a_client_leave_a_streaming_response() -> None:
    seen: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with LiveServer(starlette_app(seen)) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"tick" in await stream.receive_some(1000)
            await stream.aclose()
            with trio.fail_after(2):
                while "disconnected" not in seen:  # noqa: ASYNC110
                    await trio.sleep(0.01)


async def test_a_send_after_the_client_left_is_an_oserror_for_asgi_apps() -> None:
    """ASGI 2.4: a send on a closed connection raises an OSError
    (`trio_boca.server.ClientDisconnected`); Starlette turns it into its
    WebSocketDisconnect."""
    from trio_boca.server import ClientDisconnected

    raised: list[BaseException] = []
    done = trio.Event()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            raised.append(exc)
        done.set()

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            async with server.websocket("/") as ws:
                await ws.close()
            with pytest.raises(WebSocketDisconnect):
                await ws.receive()
            await done.wait()
    [exc] = raised
    assert isinstance(exc, ClientDisconnected)


async def test_an_app_slow_to_read_is_not_taken_for_a_dead_client() -> None:
    """The keepalive pings a silent client. A client whose messages wait for
    a slow app is not silent: the server stopped reading it (backpressure),
    so its pongs wait too. (Found in review: only trio_boca's own
    connections were spared, apps without the extension got 1011.)"""
    got: list[str] = []

    async def slow(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await trio.sleep(1.5)  # busy: the queue behind receive() fills, then the socket
        while len(got) < 40:
            message = await receive()
            assert message["type"] == "websocket.receive", message
            got.append(message["text"])
        await send({"type": "websocket.send", "text": "all read"})

    with trio.fail_after(TIMEOUT):
        async with (
            LiveServer(slow, ping_interval=0.2, ping_timeout=0.3) as server,
            server.websocket("/") as ws,
        ):
            for n in range(40):
                await ws.send(f"{n:05}" + "x" * 200_000)
            assert await ws.receive() == "all read"
    assert len(got) == 40


async def test_an_app_that_closes_right_after_accepting_hears_the_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """accept, then close at once, then receive() until websocket.disconnect,
    as ASGI says: the server reads on for the client's answer to the close,
    then tells the app, and nothing stays open. (Found in review: the reader
    took the connection for refused and stopped; the app waited until the
    server's stop, its socket in CLOSE_WAIT.)"""
    heard: list[int] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/yield":
            await trio.lowlevel.checkpoint()
        await send({"type": "websocket.close", "code": 4000})
        message = await receive()
        assert message["type"] == "websocket.disconnect"
        heard.append(message["code"])

    async def client(port: int, path: str) -> None:
        raw = await RawClient.connect(port, path)
        assert await raw.close_code() == 4000
        await raw.stream.send_all(raw.ws.send(CloseConnection(code=4000)))
        await raw.drain()  # the server closes the TCP connection
        await raw.abort()

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(client, server.port, "/yield" if n % 2 else "/now")
            with trio.fail_after(2):
                while len(heard) < 20:  # noqa: ASYNC110 - polling a count
                    await trio.sleep(0.01)
    assert heard == [4000] * 20
    assert not [r for r in caplog.records if "still open" in r.getMessage()]


async def test_a_close_no_frame_can_carry_ends_the_connection_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app that closes with a reason over 123 bytes, or with code 1005:
    its send raises ValueError (its bug, logged as its failure), and the
    client still gets a close, 1011, at once. (Found in review: no close
    went out and no deadline ran; a silent client was held for ever.)"""
    raised: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        close = {"type": "websocket.close", "code": 1000, "reason": "x" * 200}
        if scope["path"] == "/1005":
            close = {"type": "websocket.close", "code": 1005}
        try:
            await send(close)
        except ValueError as exc:
            raised.append(str(exc))

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            for path in ("/long-reason", "/1005"):
                raw = await RawClient.connect(server.port, path)
                with trio.fail_after(1):
                    assert await raw.close_code() == 1011
                await raw.abort()
    assert len(raised) == 2
    assert all("cannot go on the wire" in text for text in raised)
