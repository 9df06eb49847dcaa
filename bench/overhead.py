"""What the framework alone costs, with no server and no sockets.

    .venv/bin/python -m bench.overhead

Drives each app directly over ASGI from memory channels, so the figures
hold only the app's own work (and the feeding task's, the same for both):

- per message: a connection echoing a stream of 32-byte messages;
- per connection: connect, accept, one echo, the client leaves.

Compared with the raw ASGI app, the difference is trio_boca's overhead; under
hypercorn each message costs about 80 us and each connection about 800 us,
which puts these in proportion.
"""

from __future__ import annotations

import time
from typing import Any

import trio

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


def main() -> None:
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(3):  # interleaved
        for name, make in (("raw", raw), ("trio_boca", trio_boca)):
            figures = results.setdefault(name, {"message": [], "connection": []})
            figures["message"].append(trio.run(per_message, make()))
            figures["connection"].append(trio.run(per_connection, make()))
    for name, figures in results.items():
        message, connection = min(figures["message"]), min(figures["connection"])
        print(f"{name:<10} {message:6.2f} us per message   {connection:6.1f} us per connection")


if __name__ == "__main__":
    main()
