"""app.serve() inside a Trio program: address, graceful stop, bounded shutdown."""

from __future__ import annotations

import errno
import socket
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_boca import App, Request, Response, WebSocket, WebSocketDisconnect
from trio_boca.server import Address, serve
from trio_boca.testing import LiveServer, WebSocketRejected, connect_websocket

from .conftest import TIMEOUT
from .rawclient import RawClient


async def test_serve_in_a_nursery_hands_back_its_address() -> None:
    app = App()

    @app.websocket_route("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            address: Address = await nursery.start(app.serve, "127.0.0.1", 0)
            assert address.host == "127.0.0.1" and address.port > 0
            assert address.url == f"http://127.0.0.1:{address.port}"
            async with connect_websocket(f"ws://127.0.0.1:{address.port}/echo") as ws:
                await ws.send("hi")
                assert await ws.receive() == "hi"
            nursery.cancel_scope.cancel()


async def test_cancelling_serve_closes_websockets_with_1001_and_runs_shutdown() -> None:
    app = App()
    events: list[str] = []
    connected = trio.Semaphore(0)

    @app.on("shutdown")
    async def closing() -> None:
        events.append("shutdown hook")

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        connected.release()
        try:
            await trio.sleep_forever()
        finally:
            events.append("view finally")

    closes: list[tuple[int, str]] = []

    async def client(port: int) -> None:
        async with connect_websocket(f"ws://127.0.0.1:{port}/wait") as ws:
            try:
                await ws.receive()
            except WebSocketDisconnect as closed:
                closes.append((closed.code, closed.reason))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as clients:
            with trio.CancelScope() as serving:
                async with trio.open_nursery() as nursery:
                    address = await nursery.start(app.serve, "127.0.0.1", 0)
                    for _ in range(3):
                        clients.start_soon(client, address.port)
                    for _ in range(3):
                        await connected.acquire()
                    stopped_at = trio.current_time()
                    serving.cancel()
            elapsed = trio.current_time() - stopped_at
    assert closes == [(1001, "server shutting down")] * 3
    assert events == ["view finally"] * 3 + ["shutdown hook"]
    assert elapsed < 1.0  # nothing waited for the 5 s shutdown_timeout


async def test_an_http_request_in_flight_finishes_during_the_stop() -> None:
    app = App()
    arrived = trio.Event()

    @app.route("/slow")
    async def slow(req: Request, res: Response) -> None:
        arrived.set()
        await trio.sleep(0.3)
        res.text = "done"

    results: list[httpx.Response] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outer:
            with trio.CancelScope() as serving:
                async with trio.open_nursery() as nursery:
                    address = await nursery.start(app.serve, "127.0.0.1", 0)

                    async def request() -> None:
                        async with httpx.AsyncClient() as client:
                            results.append(await client.get(address.url + "/slow"))

                    outer.start_soon(request)
                    await arrived.wait()
                    serving.cancel()
    [response] = results
    assert (response.status_code, response.text) == (200, "done")


async def test_a_client_that_stopped_reading_cannot_hold_the_stop_past_its_deadline() -> None:
    app = App()
    flooding = trio.Event()

    @app.websocket_route("/flood")
    async def flood(ws: WebSocket) -> None:
        chunk = "x" * 65536
        while True:
            await ws.send(chunk)
            flooding.set()

    with trio.fail_after(TIMEOUT):
        with trio.CancelScope() as serving:
            async with trio.open_nursery() as nursery:
                address = await nursery.start(
                    lambda task_status: app.serve(
                        "127.0.0.1", 0, shutdown_timeout=0.5, task_status=task_status
                    )
                )
                client = await RawClient.connect(address.port, "/flood")  # never reads
                await flooding.wait()
                await trio.sleep(0.5)  # until the view's write is stuck
                stopped_at = trio.current_time()
                serving.cancel()
        elapsed = trio.current_time() - stopped_at
        await client.abort()
    # Not even the deadline: the view's write, stuck half-way, is cut as the
    # view is cancelled (half a frame cannot be taken back).
    assert elapsed < 0.5


async def test_a_port_in_use_is_an_os_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                with pytest.raises(OSError) as error:
                    await nursery.start(App().serve, "127.0.0.1", port)
    assert error.value.errno == errno.EADDRINUSE


async def test_serving_what_is_not_an_asgi_app_is_a_type_error() -> None:
    async def no_arguments() -> None:
        pass

    for target in ("<html>", no_arguments, App):
        with pytest.raises(TypeError, match="not an ASGI application"):
            await serve(target)


@pytest.mark.parametrize(
    ("plain", "sent", "seen"),
    [
        # Bare hypercorn 0.18 reports every client close as 1006, no reason
        # (hypercorn #127): what DEFAULT_CAUGHT_CLOSE_CODES is chosen for. If
        # these start failing, hypercorn passes the real code through.
        (True, (1000, ""), (1006, "")),
        (True, (4002, "bye"), (1006, "")),
        # trio_boca's serve() gets the client's code and reason through.
        (False, (4002, "bye"), (4002, "bye")),
    ],
)
async def test_the_close_code_a_view_sees(
    plain: bool, sent: tuple[int, str], seen: tuple[int, str]
) -> None:
    app = App()
    got: list[WebSocketDisconnect] = []
    done = trio.Event()

    @app.websocket_route("/code", caught_close_codes=[])
    async def code(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except WebSocketDisconnect as exc:
            got.append(exc)
            done.set()

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, plain=plain) as server:
            async with server.websocket("/code") as client:
                await client.close(*sent)
            await done.wait()
    [exc] = got
    assert (exc.code, exc.reason) == seen


async def test_a_handshake_under_way_when_the_server_stops_is_refused_at_once() -> None:
    """A connection whose check is still running when the stop begins was
    not yet known to the stop, so its view ran on until the deadline cut
    it. Now it learns of the stop as it joins: 503, and the stop is quick."""
    app = App()

    async def slow_check(ws: WebSocket) -> None:
        await trio.sleep(0.3)

    @app.websocket_route("/x", checks=[slow_check])
    async def view(ws: WebSocket) -> None:
        await trio.sleep_forever()  # pragma: no cover

    statuses: list[int] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outer:
            serving = trio.CancelScope()
            stopped = trio.Event()

            async def serve(task_status: trio.TaskStatus[Any]) -> None:
                with serving:
                    await app.serve("127.0.0.1", 0, shutdown_timeout=5, task_status=task_status)
                stopped.set()

            address = await outer.start(serve)

            async def connect() -> None:
                try:
                    async with connect_websocket(address.ws_url + "/x"):
                        statuses.append(101)  # pragma: no cover
                except WebSocketRejected as refused:
                    statuses.append(refused.status)

            outer.start_soon(connect)
            await trio.sleep(0.1)  # the check is running
            stopped_at = trio.current_time()
            serving.cancel()
            await stopped.wait()
            elapsed = trio.current_time() - stopped_at
    assert statuses == [503]
    assert elapsed < 1.0  # not the 5 s deadline
