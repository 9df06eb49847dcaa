"""Broadcast: the same tests on the memory backend and on a real Redis."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator

import pytest
import trio

from trio_boca import App, Broadcast, WebSocket
from trio_boca.broadcast import BroadcastUnavailable, SlowSubscriber, Subscription

from .conftest import TIMEOUT, Transport, server_close
from .services import RedisServer, freeze, thaw


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis")
    return server.url


async def collect(subscription: Subscription, count: int, into: list[object]) -> None:
    async for message in subscription:
        into.append(message)
        if len(into) == count:
            return


async def test_every_subscriber_gets_every_message_once_in_publish_order(url: str) -> None:
    publishers, per_publisher, subscribers = 3, 50, 10
    received: list[list[object]] = [[] for _ in range(subscribers)]
    with trio.fail_after(TIMEOUT):
        # A buffer for the whole burst: this test is about delivery, not the
        # slow-subscriber policy (see test_a_stalled_subscriber_...).
        async with (
            Broadcast(url, buffer=publishers * per_publisher) as broadcast,
            contextlib.AsyncExitStack() as stack,
        ):
            subscriptions = [
                await stack.enter_async_context(broadcast.subscribe("room"))
                for _ in range(subscribers)
            ]

            async def publish(publisher: int) -> None:
                for n in range(per_publisher):
                    await broadcast.publish("room", {"from": publisher, "n": n})

            async with trio.open_nursery() as nursery:
                for subscription, into in zip(subscriptions, received, strict=True):
                    nursery.start_soon(collect, subscription, publishers * per_publisher, into)
                async with trio.open_nursery() as senders:
                    for publisher in range(publishers):
                        senders.start_soon(publish, publisher)
    for messages in received:
        assert len(messages) == publishers * per_publisher
        for publisher in range(publishers):
            mine = [m["n"] for m in messages if m["from"] == publisher]  # type: ignore[index]
            assert mine == list(range(per_publisher))


async def test_messages_keep_their_type_and_channels_are_separate(url: str) -> None:
    got: list[object] = []
    with trio.fail_after(TIMEOUT):
        async with Broadcast(url) as broadcast, broadcast.subscribe("a") as a:
            async with broadcast.subscribe("b") as b:
                await broadcast.publish("b", "not for a")
                assert await b.__anext__() == "not for a"
            for message in ("text", b"\x00bytes", {"json": [1, 2.5, None]}, 7):
                await broadcast.publish("a", message)
            await collect(a, 4, got)
    assert got == ["text", b"\x00bytes", {"json": [1, 2.5, None]}, 7]


async def test_a_stalled_subscriber_is_dropped_and_nobody_waits_for_it(url: str) -> None:
    got: list[object] = []
    with trio.fail_after(TIMEOUT):
        async with (
            Broadcast(url, buffer=10) as broadcast,
            broadcast.subscribe("room") as stalled,
            broadcast.subscribe("room", buffer=1000) as keeping_up,
        ):
            started = trio.current_time()
            for n in range(500):
                await broadcast.publish("room", n)
            publishing = trio.current_time() - started
            await collect(keeping_up, 500, got)
            with pytest.raises(SlowSubscriber, match="fell 10 messages behind on 'room'"):
                async for _ in stalled:
                    pass
    assert got == list(range(500))
    assert publishing < 5  # the publisher never waited on the stalled reader


async def test_leaving_the_block_unsubscribes_even_when_cancelled(url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with Broadcast(url) as broadcast:
            with trio.move_on_after(0.05):
                async with broadcast.subscribe("room") as subscription:
                    async for _ in subscription:
                        pass  # pragma: no cover
            assert broadcast._hub.channels == {}
            await broadcast.publish("room", "nobody is listening")


async def test_misuse_is_refused_clearly() -> None:
    broadcast = Broadcast()
    with pytest.raises(RuntimeError, match="not running"):
        await broadcast.publish("room", "hi")
    with pytest.raises(ValueError, match="unknown broadcast URL"):
        Broadcast("kafka://nope")
    with trio.fail_after(TIMEOUT):
        async with broadcast:
            with pytest.raises(TypeError, match="str, bytes or JSON-able"):
                await broadcast.publish("room", object())


# coredis 6.9 leaves two anyio memory streams unclosed for every connection
# attempt that fails; these tests make such attempts on purpose.
COREDIS_LEAK = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*MemoryObject(Send|Receive)Stream"
    ":pytest.PytestUnraisableExceptionWarning"
)


@COREDIS_LEAK
async def test_a_redis_password_never_shows_in_errors_or_logs(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis.stop()
    url = redis.url.replace("redis://", "redis://:hunter2@", 1)
    with trio.fail_after(TIMEOUT), pytest.raises(BroadcastUnavailable) as failed:
        async with Broadcast(url):
            pass  # pragma: no cover
    gc.collect()
    assert ":***@" in str(failed.value)
    assert "hunter2" not in str(failed.value) + caplog.text


@COREDIS_LEAK
async def test_redis_out_of_reach_at_startup_fails_the_startup(redis: RedisServer) -> None:
    redis.stop()
    with trio.fail_after(TIMEOUT), pytest.raises(BroadcastUnavailable, match="cannot reach Redis"):
        async with Broadcast(redis.url):
            pass  # pragma: no cover
    gc.collect()  # meet coredis's leaks under this test's filter


@COREDIS_LEAK
async def test_redis_restarted_under_load(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_boca")
    published = failed = 0

    async def publish_forever(broadcast: Broadcast) -> None:
        nonlocal published, failed
        while True:
            try:
                await broadcast.publish("room", published)
                published += 1
            except BroadcastUnavailable:
                failed += 1
            await trio.sleep(0.001)

    with trio.fail_after(TIMEOUT * 2):
        async with Broadcast(redis.url) as broadcast, trio.open_nursery() as load:
            load.start_soon(publish_forever, broadcast)
            async with broadcast.subscribe("room") as subscription:
                await subscription.__anext__()
                redis.stop()
                # Subscribers are told; what is published meanwhile fails loudly.
                with pytest.raises(BroadcastUnavailable):
                    async for _ in subscription:
                        pass
            with pytest.raises(BroadcastUnavailable):
                await broadcast.publish("room", "while down")
            redis.start()
            # It reconnects by itself, with backoff; then all works again.
            while True:
                try:
                    async with broadcast.subscribe("room") as again:
                        assert isinstance(await again.__anext__(), int)
                        break
                except BroadcastUnavailable:
                    await trio.sleep(0.1)
            load.cancel_scope.cancel()
    gc.collect()  # meet coredis's leaks under this test's filter
    assert published > 0 and failed > 0
    assert any("lost Redis" in r.getMessage() for r in caplog.records)
    assert any("is back" in r.getMessage() for r in caplog.records)


async def test_a_slow_websocket_subscriber_is_closed_with_1008(serve: Transport) -> None:
    app = App()
    broadcast = Broadcast(buffer=2)

    @app.on("startup")
    async def start() -> None:
        await app.nursery.start(broadcast.run)

    @app.websocket_route("/slow")
    async def slow(ws: WebSocket) -> None:
        async with broadcast.subscribe("news") as subscription:
            await ws.send("subscribed")
            async for message in subscription:
                await ws.send(str(message))
                await trio.sleep(0.2)  # a consumer that cannot keep up

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/slow") as client:
            assert await client.receive() == "subscribed"
            for n in range(10):
                await broadcast.publish("news", n)
            assert await client.receive() == "0"
            closed = await server_close(client)
    assert closed.code == 1008
    assert closed.reason == "too slow: fell 2 messages behind on 'news'"


async def test_a_view_subscribed_when_its_client_leaves_unsubscribes(serve: Transport) -> None:
    app = App()
    broadcast = Broadcast()
    left = trio.Event()

    @app.on("startup")
    async def start() -> None:
        await app.nursery.start(broadcast.run)

    @app.websocket_route("/news")
    async def news(ws: WebSocket) -> None:
        try:
            async with broadcast.subscribe("news") as subscription:
                await ws.send("subscribed")
                async for message in subscription:  # waits on the broadcast only
                    await ws.send(str(message))
        finally:
            left.set()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/news") as client:
                assert await client.receive() == "subscribed"
            await left.wait()
            assert broadcast._hub.channels == {}


def room_app(url: str, shut_down: list[bool]) -> App:
    """The chat example's shape: a broadcast run from a startup hook, a room view."""
    app = App()
    broadcast = Broadcast(url)

    @app.on("startup")
    async def start() -> None:
        await app.nursery.start(broadcast.run)

    @app.on("shutdown")
    async def stop() -> None:
        shut_down.append(True)

    @app.websocket_route("/room")
    async def room(ws: WebSocket) -> None:
        async with broadcast.subscribe("room") as subscription:
            await ws.send("subscribed")
            async for message in subscription:
                await ws.send(message)

    return app


@COREDIS_LEAK
@pytest.mark.parametrize("plain", [False, True], ids=["serve", "hypercorn"])
async def test_a_redis_that_stops_answering_does_not_skip_the_shutdown_hooks(
    redis: RedisServer, plain: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14, defect 3: with the Redis server frozen (SIGSTOP), coredis
    raised anyio.ClosedResourceError while the broadcast was being
    cancelled; it escaped the app's nursery, and in 3 stops of 6 the app's
    shutdown hooks never ran (hypercorn logged a lifespan error)."""
    from trio_boca.testing import LiveServer

    shut_down: list[bool] = []
    assert redis.process is not None
    for _ in range(4):
        app = room_app(redis.url, shut_down)
        with trio.fail_after(TIMEOUT):
            async with (
                LiveServer(app, plain=plain, shutdown_timeout=1) as server,
                server.websocket("/room") as client,
            ):
                assert await client.receive() == "subscribed"
                freeze(redis.process)
                await trio.sleep(0.1)
        thaw(redis.process)
    gc.collect()  # meet coredis's leaks under this test's filter
    assert shut_down == [True] * 4
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
