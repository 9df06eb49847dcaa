"""How fast the edges of a connection are, over real sockets (trio_boca's serve()).

    .venv/bin/python bench/edges.py [--rounds 50]

Prints the median and 95th percentile, in milliseconds, of:

- reader ends:   a client closes; a view in `async for` sees the loop end;
- waiter ends:   a client closes; a view that never receives is cancelled
                 (this includes the 0.1 s `disconnect_grace`, on purpose);
- stop -> 1001:  the scope around app.serve() is cancelled; a connected
                 client receives close 1001.

Everything runs on loopback in one process; figures are for comparison
between versions on one machine, not absolute truths.
"""

from __future__ import annotations

import argparse
import statistics

import trio

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca.testing import connect_websocket


def make_app(ended: list[trio.Event]) -> App:
    app = App()

    @app.websocket_route("/reader")
    async def reader(ws: WebSocket) -> None:
        async for _ in ws:
            pass
        ended[-1].set()

    @app.websocket_route("/waiter")
    async def waiter(ws: WebSocket) -> None:
        try:
            await ws.send("ready")
            await trio.sleep_forever()
        finally:
            ended[-1].set()

    return app


async def client_leaves(url: str, ended: list[trio.Event]) -> float:
    ended.append(trio.Event())
    async with connect_websocket(url) as ws:
        if url.endswith("/waiter"):
            await ws.receive()
        else:
            await ws.send("hello")
        started = trio.current_time()
        await ws.close()
    await ended[-1].wait()
    return trio.current_time() - started


async def stop_to_1001(app: App) -> float:
    got_close = trio.Event()
    elapsed = 0.0
    async with trio.open_nursery() as clients:
        with trio.CancelScope() as serving:
            async with trio.open_nursery() as nursery:
                address = await nursery.start(app.serve, "127.0.0.1", 0)
                connected = trio.Event()

                async def client() -> None:
                    nonlocal elapsed
                    async with connect_websocket(f"ws://127.0.0.1:{address.port}/waiter") as ws:
                        await ws.receive()
                        connected.set()
                        try:
                            await ws.receive()
                        except WebSocketDisconnect as closed:
                            assert closed.code == 1001
                            elapsed = trio.current_time() - started
                            got_close.set()

                clients.start_soon(client)
                await connected.wait()
                started = trio.current_time()
                serving.cancel()
    await got_close.wait()
    return elapsed


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{name:<14} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


async def main(rounds: int) -> None:
    ended: list[trio.Event] = []
    app = make_app(ended)
    readers, waiters, stops = [], [], []
    async with trio.open_nursery() as nursery:
        address = await nursery.start(app.serve, "127.0.0.1", 0)
        base = f"ws://127.0.0.1:{address.port}"
        for _ in range(rounds):
            readers.append(await client_leaves(base + "/reader", ended))
            waiters.append(await client_leaves(base + "/waiter", ended))
        nursery.cancel_scope.cancel()
    for _ in range(max(5, rounds // 5)):
        ended.append(trio.Event())
        stops.append(await stop_to_1001(make_app(ended)))
    print(summary("reader ends", readers))
    print(summary("waiter ends", waiters))
    print(summary("stop -> 1001", stops))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=50)
    trio.run(main, parser.parse_args().rounds)
