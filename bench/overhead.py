"""What the framework alone costs, with no server and no sockets.

    .venv/bin/python -m bench.overhead

Drives each app directly over ASGI from memory channels, so the figures
hold only the app's own work (and the feeding task's, the same for all):

- per message, streamed: a connection echoing a stream of 32-byte messages
  as fast as they can be fed (the inbox stays full);
- per round trip: one message, then wait for its echo, as the benchmark's
  echo clients do;
- per connection: connect, accept, one echo, the client leaves.

Four rows: the raw ASGI app; "reader" is the raw app with an always-on
reader task moving messages into a bounded memory channel and nothing else,
the floor of any design where somebody always reads the server; trio_boca
over plain ASGI, as under any server (with a reader task of its own); and
"direct", trio_boca as its own server runs it, the messages handed straight
to its inbox through the trio_boca.direct extension (no reader task, no
queue hop), where the feeding side plays the server's reader; and
"+mounts", the trio_boca row with three ASGI apps mounted beside its route
(at "/", "/static" and "/legacy"), which a routed request must not pay for.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from trio_boca._direct import EXTENSION

from .apps import raw, trio_boca

SCOPE: dict[str, Any] = {
    "type": "websocket",
    "path": "/echo",
    "headers": [],
    "query_string": b"",
    "scheme": "ws",
    "server": ("127.0.0.1", 80),
    "client": ("127.0.0.1", 5000),
    "subprotocols": [],
    "extensions": {},
}
MESSAGE: dict[str, Any] = {"type": "websocket.receive", "text": "x" * 32}


async def ignore(message: Any) -> None:
    await trio.lowlevel.checkpoint()


async def per_message(app: Any, count: int = 30_000) -> float:
    to_app, from_test = trio.open_memory_channel[dict[str, Any]](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, dict(SCOPE), from_test.receive, ignore)
        await to_app.send({"type": "websocket.connect"})
        for _ in range(1000):  # warm up
            await to_app.send(MESSAGE)
        started = time.perf_counter()
        for _ in range(count):
            await to_app.send(MESSAGE)
        elapsed = time.perf_counter() - started
        await to_app.send({"type": "websocket.disconnect", "code": 1000})
    return elapsed / count * 1e6


async def per_round_trip(app: Any, count: int = 20_000) -> float:
    to_app, from_test = trio.open_memory_channel[dict[str, Any]](10)
    to_test, from_app = trio.open_memory_channel[dict[str, Any]](10)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await to_test.send(message)
        else:
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, dict(SCOPE), from_test.receive, send)
        await to_app.send({"type": "websocket.connect"})
        for _ in range(1000):  # warm up
            await to_app.send(MESSAGE)
            await from_app.receive()
        started = time.perf_counter()
        for _ in range(count):
            await to_app.send(MESSAGE)
            await from_app.receive()
        elapsed = time.perf_counter() - started
        await to_app.send({"type": "websocket.disconnect", "code": 1000})
    return elapsed / count * 1e6


async def per_connection(app: Any, count: int = 5_000) -> float:
    async def one() -> None:
        events: list[dict[str, Any]] = [
            {"type": "websocket.connect"},
            MESSAGE,
            {"type": "websocket.disconnect", "code": 1000},
        ]

        async def receive() -> dict[str, Any]:
            await trio.lowlevel.checkpoint()
            return events.pop(0)

        await app(dict(SCOPE), receive, ignore)

    for _ in range(200):  # warm up
        await one()
    started = time.perf_counter()
    for _ in range(count):
        await one()
    return (time.perf_counter() - started) / count * 1e6


def reader() -> Any:
    """The raw app plus an always-on reader into a memory channel: nothing else."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        inbox_in, inbox = trio.open_memory_channel[dict[str, Any]](64)

        async def read() -> None:
            while (message := await receive())["type"] == "websocket.receive":
                try:
                    inbox_in.send_nowait(message)  # as trio_boca: no yield while there is room
                except trio.WouldBlock:
                    await inbox_in.send(message)
            inbox_in.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            async for message in inbox:
                await send({"type": "websocket.send", "text": message.get("text")})
            nursery.cancel_scope.cancel()

    return app


class Direct:
    """The trio_boca.direct extension's handle, as trio_boca's server offers it."""

    write_timeout = close_timeout = 30.0

    def __init__(self) -> None:
        self.sink: Any = None
        self.attached = trio.Event()

    def attach(self, sink: Any) -> None:
        self.sink = sink
        self.attached.set()


def direct_scope(direct: Direct) -> dict[str, Any]:
    return {**SCOPE, "extensions": {EXTENSION: direct}}


async def connect_only() -> dict[str, Any]:
    await trio.lowlevel.checkpoint()
    return {"type": "websocket.connect"}


async def per_message_direct(app: Any, count: int = 30_000) -> float:
    direct = Direct()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, direct_scope(direct), connect_only, ignore)
        await direct.attached.wait()
        for _ in range(1000):  # warm up
            await direct.sink.deliver(MESSAGE)
        started = time.perf_counter()
        for _ in range(count):
            await direct.sink.deliver(MESSAGE)
        elapsed = time.perf_counter() - started
        direct.sink.left(1000, "")
    return elapsed / count * 1e6


async def per_round_trip_direct(app: Any, count: int = 20_000) -> float:
    direct = Direct()
    to_test, from_app = trio.open_memory_channel[dict[str, Any]](10)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await to_test.send(message)
        else:
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, direct_scope(direct), connect_only, send)
        await direct.attached.wait()
        for _ in range(1000):  # warm up
            await direct.sink.deliver(MESSAGE)
            await from_app.receive()
        started = time.perf_counter()
        for _ in range(count):
            await direct.sink.deliver(MESSAGE)
            await from_app.receive()
        elapsed = time.perf_counter() - started
        direct.sink.left(1000, "")
    return elapsed / count * 1e6


async def per_connection_direct(app: Any, count: int = 5_000) -> float:
    async def one() -> None:
        direct = Direct()

        async def send(message: dict[str, Any]) -> None:
            await trio.lowlevel.checkpoint()
            if message["type"] == "websocket.accept":  # the client's message, then it leaves
                await direct.sink.deliver(MESSAGE)
                direct.sink.left(1000, "")

        await app(direct_scope(direct), connect_only, send)

    for _ in range(200):  # warm up
        await one()
    started = time.perf_counter()
    for _ in range(count):
        await one()
    return (time.perf_counter() - started) / count * 1e6


MEASURES = {"message": per_message, "round trip": per_round_trip, "connection": per_connection}
DIRECT = {
    "message": per_message_direct,
    "round trip": per_round_trip_direct,
    "connection": per_connection_direct,
}


def with_mounts() -> Any:
    """trio_boca's echo app with apps mounted beside its route (the route wins)."""

    async def elsewhere(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a routed request reached a mount")

    app: Any = trio_boca()
    for prefix in ("/", "/static", "/legacy"):
        app.mount(prefix, elsewhere)
    return app


def main() -> None:
    results: dict[str, dict[str, list[float]]] = {}
    rows = (
        ("raw", raw, MEASURES),
        ("reader", reader, MEASURES),
        ("trio_boca", trio_boca, MEASURES),
        ("direct", trio_boca, DIRECT),
        ("+mounts", with_mounts, MEASURES),
    )
    for _ in range(3):  # interleaved
        for name, make, measures in rows:
            figures = results.setdefault(name, {})
            for measure, run in measures.items():
                figures.setdefault(measure, []).append(trio.run(run, make()))
    print(f"{'us per':<10}" + "".join(f"{measure:>12}" for measure in MEASURES))
    for name, figures in results.items():
        print(f"{name:<10}" + "".join(f"{min(figures[m]):12.2f}" for m in MEASURES))


if __name__ == "__main__":
    main()
