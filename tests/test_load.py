"""Many connections ending every way at once: contract row 10."""

from __future__ import annotations

import logging
import random

import psutil
import pytest
import trio

from trio_boca import App, WebSocket
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, Transport, records, server_close, settle_tasks, task_baseline
from .rawclient import RawClient
from .test_release import stuck_sockets

CONNECTIONS = 100


def mixed_app(finished: list[str], all_finished: trio.Event) -> App:
    app = App()

    @app.websocket_route("/mix/{kind}")
    async def mix(ws: WebSocket, kind: str) -> None:
        try:
            await ws.send("ready")
            if kind == "crash":
                raise ValueError("a view that fails")
            async for message in ws:
                await ws.send(message)
        finally:
            finished.append(kind)
            if len(finished) == CONNECTIONS:
                all_finished.set()

    return app


async def test_a_hundred_connections_ending_every_way(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    finished: list[str] = []
    all_finished = trio.Event()
    app = mixed_app(finished, all_finished)
    kinds = ["normal", "abort", "crash"]
    codes: dict[str, list[int]] = {kind: [] for kind in kinds}

    async def normal(server: TestClient | LiveServer) -> None:
        async with server.websocket("/mix/normal") as client:
            assert await client.receive() == "ready"
            await client.send("ping")
            assert await client.receive() == "ping"
            await client.close()
        codes["normal"].append(1000)

    async def abort(server: TestClient | LiveServer) -> None:
        if isinstance(server, LiveServer):
            raw = await RawClient.connect(server.port, "/mix/abort")
            assert await raw.receive_text() == "ready"
            await raw.abort()  # TCP close, no close frame
        else:
            async with server.websocket("/mix/abort") as client:
                assert await client.receive() == "ready"
                await client.close(1006)  # what a server reports for a dropped socket
        codes["abort"].append(1006)

    async def crash(server: TestClient | LiveServer) -> None:
        async with server.websocket("/mix/crash") as client:
            assert await client.receive() == "ready"
            closed = await server_close(client)
        codes["crash"].append(closed.code)

    with trio.fail_after(TIMEOUT * 3):
        async with serve(app) as server:
            baseline = await task_baseline()
            async with trio.open_nursery() as nursery:
                for n in range(CONNECTIONS):
                    nursery.start_soon((normal, abort, crash)[n % 3], server)
            await all_finished.wait()
            assert await settle_tasks(baseline) <= baseline
            # ... and the server still answers.
            async with server.websocket("/mix/normal") as client:
                assert await client.receive() == "ready"
    assert sorted(finished[:CONNECTIONS]) == sorted(kinds[n % 3] for n in range(CONNECTIONS))
    assert set(codes["crash"]) == {1011}
    crashes = [r for r in caplog.records if r.name == "trio_boca" and r.levelname == "ERROR"]
    assert len(crashes) == len(codes["crash"])


STORM = 3_000
AT_ONCE = 200


def storm_app(rng: random.Random) -> App:
    app = App(inbox_messages=4, stall_timeout=0.2, close_timeout=1)

    @app.websocket_route("/storm/{kind}")
    async def storm(ws: WebSocket, kind: str) -> None:
        if kind in ("deaf", "ignored"):
            await trio.sleep_forever()  # never reads
        await ws.receive()
        await trio.sleep(rng.uniform(0, 0.15))  # some work after the last receive
        if kind == "raises":
            raise ValueError("a view that fails")

    return app


async def test_a_storm_of_connections_under_serve(caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of real connections, 200 at a time, whose views return or
    raise at varied times after their last receive(), never read while the
    client floods (1008), or are left by clients that vanish. The server
    serves every one, releases every socket, and logs at ERROR only the views'
    own failures."""
    rng = random.Random(8)
    kinds = ["returns", "raises", "deaf", "ignored"]
    expected = {"returns": 1000, "raises": 1011, "deaf": 1008}
    seen: dict[str, list[int]] = {kind: [] for kind in kinds}
    limit = trio.CapacityLimiter(AT_ONCE)
    process = psutil.Process()

    async def one(port: int, kind: str) -> None:
        async with limit:
            client = await RawClient.connect(port, f"/storm/{kind}")
            if kind == "ignored":
                await client.send("hello")
                await client.abort()  # gone without a close frame
                seen[kind].append(1006)
                return
            for _ in range(20 if kind == "deaf" else 1):
                await client.send("hello")
            seen[kind].append(await client.close_code())
            await client.abort()

    with trio.fail_after(60):
        async with LiveServer(storm_app(rng)) as server:
            fds = process.num_fds()
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for n in range(STORM):
                    nursery.start_soon(one, server.port, kinds[n % len(kinds)])
            took = trio.current_time() - started
            # Every socket released, within the close timeout.
            while process.num_fds() > fds or stuck_sockets(server.port):
                assert trio.current_time() - started - took < 1.5, stuck_sockets(server.port)
                await trio.sleep(0.05)
            # ... and the server still answers.
            client = await RawClient.connect(server.port, "/storm/returns")
            await client.send("still there?")
            assert await client.close_code() == 1000
            await client.abort()
    for kind, code in expected.items():
        assert seen[kind] == [code] * (STORM // len(kinds)), kind
    errors = records(caplog, logging.ERROR)
    assert {r.getMessage() for r in errors} == {
        "WebSocket view for '/storm/raises' failed; closed with 1011"
    }
    assert len(errors) == STORM // len(kinds)
    print(f"{STORM} connections in {took:.1f} s")
