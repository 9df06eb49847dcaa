"""Liveness and operations: keepalive, write deadlines, compression, TLS, metrics."""

from __future__ import annotations

import logging

import psutil
import pytest
import trio

from trio_boca import App, Broadcast, WebSocket
from trio_boca.testing import LiveServer

from .conftest import TIMEOUT, ViewProbe, records
from .rawclient import RawClient


def app_with(probe: ViewProbe, **options: float) -> App:
    app = App(**options)  # type: ignore[arg-type]

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        with probe.watching():
            async for message in ws:
                await ws.send(message)

    @app.websocket_route("/flood")
    async def flood(ws: WebSocket) -> None:
        with probe.watching():
            chunk = "x" * 65536
            while True:
                await ws.send(chunk)

    return app


# -- keepalive ---------------------------------------------------------------------


async def test_a_client_that_never_answers_pings_is_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that vanished without a FIN (a phone in a tunnel) answers no
    ping: its view ends within a second, and the server serves others."""
    caplog.set_level(logging.INFO, logger="trio_boca")
    probe = ViewProbe()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app_with(probe), ping_interval=0.2, ping_timeout=0.2) as server:
            silent = await RawClient.connect(server.port, "/wait")  # reads nothing
            await probe.started.wait()
            started = trio.current_time()
            await probe.ended.wait()
            assert probe.ended_at - started < 1.0
            # Had it still been listening, it would have heard why.
            assert await silent.close_code() == 1011
            await silent.abort()
            async with server.websocket("/wait") as other:
                await other.send("still serving")
                assert await other.receive() == "still serving"
    [line] = [r for r in records(caplog, logging.INFO) if "keepalive" in r.getMessage()]
    assert "keepalive ping timeout" in line.getMessage()
    assert "no pong within 0.2 s" in line.getMessage()


async def test_a_client_that_answers_pings_is_never_dropped() -> None:
    probe = ViewProbe()
    with trio.fail_after(TIMEOUT):
        async with (
            LiveServer(app_with(probe), ping_interval=0.05, ping_timeout=0.2) as server,
            server.websocket("/wait") as client,  # trio-websocket answers pings
        ):
            for n in range(20):  # a second: twenty intervals
                await trio.sleep(0.05)
                await client.send(str(n))
                assert await client.receive() == str(n)
    assert not probe.cancelled


# -- write deadlines ---------------------------------------------------------------------


async def test_a_view_flooding_a_client_that_never_reads_is_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hypercorn writes with a shielded send_all: without a deadline the view
    waited for ever. Now the transport is aborted after send_timeout."""
    probe = ViewProbe()
    process = psutil.Process()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app_with(probe, send_timeout=0.5)) as server:
            rss = process.memory_info().rss
            stuck = await RawClient.connect(server.port, "/flood")  # never reads
            await probe.started.wait()
            started = trio.current_time()
            async with server.websocket("/wait") as other:
                await probe.ended.wait()
                assert trio.current_time() - started < 2.0
                await other.send("untouched")
                assert await other.receive() == "untouched"
            assert process.memory_info().rss - rss < 64 * 2**20
            await stuck.abort()
    [warning] = records(caplog, logging.WARNING)
    assert "'/flood' aborted (the client stopped reading)" in warning.getMessage()


async def test_a_broadcast_relay_to_a_stuck_client_is_ended_too() -> None:
    app = App(send_timeout=0.5)
    broadcast = Broadcast()
    probe = ViewProbe()

    @app.on("startup")
    async def start() -> None:
        await app.nursery.start(broadcast.run)

    @app.websocket_route("/news")
    async def news(ws: WebSocket) -> None:
        with probe.watching():
            async with broadcast.subscribe("news") as subscription:
                await ws.send("subscribed")
                async for message in subscription:
                    await ws.send(message)

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            stuck = await RawClient.connect(server.port, "/news")
            assert await stuck.receive_text() == "subscribed"  # then reads nothing more
            started = trio.current_time()
            while not probe.ended.is_set():
                await broadcast.publish("news", "y" * 65536)
                await trio.sleep(0.001)
            assert trio.current_time() - started < 3.0
            await stuck.abort()
