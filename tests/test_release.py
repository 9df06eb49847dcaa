"""Closed connections are released, over real sockets.

hypercorn hands the app a disconnect through a queue of ten messages and
waits while that queue is full. A connection that trio_boca closed (1008 for
a view that stopped reading, 1011 for one that raised) with the queue full
was never released by the first connection core: the socket sat in
CLOSE_WAIT with its file descriptor, tasks and queued messages until the
server stopped, and that stop then waited out its whole timeout. Now the
connection reads the server until it reports the disconnect.
"""

from __future__ import annotations

import contextlib
import logging

import psutil
import pytest
import trio
from wsproto.utilities import LocalProtocolError

from trio_boca import App, WebSocket
from trio_boca.testing import LiveServer

from .conftest import TIMEOUT, records
from .rawclient import RawClient

CLOSE_TIMEOUT = 1.0


def stuck_sockets(port: int) -> list[str]:
    """This process's sockets on the server's port that wait for us to close them."""
    return [
        f"{c.laddr} <- {c.raddr}"
        for c in psutil.Process().net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_CLOSE_WAIT
    ]


def app_that_will_not_read() -> App:
    app = App(inbox_messages=4, stall_timeout=0.3, close_timeout=CLOSE_TIMEOUT)

    @app.websocket_route("/deaf")
    async def deaf(ws: WebSocket) -> None:
        await trio.sleep_forever()

    @app.websocket_route("/raises")
    async def raises(ws: WebSocket) -> None:
        await trio.sleep(0.2)  # long enough for the flood to fill every queue
        raise ValueError("a view that fails with messages waiting")

    return app


async def flood_and_leave(port: int, path: str, codes: list[int]) -> None:
    """Fill every queue, hear the server close, then drop the TCP connection."""
    client = await RawClient.connect(port, path)
    async with trio.open_nursery() as nursery:

        async def flood() -> None:
            # 1 KiB each, far more than hypercorn's queue and our inbox hold:
            # the rest waits in TCP buffers and blocks this send. A send that
            # completes as the server's close arrives finds wsproto closing:
            # the flood is over.
            with contextlib.suppress(LocalProtocolError):
                for _ in range(400):
                    await client.send("x" * 1024)

        nursery.start_soon(flood)
        codes.append(await client.close_code())
        nursery.cancel_scope.cancel()
    await client.abort()


@pytest.mark.parametrize(("path", "code"), [("/deaf", 1008), ("/raises", 1011)])
async def test_a_connection_closed_with_its_queue_full_is_released(
    path: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    process = psutil.Process()
    codes: list[int] = []
    with trio.fail_after(TIMEOUT):
        server = LiveServer(app_that_will_not_read(), shutdown_timeout=5)
        async with server:
            fds = process.num_fds()
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(flood_and_leave, server.port, path, codes)
            left_at = trio.current_time()
            while stuck_sockets(server.port) or process.num_fds() > fds:
                assert trio.current_time() - left_at < CLOSE_TIMEOUT, stuck_sockets(server.port)
                await trio.sleep(0.02)
            stopping = trio.current_time()
        stopped_in = trio.current_time() - stopping
    assert codes == [code] * 5
    assert stopped_in < 1.0  # well under the 5 s shutdown_timeout: nothing held on
    expected_errors = 5 if path == "/raises" else 0
    assert len(records(caplog, logging.ERROR)) == expected_errors


async def test_a_protocol_error_while_the_view_sends_is_a_departure_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Invalid UTF-8 in a text frame makes hypercorn close the connection; its
    close path can fail the view's next send (BusyResourceError). That is the
    client leaving, not the view failing: nothing is logged at ERROR."""
    app = App()
    finished = 0

    @app.websocket_route("/ticker")
    async def ticker(ws: WebSocket) -> None:
        nonlocal finished
        try:
            while True:
                await ws.send("x" * 256)
        finally:
            finished += 1

    async def breaker(port: int) -> None:
        client = await RawClient.connect(port, "/ticker")
        async with trio.open_nursery() as nursery:
            # Keep reading, so the view's sends never wait on a full TCP
            # buffer: it must be running when hypercorn closes.
            nursery.start_soon(client.drain)
            await trio.sleep(0.01)
            await client.send_invalid_utf8()
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        await client.abort()

    with trio.fail_after(TIMEOUT * 2):
        async with LiveServer(app) as server:
            for _ in range(6):
                async with trio.open_nursery() as nursery:
                    for _ in range(50):
                        nursery.start_soon(breaker, server.port)
            while finished < 300:  # noqa: ASYNC110 - nothing to wait on but the count
                await trio.sleep(0.01)
    assert records(caplog, logging.ERROR) == []
