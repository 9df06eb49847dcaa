"""Serve one of bench/apps.py under hypercorn's Trio worker until SIGTERM.

    python -m bench.serve NAME PORT

Every framework gets the same server, `hypercorn.trio.serve`, configured the
same way. Prints "ready" once it listens.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .apps import APPS


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(name: str, port: int) -> None:
    app = APPS[name]()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 0.5
    config.backlog = 4096
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve(
                    app, config, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            print("ready", flush=True)
            async for _ in signals:
                stop.set()
                break


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise_file_limit()
    trio.run(main, sys.argv[1], int(sys.argv[2]))
