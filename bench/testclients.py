"""In-process echo round-trips per second through each framework's test client.

    python -m bench.testclients [SECONDS]

The same echo app per framework (bench/apps.py), no sockets. The ceiling is a
bare pair of Trio memory channels with an echo task between them.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from .apps import quart_trio, starlette, trio_boca


def measure(seconds: float, round_trip: Any) -> float:
    """Call `round_trip()` (sync) for `seconds`; round-trips per second."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            round_trip()
        done += 100
    return done / (time.perf_counter() - started)


async def ameasure(seconds: float, round_trip: Any) -> float:
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            await round_trip()
        done += 100
    return done / (time.perf_counter() - started)


async def trio_boca_client(seconds: float) -> float:
    from trio_boca.testing import TestClient

    async with TestClient(trio_boca()) as client, client.websocket("/echo") as ws:

        async def round_trip() -> None:
            await ws.send("0123456789abcdef0123456789abcdef")
            await ws.receive()

        return await ameasure(seconds, round_trip)


async def quart_trio_client(seconds: float) -> float:
    app: Any = quart_trio()
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with client.websocket("/echo") as ws:

            async def round_trip() -> None:
                await ws.send("0123456789abcdef0123456789abcdef")
                await ws.receive()

            return await ameasure(seconds, round_trip)


def starlette_client(seconds: float) -> float:
    from starlette.testclient import TestClient

    with TestClient(starlette()) as client, client.websocket_connect("/echo") as ws:

        def round_trip() -> None:
            ws.send_text("0123456789abcdef0123456789abcdef")
            ws.receive_text()

        return measure(seconds, round_trip)


async def memory_channels(seconds: float) -> float:
    to_echo, echo_in = trio.open_memory_channel[str](0)
    echo_out, from_echo = trio.open_memory_channel[str](0)

    async def echo() -> None:
        async for message in echo_in:
            await echo_out.send(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)

        async def round_trip() -> None:
            await to_echo.send("0123456789abcdef0123456789abcdef")
            await from_echo.receive()

        result = await ameasure(seconds, round_trip)
        nursery.cancel_scope.cancel()
    return result


def run_all(seconds: float) -> dict[str, float]:
    return {
        "trio_boca": trio.run(trio_boca_client, seconds),
        "starlette": starlette_client(seconds),
        "quart-trio": trio.run(quart_trio_client, seconds),
        "memory channels": trio.run(memory_channels, seconds),
    }


if __name__ == "__main__":
    print(json.dumps(run_all(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)))
