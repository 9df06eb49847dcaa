"""Many connections ending every way at once: contract row 10."""

from __future__ import annotations

import pytest
import trio

from trio_boca import App, WebSocket
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, Transport, server_close, settle_tasks, task_baseline
from .rawclient import RawClient

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
