"""Serve one of the bench/apps.py echoes until SIGTERM.

    python -m bench.serve NAME PORT

Three ways to serve, one per kind of row:

- an ASGI app of `APPS` (raw, trio_boca, starlette, quart-trio): plain
  `hypercorn.trio.serve`, configured the same way for every framework;
- "trio_boca-serve": the trio_boca app under `trio_boca.server.serve`, the
  path `trio-boca run` and `app.serve()` take (hypercorn's Trio worker plus
  trio_boca's adaptations and graceful stop), with the same settings;
- "trio-websocket": not ASGI, so no hypercorn: a bare `serve_websocket`, as a
  Trio user would write without a framework.

Prints "ready" once it listens; SIGTERM stops each the way its users would.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .apps import APPS, trio_websocket

GRACEFUL = 0.5  # seconds a graceful stop may take
BACKLOG = 4096


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def under_hypercorn(
    name: str, port: int, stop: trio.Event, *, task_status: trio.TaskStatus[None]
) -> None:
    """Plain hypercorn, stopped through its shutdown trigger."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL
    config.backlog = BACKLOG
    async with trio.open_nursery() as nursery:
        run = partial(hypercorn_serve, APPS[name](), config, shutdown_trigger=stop.wait)
        await nursery.start(run)
        task_status.started()


async def under_trio_boca(
    name: str, port: int, stop: trio.Event, *, task_status: trio.TaskStatus[None]
) -> None:
    """trio_boca's serve(), stopped as `trio-boca run` stops it: cancelled, it stops gracefully."""
    from trio_boca.server import serve

    compression = name.endswith("-compression")  # "trio_boca-serve-compression": on
    app = APPS["raw" if name.startswith("raw") else "trio_boca"]()
    async with trio.open_nursery() as nursery:
        run = partial(
            serve,
            app,
            "127.0.0.1",
            port,
            shutdown_timeout=GRACEFUL,
            compression=compression,
        )
        await nursery.start(run)
        task_status.started()
        await stop.wait()
        nursery.cancel_scope.cancel()


async def under_trio_websocket(
    name: str, port: int, stop: trio.Event, *, task_status: trio.TaskStatus[None]
) -> None:
    """A bare trio-websocket server, stopped by cancelling it (it has no graceful stop).

    Its listener's backlog is Trio's default, the most the kernel allows.
    """
    from trio_websocket import serve_websocket

    async with trio.open_nursery() as nursery:
        run = partial(serve_websocket, trio_websocket(), "127.0.0.1", port, ssl_context=None)
        await nursery.start(run)
        task_status.started()
        await stop.wait()
        nursery.cancel_scope.cancel()


async def under_ceiling(
    name: str, port: int, stop: trio.Event, *, task_status: trio.TaskStatus[None]
) -> None:
    """The Trio ceiling (bench/ceiling.py): no library, stopped by cancelling it."""
    from .ceiling import serve_ceiling

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_ceiling, port)
        task_status.started()
        await stop.wait()
        nursery.cancel_scope.cancel()


async def under_websockets_trio(
    name: str, port: int, stop: trio.Event, *, task_status: trio.TaskStatus[None]
) -> None:
    """websockets' own Trio server with its defaults, stopped by cancelling it."""
    from websockets.trio.server import serve as websockets_serve

    from .apps import websockets_trio

    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(websockets_serve, websockets_trio(), port, host="127.0.0.1", backlog=BACKLOG)
        )
        task_status.started()
        await stop.wait()
        nursery.cancel_scope.cancel()


def under_uvicorn(port: int) -> None:
    """Starlette on uvicorn, the asyncio reference: uvloop, httptools, websockets.

    Not Trio: its own event loop, in this process; uvicorn stops on SIGTERM.
    """
    import asyncio

    import uvicorn
    import uvloop

    config = uvicorn.Config(
        APPS["starlette"](),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        lifespan="off",
        log_level="warning",
        backlog=BACKLOG,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await serving

    uvloop.run(main())


Serve = Callable[..., Awaitable[None]]
SERVERS: dict[str, Serve] = {
    "trio_boca-serve": under_trio_boca,
    "trio_boca-serve-compression": under_trio_boca,
    "trio-websocket": under_trio_websocket,
    "ceiling": under_ceiling,
    "raw-serve": under_trio_boca,
    "websockets-trio": under_websockets_trio,
}


async def main(name: str, port: int) -> None:
    serve = SERVERS.get(name, under_hypercorn)
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, name, port, stop)
            print("ready", flush=True)
            async for _ in signals:
                stop.set()
                break


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise_file_limit()
    if sys.argv[1] == "starlette-uvicorn":
        under_uvicorn(int(sys.argv[2]))
    else:
        trio.run(main, sys.argv[1], int(sys.argv[2]))
