"""Inbound messages: bounded, in order, never dropped; contract row 8."""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca._inbox import ClientGone, Inbox
from trio_boca.testing import TestClient

from .conftest import TIMEOUT, Transport, ViewProbe


async def no_server() -> dict[str, object]:
    """These tests drive the queue alone: the server never says anything."""
    await trio.sleep_forever()
    raise AssertionError  # pragma: no cover


async def take(inbox: Inbox) -> str:
    """The text of the next message, which must be one."""
    message = await inbox.get()
    assert not isinstance(message, ClientGone)
    return str(message["text"])


def text(n: int) -> dict[str, object]:
    return {"type": "websocket.receive", "text": str(n)}


async def test_inbox_is_bounded_by_count() -> None:
    inbox = Inbox(no_server, max_messages=3, max_bytes=1000)
    for n in range(3):
        assert await inbox.put(text(n), 1, patience=1)
    with trio.move_on_after(0.05) as waited:
        await inbox.put(text(3), 1, patience=10)
    assert waited.cancelled_caught and inbox.queued() == 3


async def test_inbox_is_bounded_by_size_but_always_admits_one_message() -> None:
    inbox = Inbox(no_server, max_messages=100, max_bytes=10)
    assert await inbox.put(text(0), 50, patience=1)  # larger than the budget, but alone
    with trio.move_on_after(0.05) as waited:
        await inbox.put(text(1), 1, patience=10)
    assert waited.cancelled_caught
    assert await take(inbox) == "0"
    assert await inbox.put(text(1), 6, patience=1)
    assert await inbox.put(text(2), 4, patience=1)
    with trio.move_on_after(0.05) as waited:
        await inbox.put(text(3), 1, patience=10)
    assert waited.cancelled_caught


async def test_inbox_gives_up_on_a_reader_that_takes_nothing() -> None:
    inbox = Inbox(no_server, max_messages=1, max_bytes=1000)
    assert await inbox.put(text(0), 1, patience=1)
    with trio.fail_after(1):
        assert not await inbox.put(text(1), 1, patience=0.05)


async def test_inbox_waits_for_a_slow_reader_as_long_as_it_makes_progress() -> None:
    inbox = Inbox(no_server, max_messages=1, max_bytes=1000)
    got: list[str] = []

    async def slow_reader() -> None:
        for _ in range(5):
            await trio.sleep(0.03)  # each message takes longer than the patience below...
            got.append(await take(inbox))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_reader)
            for n in range(5):
                # ... but every message taken restarts the clock.
                assert await inbox.put(text(n), 1, patience=0.05)
    assert got == ["0", "1", "2", "3", "4"]


async def test_inbox_delivers_what_is_queued_before_the_end() -> None:
    inbox = Inbox(no_server, max_messages=10, max_bytes=1000)
    await inbox.put(text(0), 1, patience=1)
    inbox.end(1006, "")
    assert await take(inbox) == "0"
    end = await inbox.get()
    assert isinstance(end, ClientGone) and end.code == 1006


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
