"""A client that leaves: contract rows 7 and 9."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import trio
import trio.lowlevel

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, Transport, ViewProbe, server_close, settle_tasks, task_baseline
from .rawclient import RawClient


def only_sends(probe: ViewProbe) -> App:
    app = App()

    @app.websocket_route("/ticker")
    async def ticker(ws: WebSocket) -> None:
        with probe.watching():
            while True:
                await ws.send("tick")
                await trio.sleep(0.05)

    return app


def only_waits(probe: ViewProbe) -> App:
    app = App()

    @app.websocket_route("/waiter")
    async def waiter(ws: WebSocket) -> None:
        with probe.watching():
            await trio.sleep_forever()  # e.g. waiting on a broadcast that never comes

    return app


@pytest.mark.parametrize(("make_app", "path"), [(only_sends, "/ticker"), (only_waits, "/waiter")])
async def test_a_view_that_does_not_receive_is_cancelled_when_its_client_leaves(
    serve: Transport, make_app: Callable[[ViewProbe], App], path: str
) -> None:
    probe = ViewProbe()
    app = make_app(probe)
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            baseline = await task_baseline()
            async with server.websocket(path) as client:
                await probe.started.wait()
                if path == "/ticker":
                    assert await client.receive() == "tick"
                left_at = trio.current_time()
                await client.close()
            await probe.ended.wait()
            assert probe.cancelled
            assert probe.ended_at - left_at < 0.2
            # Nothing the view or the framework started is still alive.
            assert await settle_tasks(baseline) <= baseline


async def test_a_vanished_client_cancels_the_view_too() -> None:
    """A TCP close with no close frame, as when a phone loses its signal."""
    from trio_boca.testing import LiveServer

    probe = ViewProbe()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(only_waits(probe)) as server:
            client = await RawClient.connect(server.port, "/waiter")
            await probe.started.wait()
            left_at = trio.current_time()
            await client.abort()
            await probe.ended.wait()
    assert probe.cancelled
    assert probe.ended_at - left_at < 0.2


async def test_async_for_ends_when_the_client_leaves_and_the_view_goes_on(
    serve: Transport,
) -> None:
    app = App()
    probe = ViewProbe()
    got: list[str] = []

    @app.websocket_route("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            got.append(message)
            await ws.send(message)
        # The loop ended by itself, not by cancellation: async code still runs.
        await trio.lowlevel.checkpoint()
        probe.after_loop = True
        probe.end()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/echo") as client:
                for word in ("one", "two", "three"):
                    await client.send(word)
                # Leave at once, while the view may still be echoing.
                await client.close()
            await probe.ended.wait()
    assert probe.after_loop
    assert got == ["one", "two", "three"]


async def test_sending_to_a_client_that_left_is_not_an_error(serve: Transport) -> None:
    app = App()
    probe = ViewProbe()

    @app.websocket_route("/late")
    async def late(ws: WebSocket) -> None:
        await ws.receive()  # the client's only message
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()  # ... then it leaves
        assert ws.client_gone and ws.close_code is not None
        await ws.send("into the void")  # like a socket: goes nowhere, raises nothing
        await ws.close()
        probe.end()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/late") as client:
                await client.send("bye")
            await probe.ended.wait()


async def test_invalid_json_closes_that_connection_with_1007_and_others_go_on(
    serve: Transport,
) -> None:
    app = App()

    @app.websocket_route("/json", value_type="json")
    async def json_echo(ws: WebSocket) -> None:
        async for value in ws:
            await ws.send({"echo": value})

    with trio.fail_after(TIMEOUT):
        async with (
            serve(app) as server,
            server.websocket("/json") as good,
            server.websocket("/json") as bad,
        ):
            await bad.send("{not json")
            closed = await server_close(bad)
            await good.send_json({"n": 1})
            assert await good.receive_json() == {"echo": {"n": 1}}
    assert closed.code == 1007
    assert closed.reason.startswith("invalid JSON")


@pytest.mark.parametrize(
    ("receive_type", "payload", "reason"),
    [("text", b"\x00", "expected a text message"), ("bytes", "text", "expected a binary message")],
)
async def test_the_wrong_kind_of_frame_closes_with_1003(
    serve: Transport, receive_type: str, payload: str | bytes, reason: str
) -> None:
    app = App()

    @app.websocket_route("/typed", receive_type=receive_type)  # type: ignore[arg-type]
    async def typed(ws: WebSocket) -> None:
        await ws.receive()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/typed") as client:
            await client.send(payload)
            closed = await server_close(client)
    assert closed.code == 1003
    assert closed.reason.startswith(reason)


async def test_work_after_the_view_closed_is_not_cancelled_by_the_clients_goodbye(
    serve: Transport,
) -> None:
    app = App()
    probe = ViewProbe()

    @app.websocket_route("/then", auto_accept=False)
    async def then(ws: WebSocket) -> None:
        async with ws:
            await ws.send("bye")
        # The client answers our close; that must not cancel what follows.
        with probe.watching():
            await trio.sleep(0.3)
            probe.after_loop = True

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/then") as client:
                assert await client.receive() == "bye"
                with pytest.raises(WebSocketDisconnect):
                    await client.receive()
            await probe.ended.wait()
    assert probe.after_loop and not probe.cancelled


async def test_a_view_that_only_floods_is_still_cancelled_when_its_client_vanishes() -> None:
    """hypercorn's send returns without yielding once its stream is closed: a
    view doing nothing but send() must still reach checkpoints, or it could
    never be cancelled and would spin the whole event loop."""
    from trio_boca.testing import LiveServer

    app = App()
    probe = ViewProbe()
    sends = 0

    @app.websocket_route("/flood")
    async def flood(ws: WebSocket) -> None:
        nonlocal sends
        with probe.watching():
            while sends < 2_000_000:  # bounded, so a regression fails, not hangs
                await ws.send("x" * 1024)
                sends += 1

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            client = await RawClient.connect(server.port, "/flood")
            await probe.started.wait()
            await trio.sleep(0.2)
            left_at = trio.current_time()
            await client.abort()
            await probe.ended.wait()
    assert probe.cancelled, f"the view ran to the end: {sends} sends"
    assert probe.ended_at - left_at < 1.0


async def test_a_view_that_keeps_receiving_after_its_client_left_does_not_freeze_the_server() -> (
    None
):
    """receive() on a departed connection is a full checkpoint, like any other
    road through it: a view that will not take no for an answer burns its own
    time, not everybody else's. (A real clock: under an autojump clock a view
    that never blocks would keep virtual time from moving.)"""
    app = App()

    @app.websocket_route("/stubborn")
    async def stubborn(ws: WebSocket) -> None:
        while True:
            with contextlib.suppress(WebSocketDisconnect):
                await ws.receive()

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            with trio.move_on_after(0.5):
                async with TestClient(app) as client:
                    async with client.websocket("/stubborn") as ws:
                        await ws.close()
                    await trio.sleep_forever()
            nursery.cancel_scope.cancel()
    assert ticks >= 25  # of 50 possible: the ticker kept its turn


@pytest.mark.parametrize("plain", [False, True], ids=["serve", "hypercorn"])
async def test_clients_that_send_their_request_and_leave_in_one_write(plain: bool) -> None:
    """Issue 14, defect 1, over real sockets: each client writes a large
    message, a second one and its close frame in one go, to a view that
    prepares for a moment, takes both, and then only works ("take the
    request, then stream the answer"). The two overflow the inbox's byte
    budget, so the reader holds the second until the view takes the first,
    then hands it straight to the view, waiting again in receive(), with the
    departure right behind it. On the previous core about half of the 60
    views then ran until the server stopped, each holding a slot of the
    census and of `metrics.open`."""
    from wsproto.events import CloseConnection, Message

    app = App(disconnect_grace=0.1)
    running = 0

    @app.websocket_route("/job")
    async def job(ws: WebSocket) -> None:
        nonlocal running
        running += 1
        try:
            await trio.sleep(0.2)  # preparing: loading the user's state, say
            await ws.receive()
            await ws.receive()
            await trio.sleep_forever()  # a long job, which would only send
        finally:
            running -= 1

    async def client(port: int) -> None:
        raw = await RawClient.connect(port, "/job")
        burst = raw.ws.send(Message(data="r" * 900_000))
        burst += raw.ws.send(Message(data="s" * 200_000))
        burst += raw.ws.send(CloseConnection(code=1000))
        await raw.stream.send_all(burst)
        with trio.move_on_after(2), contextlib.suppress(EOFError, trio.BrokenResourceError):
            await raw.close_code()
        await raw.abort()

    with trio.fail_after(TIMEOUT * 2):
        async with LiveServer(app, plain=plain) as server:
            async with trio.open_nursery() as nursery:
                for _ in range(60):
                    nursery.start_soon(client, server.port)
            left_at = trio.current_time()
            while running or app.guard.census.open or app.metrics.route("/job").open:
                assert trio.current_time() - left_at < 1.0, (
                    f"{running} views, census {app.guard.census.open}, "
                    f"open {app.metrics.route('/job').open}"
                )
                await trio.sleep(0.01)
