"""Inbound messages: bounded, in order, never dropped; contract row 8."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca.testing import TestClient

from .asgi import Server
from .conftest import TIMEOUT, Transport, ViewProbe, records


async def settled() -> None:
    await trio.testing.wait_all_tasks_blocked()


def paced_app(got: list[str], go: trio.Semaphore, **limits: Any) -> App:
    """A view that takes one message each time `go` is released."""
    app = App(**limits)

    @app.websocket_route("/paced")
    async def paced(ws: WebSocket) -> None:
        while True:
            await go.acquire()
            got.append(await ws.receive())

    return app


async def test_the_inbox_is_bounded_by_count(autojump_clock: trio.testing.MockClock) -> None:
    got: list[str] = []
    go = trio.Semaphore(0)
    server = Server(paced_app(got, go, inbox_messages=3, stall_timeout=60), "/paced")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await server.connect()
        for n in range(10):
            await server.text(str(n))
        await settled()
        # The handshake, three in the inbox, and one in the reader's hand.
        assert server.taken == 1 + 3 + 1
        go.release()
        await settled()
        assert got == ["0"] and server.taken == 1 + 3 + 2
        nursery.cancel_scope.cancel()


async def test_the_inbox_is_bounded_by_size_but_always_admits_one_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[str] = []
    go = trio.Semaphore(0)
    server = Server(paced_app(got, go, inbox_bytes=10, stall_timeout=60), "/paced")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await server.connect()
        for text in ("x" * 50, "y" * 6, "z" * 4, "w"):
            await server.text(text)
        await settled()
        # Fifty characters, over the budget, but alone; the next waits in hand.
        assert server.taken == 1 + 1 + 1
        go.release()
        await settled()
        # 6 + 4 fit in 10; "w" waits in hand.
        assert got == ["x" * 50] and server.taken == 1 + 4
        nursery.cancel_scope.cancel()


async def test_a_view_that_takes_nothing_from_a_full_inbox_is_closed_with_1008(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[str] = []
    server = Server(
        paced_app(got, trio.Semaphore(0), inbox_messages=1, stall_timeout=0.5), "/paced"
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await server.connect()
        await server.text("0")
        await server.text("1")
        started = trio.current_time()
        closed = await server.wait_for("websocket.close")
        assert trio.current_time() - started == pytest.approx(0.5)
        await server.disconnect(1000)
    assert (closed["code"], closed["reason"]) == (
        1008,
        "message queue full: the server is not reading",
    )
    [warning] = records(caplog, logging.WARNING)
    assert "1008" in warning.getMessage() and "1 messages waiting" in warning.getMessage()


async def test_a_slow_reader_is_never_mistaken_for_a_stalled_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = App(inbox_messages=1, stall_timeout=0.05)
    got: list[str] = []

    @app.websocket_route("/slow")
    async def slow(ws: WebSocket) -> None:
        for _ in range(5):
            await trio.sleep(0.03)  # each message takes longer than the patience below...
            got.append(await ws.receive())

    server = Server(app, "/slow")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await server.connect()
        for n in range(5):
            await server.text(str(n))  # ... but every message taken restarts the clock
        await server.wait_for("websocket.close")
        await server.disconnect(1000)
    assert got == ["0", "1", "2", "3", "4"]
    assert server.close_code() == 1000


async def test_what_was_queued_before_the_client_left_is_delivered_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[str] = []
    go = trio.Semaphore(0)
    ended: list[WebSocketDisconnect] = []
    app = App()

    @app.websocket_route("/late")
    async def late(ws: WebSocket) -> None:
        await go.acquire()  # away from receive(), but told within the grace
        try:
            while True:
                got.append(await ws.receive())
        except WebSocketDisconnect as exc:
            ended.append(exc)

    server = Server(app, "/late")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await server.connect()
        await server.text("0")
        await server.text("1")
        await server.disconnect(1001)
        await settled()
        go.release()
    assert got == ["0", "1"]
    [end] = ended
    assert end.code == 1001


async def test_a_slow_reader_gets_every_message_in_order(serve: Transport) -> None:
    app = App(inbox_messages=4)
    received: list[int] = []

    @app.websocket_route("/slow", value_type="json")
    async def slow(ws: WebSocket) -> None:
        async for n in ws:
            if n == "done":
                await ws.send(received)
                return
            received.append(n)
            await trio.sleep(0.002)

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/slow") as client:
            for n in range(200):
                await client.send_json(n)
            await client.send_json("done")
            assert await client.receive_json() == list(range(200))


async def test_a_client_that_outruns_the_view_is_held_back_not_buffered() -> None:
    """In-process, where the client's sends block: backpressure reaches the client."""
    app = App(inbox_messages=8, stall_timeout=TIMEOUT)
    reading = trio.Event()

    @app.websocket_route("/paused")
    async def paused(ws: WebSocket) -> None:
        await reading.wait()
        async for _ in ws:
            pass

    sent = 0
    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.websocket("/paused") as ws:

            async def flood() -> None:
                nonlocal sent
                for n in range(500):
                    await ws.send(str(n))
                    sent += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await trio.testing.wait_all_tasks_blocked()
                # The inbox (8) plus the server's own queue (16), and one in hand.
                assert sent <= 8 + 16 + 1
                reading.set()
            assert sent == 500


async def test_a_view_that_never_reads_still_learns_its_client_left(serve: Transport) -> None:
    app = App(stall_timeout=0.5)
    probe = ViewProbe()

    @app.websocket_route("/deaf")
    async def deaf(ws: WebSocket) -> None:
        with probe.watching():
            await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/deaf") as client:
                # More than hypercorn's queue (10) and our inbox (64) hold.
                with contextlib.suppress(WebSocketDisconnect):
                    for n in range(100):
                        await client.send(str(n))
                    await client.close()
            await probe.ended.wait()
    assert probe.cancelled
